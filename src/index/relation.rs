//! Everything the index holds about one (resource type, relation): its edge kinds and the two
//! Leopard closures it keeps while they are valid (self-nesting edges, and same-type "tree"
//! edges).

use std::sync::Arc;

use super::closure::Closure;
use super::edges::{EdgeKind, Edges, SideEdges};

/// Everything the index holds about one (resource type, relation).
#[derive(Debug, Clone, Default)]
pub struct RelationIndex {
    pub kinds: Vec<EdgeKind>,
    /// The closure of self-nesting edges (`group:a#member@group:b#member`).
    pub(super) nesting: KeptClosure,
    /// The closure of edges to objects of the same type without a subject relation
    /// (`folder:a#parent@folder:b`): for each object, every object reached by following them
    /// (a folder's ancestors). Arrows over such a relation (`parent->view`) are summarized with
    /// it.
    pub(super) tree: KeptClosure,
}

/// A Leopard closure kept for one kind of edge between objects of one type, while it is valid
/// (every such edge unconditional) and within its size budget.
#[derive(Debug, Clone, Default)]
pub(super) struct KeptClosure {
    /// `None` until the first edge, while a conditional edge exists, or once over budget.
    closure: Option<Closure>,
    /// Conditional edges of the kind: while any exists the closure is off.
    conditional: usize,
    /// The closure outgrew [`closure_budget`] and is off until the index is rebuilt.
    too_big: bool,
}

/// The most (ancestor, descendant) pairs a closure may hold for `edges` edges: long chains
/// and dense graphs make closures quadratic; past this the relation is evaluated without one.
pub(super) fn closure_budget(edges: usize) -> usize {
    edges.saturating_mul(64).saturating_add(1 << 20)
}

impl KeptClosure {
    pub(super) fn enabled(&self) -> bool {
        self.conditional == 0 && !self.too_big
    }

    pub(super) fn get(&self) -> Option<&Closure> {
        self.closure.as_ref().filter(|_| self.enabled())
    }

    /// A conditional edge of the kind arrived: the closure is off while it exists.
    pub(super) fn add_conditional(&mut self) {
        self.conditional += 1;
        self.closure = None;
    }

    /// A conditional edge left; with the last one gone the closure is rebuilt from `edges`.
    pub(super) fn remove_conditional(&mut self, edges: &Edges) -> u64 {
        self.conditional = self.conditional.saturating_sub(1);
        if !self.enabled() {
            return 0;
        }
        let mut updates = 0;
        for (p, ch) in edges.pairs() {
            updates += self.add(p, ch, edges.len);
        }
        updates
    }

    pub(super) fn add(&mut self, parent: u32, child: u32, edges: usize) -> u64 {
        if !self.enabled() {
            return 0;
        }
        let c = self.closure.get_or_insert_with(Closure::new);
        if c.pairs().saturating_add(c.pairs_added_at_most(parent, child)) > closure_budget(edges) {
            self.too_big = true;
            self.closure = None;
            return 0;
        }
        c.add_edge(parent, child)
    }

    pub(super) fn remove(&mut self, parent: u32, child: u32) -> u64 {
        match self.closure.as_mut() {
            Some(c) if self.conditional == 0 && !self.too_big => c.remove_edge(parent, child),
            _ => 0,
        }
    }
}

impl RelationIndex {
    pub(super) fn kind_mut(&mut self, subject_type: &str, subject_relation: Option<&str>) -> &mut EdgeKind {
        let pos = self
            .kinds
            .iter()
            .position(|k| k.subject_type == subject_type && k.subject_relation.as_deref() == subject_relation);
        let pos = match pos {
            Some(p) => p,
            None => {
                self.kinds.push(EdgeKind {
                    subject_type: subject_type.to_string(),
                    subject_relation: subject_relation.map(str::to_string),
                    edges: Edges::default(),
                    wildcards: Arc::default(),
                    side: SideEdges::default(),
                });
                self.kinds.len() - 1
            }
        };
        // INVARIANT: `pos` indexes an existing kind (found, or just pushed).
        #[expect(clippy::indexing_slicing, reason = "pos was found in or pushed onto the vector")]
        &mut self.kinds[pos]
    }

    pub fn kind(&self, subject_type: &str, subject_relation: Option<&str>) -> Option<&EdgeKind> {
        self.kinds.iter().find(|k| k.subject_type == subject_type && k.subject_relation.as_deref() == subject_relation)
    }

    /// Whether the closure of self-nesting edges is valid (every such edge is unconditional,
    /// and it is within its budget).
    pub fn closure_enabled(&self) -> bool {
        self.nesting.enabled()
    }

    /// The closure of self-nesting edges, when it is valid and some such edge exists.
    pub fn closure(&self) -> Option<&Closure> {
        self.nesting.get()
    }

    /// Whether `inner` is `outer` or nested below it; `None` while the closure is off.
    pub fn reaches(&self, outer: u32, inner: u32) -> Option<bool> {
        if !self.closure_enabled() {
            return None;
        }
        Some(outer == inner || self.nesting.get().is_some_and(|c| c.reaches(outer, inner)))
    }

    /// The closure of edges to objects of the same type (see [`RelationIndex`]'s `tree`), when
    /// it is valid; `None` also before the first such edge.
    pub fn tree(&self) -> Option<&Closure> {
        self.tree.get()
    }

    /// Reads, in every edge kind, the memory a lookup of `resource`'s edges first waits for,
    /// and returns a word folded from what it read. A Check calls it for each relation of its
    /// object before evaluating anything: the reads do not depend on one another, so the
    /// processor overlaps their cache misses, and the evaluation that follows finds the lines
    /// in cache instead of waiting for each miss in turn. The caller passes the word to
    /// [`std::hint::black_box`] so the reads are kept.
    pub fn read_ahead(&self, resource: u32) -> u64 {
        self.kinds.iter().fold(0, |acc, k| acc ^ k.edges.forward.read_ahead(resource) ^ k.side.read_ahead(resource))
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.kinds.capacity() * std::mem::size_of::<EdgeKind>()
            + self.kinds.iter().map(EdgeKind::heap_bytes).sum::<usize>()
    }
}

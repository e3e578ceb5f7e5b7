//! The relationship graph with dense ids: object ids interned to `u32` per type, unconditional
//! edges as id sets in both directions per (resource type, relation, subject type, subject
//! relation), wildcard edges per (resource type, relation, subject type), conditional and
//! expiring edges in a side table indexed both ways (so unconditional answers stay pure set
//! work), and Leopard closures for relations that nest in themselves
//! (`group#member@group:x#member`) while every such edge is unconditional. Built from a
//! relationship set and kept current change by change.
//!
//! Lookups are by `&str` through nested maps (resource type, then relation), so reading the
//! index never allocates. The parts live beside this file: `interner.rs` (ids), `edges.rs` (one
//! edge kind), `relation.rs` (one relation's kinds and closures), `relations.rs` (the index as
//! the reference evaluator's data).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::closure::Closure;
use super::edges::{EdgeKind, SideEdge};
use super::hash::FastMap;
use super::idset::IdSet;
pub use super::idset::WILDCARD;
use super::interner::Interner;
use super::relation::RelationIndex;
use crate::model::{CaveatRef, ObjectRef, Relationship, SubjectRef, Timestamp};

/// The whole index of one tenant at one revision. Cloning it is cheap (its tables and chunks are
/// shared until changed): a write builds the next snapshot from a clone.
#[derive(Debug, Clone, Default)]
pub struct IndexGraph {
    pub types: FastMap<String, Interner>,
    /// Resource type → relation → its slot in `slots` (kept for the index's life).
    relations: FastMap<String, FastMap<String, u32>>,
    /// Each relation's edges (shared between snapshots until changed).
    slots: Vec<Arc<RelationIndex>>,
    /// Set updates made by changes so far (edges, wildcards, closures).
    pub updates: u64,
    /// The stored attributes of objects (caveats read them), in tables by a hash of the object
    /// (shared between snapshots until changed).
    attributes: Vec<Arc<BTreeMap<ObjectRef, Map<String, Value>>>>,
}

/// Tables of objects' attributes.
const ATTRIBUTE_TABLES: usize = 64;

impl IndexGraph {
    pub fn new() -> IndexGraph {
        IndexGraph::default()
    }

    pub fn build<'a>(rels: impl IntoIterator<Item = &'a Relationship>) -> IndexGraph {
        let mut g = IndexGraph::new();
        for r in rels {
            g.insert(r);
        }
        g
    }

    /// The index of a relationship set, with its attributes.
    pub fn from_tuples(tuples: &crate::engine::Tuples) -> IndexGraph {
        let mut g = IndexGraph::build(tuples.iter());
        for (o, a) in tuples.all_attributes() {
            g.set_attributes(o.clone(), a.clone());
        }
        g
    }

    pub fn id(&self, o: &ObjectRef) -> Option<u32> {
        self.types.get(&o.ty).and_then(|i| i.get(&o.id))
    }

    /// The ids of two objects, looked up together: the first read of each (a slot of its
    /// type's table, usually a cache miss) is issued before either is waited for. `b` is not
    /// looked up further when `a` has no id (`(None, None)`).
    pub fn id_pair(&self, a: &ObjectRef, b: &ObjectRef) -> (Option<u32>, Option<u32>) {
        let (ia, ib) = (self.types.get(&a.ty), self.types.get(&b.ty));
        let (la, lb) = (ia.map(|i| i.begin(&a.id)), ib.map(|i| i.begin(&b.id)));
        let Some(ida) = ia.zip(la).and_then(|(i, l)| i.finish(&a.id, l)) else { return (None, None) };
        (Some(ida), ib.zip(lb).and_then(|(i, l)| i.finish(&b.id, l)))
    }

    /// The id of `id` in type `ty`, if interned.
    pub fn id_of(&self, ty: &str, id: &str) -> Option<u32> {
        self.types.get(ty).and_then(|i| i.get(id))
    }

    fn intern(&mut self, o: &ObjectRef) -> u32 {
        match self.types.get_mut(&o.ty) {
            Some(i) => i.intern(&o.id),
            None => self.types.entry(o.ty.clone()).or_default().intern(&o.id),
        }
    }

    /// Whether the relationship nests a relation in itself (`group:a#member@group:b#member`).
    fn self_nesting(r: &Relationship) -> bool {
        r.subject.object.ty == r.resource.ty && r.subject.relation.as_deref() == Some(r.relation.as_str())
    }

    /// Whether the relationship links two objects of one type without a subject relation
    /// (`folder:a#parent@folder:b`).
    fn tree_edge(r: &Relationship) -> bool {
        r.subject.object.ty == r.resource.ty && r.subject.relation.is_none() && !r.subject.is_wildcard()
    }

    /// The index of one (resource type, relation) to change (copied first if a snapshot shares
    /// it: a shallow copy, its sets stay shared until changed).
    /// (`None` cannot happen: a missing entry is created first.)
    fn relation_mut(&mut self, ty: &str, relation: &str) -> Option<&mut RelationIndex> {
        // Names are copied only the first time they are seen.
        if !self.relations.get(ty).is_some_and(|m| m.contains_key(relation)) {
            let slot = u32::try_from(self.slots.len()).ok()?;
            self.slots.push(Arc::default());
            self.relations.entry(ty.to_string()).or_default().insert(relation.to_string(), slot);
        }
        self.existing_relation_mut(ty, relation)
    }

    /// The index of one (resource type, relation) to change, if it exists (copied first if a
    /// snapshot shares it).
    fn existing_relation_mut(&mut self, ty: &str, relation: &str) -> Option<&mut RelationIndex> {
        let slot = *self.relations.get(ty)?.get(relation)?;
        self.slots.get_mut(slot as usize).map(Arc::make_mut)
    }

    /// The slot of one (resource type, relation), if it has ever had an edge: a number that
    /// names it in this index and every later snapshot of it ([`IndexGraph::slot`]).
    pub fn relation_slot(&self, ty: &str, relation: &str) -> Option<u32> {
        self.relations.get(ty)?.get(relation).copied()
    }

    /// How many slots there are (every slot below this names a relation).
    pub fn slot_count(&self) -> u32 {
        self.slots.len() as u32
    }

    /// The relation index in a slot.
    pub fn slot(&self, slot: u32) -> Option<&RelationIndex> {
        self.slots.get(slot as usize).map(|r| &**r)
    }

    /// Every relation index with its resource type and relation name.
    pub(super) fn named_relations(&self) -> impl Iterator<Item = (&str, &str, &RelationIndex)> {
        self.relations.iter().flat_map(move |(ty, m)| {
            m.iter().filter_map(move |(rel, slot)| Some((ty.as_str(), rel.as_str(), self.slot(*slot)?)))
        })
    }

    /// The index of one (resource type, relation), if it has ever had an edge.
    pub fn relation(&self, ty: &str, relation: &str) -> Option<&RelationIndex> {
        self.slot(self.relation_slot(ty, relation)?)
    }

    /// Adds a relationship (replacing nothing: callers remove the old row of a touch first).
    pub fn insert(&mut self, r: &Relationship) {
        let res = self.intern(&r.resource);
        let conditional = r.caveat.is_some() || r.expiration.is_some();
        let subj = if r.subject.is_wildcard() { WILDCARD } else { self.intern(&r.subject.object) };
        let nests = Self::self_nesting(r);
        let tree = Self::tree_edge(r);
        let Some(ri) = self.relation_mut(&r.resource.ty, &r.relation) else { return };
        let kind = ri.kind_mut(&r.subject.object.ty, r.subject.relation.as_deref());
        let mut updates = 0;
        if conditional {
            kind.side.insert(SideEdge {
                resource: res,
                subject: subj,
                caveat: r.caveat.clone(),
                expiration: r.expiration,
            });
            // A closure may only summarize unconditional edges: switch it off.
            if nests {
                ri.nesting.add_conditional();
            }
            if tree {
                ri.tree.add_conditional();
            }
        } else if subj == WILDCARD {
            if !kind.wildcards.contains(res) {
                updates += u64::from(Arc::make_mut(&mut kind.wildcards).insert(res));
            }
        } else {
            let added = kind.edges.insert(res, subj);
            let count = kind.edges.len;
            updates += added;
            if added > 0 && nests {
                updates += ri.nesting.add(res, subj, count);
            }
            if added > 0 && tree {
                updates += ri.tree.add(res, subj, count);
            }
        }
        self.updates += updates;
    }

    /// Removes the row with this relationship's resource, relation and subject; returns whether
    /// it was there.
    pub fn remove(&mut self, r: &Relationship) -> bool {
        let Some((res, subj)) = self.held(r) else { return false };
        let nests = Self::self_nesting(r);
        let tree = Self::tree_edge(r);
        let Some(ri) = self.existing_relation_mut(&r.resource.ty, &r.relation) else { return false };
        let Some(pos) = ri
            .kinds
            .iter()
            .position(|k| k.subject_type == r.subject.object.ty && k.subject_relation == r.subject.relation)
        else {
            return false;
        };
        let mut updates = 0;
        let removed;
        // The row may be in the side table (conditional) or in the sets (unconditional).
        let was_conditional = ri.kinds.get_mut(pos).is_some_and(|k| k.side.remove(res, subj));
        if was_conditional {
            removed = true;
            // With the last conditional edge gone, a closure is rebuilt from the unconditional ones.
            if let Some(k) = ri.kinds.get(pos) {
                if nests {
                    updates += ri.nesting.remove_conditional(&k.edges);
                }
                if tree {
                    updates += ri.tree.remove_conditional(&k.edges);
                }
            }
        } else if let Some(k) = ri.kinds.get_mut(pos) {
            if subj == WILDCARD {
                removed = k.wildcards.contains(res) && Arc::make_mut(&mut k.wildcards).remove(res);
                updates += u64::from(removed);
            } else {
                let n = k.edges.remove(res, subj);
                removed = n > 0;
                updates += n;
                if removed && nests {
                    updates += ri.nesting.remove(res, subj);
                }
                if removed && tree {
                    updates += ri.tree.remove(res, subj);
                }
            }
        } else {
            removed = false;
        }
        self.updates += updates;
        removed
    }

    /// Whether the index holds a relationship with `r`'s identity (resource, relation and
    /// subject; any caveat or expiration, expired or not).
    pub fn holds(&self, r: &Relationship) -> bool {
        self.held(r).is_some()
    }

    /// The ids of a held relationship's resource and subject.
    fn held(&self, r: &Relationship) -> Option<(u32, u32)> {
        let res = self.id(&r.resource)?;
        let subj = if r.subject.is_wildcard() { WILDCARD } else { self.id(&r.subject.object)? };
        let k = self.kind(&r.resource.ty, &r.relation, &r.subject.object.ty, r.subject.relation.as_deref())?;
        let present = k.side.of_resource(res).iter().any(|e| e.subject == subj)
            || if subj == WILDCARD {
                k.wildcards.contains(res)
            } else {
                k.edges.forward.get(res).is_some_and(|s| s.contains(subj))
            };
        present.then_some((res, subj))
    }

    /// Adds or replaces a relationship (the row with its resource, relation and subject);
    /// returns whether a row was replaced.
    pub fn upsert(&mut self, r: &Relationship) -> bool {
        let replaced = self.remove(r);
        self.insert(r);
        replaced
    }

    /// The attribute table of an object.
    fn attribute_table(object: &ObjectRef) -> usize {
        std::hash::BuildHasher::hash_one(&std::hash::BuildHasherDefault::<super::hash::FastHasher>::default(), object)
            as usize
            % ATTRIBUTE_TABLES
    }

    pub fn set_attributes(&mut self, object: ObjectRef, attributes: Map<String, Value>) {
        if self.attributes.is_empty() {
            self.attributes = (0..ATTRIBUTE_TABLES).map(|_| Arc::default()).collect();
        }
        if let Some(t) = self.attributes.get_mut(Self::attribute_table(&object)) {
            Arc::make_mut(t).insert(object, attributes);
        }
    }

    pub fn remove_attributes(&mut self, object: &ObjectRef) -> bool {
        match self.attributes.get_mut(Self::attribute_table(object)) {
            Some(t) if t.contains_key(object) => Arc::make_mut(t).remove(object).is_some(),
            _ => false,
        }
    }

    pub(super) fn attributes_of(&self, object: &ObjectRef) -> Option<&Map<String, Value>> {
        self.attributes.get(Self::attribute_table(object))?.get(object)
    }

    /// Every object with stored attributes (in no particular order).
    pub fn all_attributes(&self) -> impl Iterator<Item = (&ObjectRef, &Map<String, Value>)> {
        self.attributes.iter().flat_map(|t| t.iter())
    }

    /// The relationships of `resource#relation`, expired ones included, ordered by subject.
    pub fn relationships_of(&self, resource: &ObjectRef, relation: &str) -> Vec<Relationship> {
        let mut out = Vec::new();
        if let (Some(ri), Some(res)) = (self.relation(&resource.ty, relation), self.id(resource)) {
            for k in &ri.kinds {
                self.kind_rows(&resource.ty, relation, k, res, &mut out);
            }
        }
        out.sort_by(|a, b| a.subject.cmp(&b.subject));
        out
    }

    /// Appends the rows of one resource in one edge kind.
    fn kind_rows(&self, ty: &str, relation: &str, k: &EdgeKind, res: u32, out: &mut Vec<Relationship>) {
        let Some(res_name) = self.name(ty, res) else { return };
        let resource = ObjectRef::new(ty, res_name);
        let row = |id: &str, caveat: Option<CaveatRef>, expiration: Option<Timestamp>| Relationship {
            resource: resource.clone(),
            relation: relation.to_string(),
            subject: SubjectRef::new(ObjectRef::new(k.subject_type.as_str(), id), k.subject_relation.clone()),
            caveat,
            expiration,
        };
        if let Some(subjects) = k.edges.forward.get(res) {
            out.extend(subjects.iter().filter_map(|s| self.name(&k.subject_type, s)).map(|id| row(id, None, None)));
        }
        if k.wildcards.contains(res) {
            out.push(row("*", None, None));
        }
        for e in k.side.of_resource(res) {
            let id = if e.subject == WILDCARD { Some("*") } else { self.name(&k.subject_type, e.subject) };
            if let Some(id) = id {
                out.push(row(id, e.caveat.clone(), e.expiration));
            }
        }
    }

    /// Every relationship held (expired ones included), resource type by resource type;
    /// `resource_type`, `resource_id` and `relation` narrow the walk when given.
    pub fn relationships<'s>(
        &'s self,
        resource_type: Option<&'s str>,
        resource_id: Option<&'s str>,
        relation: Option<&'s str>,
    ) -> impl Iterator<Item = Relationship> + 's {
        self.named_relations()
            .filter(move |(ty, rel, _)| resource_type.is_none_or(|t| t == *ty) && relation.is_none_or(|r| r == *rel))
            .flat_map(move |(ty, rel, ri)| {
                ri.kinds.iter().flat_map(move |k| {
                    let resources: Vec<u32> = match resource_id {
                        Some(id) => self.id_of(ty, id).into_iter().collect(),
                        None => {
                            let mut v: Vec<u32> = k
                                .edges
                                .forward
                                .resources()
                                .chain(k.wildcards.iter())
                                .chain(k.side.iter().map(|e| e.resource))
                                .collect();
                            v.sort_unstable();
                            v.dedup();
                            v
                        }
                    };
                    resources.into_iter().flat_map(move |res| {
                        let mut rows = Vec::new();
                        self.kind_rows(ty, rel, k, res, &mut rows);
                        rows
                    })
                })
            })
    }

    /// The name of an interned id.
    pub fn name(&self, ty: &str, id: u32) -> Option<&str> {
        self.types.get(ty).and_then(|i| i.name(id))
    }

    /// The closure of a self-nesting relation, while it is valid and some nesting edge exists.
    pub fn closure(&self, ty: &str, relation: &str) -> Option<&Closure> {
        self.relation(ty, relation)?.closure()
    }

    /// Every closure kept: (type, relation, closure).
    pub fn closures(&self) -> impl Iterator<Item = (&str, &str, &Closure)> {
        self.named_relations().filter_map(|(ty, rel, ri)| ri.closure().map(|c| (ty, rel, c)))
    }

    /// `object` and every object nested below it in `ty#relation`, from the closure; `None`
    /// while a conditional nesting edge switches the closure off.
    pub fn nested(&self, ty: &str, relation: &str, object: u32) -> Option<Vec<u32>> {
        let ri = self.relation(ty, relation);
        if ri.is_some_and(|r| !r.closure_enabled()) {
            return None;
        }
        let mut out = vec![object];
        if let Some(d) = ri.and_then(RelationIndex::closure).and_then(|c| c.descendants(object)) {
            out.extend(d.iter().filter(|x| *x != object));
        }
        Some(out)
    }

    /// The edge kind `ty:?#relation@subject_type:?#subject_relation`.
    pub fn kind(
        &self,
        ty: &str,
        relation: &str,
        subject_type: &str,
        subject_relation: Option<&str>,
    ) -> Option<&EdgeKind> {
        self.relation(ty, relation)?.kind(subject_type, subject_relation)
    }

    /// Resources `ty:?#relation` that name `subject_type:subject` directly and unconditionally.
    pub fn reverse(&self, ty: &str, relation: &str, subject_type: &str, subject: u32) -> Option<&IdSet> {
        self.kind(ty, relation, subject_type, None)?.edges.reverse.get(subject)
    }

    /// Resources `ty:?#relation` with an unconditional wildcard `subject_type:*`.
    pub fn wildcard(&self, ty: &str, relation: &str, subject_type: &str) -> Option<&IdSet> {
        self.kind(ty, relation, subject_type, None).map(|k| &*k.wildcards).filter(|w| !w.is_empty())
    }

    /// Unconditional subjects of `resource#relation` of one subject type and relation.
    pub fn subjects(
        &self,
        resource: &ObjectRef,
        relation: &str,
        subject_type: &str,
        subject_relation: Option<&str>,
    ) -> Option<std::borrow::Cow<'_, IdSet>> {
        let res = self.id(resource)?;
        self.kind(&resource.ty, relation, subject_type, subject_relation)?.edges.forward.get(res)
    }

    /// Whether `subject` is named by an unconditional relationship `resource#relation@subject`.
    pub fn has_edge(&self, resource: &ObjectRef, relation: &str, subject: &SubjectRef) -> bool {
        let Some(s) = self.id(&subject.object) else { return false };
        self.subjects(resource, relation, &subject.object.ty, subject.relation.as_deref())
            .is_some_and(|set| set.contains(s))
    }

    /// Relationships held (unconditional edges, wildcards, conditional and expiring edges).
    pub fn relationship_count(&self) -> usize {
        self.slots.iter().flat_map(|ri| &ri.kinds).map(|k| k.edges.len + k.wildcards.len() + k.side.len()).sum()
    }

    /// Conditional and expiring edges held.
    pub fn side_len(&self) -> usize {
        self.slots.iter().flat_map(|ri| &ri.kinds).map(|k| k.side.len()).sum()
    }

    /// Bytes of heap the index holds (interners, edge maps and sets, wildcards, side table,
    /// closures), counted from capacities.
    pub fn heap_bytes(&self) -> usize {
        self.memory().iter().map(|(_, b)| b).sum()
    }

    /// Heap bytes by part: interners, edges (with wildcards and the side table), closures.
    pub fn memory(&self) -> [(&'static str, usize); 3] {
        let interners: usize = self.types.values().map(Interner::heap_bytes).sum();
        let ris = || self.slots.iter().map(|r| &**r);
        let edges: usize = ris().map(RelationIndex::heap_bytes).sum();
        let closures: usize =
            ris().flat_map(|r| [r.nesting.get(), r.tree.get()]).flatten().map(Closure::heap_bytes).sum();
        [("interners", interners), ("edges", edges), ("closures", closures)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> Relationship {
        Relationship::parse(s).unwrap()
    }

    #[test]
    fn edges_wildcards_side_table_and_closures_follow_changes() {
        let mut g = IndexGraph::new();
        for r in [
            "group:a#member@group:b#member",
            "group:b#member@group:c#member",
            "group:c#member@user:ann",
            "doc:1#viewer@user:*",
            "doc:1#viewer@user:bob[cav]",
        ] {
            g.insert(&rel(r));
        }
        let id = |g: &IndexGraph, o: &str| g.id(&ObjectRef::parse(o).unwrap()).unwrap();
        let c = g.closure("group", "member").unwrap();
        assert!(c.reaches(id(&g, "group:a"), id(&g, "group:c")));
        assert!(g.has_edge(&ObjectRef::new("group", "c"), "member", &SubjectRef::parse("user:ann").unwrap()));
        assert!(g.wildcard("doc", "viewer", "user").unwrap().contains(id(&g, "doc:1")));
        assert!(!g.has_edge(&ObjectRef::new("doc", "1"), "viewer", &SubjectRef::parse("user:bob").unwrap()));
        assert_eq!(g.side_len(), 1);
        let side = &g.kind("doc", "viewer", "user", None).unwrap().side;
        assert!(side.naming(id(&g, "user:bob")).unwrap().contains(id(&g, "doc:1")));
        assert_eq!(side.of_resource(id(&g, "doc:1")).len(), 1);

        // A conditional nesting edge switches the closure off; removing it brings it back.
        g.insert(&rel("group:c#member@group:d#member[cav]"));
        assert!(g.closure("group", "member").is_none());
        assert!(g.nested("group", "member", id(&g, "group:a")).is_none());
        g.remove(&rel("group:c#member@group:d#member"));
        let c = g.closure("group", "member").unwrap();
        assert!(c.reaches(id(&g, "group:a"), id(&g, "group:c")));

        g.remove(&rel("group:b#member@group:c#member"));
        let c = g.closure("group", "member").unwrap();
        assert!(!c.reaches(id(&g, "group:a"), id(&g, "group:c")));
        assert!(c.reaches(id(&g, "group:a"), id(&g, "group:b")));
        g.remove(&rel("doc:1#viewer@user:bob"));
        assert_eq!(g.side_len(), 0);
        assert!(g.updates > 0);
        assert!(g.heap_bytes() > 0);
    }
}

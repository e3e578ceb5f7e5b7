//! The relationship graph with dense ids: object ids interned to `u32` per type, unconditional
//! edges as id sets in both directions per (resource type, relation, subject type, subject
//! relation), wildcard edges per (resource type, relation, subject type), conditional and
//! expiring edges in a side table (so unconditional answers stay pure set work), and Leopard
//! closures for relations that nest in themselves (`group#member@group:x#member`) while every
//! such edge is unconditional. Built from a relationship set and kept current change by change.

use std::collections::HashMap;

use super::closure::Closure;
use super::idset::IdSet;
use crate::model::{CaveatRef, ObjectRef, Relationship, SubjectRef, Timestamp};

/// Dense ids of one object type.
#[derive(Debug, Clone, Default)]
pub struct Interner {
    names: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Interner {
    pub fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// The id of `name`, allocated on first sight. Ids are never reused (a removed object keeps
    /// its id, so sets built earlier stay meaningful).
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    pub fn name(&self, id: u32) -> Option<&str> {
        self.names.get(id as usize).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn heap_bytes(&self) -> usize {
        // Each name is stored twice (vector and map key) plus the map's slot.
        self.names.iter().map(|n| 2 * n.capacity() + 24 + 24 + 4 + 8).sum()
    }
}

/// (resource type, relation, subject type, subject relation or `None` for terminal subjects).
pub type EdgeKey = (String, String, String, Option<String>);

/// Sets indexed directly by a dense id (ids are dense per type, so a vector beats a map: 16
/// bytes a slot, no hashing).
#[derive(Debug, Clone, Default)]
pub struct DenseSets(Vec<IdSet>);

impl DenseSets {
    pub fn get(&self, id: u32) -> Option<&IdSet> {
        self.0.get(id as usize).filter(|s| !s.is_empty())
    }

    #[expect(clippy::indexing_slicing, reason = "the vector is grown to hold the index first")]
    fn slot(&mut self, id: u32) -> &mut IdSet {
        let i = id as usize;
        if self.0.len() <= i {
            self.0.resize_with(i + 1, IdSet::default);
        }
        // INVARIANT: the vector was just grown to hold index `i`.
        &mut self.0[i]
    }

    fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<IdSet>() + self.0.iter().map(IdSet::heap_bytes).sum::<usize>()
    }
}

/// One kind of unconditional edge, both directions.
#[derive(Debug, Clone, Default)]
pub struct Edges {
    pub forward: DenseSets,
    pub reverse: DenseSets,
}

impl Edges {
    fn insert(&mut self, res: u32, subj: u32) -> u64 {
        let a = self.forward.slot(res).insert(subj);
        let b = self.reverse.slot(subj).insert(res);
        u64::from(a) + u64::from(b)
    }

    fn remove(&mut self, res: u32, subj: u32) -> u64 {
        let a = self.forward.0.get_mut(res as usize).is_some_and(|s| s.remove(subj));
        let b = self.reverse.0.get_mut(subj as usize).is_some_and(|s| s.remove(res));
        u64::from(a) + u64::from(b)
    }

    /// Every (resource, subject) pair.
    pub fn pairs(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.forward.0.iter().enumerate().flat_map(|(r, s)| s.iter().map(move |x| (r as u32, x)))
    }

    fn heap_bytes(&self) -> usize {
        self.forward.heap_bytes() + self.reverse.heap_bytes()
    }
}

/// An edge whose answer depends on a caveat or an expiration.
#[derive(Debug, Clone, PartialEq)]
pub struct SideEdge {
    pub resource: u32,
    pub subject: u32,
    pub caveat: Option<CaveatRef>,
    pub expiration: Option<Timestamp>,
}

#[derive(Debug, Clone, Default)]
pub struct IndexGraph {
    pub types: HashMap<String, Interner>,
    pub edges: HashMap<EdgeKey, Edges>,
    /// (resource type, relation, subject type) → resources with an unconditional wildcard.
    pub wildcards: HashMap<(String, String, String), IdSet>,
    /// Conditional or expiring edges (wildcards have subject id `u32::MAX`).
    pub side: HashMap<EdgeKey, Vec<SideEdge>>,
    /// Closures of self-nesting relations: (type, relation) → closure over that type's ids.
    pub closures: HashMap<(String, String), Closure>,
    /// Self-nesting relations whose closure is off because a conditional edge nests them.
    pub closure_disabled: HashMap<(String, String), usize>,
    /// Set updates made by changes so far (edges, wildcards, closures).
    pub updates: u64,
}

/// The subject id used for wildcard edges in the side table.
pub const WILDCARD: u32 = u32::MAX;

fn key(r: &Relationship) -> EdgeKey {
    (r.resource.ty.clone(), r.relation.clone(), r.subject.object.ty.clone(), r.subject.relation.clone())
}

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

    pub fn id(&self, o: &ObjectRef) -> Option<u32> {
        self.types.get(&o.ty).and_then(|i| i.get(&o.id))
    }

    fn intern(&mut self, o: &ObjectRef) -> u32 {
        self.types.entry(o.ty.clone()).or_default().intern(&o.id)
    }

    /// Whether the relationship nests a relation in itself (`group:a#member@group:b#member`).
    fn self_nesting(r: &Relationship) -> bool {
        r.subject.object.ty == r.resource.ty && r.subject.relation.as_deref() == Some(r.relation.as_str())
    }

    /// Adds a relationship (replacing nothing: callers remove the old row of a touch first).
    pub fn insert(&mut self, r: &Relationship) {
        let res = self.intern(&r.resource);
        let conditional = r.caveat.is_some() || r.expiration.is_some();
        if r.subject.is_wildcard() {
            if conditional {
                self.side.entry(key(r)).or_default().push(SideEdge { resource: res, subject: WILDCARD, caveat: r.caveat.clone(), expiration: r.expiration });
            } else {
                let w = self.wildcards.entry((r.resource.ty.clone(), r.relation.clone(), r.subject.object.ty.clone())).or_default();
                self.updates += u64::from(w.insert(res));
            }
            return;
        }
        let subj = self.intern(&r.subject.object);
        let nests = Self::self_nesting(r);
        if conditional {
            self.side.entry(key(r)).or_default().push(SideEdge { resource: res, subject: subj, caveat: r.caveat.clone(), expiration: r.expiration });
            if nests {
                // A closure may only summarize unconditional nesting: switch it off.
                let k = (r.resource.ty.clone(), r.relation.clone());
                *self.closure_disabled.entry(k.clone()).or_default() += 1;
                self.closures.remove(&k);
            }
            return;
        }
        self.updates += self.edges.entry(key(r)).or_default().insert(res, subj);
        if nests {
            let k = (r.resource.ty.clone(), r.relation.clone());
            if !self.closure_disabled.contains_key(&k) {
                let c = self.closures.entry(k).or_default();
                self.updates += c.add_edge(res, subj);
            }
        }
    }

    /// Removes the row with this relationship's resource, relation and subject.
    pub fn remove(&mut self, r: &Relationship) {
        let (Some(res), subj) = (self.id(&r.resource), if r.subject.is_wildcard() { Some(WILDCARD) } else { self.id(&r.subject.object) }) else {
            return;
        };
        let Some(subj) = subj else { return };
        let k = key(r);
        // The row may be in the side table (conditional) or in the sets (unconditional).
        let mut was_conditional = false;
        if let Some(list) = self.side.get_mut(&k) {
            let before = list.len();
            list.retain(|e| !(e.resource == res && e.subject == subj));
            was_conditional = list.len() != before;
            if list.is_empty() {
                self.side.remove(&k);
            }
        }
        let ck = (r.resource.ty.clone(), r.relation.clone());
        if was_conditional {
            if Self::self_nesting(r) {
                let left = self.closure_disabled.get_mut(&ck).map(|n| {
                    *n -= 1;
                    *n
                });
                if left == Some(0) {
                    self.closure_disabled.remove(&ck);
                    self.rebuild_closure(&ck);
                }
            }
            return;
        }
        if r.subject.is_wildcard() {
            if let Some(w) = self.wildcards.get_mut(&(r.resource.ty.clone(), r.relation.clone(), r.subject.object.ty.clone())) {
                self.updates += u64::from(w.remove(res));
            }
            return;
        }
        if let Some(e) = self.edges.get_mut(&k) {
            self.updates += e.remove(res, subj);
        }
        if Self::self_nesting(r) {
            if let Some(c) = self.closures.get_mut(&ck) {
                self.updates += c.remove_edge(res, subj);
            }
        }
    }

    /// Recomputes a closure from the unconditional self-nesting edges.
    fn rebuild_closure(&mut self, ck: &(String, String)) {
        let mut c = Closure::new();
        let k: EdgeKey = (ck.0.clone(), ck.1.clone(), ck.0.clone(), Some(ck.1.clone()));
        if let Some(e) = self.edges.get(&k) {
            for (res, subj) in e.pairs() {
                c.add_edge(res, subj);
            }
        }
        self.updates += c.updates;
        self.closures.insert(ck.clone(), c);
    }

    /// The name of an interned id.
    pub fn name(&self, ty: &str, id: u32) -> Option<String> {
        self.types.get(ty).and_then(|i| i.name(id)).map(str::to_string)
    }

    /// `object` and every object nested below it in `ty#relation`, from the closure; `None`
    /// while a conditional nesting edge switches the closure off.
    pub fn nested(&self, ty: &str, relation: &str, object: u32) -> Option<Vec<u32>> {
        let k = (ty.to_string(), relation.to_string());
        if self.closure_disabled.contains_key(&k) {
            return None;
        }
        let mut out = vec![object];
        if let Some(d) = self.closures.get(&k).and_then(|c| c.descendants(object)) {
            out.extend(d.iter().filter(|x| *x != object));
        }
        Some(out)
    }

    /// Resources `ty:?#relation` that name `subject_type:subject` directly and unconditionally.
    pub fn reverse(&self, ty: &str, relation: &str, subject_type: &str, subject: u32) -> Option<&IdSet> {
        let k: EdgeKey = (ty.to_string(), relation.to_string(), subject_type.to_string(), None);
        self.edges.get(&k)?.reverse.get(subject)
    }

    /// Conditional and expiring edges `ty:?#relation@subject_type:?` (terminal subjects and
    /// wildcards).
    pub fn side_edges(&self, ty: &str, relation: &str, subject_type: &str) -> &[SideEdge] {
        let k: EdgeKey = (ty.to_string(), relation.to_string(), subject_type.to_string(), None);
        self.side.get(&k).map_or(&[], Vec::as_slice)
    }

    /// Unconditional subjects of `resource#relation` of one subject type and relation.
    pub fn subjects(&self, resource: &ObjectRef, relation: &str, subject_type: &str, subject_relation: Option<&str>) -> Option<&IdSet> {
        let res = self.id(resource)?;
        let k: EdgeKey = (resource.ty.clone(), relation.to_string(), subject_type.to_string(), subject_relation.map(str::to_string));
        self.edges.get(&k)?.forward.get(res)
    }

    /// Whether `subject` is named by an unconditional relationship `resource#relation@subject`.
    pub fn has_edge(&self, resource: &ObjectRef, relation: &str, subject: &SubjectRef) -> bool {
        let Some(s) = self.id(&subject.object) else { return false };
        self.subjects(resource, relation, &subject.object.ty, subject.relation.as_deref()).is_some_and(|set| set.contains(s))
    }

    /// Bytes of heap the index holds (interners, edge maps and sets, wildcards, side table,
    /// closures), counted from capacities.
    pub fn heap_bytes(&self) -> usize {
        self.memory().iter().map(|(_, b)| b).sum()
    }

    /// Heap bytes by part: interners, edges, wildcards, side table, closures.
    pub fn memory(&self) -> [(&'static str, usize); 5] {
        let interners: usize = self.types.values().map(Interner::heap_bytes).sum();
        let edges: usize = self.edges.values().map(Edges::heap_bytes).sum();
        let wildcards: usize = self.wildcards.values().map(IdSet::heap_bytes).sum();
        let side: usize = self.side.values().map(|v| v.capacity() * std::mem::size_of::<SideEdge>() + v.iter().map(|e| e.caveat.as_ref().map_or(0, |c| c.name.capacity() + serde_json::Value::Object(c.context.clone()).to_string().len() * 2)).sum::<usize>()).sum();
        let closures: usize = self.closures.values().map(|c| c.heap_bytes()).sum();
        [("interners", interners), ("edges", edges), ("wildcards", wildcards), ("side_table", side), ("closures", closures)]
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
        for r in ["group:a#member@group:b#member", "group:b#member@group:c#member", "group:c#member@user:ann", "doc:1#viewer@user:*", "doc:1#viewer@user:bob[cav]"] {
            g.insert(&rel(r));
        }
        let id = |g: &IndexGraph, o: &str| g.id(&ObjectRef::parse(o, false).unwrap()).unwrap();
        let c = &g.closures[&("group".to_string(), "member".to_string())];
        assert!(c.reaches(id(&g, "group:a"), id(&g, "group:c")));
        assert!(g.has_edge(&ObjectRef::new("group", "c"), "member", &SubjectRef::parse("user:ann").unwrap()));
        assert!(g.wildcards[&("doc".into(), "viewer".into(), "user".into())].contains(id(&g, "doc:1")));
        assert!(!g.has_edge(&ObjectRef::new("doc", "1"), "viewer", &SubjectRef::parse("user:bob").unwrap()));
        assert_eq!(g.side.values().map(Vec::len).sum::<usize>(), 1);

        // A conditional nesting edge switches the closure off; removing it brings it back.
        g.insert(&rel("group:c#member@group:d#member[cav]"));
        assert!(!g.closures.contains_key(&("group".to_string(), "member".to_string())));
        g.remove(&rel("group:c#member@group:d#member"));
        let c = &g.closures[&("group".to_string(), "member".to_string())];
        assert!(c.reaches(id(&g, "group:a"), id(&g, "group:c")));

        g.remove(&rel("group:b#member@group:c#member"));
        let c = &g.closures[&("group".to_string(), "member".to_string())];
        assert!(!c.reaches(id(&g, "group:a"), id(&g, "group:c")));
        assert!(c.reaches(id(&g, "group:a"), id(&g, "group:b")));
        assert!(g.updates > 0);
        assert!(g.heap_bytes() > 0);
    }
}

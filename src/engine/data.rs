//! What the reference evaluator reads ([`Relations`]), and an in-memory set of relationships at
//! one revision that provides it ([`Tuples`]), indexed by resource and relation, with the stored
//! attributes of objects. The database's index provides it too, so the reference can serve as
//! the fast path's fallback without a second copy of the data.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::model::{ObjectRef, Relationship, Revision, SubjectRef, Timestamp};

#[derive(Debug, Clone, Default)]
pub struct Tuples {
    by_resource: BTreeMap<ObjectRef, BTreeMap<String, Vec<Relationship>>>,
    /// Subject object → (resource, relation) of every relationship naming it (any subject
    /// relation, wildcards included), for walking the graph backwards.
    by_subject: BTreeMap<ObjectRef, BTreeSet<(ObjectRef, String)>>,
    /// Every object id seen, per type, as a resource or a subject (wildcards excluded).
    objects: BTreeMap<String, BTreeSet<String>>,
    attributes: BTreeMap<ObjectRef, Map<String, Value>>,
    len: usize,
}

/// The relationships and attributes of one revision, as the reference evaluator reads them.
pub trait Relations: Send + Sync {
    /// Relationships `resource#relation@…`, expired ones included (the evaluator filters them).
    fn edges(&self, resource: &ObjectRef, relation: &str) -> Cow<'_, [Relationship]>;

    /// Calls `f` with `(resource, relation)` of every relationship whose subject is `object`
    /// (any subject relation; `type:*` for wildcards), expired ones included, each pair once.
    fn each_naming(&self, object: &ObjectRef, f: &mut dyn FnMut(&ObjectRef, &str));

    /// The stored attributes of an object (empty when it has none).
    fn attributes(&self, object: &ObjectRef) -> &Map<String, Value>;

    /// Ids of the objects of a type that appear in the data (a superset is allowed: an id
    /// no relationship names answers like the type's wildcard).
    fn object_ids(&self, ty: &str) -> Vec<String>;

    /// Whether `subject` holds `relation` on `object` through the relation's self-nesting
    /// edges (`group:a#member@group:b#member`), answered from a Leopard closure when the data
    /// keeps one for the relation (every nesting edge unconditional). The evaluator asks only
    /// for relations whose allowed subject sets are all the relation itself on the object's
    /// type. `None` (the default): the evaluator explores the edges instead.
    fn nested_membership(
        &self,
        _object: &ObjectRef,
        _relation: &str,
        _subject: &SubjectRef,
        _now: Timestamp,
    ) -> Option<Membership> {
        None
    }
}

/// How a self-nesting relation holds for a subject, from a closure
/// ([`Relations::nested_membership`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Membership {
    /// A live, unconditional relationship of the object or of an object nested below it names
    /// the subject (or its type's wildcard); or the subject is a subject set of the relation on
    /// the object or on an object nested below it.
    Yes,
    /// Otherwise: the live conditional relationships there that name the subject or its type's
    /// wildcard (their caveats decide; none: the relation does not hold).
    Conditional(Vec<Relationship>),
}

impl Relations for Tuples {
    fn edges(&self, resource: &ObjectRef, relation: &str) -> Cow<'_, [Relationship]> {
        Cow::Borrowed(Tuples::edges(self, resource, relation))
    }

    fn each_naming(&self, object: &ObjectRef, f: &mut dyn FnMut(&ObjectRef, &str)) {
        for (o, r) in self.naming(object) {
            f(o, r);
        }
    }

    fn attributes(&self, object: &ObjectRef) -> &Map<String, Value> {
        Tuples::attributes(self, object)
    }

    fn object_ids(&self, ty: &str) -> Vec<String> {
        Tuples::object_ids(self, ty).map(str::to_string).collect()
    }
}

pub(crate) static EMPTY_MAP: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

impl Tuples {
    pub fn new() -> Tuples {
        Tuples::default()
    }

    /// Builds the set from many relationships at once (of several with the same resource,
    /// relation and subject the first is kept): one sort, then every map built in bulk from
    /// sorted runs, which is several times faster than inserting one by one. Start-up loads every
    /// relationship this way.
    pub fn from_relationships(mut rels: Vec<Relationship>) -> Tuples {
        rels.sort_by(|a, b| (&a.resource, &a.relation, &a.subject).cmp(&(&b.resource, &b.relation, &b.subject)));
        rels.dedup_by(|later, first| {
            later.resource == first.resource && later.relation == first.relation && later.subject == first.subject
        });
        let len = rels.len();

        let mut naming: Vec<(ObjectRef, (ObjectRef, String))> =
            rels.iter().map(|r| (r.subject.object.clone(), (r.resource.clone(), r.relation.clone()))).collect();
        naming.sort_unstable();
        naming.dedup();
        let by_subject = group_sorted(naming).map(|(k, v)| (k, v.into_iter().collect::<BTreeSet<_>>())).collect();

        let mut ids: Vec<(String, String)> = Vec::with_capacity(2 * len);
        for r in &rels {
            ids.push((r.resource.ty.clone(), r.resource.id.clone()));
            if !r.subject.is_wildcard() {
                ids.push((r.subject.object.ty.clone(), r.subject.object.id.clone()));
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let objects = group_sorted(ids).map(|(k, v)| (k, v.into_iter().collect::<BTreeSet<_>>())).collect();

        let by_relation = rels.into_iter().map(|r| ((r.resource.clone(), r.relation.clone()), r));
        let lists: Vec<((ObjectRef, String), Vec<Relationship>)> = group_sorted(by_relation).collect();
        let by_resource = group_sorted(lists.into_iter().map(|((o, rel), list)| (o, (rel, list))))
            .map(|(o, rels)| (o, rels.into_iter().collect::<BTreeMap<_, _>>()))
            .collect();
        Tuples { by_resource, by_subject, objects, attributes: BTreeMap::new(), len }
    }

    /// Adds a relationship; returns false (and changes nothing) if one with the same resource,
    /// relation and subject is already present.
    pub fn insert(&mut self, rel: Relationship) -> bool {
        let list = self.by_resource.entry(rel.resource.clone()).or_default().entry(rel.relation.clone()).or_default();
        if list.iter().any(|r| r.subject == rel.subject) {
            return false;
        }
        self.objects.entry(rel.resource.ty.clone()).or_default().insert(rel.resource.id.clone());
        if !rel.subject.is_wildcard() {
            self.objects.entry(rel.subject.object.ty.clone()).or_default().insert(rel.subject.object.id.clone());
        }
        self.by_subject
            .entry(rel.subject.object.clone())
            .or_default()
            .insert((rel.resource.clone(), rel.relation.clone()));
        list.push(rel);
        self.len += 1;
        true
    }

    /// Removes the relationship with this resource, relation and subject; returns whether it was there.
    pub fn remove(&mut self, rel: &Relationship) -> bool {
        let Some(list) = self.by_resource.get_mut(&rel.resource).and_then(|m| m.get_mut(&rel.relation)) else {
            return false;
        };
        let before = list.len();
        list.retain(|r| r.subject != rel.subject);
        let removed = list.len() != before;
        if removed {
            self.len -= 1;
            // The backwards entry goes only when no other subject relation of the same object
            // still links this resource and relation.
            let still = list.iter().any(|r| r.subject.object == rel.subject.object);
            if !still && let Some(set) = self.by_subject.get_mut(&rel.subject.object) {
                set.remove(&(rel.resource.clone(), rel.relation.clone()));
            }
        }
        removed
    }

    pub fn remove_attributes(&mut self, object: &ObjectRef) -> bool {
        self.attributes.remove(object).is_some()
    }

    /// Every object with stored attributes.
    pub fn all_attributes(&self) -> impl Iterator<Item = (&ObjectRef, &Map<String, Value>)> {
        self.attributes.iter()
    }

    pub fn set_attributes(&mut self, object: ObjectRef, attrs: Map<String, Value>) {
        self.objects.entry(object.ty.clone()).or_default().insert(object.id.clone());
        self.attributes.insert(object, attrs);
    }

    /// Relationships `resource#relation@…`, expired ones included (the evaluator filters them).
    pub fn edges(&self, resource: &ObjectRef, relation: &str) -> &[Relationship] {
        self.by_resource.get(resource).and_then(|m| m.get(relation)).map_or(&[], Vec::as_slice)
    }

    /// `(resource, relation)` of every relationship whose subject is `object` (any subject
    /// relation), expired ones included.
    pub fn naming(&self, object: &ObjectRef) -> impl Iterator<Item = &(ObjectRef, String)> {
        self.by_subject.get(object).into_iter().flatten()
    }

    pub fn attributes(&self, object: &ObjectRef) -> &Map<String, Value> {
        self.attributes.get(object).unwrap_or(&EMPTY_MAP)
    }

    /// Ids of every object of a type that appears in the data, sorted.
    pub fn object_ids(&self, ty: &str) -> impl Iterator<Item = &str> {
        self.objects.get(ty).into_iter().flatten().map(String::as_str)
    }

    pub fn object_types(&self) -> impl Iterator<Item = &str> {
        self.objects.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Relationship> {
        self.by_resource.values().flat_map(|m| m.values()).flatten()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Groups consecutive pairs with equal keys: `(k, [v…])` per run, in order.
fn group_sorted<K: PartialEq, V>(pairs: impl IntoIterator<Item = (K, V)>) -> impl Iterator<Item = (K, Vec<V>)> {
    let mut pairs = pairs.into_iter().peekable();
    std::iter::from_fn(move || {
        let (k, v) = pairs.next()?;
        let mut group = vec![v];
        while let Some((_, v)) = pairs.next_if(|(k2, _)| *k2 == k) {
            group.push(v);
        }
        Some((k, group))
    })
}

/// Every revision of a relationship set, for reads at older revisions (paging, tests). Each
/// write copies the head: this is the model the versioned store is tested against, not a store.
#[derive(Debug, Clone)]
pub struct History {
    revisions: Vec<(Revision, Arc<Tuples>)>,
}

impl History {
    /// Starts at revision 1 with `initial`.
    pub fn new(initial: Tuples) -> History {
        History { revisions: vec![(Revision(1), Arc::new(initial))] }
    }

    pub fn head(&self) -> (Revision, Arc<Tuples>) {
        self.revisions.last().map(|(r, t)| (*r, t.clone())).unwrap_or((Revision::ZERO, Arc::new(Tuples::new())))
    }

    /// The relationships as of `revision`, if it exists.
    pub fn at(&self, revision: Revision) -> Option<Arc<Tuples>> {
        self.revisions.iter().find(|(r, _)| *r == revision).map(|(_, t)| t.clone())
    }

    /// Applies a change to a copy of the head and makes it the next revision.
    pub fn write(&mut self, change: impl FnOnce(&mut Tuples)) -> Revision {
        let (rev, head) = self.head();
        let mut next = (*head).clone();
        change(&mut next);
        self.revisions.push((rev.next(), Arc::new(next)));
        rev.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Building in bulk gives the same set as inserting one by one: edges, backwards entries,
    /// object ids and size, with duplicates kept once.
    #[test]
    fn bulk_building_equals_inserting_one_by_one() {
        let mut rels = Vec::new();
        let mut x: u64 = 7;
        for _ in 0..3000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let (d, u, g, k) = ((x >> 33) % 40, (x >> 40) % 30, (x >> 47) % 10, (x >> 20) % 5);
            let text = match k {
                0 => format!("doc:d{d}#viewer@user:u{u}"),
                1 => format!("doc:d{d}#viewer@group:g{g}#member"),
                2 => format!("group:g{g}#member@user:u{u}"),
                3 => format!("doc:d{d}#viewer@user:*"),
                _ => format!("doc:d{d}#parent@folder:f{g}"),
            };
            rels.push(Relationship::parse(&text).unwrap());
        }
        let mut one_by_one = Tuples::new();
        for r in rels.iter().cloned() {
            one_by_one.insert(r);
        }
        let bulk = Tuples::from_relationships(rels);
        assert_eq!(bulk.len(), one_by_one.len());
        let sorted = |t: &Tuples| {
            let mut v: Vec<String> = t.iter().map(|r| r.to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(sorted(&bulk), sorted(&one_by_one));
        for ty in ["doc", "user", "group", "folder"] {
            assert_eq!(bulk.object_ids(ty).collect::<Vec<_>>(), one_by_one.object_ids(ty).collect::<Vec<_>>());
        }
        assert_eq!(bulk.object_types().collect::<Vec<_>>(), one_by_one.object_types().collect::<Vec<_>>());
        for o in ["user:u1", "user:*", "group:g3", "folder:f2", "doc:d5"] {
            let o = ObjectRef::parse_allowing_wildcard(o).unwrap();
            assert_eq!(bulk.naming(&o).collect::<Vec<_>>(), one_by_one.naming(&o).collect::<Vec<_>>(), "{o}");
        }
        for d in 0..40 {
            let o = ObjectRef::new("doc", format!("d{d}"));
            let subjects = |t: &Tuples| {
                let mut v: Vec<String> = t.edges(&o, "viewer").iter().map(|r| r.subject.to_string()).collect();
                v.sort();
                v
            };
            assert_eq!(subjects(&bulk), subjects(&one_by_one));
        }
    }
}

//! An in-memory set of relationships at one revision, indexed by resource and relation, with the
//! stored attributes of objects. The reference evaluator reads only this.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::model::{ObjectRef, Relationship};

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

static EMPTY_MAP: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

impl Tuples {
    pub fn new() -> Tuples {
        Tuples::default()
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
        self.by_subject.entry(rel.subject.object.clone()).or_default().insert((rel.resource.clone(), rel.relation.clone()));
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
            if !still {
                if let Some(set) = self.by_subject.get_mut(&rel.subject.object) {
                    set.remove(&(rel.resource.clone(), rel.relation.clone()));
                }
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

/// Every revision of a relationship set, for reads at older revisions (paging, tests). Each
/// write copies the head: this is the model the versioned store is tested against, not a store.
#[derive(Debug, Clone)]
pub struct History {
    revisions: Vec<(u64, std::sync::Arc<Tuples>)>,
}

impl History {
    /// Starts at revision 1 with `initial`.
    pub fn new(initial: Tuples) -> History {
        History { revisions: vec![(1, std::sync::Arc::new(initial))] }
    }

    pub fn head(&self) -> (u64, std::sync::Arc<Tuples>) {
        self.revisions.last().map(|(r, t)| (*r, t.clone())).unwrap_or((0, std::sync::Arc::new(Tuples::new())))
    }

    /// The relationships as of `revision`, if it exists.
    pub fn at(&self, revision: u64) -> Option<std::sync::Arc<Tuples>> {
        self.revisions.iter().find(|(r, _)| *r == revision).map(|(_, t)| t.clone())
    }

    /// Applies a change to a copy of the head and makes it the next revision.
    pub fn write(&mut self, change: impl FnOnce(&mut Tuples)) -> u64 {
        let (rev, head) = self.head();
        let mut next = (*head).clone();
        change(&mut next);
        self.revisions.push((rev + 1, std::sync::Arc::new(next)));
        rev + 1
    }
}

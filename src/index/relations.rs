//! The index as the reference evaluator's data (`engine::Relations`): relationships rebuilt
//! from edges on demand, the objects naming a subject, attributes, object ids, and nested
//! memberships answered from the Leopard closures. One copy of the data serves both evaluators.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::graph::{IndexGraph, WILDCARD};
use crate::engine::{Membership, Relations};
use crate::model::{ObjectRef, Relationship, SubjectRef, Timestamp};

impl Relations for IndexGraph {
    fn edges(&self, resource: &ObjectRef, relation: &str) -> Cow<'_, [Relationship]> {
        Cow::Owned(self.relationships_of(resource, relation))
    }

    fn each_naming(&self, object: &ObjectRef, f: &mut dyn FnMut(&ObjectRef, &str)) {
        let subject = if object.is_wildcard() { Some(WILDCARD) } else { self.id(object) };
        let Some(subject) = subject else { return };
        for (ty, rel, ri) in self.named_relations() {
            {
                let mut resources: Vec<u32> = Vec::new();
                for k in ri.kinds.iter().filter(|k| k.subject_type == object.ty) {
                    if subject == WILDCARD {
                        if k.subject_relation.is_none() {
                            resources.extend(k.wildcards.iter());
                        }
                    } else if let Some(set) = k.edges.reverse.get(subject) {
                        resources.extend(set.iter());
                    }
                    if let Some(set) = k.side.naming(subject) {
                        resources.extend(set.iter());
                    }
                }
                resources.sort_unstable();
                resources.dedup();
                for res in resources {
                    if let Some(name) = self.name(ty, res) {
                        f(&ObjectRef::new(ty, name), rel);
                    }
                }
            }
        }
    }

    fn attributes(&self, object: &ObjectRef) -> &Map<String, Value> {
        self.attributes_of(object).unwrap_or(&crate::engine::data::EMPTY_MAP)
    }

    fn nested_membership(
        &self,
        object: &ObjectRef,
        relation: &str,
        subject: &SubjectRef,
        now: Timestamp,
    ) -> Option<Membership> {
        let Some(gid) = self.id(object) else {
            // An object the index has never seen has no relationships.
            return Some(Membership::Conditional(Vec::new()));
        };
        let members = self.nested(&object.ty, relation, gid)?;
        let s = subject;
        let no = || Some(Membership::Conditional(Vec::new()));
        if let Some(sr) = &s.relation {
            // A subject set is reached when it is this object or one nested below it.
            let hit =
                s.object.ty == object.ty && sr == relation && self.id(&s.object).is_some_and(|x| members.contains(&x));
            return if hit { Some(Membership::Yes) } else { no() };
        }
        let sid = if s.is_wildcard() { None } else { self.id(&s.object) };
        if let Some(direct) = sid.and_then(|x| self.reverse(&object.ty, relation, &s.object.ty, x))
            && members.iter().any(|g| direct.contains(*g))
        {
            return Some(Membership::Yes);
        }
        if let Some(w) = self.wildcard(&object.ty, relation, &s.object.ty)
            && members.iter().any(|g| w.contains(*g))
        {
            return Some(Membership::Yes);
        }
        let mut conditional = Vec::new();
        let side = self.kind(&object.ty, relation, &s.object.ty, None).map(|k| &k.side);
        for e in side.into_iter().flat_map(|side| side.iter()) {
            let names_subject = e.subject == WILDCARD || (Some(e.subject) == sid);
            if !names_subject || !members.contains(&e.resource) || e.expiration.is_some_and(|x| x <= now) {
                continue;
            }
            let resource = ObjectRef::new(object.ty.clone(), self.name(&object.ty, e.resource).unwrap_or_default());
            let subject_object =
                if e.subject == WILDCARD { ObjectRef::new(s.object.ty.clone(), "*") } else { s.object.clone() };
            conditional.push(Relationship {
                resource,
                relation: relation.to_string(),
                subject: SubjectRef::new(subject_object, None),
                caveat: e.caveat.clone(),
                expiration: e.expiration,
            });
        }
        Some(Membership::Conditional(conditional))
    }

    fn object_ids(&self, ty: &str) -> Vec<String> {
        let mut ids: Vec<String> = match self.types.get(ty) {
            Some(i) => (0..i.len() as u32).filter_map(|id| i.name(id)).map(str::to_string).collect(),
            None => Vec::new(),
        };
        ids.extend(self.all_attributes().filter(|(o, _)| o.ty == ty).map(|(o, _)| o.id.clone()));
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

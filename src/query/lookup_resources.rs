//! LookupResources on a snapshot: candidates by set algebra over the index (objects surely
//! holding the permission answered at once), the rest decided by point Checks; the reference
//! evaluator's backward walk and Check where the fast path has none. Later pages of a lookup
//! reuse the candidate set its first page computed (the tenant's lookup cache).

use std::sync::Arc;

use super::Snapshot;
use super::cache::Entry;
use crate::engine::lookup::{
    Candidates, LookupResourcesRequest, Page, ResourceResult, decide_resources, resources_query, reverse_reachable,
    validate_resources, wanted,
};
use crate::engine::{EvalError, check};
use crate::index::eval::{Point, resource_sets};
use crate::model::ObjectRef;

impl Snapshot {
    /// Every resource of a type on which the subject has the permission (or conditionally has
    /// it), in id order, a page at a time. A cursor must come from a page of this snapshot.
    pub fn lookup_resources(&self, req: &LookupResourcesRequest) -> Result<Page<ResourceResult>, EvalError> {
        validate_resources(&self.schema, req)?;
        let query = resources_query(&self.schema, req);
        let after = self.resume(req.cursor.as_deref(), query)?;
        let env = self.env();
        // Every page of one lookup reads one candidate set: the first page computes it (and
        // caches it when more pages may follow); later pages reuse it. Each page decides
        // candidates only as far as it needs, so every page stays within one evaluation's
        // deadline however large the whole answer is.
        let key = (query, self.view.revision, self.now);
        let cache = &self.scope.cache;
        let cached = if req.cursor.is_some() { cache.get(&key) } else { None };
        let candidates = match cached {
            Some(entry) => entry.candidates.clone(),
            None => {
                let fast = resource_sets(&self.fast(), &req.resource_type, &req.permission, &req.subject)?;
                let candidates = Arc::new(match fast {
                    Some(c) => c,
                    None => {
                        let ids = reverse_reachable(
                            &self.schema,
                            &*self.view.index,
                            &req.subject,
                            &req.resource_type,
                            &req.permission,
                        );
                        Candidates::from_sorted(ids.iter().map(|id| (id.as_str(), false)))
                    }
                });
                if req.limit.is_some_and(|l| l < candidates.len()) {
                    cache.put(key, Arc::new(Entry { view: self.view.clone(), candidates: candidates.clone() }));
                }
                candidates
            }
        };
        let start = candidates.first_after(&after);
        let mut point = Point::new(self.fast(), &req.subject, &req.context);
        let reference = self.reference();
        let items = decide_resources(&candidates, start, wanted(req.limit), env, |id| {
            let resource = ObjectRef::new(req.resource_type.clone(), id);
            match point.check(&resource, &req.permission)? {
                Some(v) => Ok(v),
                None => Ok(check::solve(reference, &resource, &req.permission, &req.subject, &req.context)?.1),
            }
        })?;
        Ok(self.paging(query, after).finish(items, req.limit, |r| r.id.clone()))
    }
}

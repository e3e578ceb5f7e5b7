//! LookupSubjects on a snapshot: candidates from the reference's forward walk over the index,
//! each decided by a point Check (one evaluator, retargeted per subject), the reference deciding
//! where the fast path gives up.

use super::Snapshot;
use crate::engine::lookup::{
    LookupSubjectsRequest, Page, SubjectResult, decide_subjects, subject_candidates, subjects_query, validate_subjects,
    wanted,
};
use crate::engine::{EvalError, check};
use crate::index::eval::Point;

impl Snapshot {
    /// Every subject of a type (or subject set of a type and relation) that has the permission
    /// on the resource, in id order, a page at a time; a wildcard result lists the subjects it
    /// excludes. A cursor must come from a page of this snapshot.
    pub fn lookup_subjects(&self, req: &LookupSubjectsRequest) -> Result<Page<SubjectResult>, EvalError> {
        validate_subjects(&self.schema, req)?;
        let query = subjects_query(&self.schema, req);
        let after = self.resume(req.cursor.as_deref(), query)?;
        let reference = self.reference();
        let candidates = subject_candidates(&reference, req, &after)?;
        let mut point: Option<Point<'_>> = None;
        let items = decide_subjects(&reference, req, &candidates, wanted(req.limit), |subject| {
            let p = match &mut point {
                Some(p) => {
                    p.retarget(subject, &req.context);
                    p
                }
                None => point.insert(Point::new(self.fast(), subject, &req.context)),
            };
            match p.check(&req.resource, &req.permission)? {
                Some(v) => Ok(v),
                None => Ok(check::solve(reference, &req.resource, &req.permission, subject, &req.context)?.1),
            }
        })?;
        Ok(self.paging(query, after).finish(items, req.limit, |r| r.subject.object.id.clone()))
    }
}

//! Check and CheckBulk on a snapshot: the fast evaluator's point Check, handed to the reference
//! evaluator when the walk meets a cycle in the data or its frame budget.

use super::Snapshot;
use crate::engine::{self, CheckRequest, Decision, EvalError, validate_request};
use crate::index::eval::{Point, subject_id};
use crate::model::Timestamp;

impl Snapshot {
    /// Decides one Check. Equal to the reference evaluator's answer (tested against it on
    /// random schemas and data).
    pub fn check(&self, req: &CheckRequest) -> Result<Decision, EvalError> {
        self.check_until(req).map(|(d, _)| d)
    }

    /// [`Snapshot::check`], with the time until which the answer holds absent writes: the
    /// earliest expiration among the unexpired expiring relationships the evaluation read
    /// (`None`: it read none, so no expiration can change it).
    pub fn check_until(&self, req: &CheckRequest) -> Result<(Decision, Option<Timestamp>), EvalError> {
        validate_request(&self.schema, &req.resource, &req.permission, &req.subject)?;
        // A resource the index has never seen has no relationships: no, at once (the point
        // evaluator answers the same; this spares building it), unless the subject is a set
        // on that very object.
        // Both ids at once: their first reads overlap.
        let (id, sid) = match self.index().id_pair(&req.resource, &req.subject.object) {
            (id, _) if req.subject.is_wildcard() => (id, None),
            ids => ids,
        };
        let own_set = req.subject.relation.is_some() && req.subject.object == req.resource;
        if id.is_none() && !own_set {
            return Ok((Decision::No, None));
        }
        let mut point = Point::with_subject_id(self.fast(), &req.subject, sid, &req.context);
        match point.check_id(&req.resource, id, &req.permission)? {
            Some(v) => Ok((Decision::from_tri(&v), point.expires_at())),
            None => engine::check_until(&self.reference(), req),
        }
    }

    /// Decides many Checks at the snapshot's one `now`; each item gets its own answer or
    /// error. One evaluator serves the whole batch: consecutive items with the same subject and
    /// context share its memoized values, and every item shares what it resolved about the
    /// schema and the index.
    pub fn check_bulk(&self, reqs: &[CheckRequest]) -> Vec<Result<Decision, EvalError>> {
        let ix = self.index();
        let mut out = Vec::with_capacity(reqs.len());
        // Every item's ids first, in one pass: the lookups are independent, so the processor
        // overlaps their memory reads instead of waiting for each inside an evaluation.
        let ids: Vec<(Option<u32>, Option<u32>)> =
            reqs.iter().map(|r| (ix.id(&r.resource), subject_id(ix, &r.subject))).collect();
        let mut point: Option<Point<'_>> = None;
        for (req, (rid, sid)) in reqs.iter().zip(ids) {
            if let Err(e) = validate_request(&self.schema, &req.resource, &req.permission, &req.subject) {
                out.push(Err(e));
                continue;
            }
            let p = match &mut point {
                Some(p) => {
                    if !p.serves(&req.subject, &req.context) {
                        p.retarget_to(&req.subject, sid, &req.context);
                    }
                    p
                }
                None => point.insert(Point::new(self.fast(), &req.subject, &req.context)),
            };
            let answer = match p.check_id(&req.resource, rid, &req.permission) {
                Ok(Some(v)) => Ok(Decision::from_tri(&v)),
                Err(e) => Err(e),
                Ok(None) => engine::check(&self.reference(), req),
            };
            out.push(answer);
        }
        out
    }
}

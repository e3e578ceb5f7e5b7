//! Expand on a snapshot: the reference evaluator's one-level tree over the index, and the
//! recursive expansion (every subject found below a node, decided by Check).

use super::Snapshot;
use crate::engine::EvalError;
use crate::engine::expand::{self, ExpandTree, FoundSubject};
use crate::model::ObjectRef;

impl Snapshot {
    /// `object#permission` expanded one level (SpiceDB's ExpandPermissionTree).
    pub fn expand(&self, object: &ObjectRef, permission: &str) -> Result<ExpandTree, EvalError> {
        expand::expand(&self.reference(), object, permission)
    }

    /// Every subject found below `object#member` that Check confirms, with the relationships
    /// that name it directly (what validation files' `validation:` sections list).
    pub fn found_subjects(&self, object: &ObjectRef, member: &str) -> Result<Vec<FoundSubject>, EvalError> {
        expand::found_subjects(&self.reference(), object, member)
    }
}

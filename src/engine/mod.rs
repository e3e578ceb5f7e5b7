//! Evaluation of permissions over relationships at one revision: the request and result types,
//! the limits, and the reference evaluator.
//!
//! Architecture invariant: the engine reads relationships only through [`Relations`], knows nothing
//! about storage or gRPC, and never recurses on the native stack in proportion to data depth.

pub mod check;
pub mod cursor;
pub mod data;
pub mod expand;
pub mod lookup;
pub mod tri;

use std::collections::BTreeSet;

use serde_json::{Map, Value};

pub use check::{check, check_bulk, check_until, validate_request};
pub use data::{History, Membership, Relations, Tuples};
pub use tri::Tri;

use crate::conditions::{ConditionError, Conditions};
use crate::model::{ObjectRef, Revision, SubjectRef, Timestamp};
use crate::schema::CompiledSchema;

/// The answer to "may this subject do this on this resource?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Has,
    No,
    /// The answer depends on context that was not supplied; lists every missing parameter.
    Conditional(Vec<String>),
}

impl Decision {
    pub fn from_tri(t: &Tri) -> Decision {
        match t {
            Tri::True => Decision::Has,
            Tri::False => Decision::No,
            Tri::Unknown(m) => Decision::Conditional(m.iter().cloned().collect()),
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::Has => f.write_str("HAS_PERMISSION"),
            Decision::No => f.write_str("NO_PERMISSION"),
            Decision::Conditional(m) => write!(f, "CONDITIONAL (missing {})", m.join(", ")),
        }
    }
}

/// One Check.
#[derive(Debug, Clone)]
pub struct CheckRequest {
    pub resource: ObjectRef,
    pub permission: String,
    pub subject: SubjectRef,
    /// Request context for caveats; context stored on a relationship wins over it.
    pub context: Map<String, Value>,
}

/// `"document:1#view@user:ann".parse::<CheckRequest>()`: [`CheckRequest::parse`].
impl std::str::FromStr for CheckRequest {
    type Err = crate::model::ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CheckRequest::parse(s)
    }
}

impl CheckRequest {
    /// A check without context.
    pub fn new(resource: ObjectRef, permission: impl Into<String>, subject: SubjectRef) -> CheckRequest {
        CheckRequest { resource, permission: permission.into(), subject, context: Map::new() }
    }

    /// With request context for caveats.
    pub fn with_context(mut self, context: Map<String, Value>) -> CheckRequest {
        self.context = context;
        self
    }

    /// Parses SpiceDB's text form of a check, as in validation files' assertions:
    /// `document:1#view@user:alice`, a subject set `…@group:eng#member`, and optionally
    /// ` with {"ip": "10.0.0.1"}` (request context).
    ///
    /// ```
    /// use pemba::engine::CheckRequest;
    /// let c = CheckRequest::parse(r#"document:1#view@user:alice with {"ip": "10.0.0.1"}"#).unwrap();
    /// assert_eq!((c.resource.to_string(), c.permission.as_str()), ("document:1".into(), "view"));
    /// assert!(CheckRequest::parse("document:1@user:alice").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<CheckRequest, crate::model::ModelError> {
        use crate::model::ModelError;
        let (check, context) = match text.split_once(" with ") {
            Some((r, c)) => (r.trim(), crate::model::parse_context(c.trim())?),
            None => (text.trim(), Map::new()),
        };
        let (resource, rest) = check.split_once('#').ok_or_else(|| ModelError::InvalidCheck(check.to_string()))?;
        let (permission, subject) = rest.split_once('@').ok_or_else(|| ModelError::InvalidCheck(check.to_string()))?;
        let resource = ObjectRef::parse(resource)?;
        let subject = SubjectRef::parse(subject)?;
        if !crate::model::valid_relation_name(permission) {
            return Err(ModelError::InvalidPermissionName(permission.to_string()));
        }
        Ok(CheckRequest { resource, permission: permission.to_string(), subject, context })
    }
}

/// Explicit bounds on one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most graph nodes plus relationships one request may visit.
    pub max_work: usize,
    /// Wall-clock budget for one request.
    pub deadline: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_work: 5_000_000, deadline: std::time::Duration::from_secs(10) }
    }
}

/// What every evaluation of one request shares: `now` is captured once.
#[derive(Debug, Clone, Copy)]
pub struct Env {
    pub now: Timestamp,
    pub limits: Limits,
}

impl Env {
    pub fn new(now: Timestamp) -> Env {
        Env { now, limits: Limits::default() }
    }
}

/// What one evaluation by the reference evaluator reads: the schema, the data at one revision,
/// the conditions engine and the request's environment. Copied into every function that
/// evaluates, instead of four parameters each.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub schema: &'a CompiledSchema,
    pub data: &'a dyn Relations,
    pub conditions: &'a Conditions,
    pub env: Env,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("unknown object type `{0}`")]
    UnknownType(String),
    #[error("type `{ty}` has no relation or permission `{name}`")]
    UnknownMember { ty: String, name: String },
    #[error("relationship references unknown caveat `{0}`")]
    UnknownCaveat(String),
    #[error(transparent)]
    Condition(#[from] ConditionError),
    #[error("evaluation exceeded its work limit of {0} steps")]
    WorkLimit(usize),
    #[error(transparent)]
    Cursor(cursor::CursorError),
    #[error("invalid page size: {0}")]
    InvalidLimit(String),
    #[error("revision {0} is no longer available")]
    RevisionGone(Revision),
    #[error(
        "the cursor continues a lookup at revision {cursor} (and its instant), not this snapshot's revision {snapshot}: pass it to the database, which opens the snapshot it names"
    )]
    CursorSnapshot { cursor: Revision, snapshot: Revision },
    #[error("expansion exceeded its depth limit of {0}")]
    DepthLimit(usize),
    #[error("evaluation exceeded its deadline of {0:?}")]
    Deadline(std::time::Duration),
    #[error(
        "the answer depends on itself through the right-hand side of an exclusion, so it has none: {}",
        .0.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(" → ")
    )]
    ExclusionCycle(Vec<String>),
}

/// The set of missing parameter names carried by a conditional answer.
pub type Missing = BTreeSet<String>;

//! The database's one error type, and the stable codes its kinds carry. Every error a caller of
//! [`super::Database`] can meet has an [`ErrorCode`] (a name that does not change between
//! releases, documented in README.md) and a [`ErrorClass`] (the broad class a transport maps to
//! its own status, in one place: the server's gRPC codes).

use std::time::Duration;

use crate::conditions::ConditionError;
use crate::engine::EvalError;
use crate::model::Revision;
use crate::store::{StoreError, StoreErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error("schema does not compile:\n{0}")]
    InvalidSchema(String),
    #[error("tenant `{0}` has no schema yet: write one first")]
    NoSchema(String),
    #[error("mutation {index} (`{item}`): {reason}")]
    InvalidMutation { index: usize, item: String, reason: String },
    #[error("the write has {count} mutations; the limit is {limit}")]
    TooManyMutations { count: usize, limit: usize },
    #[error("tenant `{tenant}` is at its quota: {reason}")]
    QuotaExceeded { tenant: String, reason: String },
    #[error("precondition {index} failed: {reason}")]
    PreconditionFailed { index: usize, reason: String },
    #[error("schema change refused: {count} stored item(s) would no longer fit, first: {}", blockers.join("; "))]
    SchemaChangeBlocked { count: usize, blockers: Vec<String> },
    #[error("a schema change must be written alone, not with other mutations")]
    SchemaNotAlone,
    #[error("the database already holds {0} tenants, its limit")]
    TooManyTenants(usize),
    #[error("revision {requested} is newer than the head revision {head}")]
    FutureRevision { requested: Revision, head: Revision },
    #[error(
        "revision {revision} is outside the retention window of {}: the oldest readable revision is {oldest}",
        window_text(*window)
    )]
    OutsideWindow { revision: Revision, oldest: Revision, window: Duration },
    #[error("invalid page size {size}: pages hold 1 to {limit} items")]
    InvalidPageSize { size: usize, limit: usize },
    #[error("the request context is {bytes} bytes of JSON; the limit is {limit}")]
    ContextTooLarge { bytes: usize, limit: usize },
    #[error("a bulk check holds {count} items; the limit is {limit}")]
    TooManyChecks { count: usize, limit: usize },
    #[error("import line {line}: {reason}")]
    Import { line: usize, reason: String },
    #[error("{what}: {message}")]
    Io { what: String, message: String },
    #[error("the write reached the store but its durability is unknown ({0}); read it back before retrying")]
    OutcomeUnknown(String),
    #[error("invalid ZedToken: {0}")]
    InvalidToken(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// `1h`, `90s`, `1500ms`: a window as a person writes it.
fn window_text(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 {
        format!("{}ms", d.as_millis())
    } else if s.is_multiple_of(3600) && s > 0 {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) && s > 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// The broad class of an error: what a client may do about it. A transport maps each to one
/// status of its own (the gRPC server: `INVALID_ARGUMENT`, `NOT_FOUND`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The request is malformed or names what the schema does not have.
    InvalidArgument,
    NotFound,
    AlreadyExists,
    /// The request is well formed but the state does not allow it (a precondition, a schema
    /// change that would orphan data, no schema yet).
    FailedPrecondition,
    /// A revision outside what can be read (too old for the window, or newer than the head).
    OutOfRange,
    /// A size or work limit.
    ResourceExhausted,
    DeadlineExceeded,
    /// Retrying later may succeed.
    Unavailable,
    /// The write's outcome is unknown: read before retrying.
    Unknown,
    /// Stored data is damaged or of an unknown format.
    DataLoss,
    Internal,
}

/// A stable name for each kind of error (see README.md, "Error codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    TenantNotFound,
    TenantExists,
    InvalidTenantName,
    TooManyTenants,
    RelationshipExists,
    NoSchema,
    InvalidSchema,
    SchemaNotAlone,
    SchemaChangeBlocked,
    InvalidMutation,
    TooManyMutations,
    QuotaExceeded,
    PreconditionFailed,
    UnknownType,
    UnknownMember,
    UnknownCaveat,
    ConditionFailed,
    InvalidContext,
    ContextTooLarge,
    TooManyChecks,
    InvalidPageSize,
    InvalidCursor,
    InvalidToken,
    FutureRevision,
    OutsideWindow,
    WorkLimit,
    DepthLimit,
    Deadline,
    ExclusionCycle,
    ImportInvalid,
    Io,
    StoreUnavailable,
    WriteConflict,
    OutcomeUnknown,
    StoreCorrupt,
    StoreFormat,
    Internal,
}

impl ErrorCode {
    /// The code's text, as clients see it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::TenantNotFound => "TENANT_NOT_FOUND",
            ErrorCode::TenantExists => "TENANT_EXISTS",
            ErrorCode::InvalidTenantName => "INVALID_TENANT_NAME",
            ErrorCode::TooManyTenants => "TOO_MANY_TENANTS",
            ErrorCode::RelationshipExists => "RELATIONSHIP_EXISTS",
            ErrorCode::NoSchema => "NO_SCHEMA",
            ErrorCode::InvalidSchema => "INVALID_SCHEMA",
            ErrorCode::SchemaNotAlone => "SCHEMA_NOT_ALONE",
            ErrorCode::SchemaChangeBlocked => "SCHEMA_CHANGE_BLOCKED",
            ErrorCode::InvalidMutation => "INVALID_MUTATION",
            ErrorCode::TooManyMutations => "TOO_MANY_MUTATIONS",
            ErrorCode::QuotaExceeded => "QUOTA_EXCEEDED",
            ErrorCode::PreconditionFailed => "PRECONDITION_FAILED",
            ErrorCode::UnknownType => "UNKNOWN_TYPE",
            ErrorCode::UnknownMember => "UNKNOWN_MEMBER",
            ErrorCode::UnknownCaveat => "UNKNOWN_CAVEAT",
            ErrorCode::ConditionFailed => "CONDITION_FAILED",
            ErrorCode::InvalidContext => "INVALID_CONTEXT",
            ErrorCode::ContextTooLarge => "CONTEXT_TOO_LARGE",
            ErrorCode::TooManyChecks => "TOO_MANY_CHECKS",
            ErrorCode::InvalidPageSize => "INVALID_PAGE_SIZE",
            ErrorCode::InvalidCursor => "INVALID_CURSOR",
            ErrorCode::InvalidToken => "INVALID_ZEDTOKEN",
            ErrorCode::FutureRevision => "FUTURE_REVISION",
            ErrorCode::OutsideWindow => "OUTSIDE_WINDOW",
            ErrorCode::WorkLimit => "WORK_LIMIT",
            ErrorCode::DepthLimit => "DEPTH_LIMIT",
            ErrorCode::Deadline => "DEADLINE",
            ErrorCode::ExclusionCycle => "EXCLUSION_CYCLE",
            ErrorCode::ImportInvalid => "IMPORT_INVALID",
            ErrorCode::Io => "IO",
            ErrorCode::StoreUnavailable => "STORE_UNAVAILABLE",
            ErrorCode::WriteConflict => "WRITE_CONFLICT",
            ErrorCode::OutcomeUnknown => "OUTCOME_UNKNOWN",
            ErrorCode::StoreCorrupt => "STORE_CORRUPT",
            ErrorCode::StoreFormat => "STORE_FORMAT",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// Every code, for documentation and tests.
    pub const ALL: [ErrorCode; 37] = [
        ErrorCode::TenantNotFound,
        ErrorCode::TenantExists,
        ErrorCode::InvalidTenantName,
        ErrorCode::TooManyTenants,
        ErrorCode::RelationshipExists,
        ErrorCode::NoSchema,
        ErrorCode::InvalidSchema,
        ErrorCode::SchemaNotAlone,
        ErrorCode::SchemaChangeBlocked,
        ErrorCode::InvalidMutation,
        ErrorCode::TooManyMutations,
        ErrorCode::QuotaExceeded,
        ErrorCode::PreconditionFailed,
        ErrorCode::UnknownType,
        ErrorCode::UnknownMember,
        ErrorCode::UnknownCaveat,
        ErrorCode::ConditionFailed,
        ErrorCode::InvalidContext,
        ErrorCode::ContextTooLarge,
        ErrorCode::TooManyChecks,
        ErrorCode::InvalidPageSize,
        ErrorCode::InvalidCursor,
        ErrorCode::InvalidToken,
        ErrorCode::FutureRevision,
        ErrorCode::OutsideWindow,
        ErrorCode::WorkLimit,
        ErrorCode::DepthLimit,
        ErrorCode::Deadline,
        ErrorCode::ExclusionCycle,
        ErrorCode::ImportInvalid,
        ErrorCode::Io,
        ErrorCode::StoreUnavailable,
        ErrorCode::WriteConflict,
        ErrorCode::OutcomeUnknown,
        ErrorCode::StoreCorrupt,
        ErrorCode::StoreFormat,
        ErrorCode::Internal,
    ];

    pub fn class(self) -> ErrorClass {
        use ErrorClass as C;
        match self {
            ErrorCode::TenantNotFound => C::NotFound,
            ErrorCode::TenantExists | ErrorCode::RelationshipExists => C::AlreadyExists,
            ErrorCode::InvalidTenantName
            | ErrorCode::InvalidSchema
            | ErrorCode::SchemaNotAlone
            | ErrorCode::InvalidMutation
            | ErrorCode::ConditionFailed
            | ErrorCode::InvalidContext
            | ErrorCode::InvalidPageSize
            | ErrorCode::InvalidCursor
            | ErrorCode::InvalidToken
            | ErrorCode::ImportInvalid => C::InvalidArgument,
            // A name the tenant's schema lacks: the request is well formed, the schema it meets
            // is not the one it expects (SpiceDB answers FAILED_PRECONDITION too).
            ErrorCode::NoSchema
            | ErrorCode::UnknownType
            | ErrorCode::UnknownMember
            | ErrorCode::UnknownCaveat
            | ErrorCode::SchemaChangeBlocked
            | ErrorCode::PreconditionFailed
            | ErrorCode::ExclusionCycle => C::FailedPrecondition,
            ErrorCode::FutureRevision | ErrorCode::OutsideWindow => C::OutOfRange,
            ErrorCode::TooManyTenants
            | ErrorCode::TooManyMutations
            | ErrorCode::QuotaExceeded
            | ErrorCode::ContextTooLarge
            | ErrorCode::TooManyChecks
            | ErrorCode::WorkLimit
            | ErrorCode::DepthLimit => C::ResourceExhausted,
            ErrorCode::Deadline => C::DeadlineExceeded,
            ErrorCode::Io | ErrorCode::StoreUnavailable | ErrorCode::WriteConflict => C::Unavailable,
            ErrorCode::OutcomeUnknown => C::Unknown,
            ErrorCode::StoreCorrupt | ErrorCode::StoreFormat => C::DataLoss,
            ErrorCode::Internal => C::Internal,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DbError {
    /// The error's stable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            DbError::Store(e) => match e {
                StoreError::NoSuchTenant(_) => ErrorCode::TenantNotFound,
                StoreError::TenantExists(_) => ErrorCode::TenantExists,
                StoreError::InvalidTenantName(_) => ErrorCode::InvalidTenantName,
                StoreError::AlreadyExists(_) => ErrorCode::RelationshipExists,
                StoreError::OutsideWindow { .. } => ErrorCode::OutsideWindow,
                StoreError::FutureRevision { .. } => ErrorCode::FutureRevision,
                StoreError::UnknownFormat { .. } => ErrorCode::StoreFormat,
                StoreError::Corrupt(_) | StoreError::Damaged { .. } => ErrorCode::StoreCorrupt,
                StoreError::NotAStore { .. } => ErrorCode::StoreFormat,
                StoreError::Unavailable(_) => ErrorCode::StoreUnavailable,
                StoreError::OutcomeUnknown(_) => ErrorCode::OutcomeUnknown,
                StoreError::Conflict(_) => ErrorCode::WriteConflict,
            },
            DbError::Eval(e) => match e {
                EvalError::UnknownType(_) => ErrorCode::UnknownType,
                EvalError::UnknownMember { .. } => ErrorCode::UnknownMember,
                EvalError::UnknownCaveat(_) => ErrorCode::UnknownCaveat,
                EvalError::Condition(ConditionError::WrongType { .. }) => ErrorCode::InvalidContext,
                EvalError::Condition(_) => ErrorCode::ConditionFailed,
                EvalError::WorkLimit(_) => ErrorCode::WorkLimit,
                EvalError::Cursor(_) | EvalError::CursorSnapshot { .. } => ErrorCode::InvalidCursor,
                EvalError::InvalidLimit(_) => ErrorCode::InvalidPageSize,
                EvalError::RevisionGone(_) => ErrorCode::OutsideWindow,
                EvalError::DepthLimit(_) => ErrorCode::DepthLimit,
                EvalError::Deadline(_) => ErrorCode::Deadline,
                EvalError::ExclusionCycle(_) => ErrorCode::ExclusionCycle,
            },
            DbError::InvalidSchema(_) => ErrorCode::InvalidSchema,
            DbError::NoSchema(_) => ErrorCode::NoSchema,
            DbError::InvalidMutation { .. } => ErrorCode::InvalidMutation,
            DbError::TooManyMutations { .. } => ErrorCode::TooManyMutations,
            DbError::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            DbError::PreconditionFailed { .. } => ErrorCode::PreconditionFailed,
            DbError::SchemaChangeBlocked { .. } => ErrorCode::SchemaChangeBlocked,
            DbError::SchemaNotAlone => ErrorCode::SchemaNotAlone,
            DbError::TooManyTenants(_) => ErrorCode::TooManyTenants,
            DbError::FutureRevision { .. } => ErrorCode::FutureRevision,
            DbError::OutsideWindow { .. } => ErrorCode::OutsideWindow,
            DbError::InvalidPageSize { .. } => ErrorCode::InvalidPageSize,
            DbError::ContextTooLarge { .. } => ErrorCode::ContextTooLarge,
            DbError::TooManyChecks { .. } => ErrorCode::TooManyChecks,
            DbError::Import { .. } => ErrorCode::ImportInvalid,
            DbError::Io { .. } => ErrorCode::Io,
            DbError::OutcomeUnknown(_) => ErrorCode::OutcomeUnknown,
            DbError::InvalidToken(_) => ErrorCode::InvalidToken,
            DbError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The error's class (what a client may do about it).
    pub fn class(&self) -> ErrorClass {
        self.code().class()
    }

    /// Whether the same request may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            DbError::Store(e) => e.kind() == StoreErrorKind::Retryable,
            _ => self.class() == ErrorClass::Unavailable,
        }
    }
}

/// A lock poisoned by a panicking thread: the state it guards may be half changed.
pub(super) fn poisoned<T>(_: T) -> DbError {
    DbError::Internal("a lock was poisoned by a panicking thread".into())
}

//! Between the wire and the database: requests are checked as SpiceDB's validation annotations
//! would (an INVALID_ARGUMENT naming the field), converted to the database's types, and answers
//! converted back. Errors become gRPC statuses in one place, [`status`].

use serde_json::{Map, Number, Value};
use tonic::{Code, Status};

use super::proto::authzed::api::v1 as api;
use crate::db::{Consistency, Database, DbError, ErrorClass, ErrorCode};
use crate::engine::Decision;
use crate::model::{
    CaveatRef, ObjectRef, Relationship, SubjectRef, Timestamp, valid_id, valid_relation_name, valid_type_name,
};
use crate::store::RelationshipFilter;

/// A database error as a gRPC status: its class picks the code, and the message carries the
/// stable error code (`… (CODE)`) and, in metadata, `pemba-error-code`. The status's details
/// (`grpc-status-details-bin`) hold a `google.rpc.ErrorInfo` as SpiceDB sends it: the
/// `authzed.api.v1.ErrorReason` name where one fits, in domain `authzed.com`, with Pemba's code in
/// its metadata under `pemba_code`.
pub fn status(e: DbError) -> Status {
    let details = rpc_status(&e);
    let mut s =
        Status::with_details(grpc_code(&e), details.message.clone(), prost::Message::encode_to_vec(&details).into());
    if let Ok(v) = e.code().as_str().parse() {
        s.metadata_mut().insert("pemba-error-code", v);
    }
    s
}

fn grpc_code(e: &DbError) -> Code {
    match e.class() {
        ErrorClass::InvalidArgument => Code::InvalidArgument,
        ErrorClass::NotFound => Code::NotFound,
        ErrorClass::AlreadyExists => Code::AlreadyExists,
        ErrorClass::FailedPrecondition | ErrorClass::OutOfRange => Code::FailedPrecondition,
        ErrorClass::ResourceExhausted => Code::ResourceExhausted,
        ErrorClass::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorClass::Unavailable => Code::Unavailable,
        ErrorClass::Unknown => Code::Unknown,
        ErrorClass::DataLoss => Code::DataLoss,
        ErrorClass::Internal => Code::Internal,
    }
}

/// The `google.rpc.Status` of an error, with its `ErrorInfo` (see [`status`]): what a CheckBulk
/// item's error is, and what a failed call's details hold.
pub fn rpc_status(e: &DbError) -> super::proto::google::rpc::Status {
    use super::proto::google::rpc::{ErrorInfo, Status};
    let pemba = e.code();
    let info = ErrorInfo {
        reason: reason(pemba).map_or(pemba.as_str(), |r| r.as_str_name()).to_string(),
        domain: "authzed.com".to_string(),
        metadata: [("pemba_code".to_string(), pemba.as_str().to_string())].into(),
    };
    let any = prost_types::Any {
        type_url: "type.googleapis.com/google.rpc.ErrorInfo".to_string(),
        value: prost::Message::encode_to_vec(&info),
    };
    Status { code: grpc_code(e) as i32, message: format!("{e} ({pemba})"), details: vec![any] }
}

/// SpiceDB's reason for a Pemba error code, where one means the same.
fn reason(code: ErrorCode) -> Option<api::ErrorReason> {
    use api::ErrorReason as R;
    Some(match code {
        ErrorCode::InvalidSchema => R::SchemaParseError,
        ErrorCode::UnknownType => R::UnknownDefinition,
        ErrorCode::UnknownMember => R::UnknownRelationOrPermission,
        ErrorCode::UnknownCaveat => R::UnknownCaveat,
        ErrorCode::TooManyMutations => R::TooManyUpdatesInRequest,
        ErrorCode::PreconditionFailed => R::WriteOrDeletePreconditionFailure,
        ErrorCode::ConditionFailed => R::CaveatEvaluationError,
        ErrorCode::InvalidContext => R::CaveatParameterTypeError,
        ErrorCode::ContextTooLarge => R::MaxRelationshipContextSize,
        ErrorCode::InvalidCursor => R::InvalidCursor,
        ErrorCode::RelationshipExists => R::AttemptToRecreateRelationship,
        ErrorCode::DepthLimit => R::MaximumDepthExceeded,
        ErrorCode::TooManyChecks => R::TooManyChecksInRequest,
        ErrorCode::InvalidPageSize => R::ExceedsMaximumAllowableLimit,
        ErrorCode::WriteConflict => R::SerializationFailure,
        _ => return None,
    })
}

/// INVALID_ARGUMENT naming the field.
pub fn invalid(field: &str, why: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("invalid `{field}`: {why}"))
}

/// A required message field.
pub fn required<'a, T>(field: &str, v: Option<&'a T>) -> Result<&'a T, Status> {
    v.ok_or_else(|| invalid(field, "is required"))
}

fn type_name(field: &str, t: &str) -> Result<String, Status> {
    if !valid_type_name(t) {
        return Err(invalid(
            field,
            format!(
                "`{}` is not a type name (lowercase letters, digits and `_`, with an optional `prefix/`)",
                elide(t)
            ),
        ));
    }
    Ok(t.to_string())
}

fn relation_name(field: &str, r: &str) -> Result<String, Status> {
    if !valid_relation_name(r) {
        return Err(invalid(field, format!("`{}` is not a relation or permission name", elide(r))));
    }
    Ok(r.to_string())
}

/// Long input, cut for an error message.
fn elide(s: &str) -> String {
    if s.len() <= 64 {
        return s.to_string();
    }
    let mut end = 64;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

pub fn object(field: &str, o: Option<&api::ObjectReference>, wildcard: bool) -> Result<ObjectRef, Status> {
    let o = required(field, o)?;
    let ty = type_name(&format!("{field}.object_type"), &o.object_type)?;
    if !(valid_id(&o.object_id) || (wildcard && o.object_id == "*")) {
        return Err(invalid(
            &format!("{field}.object_id"),
            format!(
                "`{}` is not an object id (1 to 1024 characters of `a-z A-Z 0-9 / _ | - = +`)",
                elide(&o.object_id)
            ),
        ));
    }
    Ok(ObjectRef::new(ty, o.object_id.clone()))
}

pub fn subject(field: &str, s: Option<&api::SubjectReference>) -> Result<SubjectRef, Status> {
    let s = required(field, s)?;
    let object = object(&format!("{field}.object"), s.object.as_ref(), true)?;
    let relation = match s.optional_relation.as_str() {
        "" => None,
        r => Some(relation_name(&format!("{field}.optional_relation"), r)?),
    };
    Ok(SubjectRef::new(object, relation))
}

pub fn member(field: &str, m: &str) -> Result<String, Status> {
    relation_name(field, m)
}

pub fn object_ref(o: &ObjectRef) -> api::ObjectReference {
    api::ObjectReference { object_type: o.ty.clone(), object_id: o.id.clone() }
}

pub fn subject_ref(s: &SubjectRef) -> api::SubjectReference {
    api::SubjectReference {
        object: Some(object_ref(&s.object)),
        optional_relation: s.relation.clone().unwrap_or_default(),
    }
}

/// A `google.protobuf.Struct` as JSON. Numbers arrive as doubles; integral ones become JSON
/// integers (so `100.0` reads as `100`, which `int` parameters accept either way).
pub fn context(s: Option<&prost_types::Struct>) -> Map<String, Value> {
    s.map(|s| s.fields.iter().map(|(k, v)| (k.clone(), json(v))).collect()).unwrap_or_default()
}

fn json(v: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                Value::Number(Number::from(*n as i64))
            } else {
                Number::from_f64(*n).map_or(Value::Null, Value::Number)
            }
        }
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(json).collect()),
        Some(Kind::StructValue(s)) => Value::Object(s.fields.iter().map(|(k, v)| (k.clone(), json(v))).collect()),
    }
}

pub fn to_struct(m: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct { fields: m.iter().map(|(k, v)| (k.clone(), to_value(v))).collect() }
}

fn to_value(v: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue { values: a.iter().map(to_value).collect() }),
        Value::Object(o) => Kind::StructValue(to_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}

pub fn timestamp(t: &prost_types::Timestamp) -> Timestamp {
    Timestamp(i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos))
}

pub fn to_timestamp(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.0.div_euclid(1_000_000_000) as i64,
        nanos: t.0.rem_euclid(1_000_000_000) as i32,
    }
}

pub fn relationship(field: &str, r: Option<&api::Relationship>) -> Result<Relationship, Status> {
    let r = required(field, r)?;
    let resource = object(&format!("{field}.resource"), r.resource.as_ref(), false)?;
    let relation = relation_name(&format!("{field}.relation"), &r.relation)?;
    let subject = subject(&format!("{field}.subject"), r.subject.as_ref())?;
    let caveat = match &r.optional_caveat {
        None => None,
        Some(c) if c.caveat_name.is_empty() => None,
        Some(c) => Some(CaveatRef {
            name: type_name(&format!("{field}.optional_caveat.caveat_name"), &c.caveat_name)?,
            context: context(c.context.as_ref()),
        }),
    };
    Ok(Relationship { resource, relation, subject, caveat, expiration: r.optional_expires_at.as_ref().map(timestamp) })
}

pub fn to_relationship(r: &Relationship) -> api::Relationship {
    api::Relationship {
        resource: Some(object_ref(&r.resource)),
        relation: r.relation.clone(),
        subject: Some(subject_ref(&r.subject)),
        optional_caveat: r
            .caveat
            .as_ref()
            .map(|c| api::ContextualizedCaveat { caveat_name: c.name.clone(), context: Some(to_struct(&c.context)) }),
        optional_expires_at: r.expiration.map(to_timestamp),
    }
}

pub fn consistency(db: &Database, tenant: &str, c: Option<&api::Consistency>) -> Result<Consistency, Status> {
    use api::consistency::Requirement;
    Ok(match c.and_then(|c| c.requirement.as_ref()) {
        None | Some(Requirement::MinimizeLatency(_)) => Consistency::MinimizeLatency,
        Some(Requirement::FullyConsistent(_)) => Consistency::FullyConsistent,
        Some(Requirement::AtLeastAsFresh(t)) => {
            Consistency::AtLeastAsFresh(token(db, tenant, "consistency.at_least_as_fresh", t)?)
        }
        Some(Requirement::AtExactSnapshot(t)) => {
            Consistency::AtExactSnapshot(token(db, tenant, "consistency.at_exact_snapshot", t)?)
        }
    })
}

fn token(db: &Database, tenant: &str, field: &str, t: &api::ZedToken) -> Result<crate::model::Revision, Status> {
    db.token_revision(tenant, &t.token).map_err(|e| invalid(field, e))
}

pub fn zed_token(db: &Database, tenant: &str, revision: crate::model::Revision) -> api::ZedToken {
    api::ZedToken { token: db.token(tenant, revision) }
}

pub fn filter(field: &str, f: Option<&api::RelationshipFilter>) -> Result<RelationshipFilter, Status> {
    let f = required(field, f)?;
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let mut out = RelationshipFilter {
        resource_type: match f.resource_type.as_str() {
            "" => None,
            t => Some(type_name(&format!("{field}.resource_type"), t)?),
        },
        resource_id: opt(&f.optional_resource_id),
        resource_id_prefix: opt(&f.optional_resource_id_prefix),
        relation: match f.optional_relation.as_str() {
            "" => None,
            r => Some(relation_name(&format!("{field}.optional_relation"), r)?),
        },
        ..RelationshipFilter::default()
    };
    if out.resource_id.is_some() && out.resource_id_prefix.is_some() {
        return Err(invalid(field, "`optional_resource_id` and `optional_resource_id_prefix` exclude each other"));
    }
    if let Some(s) = &f.optional_subject_filter {
        out.subject_type = Some(type_name(&format!("{field}.optional_subject_filter.subject_type"), &s.subject_type)?);
        out.subject_id = opt(&s.optional_subject_id);
        out.subject_relation = s.optional_relation.as_ref().map(|r| opt(&r.relation));
    }
    Ok(out)
}

/// A decision as SpiceDB's permissionship and partial caveat info.
pub fn permissionship(
    d: &Decision,
) -> (api::check_permission_response::Permissionship, Option<api::PartialCaveatInfo>) {
    use api::check_permission_response::Permissionship as P;
    match d {
        Decision::Has => (P::HasPermission, None),
        Decision::No => (P::NoPermission, None),
        Decision::Conditional(missing) => {
            (P::ConditionalPermission, Some(api::PartialCaveatInfo { missing_required_context: missing.clone() }))
        }
    }
}

pub fn lookup_permissionship(d: &Decision) -> (api::LookupPermissionship, Option<api::PartialCaveatInfo>) {
    match d {
        Decision::Conditional(missing) => (
            api::LookupPermissionship::ConditionalPermission,
            Some(api::PartialCaveatInfo { missing_required_context: missing.clone() }),
        ),
        _ => (api::LookupPermissionship::HasPermission, None),
    }
}

//! Value types shared by every layer: object and subject references, relationships, timestamps,
//! durations and caveat parameter types, with their text forms.
//!
//! This module does no I/O and knows nothing about schemas, rhai or storage. Parsing here checks
//! only syntax (SpiceDB's rules for names and ids); whether a relationship fits a schema is the
//! schema's business.

use std::fmt;

use serde_json::{Map, Value};

/// Longest object id SpiceDB accepts, in bytes.
pub const MAX_ID_LEN: usize = 1024;
/// Longest type, relation or caveat name segment we accept, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Longest caveat context (as JSON text) accepted on one relationship line, in bytes.
pub const MAX_CONTEXT_LEN: usize = 64 * 1024;

/// A problem with the text form of a model value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("invalid object id `{}`: ids are 1 to 1024 characters of `a-z A-Z 0-9 / _ | - = +`", crate::text::elide(.0))]
    InvalidId(String),
    #[error("invalid type name `{}`", crate::text::elide(.0))]
    InvalidTypeName(String),
    #[error("invalid relation name `{}`", crate::text::elide(.0))]
    InvalidRelationName(String),
    #[error("invalid caveat name `{}`", crate::text::elide(.0))]
    InvalidCaveatName(String),
    #[error("`{}` is not of the form `type:id`", crate::text::elide(.0))]
    InvalidObject(String),
    #[error("`{}` is not a relationship: expected `type:id#relation@type:id[#relation]`", crate::text::elide(.0))]
    InvalidRelationship(String),
    #[error("`{}` is not a check: expected `type:id#permission@type:id[#relation]`, then optionally ` with {{json}}`", crate::text::elide(.0))]
    InvalidCheck(String),
    #[error("invalid permission name `{}`", crate::text::elide(.0))]
    InvalidPermissionName(String),
    #[error("a wildcard `*` may only be a subject id")]
    WildcardResource,
    #[error("a wildcard subject `{}:*` cannot have a relation", crate::text::elide(.0))]
    WildcardWithRelation(String),
    #[error("invalid caveat context `{}`: {reason}", crate::text::elide(text))]
    InvalidContext { text: String, reason: String },
    #[error("caveat context is {0} bytes; the limit is {MAX_CONTEXT_LEN}")]
    ContextTooLarge(usize),
    #[error("invalid timestamp `{}`: expected RFC 3339, such as `2025-01-01T00:00:00Z`", crate::text::elide(.0))]
    InvalidTimestamp(String),
    #[error("invalid duration `{}`: expected a sequence such as `1h30m`, `250ms` or `-2s`", crate::text::elide(.0))]
    InvalidDuration(String),
    #[error("unexpected text `{}` after the relationship", crate::text::elide(.0))]
    TrailingText(String),
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
}

/// Checks one name segment: a lowercase letter, then lowercase letters, digits and `_`.
fn valid_segment(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase()) && s.len() <= MAX_NAME_LEN && chars.all(is_name_char)
}

/// A type or caveat name: segments separated by `/` (`org/team/user`).
pub fn valid_type_name(s: &str) -> bool {
    !s.is_empty() && s.split('/').all(valid_segment)
}

/// A relation or permission name: one segment.
pub fn valid_relation_name(s: &str) -> bool {
    valid_segment(s)
}

/// An object id per SpiceDB: 1 to 1024 characters of `[a-zA-Z0-9/_|\-=+]`.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_LEN && s.chars().all(|c| c.is_ascii_alphanumeric() || "/_|-=+".contains(c))
}

/// `type:id`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub ty: String,
    pub id: String,
}

impl ObjectRef {
    pub fn new(ty: impl Into<String>, id: impl Into<String>) -> ObjectRef {
        ObjectRef { ty: ty.into(), id: id.into() }
    }

    /// Parses `type:id` (a resource: the wildcard `*` is refused).
    pub fn parse(text: &str) -> Result<ObjectRef, ModelError> {
        Self::parse_as(text, false)
    }

    /// Parses `type:id` or `type:*` (a subject's object, which may be the wildcard).
    pub fn parse_allowing_wildcard(text: &str) -> Result<ObjectRef, ModelError> {
        Self::parse_as(text, true)
    }

    fn parse_as(text: &str, allow_wildcard: bool) -> Result<ObjectRef, ModelError> {
        let (ty, id) = text.split_once(':').ok_or_else(|| ModelError::InvalidObject(text.to_string()))?;
        if !valid_type_name(ty) {
            return Err(ModelError::InvalidTypeName(ty.to_string()));
        }
        if id == "*" {
            if !allow_wildcard {
                return Err(ModelError::WildcardResource);
            }
        } else if !valid_id(id) {
            return Err(ModelError::InvalidId(id.to_string()));
        }
        Ok(ObjectRef::new(ty, id))
    }

    pub fn is_wildcard(&self) -> bool {
        self.id == "*"
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ty, self.id)
    }
}

/// `type:id`, `type:id#relation` (a subject set) or `type:*` (a wildcard).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubjectRef {
    pub object: ObjectRef,
    /// `None` for a terminal subject (`#...` in SpiceDB's text form).
    pub relation: Option<String>,
}

impl SubjectRef {
    pub fn new(object: ObjectRef, relation: Option<String>) -> SubjectRef {
        SubjectRef { object, relation }
    }

    /// Parses `type:id`, `type:id#relation`, `type:id#...` or `type:*`.
    pub fn parse(text: &str) -> Result<SubjectRef, ModelError> {
        let (obj, rel) = match text.split_once('#') {
            Some((o, r)) => (o, Some(r)),
            None => (text, None),
        };
        let object = ObjectRef::parse_allowing_wildcard(obj)?;
        let relation = match rel {
            None | Some("...") => None,
            Some(r) if valid_relation_name(r) => Some(r.to_string()),
            Some(r) => return Err(ModelError::InvalidRelationName(r.to_string())),
        };
        if object.is_wildcard() && relation.is_some() {
            return Err(ModelError::WildcardWithRelation(object.ty));
        }
        Ok(SubjectRef { object, relation })
    }

    pub fn is_wildcard(&self) -> bool {
        self.object.is_wildcard()
    }
}

impl fmt::Display for SubjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.object)?;
        if let Some(r) = &self.relation {
            write!(f, "#{r}")?;
        }
        Ok(())
    }
}

/// A caveat attached to a relationship, with the context stored with it.
#[derive(Debug, Clone, PartialEq)]
pub struct CaveatRef {
    pub name: String,
    pub context: Map<String, Value>,
}

/// `resource#relation@subject[caveat:{context}][expiration:time]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Relationship {
    pub resource: ObjectRef,
    pub relation: String,
    pub subject: SubjectRef,
    pub caveat: Option<CaveatRef>,
    pub expiration: Option<Timestamp>,
}

impl Relationship {
    /// The identity of a relationship: two relationships with the same key are the same row.
    pub fn key(&self) -> (ObjectRef, String, SubjectRef) {
        (self.resource.clone(), self.relation.clone(), self.subject.clone())
    }

    /// Parses SpiceDB's text form, e.g. `document:1#viewer@group:eng#member[only_weekdays]`.
    pub fn parse(text: &str) -> Result<Relationship, ModelError> {
        let text = text.trim();
        let bad = || ModelError::InvalidRelationship(text.to_string());
        let (resource_part, rest) = text.split_once('#').ok_or_else(bad)?;
        let (relation, rest) = rest.split_once('@').ok_or_else(bad)?;
        let resource = ObjectRef::parse(resource_part)?;
        if !valid_relation_name(relation) {
            return Err(ModelError::InvalidRelationName(relation.to_string()));
        }
        let (subject_text, mut tail) = match rest.find('[') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let subject = SubjectRef::parse(subject_text)?;
        let mut caveat = None;
        let mut expiration = None;
        while let Some(after) = tail.strip_prefix('[') {
            let (inner, next) = split_bracket(after).ok_or_else(bad)?;
            if let Some(ts) = inner.strip_prefix("expiration:") {
                if expiration.is_some() {
                    return Err(bad());
                }
                expiration = Some(Timestamp::parse(ts)?);
            } else {
                if caveat.is_some() || expiration.is_some() {
                    return Err(bad());
                }
                caveat = Some(parse_caveat_ref(inner)?);
            }
            tail = next;
        }
        if !tail.is_empty() {
            return Err(ModelError::TrailingText(tail.to_string()));
        }
        Ok(Relationship { resource, relation: relation.to_string(), subject, caveat, expiration })
    }
}

/// Splits `inner]rest` at the `]` that closes the bracket, skipping brackets inside JSON strings
/// and nested JSON arrays.
fn split_bracket(text: &str) -> Option<(&str, &str)> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => depth += 1,
            '}' => depth = depth.checked_sub(1)?,
            ']' if depth == 0 => return Some((&text[..i], &text[i + 1..])),
            ']' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn parse_caveat_ref(inner: &str) -> Result<CaveatRef, ModelError> {
    let (name, ctx) = match inner.split_once(':') {
        Some((n, c)) => (n, Some(c)),
        None => (inner, None),
    };
    if !valid_type_name(name) {
        return Err(ModelError::InvalidCaveatName(name.to_string()));
    }
    let context = match ctx {
        None => Map::new(),
        Some(c) => parse_context(c)?,
    };
    Ok(CaveatRef { name: name.to_string(), context })
}

/// Parses a JSON object used as caveat context.
pub fn parse_context(text: &str) -> Result<Map<String, Value>, ModelError> {
    if text.len() > MAX_CONTEXT_LEN {
        return Err(ModelError::ContextTooLarge(text.len()));
    }
    let invalid = |reason: String| ModelError::InvalidContext { text: text.to_string(), reason };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(invalid("context must be a JSON object".to_string())),
        Err(e) => Err(invalid(e.to_string())),
    }
}

impl fmt::Display for Relationship {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}@{}", self.resource, self.relation, self.subject)?;
        if let Some(c) = &self.caveat {
            write!(f, "[{}", c.name)?;
            if !c.context.is_empty() {
                write!(f, ":{}", Value::Object(c.context.clone()))?;
            }
            write!(f, "]")?;
        }
        if let Some(e) = &self.expiration {
            write!(f, "[expiration:{e}]")?;
        }
        Ok(())
    }
}

/// A tenant's revision: every committed write advances it by one; 0 is a new tenant's (empty)
/// state. A ZedToken encodes one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub u64);

impl Revision {
    /// The revision a new tenant starts at.
    pub const ZERO: Revision = Revision(0);

    /// The revision after this one (saturating: 2^64 writes are not reachable).
    pub fn next(self) -> Revision {
        Revision(self.0.saturating_add(1))
    }

    /// The revision `n` before this one, or 0.
    pub fn back(self, n: u64) -> Revision {
        Revision(self.0.saturating_sub(n))
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An instant, as nanoseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i128);

/// A signed span of time in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub i128);

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

impl Timestamp {
    /// Parses RFC 3339 (`2025-01-01T00:00:00Z`, `2025-01-01T01:00:00.5+01:00`).
    pub fn parse(text: &str) -> Result<Timestamp, ModelError> {
        Self::parse_inner(text).ok_or_else(|| ModelError::InvalidTimestamp(text.to_string()))
    }

    fn parse_inner(text: &str) -> Option<Timestamp> {
        let b = text.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let s = text.get(r)?;
            if !s.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        if b.len() < 20 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
            return None;
        }
        if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
            return None;
        }
        if b.get(16) != Some(&b':') {
            return None;
        }
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 {
            return None;
        }
        if s > 60 {
            return None;
        }
        let mut i = 19;
        let mut frac: i128 = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            let digits = text.get(start..i)?;
            if digits.is_empty() || digits.len() > 9 {
                return None;
            }
            frac = digits.parse::<i128>().ok()? * 10i128.pow(9 - digits.len() as u32);
        }
        let offset_secs: i64 = match b.get(i) {
            Some(b'Z' | b'z') if i + 1 == b.len() => 0,
            Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b.get(i + 3) == Some(&b':') => {
                let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
                if oh > 23 || om > 59 {
                    return None;
                }
                let o = oh * 3600 + om * 60;
                if *sign == b'+' { o } else { -o }
            }
            _ => return None,
        };
        let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset_secs;
        Some(Timestamp(i128::from(secs) * NANOS_PER_SEC + frac))
    }

    pub fn from_unix_seconds(secs: i64) -> Timestamp {
        Timestamp(i128::from(secs) * NANOS_PER_SEC)
    }

    /// The current time of the machine's clock.
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp(d.as_nanos() as i128)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(NANOS_PER_SEC);
        let nanos = self.0.rem_euclid(NANOS_PER_SEC);
        let days = secs.div_euclid(86_400) as i64;
        let rem = secs.rem_euclid(86_400) as i64;
        let (y, m, d) = civil_from_days(days);
        write!(f, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)?;
        if nanos != 0 {
            let s = format!("{nanos:09}");
            write!(f, ".{}", s.trim_end_matches('0'))?;
        }
        write!(f, "Z")
    }
}

impl Duration {
    /// Parses Go-style durations: `1h30m`, `1.5s`, `250ms`, `-2us`, `0`.
    pub fn parse(text: &str) -> Result<Duration, ModelError> {
        Self::parse_inner(text).ok_or_else(|| ModelError::InvalidDuration(text.to_string()))
    }

    fn parse_inner(text: &str) -> Option<Duration> {
        let (neg, mut rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        if rest == "0" {
            return Some(Duration(0));
        }
        if rest.is_empty() {
            return None;
        }
        let mut total: i128 = 0;
        while !rest.is_empty() {
            let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            let (number, after) = rest.split_at(n);
            let u = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
            let (unit, after) = after.split_at(u);
            let scale: i128 = match unit {
                "ns" => 1,
                "us" | "µs" => 1_000,
                "ms" => 1_000_000,
                "s" => NANOS_PER_SEC,
                "m" => 60 * NANOS_PER_SEC,
                "h" => 3600 * NANOS_PER_SEC,
                _ => return None,
            };
            let (whole, frac) = match number.split_once('.') {
                Some((w, f)) => (w, f),
                None => (number, ""),
            };
            if whole.is_empty() && frac.is_empty() || whole.len() > 20 || frac.len() > 18 {
                return None;
            }
            let w: i128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
            let mut value = w.checked_mul(scale)?;
            if !frac.is_empty() {
                let f: i128 = frac.parse().ok()?;
                value = value.checked_add(f * scale / 10i128.pow(frac.len() as u32))?;
            }
            total = total.checked_add(value)?;
            rest = after;
        }
        Some(Duration(if neg { -total } else { total }))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n == 0 {
            return write!(f, "0s");
        }
        if n < 0 {
            write!(f, "-")?;
        }
        let n = n.unsigned_abs();
        let (h, m) = (n / 3_600_000_000_000, n / 60_000_000_000 % 60);
        let (s, ns) = (n / 1_000_000_000 % 60, n % 1_000_000_000);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 || ns > 0 {
            write!(f, "{s}")?;
            if ns > 0 {
                write!(f, ".{}", format!("{ns:09}").trim_end_matches('0'))?;
            }
            write!(f, "s")?;
        }
        Ok(())
    }
}

/// The declared type of a caveat parameter or an object attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ParamType {
    Int,
    Uint,
    Double,
    Bool,
    String,
    Bytes,
    Duration,
    Timestamp,
    IpAddress,
    List(Box<ParamType>),
    Map(Box<ParamType>),
    Any,
}

impl ParamType {
    /// The type for a simple (non-generic) name, as written in a schema.
    pub fn from_simple_name(name: &str) -> Option<ParamType> {
        Some(match name {
            "int" => ParamType::Int,
            "uint" => ParamType::Uint,
            "double" => ParamType::Double,
            "bool" => ParamType::Bool,
            "string" => ParamType::String,
            "bytes" => ParamType::Bytes,
            "duration" => ParamType::Duration,
            "timestamp" => ParamType::Timestamp,
            "ipaddress" => ParamType::IpAddress,
            "any" => ParamType::Any,
            _ => return None,
        })
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ParamType::Int => "int",
            ParamType::Uint => "uint",
            ParamType::Double => "double",
            ParamType::Bool => "bool",
            ParamType::String => "string",
            ParamType::Bytes => "bytes",
            ParamType::Duration => "duration",
            ParamType::Timestamp => "timestamp",
            ParamType::IpAddress => "ipaddress",
            ParamType::Any => "any",
            ParamType::List(t) => return write!(f, "list<{t}>"),
            ParamType::Map(t) => return write!(f, "map<{t}>"),
        };
        f.write_str(s)
    }
}

/// `"document:1".parse::<ObjectRef>()`: [`ObjectRef::parse`] (a resource: no wildcard).
impl std::str::FromStr for ObjectRef {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ObjectRef::parse(s)
    }
}

/// `"group:eng#member".parse::<SubjectRef>()`: [`SubjectRef::parse`].
impl std::str::FromStr for SubjectRef {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SubjectRef::parse(s)
    }
}

/// `"document:1#viewer@user:ann".parse::<Relationship>()`: [`Relationship::parse`].
impl std::str::FromStr for Relationship {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Relationship::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relationship_round_trips() {
        for text in [
            "document:1#viewer@user:tom",
            "document:1#viewer@group:eng#member",
            "document:1#viewer@user:*",
            "document:1#viewer@user:tom[only_weekdays]",
            r#"document:1#viewer@user:tom[cav:{"a":1}][expiration:2025-01-01T00:00:00Z]"#,
            "org/doc:a=b+c|d-e#viewer@org/user:x/y_z",
        ] {
            let r = Relationship::parse(text).unwrap();
            assert_eq!(r.to_string(), text);
        }
        let r = Relationship::parse("document:1#viewer@user:tom#...").unwrap();
        assert_eq!(r.subject.relation, None);
    }

    #[test]
    fn timestamps_compare_instants() {
        let a = Timestamp::parse("2025-01-01T01:00:00+01:00").unwrap();
        let b = Timestamp::parse("2025-01-01T00:00:00Z").unwrap();
        assert_eq!(a, b);
        let c = Timestamp::parse("2024-12-31T23:59:59.999999999Z").unwrap();
        assert!(c < b);
        assert_eq!(c.to_string(), "2024-12-31T23:59:59.999999999Z");
        assert!(Timestamp::parse("2025-02-30T00:00:00Z").is_err());
        assert!(Timestamp::parse("2025-01-01").is_err());
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(Duration::parse("1h30m").unwrap().0, 5400 * NANOS_PER_SEC);
        assert_eq!(Duration::parse("1.5s").unwrap().0, 1_500_000_000);
        assert_eq!(Duration::parse("-250ms").unwrap().0, -250_000_000);
        assert_eq!(Duration::parse("1h30m").unwrap().to_string(), "1h30m");
        assert!(Duration::parse("1d").is_err());
        assert!(Duration::parse("").is_err());
    }
}

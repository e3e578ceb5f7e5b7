//! LookupResources and LookupSubjects for the reference evaluator: candidates from the data,
//! each decided by Check, in id order, paged by a limit and a signed cursor. A cursor pins the
//! revision and `now` of the first page, so resuming reads the same snapshot whatever was
//! written in between, and returns exactly the rest.
//!
//! The pieces both evaluators share live here too (the request and page types, the query
//! digests, the candidate list, deciding candidates in order and sealing the next cursor): the
//! fast path (`query`) finds its candidates by set algebra and decides them on the index, but
//! pages exactly as this does.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::check::{self, validate_request};
use super::cursor::{Cursor, CursorError, CursorKey, query_digest};
use super::data::History;
use super::expand::{reachable_subjects, wildcard_exclusions};
use super::{Ctx, Decision, Env, EvalError, Relations, Tri};
use crate::conditions::Conditions;
use crate::model::{ObjectRef, Revision, SubjectRef, Timestamp};
use crate::schema::{CompiledSchema, Rewrite};

/// Largest page a lookup may ask for.
pub const MAX_PAGE_SIZE: usize = 10_000;

/// Where a lookup finds the data at a revision: the head for a first page, the cursor's revision
/// for the next ones.
pub trait Snapshots {
    fn head(&self) -> (Revision, Arc<dyn Relations>);
    fn at(&self, revision: Revision) -> Result<Arc<dyn Relations>, EvalError>;
}

impl Snapshots for History {
    fn head(&self) -> (Revision, Arc<dyn Relations>) {
        let (rev, data) = History::head(self);
        (rev, data)
    }

    fn at(&self, revision: Revision) -> Result<Arc<dyn Relations>, EvalError> {
        match History::at(self, revision) {
            Some(data) => Ok(data),
            None => Err(EvalError::RevisionGone(revision)),
        }
    }
}

/// One revision only (a lookup whose cursor names another gets `RevisionGone`).
pub struct OneRevision(pub Revision, pub Arc<dyn Relations>);

impl Snapshots for OneRevision {
    fn head(&self) -> (Revision, Arc<dyn Relations>) {
        (self.0, self.1.clone())
    }

    fn at(&self, revision: Revision) -> Result<Arc<dyn Relations>, EvalError> {
        if revision == self.0 { Ok(self.1.clone()) } else { Err(EvalError::RevisionGone(revision)) }
    }
}

/// What a reference lookup reads: the schema, the revisions of the data, the cursor key and the
/// tenant.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    pub schema: &'a CompiledSchema,
    pub conditions: &'a Conditions,
    pub history: &'a dyn Snapshots,
    pub key: &'a CursorKey,
    pub tenant: &'a str,
}

#[derive(Debug, Clone)]
pub struct LookupResourcesRequest {
    pub resource_type: String,
    pub permission: String,
    pub subject: SubjectRef,
    pub context: Map<String, Value>,
    /// Page size; `None` returns every result.
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceResult {
    pub id: String,
    /// `Has` or `Conditional`.
    pub decision: Decision,
}

#[derive(Debug, Clone)]
pub struct LookupSubjectsRequest {
    pub resource: ObjectRef,
    pub permission: String,
    pub subject_type: String,
    /// Look for subject sets `type:id#relation` instead of terminal subjects.
    pub subject_relation: Option<String>,
    pub context: Map<String, Value>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectResult {
    pub subject: SubjectRef,
    pub decision: Decision,
    /// For a wildcard: the subjects it does not include, each `No` or `Conditional`.
    pub excluded: Vec<(SubjectRef, Decision)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Present when more results follow; pass it back to get them.
    pub cursor: Option<String>,
    /// The revision every page of this lookup reads.
    pub revision: Revision,
}

/// The page size check both evaluators make.
pub fn check_limit(limit: Option<usize>) -> Result<(), EvalError> {
    match limit {
        Some(0) => Err(EvalError::InvalidLimit("a page size must be at least 1".into())),
        Some(n) if n > MAX_PAGE_SIZE => {
            Err(EvalError::InvalidLimit(format!("page size {n} is above the limit of {MAX_PAGE_SIZE}")))
        }
        _ => Ok(()),
    }
}

fn context_key(ctx: &Map<String, Value>) -> String {
    Value::Object(ctx.clone()).to_string()
}

/// The digest a LookupResources cursor carries: the schema and every request field that shapes
/// the answer.
pub fn resources_query(schema: &CompiledSchema, req: &LookupResourcesRequest) -> [u8; 16] {
    query_digest(&[
        "lookup_resources",
        &schema.fingerprint().to_string(),
        &req.resource_type,
        &req.permission,
        &req.subject.to_string(),
        &context_key(&req.context),
    ])
}

/// The digest a LookupSubjects cursor carries.
pub fn subjects_query(schema: &CompiledSchema, req: &LookupSubjectsRequest) -> [u8; 16] {
    query_digest(&[
        "lookup_subjects",
        &schema.fingerprint().to_string(),
        &req.resource.to_string(),
        &req.permission,
        &req.subject_type,
        req.subject_relation.as_deref().unwrap_or("..."),
        &context_key(&req.context),
    ])
}

/// Checks a LookupResources request against the schema.
pub fn validate_resources(schema: &CompiledSchema, req: &LookupResourcesRequest) -> Result<(), EvalError> {
    check_limit(req.limit)?;
    let probe = ObjectRef::new(req.resource_type.clone(), "probe");
    validate_request(schema, &probe, &req.permission, &req.subject)
}

/// Checks a LookupSubjects request against the schema.
pub fn validate_subjects(schema: &CompiledSchema, req: &LookupSubjectsRequest) -> Result<(), EvalError> {
    check_limit(req.limit)?;
    let probe = SubjectRef::new(ObjectRef::new(req.subject_type.clone(), "probe"), req.subject_relation.clone());
    validate_request(schema, &req.resource, &req.permission, &probe)
}

/// Where a lookup's page stands: the revision and `now` every page reads, the cursor's query
/// digest, the tenant and key that seal the next cursor, and the last id already returned.
pub struct Paging<'a> {
    pub key: &'a CursorKey,
    pub tenant: &'a str,
    pub query: [u8; 16],
    pub revision: Revision,
    pub now: Timestamp,
    /// Empty on the first page.
    pub after: String,
}

impl Paging<'_> {
    /// Every cursor of this lookup begins with this; append an id to resume after it.
    pub fn cursor_prefix(&self) -> String {
        self.key.seal_prefix(&Cursor {
            revision: self.revision,
            now: self.now,
            tenant: self.tenant.to_string(),
            query: self.query,
            after: String::new(),
        })
    }

    /// A cursor that resumes this lookup after `after`.
    pub fn cursor(&self, after: &str) -> String {
        self.key.seal(&Cursor {
            revision: self.revision,
            now: self.now,
            tenant: self.tenant.to_string(),
            query: self.query,
            after: after.to_string(),
        })
    }

    /// The page of `items` (one more than `limit` were asked for when a limit is set: their
    /// presence means more follow, so the next cursor is sealed after the last one kept).
    pub fn finish<T>(self, mut items: Vec<T>, limit: Option<usize>, id: impl Fn(&T) -> String) -> Page<T> {
        let cursor = match limit {
            Some(l) if items.len() > l => {
                items.truncate(l);
                items.last().map(|last| self.cursor(&id(last)))
            }
            _ => None,
        };
        Page { items, cursor, revision: self.revision }
    }
}

/// How many results a page wants: one more than its limit (to learn whether more follow).
pub fn wanted(limit: Option<usize>) -> usize {
    limit.map_or(usize::MAX, |l| l.saturating_add(1))
}

/// Resolves the snapshot a reference lookup reads: the cursor's, or the head with a fresh `now`.
fn snapshot<'r>(
    reader: &Reader<'r>,
    cursor: Option<&str>,
    query: [u8; 16],
    now: Timestamp,
) -> Result<(Paging<'r>, Arc<dyn Relations>), EvalError> {
    let (revision, now, after, data) = match cursor {
        None => {
            let (rev, data) = reader.history.head();
            (rev, now, String::new(), data)
        }
        Some(text) => {
            let c = reader.key.open(text, query, reader.tenant)?;
            let data = reader.history.at(c.revision)?;
            (c.revision, c.now, c.after, data)
        }
    };
    Ok((Paging { key: reader.key, tenant: reader.tenant, query, revision, now, after }, data))
}

/// Every resource of a type on which the subject has the permission (or conditionally has it).
pub fn lookup_resources(
    reader: &Reader<'_>,
    req: &LookupResourcesRequest,
    now: Timestamp,
) -> Result<Page<ResourceResult>, EvalError> {
    validate_resources(reader.schema, req)?;
    let query = resources_query(reader.schema, req);
    let (paging, data) = snapshot(reader, req.cursor.as_deref(), query, now)?;
    let ctx = Ctx { schema: reader.schema, data: &*data, conditions: reader.conditions, env: Env::new(paging.now) };
    let ids = reverse_reachable(reader.schema, &*data, &req.subject, &req.resource_type, &req.permission);
    let candidates = Candidates::from_sorted(ids.iter().map(|id| (id.as_str(), false)));
    let start = candidates.first_after(&paging.after);
    let items = decide_resources(&candidates, start, wanted(req.limit), ctx.env, |id| {
        let resource = ObjectRef::new(req.resource_type.clone(), id);
        Ok(check::solve(ctx, &resource, &req.permission, &req.subject, &req.context)?.1)
    })?;
    Ok(paging.finish(items, req.limit, |r| r.id.clone()))
}

/// Decides candidates from position `start` in order until `want` results are found: those
/// already known to hold at once, the others by `decide`. The whole page shares one deadline.
pub fn decide_resources(
    candidates: &Candidates,
    start: usize,
    want: usize,
    env: Env,
    mut decide: impl FnMut(&str) -> Result<Tri, EvalError>,
) -> Result<Vec<ResourceResult>, EvalError> {
    let started = std::time::Instant::now();
    let mut items = Vec::with_capacity(want.min(candidates.len().saturating_sub(start)));
    for (id, surely) in (start..candidates.len()).map_while(|i| candidates.get(i)) {
        if surely {
            items.push(ResourceResult { id: id.to_string(), decision: Decision::Has });
        } else {
            if started.elapsed() > env.limits.deadline {
                return Err(EvalError::Deadline(env.limits.deadline));
            }
            let v = decide(id)?;
            if v.is_false() {
                continue;
            }
            items.push(ResourceResult { id: id.to_string(), decision: Decision::from_tri(&v) });
        }
        if items.len() >= want {
            break;
        }
    }
    Ok(items)
}

/// One lookup's candidates: object ids sorted, each with `true` when the object surely holds
/// the permission (`false`: a Check decides). The ids live in one buffer, so a set of 100k
/// candidates is two allocations, not 100k.
#[derive(Debug, Default)]
pub struct Candidates {
    text: String,
    /// (start in `text`, length, surely).
    spans: Vec<(u32, u32, bool)>,
}

impl Candidates {
    /// From ids already in increasing order.
    pub fn from_sorted<'s>(ids: impl IntoIterator<Item = (&'s str, bool)>) -> Candidates {
        let mut c = Candidates::default();
        for (id, sure) in ids {
            c.spans.push((c.text.len() as u32, id.len() as u32, sure));
            c.text.push_str(id);
        }
        c
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The `i`th id and whether it surely holds.
    pub fn get(&self, i: usize) -> Option<(&str, bool)> {
        let &(start, len, sure) = self.spans.get(i)?;
        let id = self.text.get(start as usize..(start + len) as usize)?;
        Some((id, sure))
    }

    /// The position of the first id after `after`.
    pub fn first_after(&self, after: &str) -> usize {
        self.spans.partition_point(|&(start, len, _)| {
            self.text.get(start as usize..(start + len) as usize).is_some_and(|id| id <= after)
        })
    }

    /// Heap bytes held (for cache bounds).
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.spans.capacity() * std::mem::size_of::<(u32, u32, bool)>()
    }
}

/// The ids of every `resource_type` object whose `permission` node can be reached backwards from
/// the subject: through relationships naming it (or its type's wildcard), subject sets, the
/// permissions that use a member, and arrows. Only these can answer anything but "no": every
/// derivation of a yes ends at a relationship naming the subject (or at the subject set itself).
/// Caveats, expiration and exclusions are ignored here (a superset is safe; Check decides).
pub fn reverse_reachable(
    schema: &CompiledSchema,
    data: &dyn Relations,
    subject: &SubjectRef,
    resource_type: &str,
    permission: &str,
) -> BTreeSet<String> {
    let mut seen: HashSet<(ObjectRef, String)> = HashSet::new();
    let mut stack: Vec<(ObjectRef, String)> = Vec::new();
    match &subject.relation {
        Some(r) => stack.push((subject.object.clone(), r.clone())),
        None => {
            let wildcard = ObjectRef::new(subject.object.ty.clone(), "*");
            for o in [&subject.object, &wildcard] {
                for (res, rel) in naming(data, o) {
                    // Only relationships naming the terminal subject (or the wildcard) start a path.
                    if data.edges(&res, &rel).iter().any(|e| &e.subject.object == o && e.subject.relation.is_none()) {
                        stack.push((res, rel));
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    while let Some(node) = stack.pop() {
        if !seen.insert(node.clone()) {
            continue;
        }
        let (o, m) = node;
        if o.ty == resource_type && m == permission {
            out.insert(o.id.clone());
        }
        // Subject sets `o#m` named by relationships.
        let named = naming(data, &o);
        for (res, rel) in &named {
            if data
                .edges(res, rel)
                .iter()
                .any(|e| e.subject.object == o && e.subject.relation.as_deref() == Some(m.as_str()))
            {
                stack.push((res.clone(), rel.clone()));
            }
        }
        for p in schema.permissions() {
            let Some(def) = schema.definition_by_id(p.definition) else { continue };
            for rw in p.rewrite.nodes() {
                match rw {
                    // A permission of the same object that uses `m`.
                    Rewrite::Computed { name, .. } => {
                        if def.name == o.ty && name == &m {
                            stack.push((o.clone(), p.name.clone()));
                        }
                    }
                    Rewrite::Arrow { tupleset, computed, .. } => {
                        // `tupleset` itself is a member of the same object…
                        if def.name == o.ty && tupleset == &m {
                            stack.push((o.clone(), p.name.clone()));
                        }
                        // …and `computed` on `o` reaches every object whose `tupleset` names `o`.
                        if computed == &m {
                            for (res, rel) in &named {
                                if res.ty == def.name && rel == tupleset {
                                    stack.push((res.clone(), p.name.clone()));
                                }
                            }
                        }
                    }
                    Rewrite::Nil | Rewrite::Union(..) | Rewrite::Intersection(..) | Rewrite::Exclusion(..) => {}
                }
            }
        }
    }
    out
}

/// `(resource, relation)` of every relationship naming `object`.
fn naming(data: &dyn Relations, object: &ObjectRef) -> Vec<(ObjectRef, String)> {
    let mut out = Vec::new();
    data.each_naming(object, &mut |res, rel| out.push((res.clone(), rel.to_string())));
    out
}

/// Every subject of a type (or subject set of a type and relation) that has the permission on
/// the resource, with a wildcard result listing the subjects it excludes.
pub fn lookup_subjects(
    reader: &Reader<'_>,
    req: &LookupSubjectsRequest,
    now: Timestamp,
) -> Result<Page<SubjectResult>, EvalError> {
    validate_subjects(reader.schema, req)?;
    let query = subjects_query(reader.schema, req);
    let (paging, data) = snapshot(reader, req.cursor.as_deref(), query, now)?;
    let ctx = Ctx { schema: reader.schema, data: &*data, conditions: reader.conditions, env: Env::new(paging.now) };
    let candidates = subject_candidates(&ctx, req, &paging.after)?;
    let items = decide_subjects(&ctx, req, &candidates, wanted(req.limit), |subject| {
        Ok(check::solve(ctx, &req.resource, &req.permission, subject, &req.context)?.1)
    })?;
    Ok(paging.finish(items, req.limit, |r| r.subject.object.id.clone()))
}

/// LookupSubjects' candidates after `after`, in id order: the subjects of the requested shape
/// found below the resource, and (for subject sets) the nodes of that shape evaluation visits.
pub fn subject_candidates(
    ctx: &Ctx<'_>,
    req: &LookupSubjectsRequest,
    after: &str,
) -> Result<Vec<SubjectRef>, EvalError> {
    let reachable = reachable_subjects(ctx, &req.resource, &req.permission)?;
    let mut candidates: BTreeSet<SubjectRef> = reachable
        .found
        .into_keys()
        .filter(|s| s.object.ty == req.subject_type && s.relation == req.subject_relation)
        .collect();
    if let Some(rel) = &req.subject_relation {
        // A subject set is reached when evaluation visits its node, even with no relationship
        // naming it (`doc:1#view` has `view` on `doc:1`).
        candidates.extend(
            reachable
                .visited
                .iter()
                .filter(|(o, m)| o.ty == req.subject_type && m == rel)
                .map(|(o, m)| SubjectRef::new(o.clone(), Some(m.clone()))),
        );
    }
    Ok(candidates.into_iter().filter(|s| s.object.id.as_str() > after).collect())
}

/// Decides LookupSubjects' candidates in order by `decide` until `want` results are found; a
/// wildcard result lists the subjects it excludes (decided by the reference evaluator).
pub fn decide_subjects<'c>(
    ctx: &Ctx<'_>,
    req: &LookupSubjectsRequest,
    candidates: &'c [SubjectRef],
    want: usize,
    mut decide: impl FnMut(&'c SubjectRef) -> Result<Tri, EvalError>,
) -> Result<Vec<SubjectResult>, EvalError> {
    let started = std::time::Instant::now();
    let mut items = Vec::new();
    for subject in candidates {
        if started.elapsed() > ctx.env.limits.deadline {
            return Err(EvalError::Deadline(ctx.env.limits.deadline));
        }
        let v = decide(subject)?;
        if v.is_false() {
            continue;
        }
        let excluded = if subject.is_wildcard() {
            wildcard_exclusions(ctx, &req.resource, &req.permission, subject, &v, &req.context)?
                .into_iter()
                .map(|(s, conditional)| {
                    let d = if conditional { conditional_decision(ctx, req, &s) } else { Decision::No };
                    (s, d)
                })
                .collect()
        } else {
            Vec::new()
        };
        items.push(SubjectResult { subject: subject.clone(), decision: Decision::from_tri(&v), excluded });
        if items.len() >= want {
            break;
        }
    }
    Ok(items)
}

/// The conditional answer for one excluded subject (which names its missing context).
fn conditional_decision(ctx: &Ctx<'_>, req: &LookupSubjectsRequest, s: &SubjectRef) -> Decision {
    match check::solve(*ctx, &req.resource, &req.permission, s, &req.context) {
        Ok((_, Tri::Unknown(m))) => Decision::Conditional((*m).into_iter().collect()),
        _ => Decision::Conditional(Vec::new()),
    }
}

impl From<CursorError> for EvalError {
    fn from(e: CursorError) -> Self {
        EvalError::Cursor(e)
    }
}

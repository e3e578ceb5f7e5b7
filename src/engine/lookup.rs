//! LookupResources and LookupSubjects for the reference evaluator: candidates from the data,
//! each decided by Check, in id order, paged by a limit and a signed cursor. A cursor pins the
//! revision and `now` of the first page, so resuming reads the same snapshot whatever was
//! written in between, and returns exactly the rest.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::check::{self, validate_request};
use super::cursor::{Cursor, CursorError, CursorKey, query_digest};
use super::data::History;
use super::expand::{reachable_subjects, wildcard_exclusions};
use super::{Decision, Env, EvalError, Relations, Tri};
use crate::conditions::Conditions;
use crate::index::IndexGraph;
use crate::index::eval::{self, Point};
use crate::model::{ObjectRef, SubjectRef, Timestamp};
use crate::schema::{CompiledSchema, Rewrite};

/// Largest page a lookup may ask for.
pub const MAX_PAGE_SIZE: usize = 10_000;

/// Where a lookup finds the data at a revision: the head for a first page, the cursor's revision
/// for the next ones.
pub trait Snapshots {
    fn head(&self) -> (u64, Arc<dyn Relations>);
    fn at(&self, revision: u64) -> Result<Arc<dyn Relations>, EvalError>;
}

impl Snapshots for History {
    fn head(&self) -> (u64, Arc<dyn Relations>) {
        let (rev, data) = History::head(self);
        (rev, data)
    }

    fn at(&self, revision: u64) -> Result<Arc<dyn Relations>, EvalError> {
        match History::at(self, revision) {
            Some(data) => Ok(data),
            None => Err(EvalError::RevisionGone(revision)),
        }
    }
}

/// One revision only (a lookup whose cursor names another gets `RevisionGone`): how tests and
/// validation files serve the index as the data.
pub struct OneRevision(pub u64, pub Arc<dyn Relations>);

impl Snapshots for OneRevision {
    fn head(&self) -> (u64, Arc<dyn Relations>) {
        (self.0, self.1.clone())
    }

    fn at(&self, revision: u64) -> Result<Arc<dyn Relations>, EvalError> {
        if revision == self.0 { Ok(self.1.clone()) } else { Err(EvalError::RevisionGone(revision)) }
    }
}

/// What a lookup reads: the schema, the revisions of the data, the cursor key and the tenant.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    pub schema: &'a CompiledSchema,
    pub conditions: &'a Conditions,
    pub history: &'a dyn Snapshots,
    pub key: &'a CursorKey,
    pub tenant: &'a str,
    /// Where LookupResources keeps result sets between pages; `None` decides per page.
    pub cache: Option<&'a ResultCache>,
    /// The index and the revision it holds: lookups at that revision use the fast evaluator.
    pub index: Option<(u64, &'a IndexGraph)>,
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
    pub revision: u64,
}

/// Resolves the snapshot a lookup reads: the cursor's, or the head with a fresh `now`.
fn snapshot(
    reader: &Reader<'_>,
    cursor: Option<&str>,
    query: [u8; 16],
    now: Timestamp,
) -> Result<(u64, Timestamp, String, Arc<dyn Relations>), EvalError> {
    match cursor {
        None => {
            let (rev, data) = reader.history.head();
            Ok((rev, now, String::new(), data))
        }
        Some(text) => {
            let c = reader.key.open(text, query, reader.tenant)?;
            let data = reader.history.at(c.revision)?;
            Ok((c.revision, c.now, c.after, data))
        }
    }
}

fn check_limit(limit: Option<usize>) -> Result<(), EvalError> {
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

/// Every resource of a type on which the subject has the permission (or conditionally has it).
pub fn lookup_resources(
    reader: &Reader<'_>,
    req: &LookupResourcesRequest,
    now: Timestamp,
) -> Result<Page<ResourceResult>, EvalError> {
    check_limit(req.limit)?;
    let probe = ObjectRef::new(req.resource_type.clone(), "probe");
    validate_request(reader.schema, &probe, &req.permission, &req.subject)?;
    let query = query_digest(&[
        "lookup_resources",
        &reader.schema.fingerprint().to_string(),
        &req.resource_type,
        &req.permission,
        &req.subject.to_string(),
        &context_key(&req.context),
    ]);
    let (revision, now, after, data) = snapshot(reader, req.cursor.as_deref(), query, now)?;
    let env = Env::new(now);
    let index = reader.index.filter(|(r, _)| *r == revision).map(|(_, ix)| ix);
    // Every page of one lookup reads one computed candidate set: the first page computes it
    // (and caches it when the reader has a cache); later pages, which carry the same revision and
    // `now`, reuse it. Each page decides candidates only as far as it needs, so every page stays
    // within one evaluation's deadline however large the whole answer is. With the index, the
    // set comes from set algebra and most candidates are already decided.
    // Whether the index computes the set is part of the key: a reference lookup never reuses
    // candidates the fast path decided.
    let key = (reader.tenant.to_string(), query, revision, now, index.is_some());
    let candidates = match reader.cache.and_then(|c| c.get(&key)) {
        Some(c) => c,
        None => {
            let fast = match index {
                Some(ix) => {
                    eval::resource_sets(reader.schema, ix, &req.resource_type, &req.permission, &req.subject, env)?
                }
                None => None,
            };
            let c = match fast {
                Some(c) => c,
                None => {
                    let ids =
                        reverse_reachable(reader.schema, &*data, &req.subject, &req.resource_type, &req.permission);
                    eval::Candidates::from_sorted(ids.iter().map(|id| (id.as_str(), false)))
                }
            };
            let c = Arc::new(c);
            if let Some(cache) = reader.cache {
                cache.put(key, c.clone());
            }
            c
        }
    };
    let want = req.limit.map_or(usize::MAX, |l| l + 1);
    let start = candidates.first_after(&after);
    let items = decide_resources(reader, req, &*data, index, env, &candidates, start, want)?;
    Ok(finish(reader, items, req.limit, revision, now, query, |r| r.id.clone()))
}

/// Decides candidates from position `start` in order until `want` results are found: those the
/// index already decided at once, the others by a point Check (fast when the index holds this
/// revision).
#[allow(clippy::too_many_arguments)]
fn decide_resources(
    reader: &Reader<'_>,
    req: &LookupResourcesRequest,
    data: &dyn Relations,
    index: Option<&IndexGraph>,
    env: Env,
    candidates: &eval::Candidates,
    start: usize,
    want: usize,
) -> Result<Vec<ResourceResult>, EvalError> {
    let started = std::time::Instant::now();
    let mut items = Vec::with_capacity(want.min(candidates.len().saturating_sub(start)));
    let mut point =
        index.map(|ix| Point::new(reader.schema, ix, data, reader.conditions, &req.subject, &req.context, env));
    for (id, surely) in (start..candidates.len()).map_while(|i| candidates.get(i)) {
        if surely {
            items.push(ResourceResult { id: id.to_string(), decision: Decision::Has });
        } else {
            if started.elapsed() > env.limits.deadline {
                return Err(EvalError::Deadline(env.limits.deadline));
            }
            let resource = ObjectRef::new(req.resource_type.clone(), id);
            let fast = match point.as_mut() {
                Some(p) => p.check(&resource, &req.permission)?,
                None => None,
            };
            let v = match fast {
                Some(v) => v,
                None => {
                    check::solve(
                        reader.schema,
                        data,
                        reader.conditions,
                        &resource,
                        &req.permission,
                        &req.subject,
                        &req.context,
                        env,
                    )?
                    .1
                }
            };
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

/// Candidate sets of recent lookups, so that later pages reuse what the first page computed.
/// Keyed by tenant, query digest, revision, `now` (what a cursor pins) and whether the index
/// computed the set, holding at most [`ResultCache::ENTRIES`] sets.
#[derive(Debug, Default)]
pub struct ResultCache {
    entries: std::sync::Mutex<std::collections::VecDeque<(CacheKey, Arc<eval::Candidates>)>>,
}

type CacheKey = (String, [u8; 16], u64, Timestamp, bool);

impl ResultCache {
    pub const ENTRIES: usize = 16;

    fn get(&self, key: &CacheKey) -> Option<Arc<eval::Candidates>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    fn put(&self, key: CacheKey, value: Arc<eval::Candidates>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|(k, _)| k != &key);
        entries.push_back((key, value));
        while entries.len() > Self::ENTRIES {
            entries.pop_front();
        }
    }
}

/// The ids of every `resource_type` object whose `permission` node can be reached backwards from
/// the subject: through relationships naming it (or its type's wildcard), subject sets, the
/// permissions that use a member, and arrows. Only these can answer anything but "no": every
/// derivation of a yes ends at a relationship naming the subject (or at the subject set itself).
/// Caveats, expiration and exclusions are ignored here (a superset is safe; Check decides).
pub(crate) fn reverse_reachable(
    schema: &CompiledSchema,
    data: &dyn Relations,
    subject: &SubjectRef,
    resource_type: &str,
    permission: &str,
) -> BTreeSet<String> {
    use std::collections::HashSet;
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
        for def in schema.definitions() {
            for p in def.permissions.values() {
                let mut rewrites = vec![&p.rewrite];
                while let Some(rw) = rewrites.pop() {
                    match rw {
                        Rewrite::Nil => {}
                        // A permission of the same object that uses `m`.
                        Rewrite::Computed(x) => {
                            if def.name == o.ty && x == &m {
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
                        Rewrite::Union(a, b) | Rewrite::Intersection(a, b) | Rewrite::Exclusion(a, b) => {
                            rewrites.push(a);
                            rewrites.push(b);
                        }
                    }
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

fn finish<T>(
    reader: &Reader<'_>,
    mut items: Vec<T>,
    limit: Option<usize>,
    revision: u64,
    now: Timestamp,
    query: [u8; 16],
    id: impl Fn(&T) -> String,
) -> Page<T> {
    let cursor = match limit {
        Some(l) if items.len() > l => {
            items.truncate(l);
            items.last().map(|last| {
                reader.key.seal(&Cursor { revision, now, tenant: reader.tenant.to_string(), query, after: id(last) })
            })
        }
        _ => None,
    };
    Page { items, cursor, revision }
}

/// Every subject of a type (or subject set of a type and relation) that has the permission on
/// the resource, with a wildcard result listing the subjects it excludes.
pub fn lookup_subjects(
    reader: &Reader<'_>,
    req: &LookupSubjectsRequest,
    now: Timestamp,
) -> Result<Page<SubjectResult>, EvalError> {
    check_limit(req.limit)?;
    let probe = SubjectRef::new(ObjectRef::new(req.subject_type.clone(), "probe"), req.subject_relation.clone());
    validate_request(reader.schema, &req.resource, &req.permission, &probe)?;
    let query = query_digest(&[
        "lookup_subjects",
        &reader.schema.fingerprint().to_string(),
        &req.resource.to_string(),
        &req.permission,
        &req.subject_type,
        req.subject_relation.as_deref().unwrap_or("..."),
        &context_key(&req.context),
    ]);
    let (revision, now, after, data) = snapshot(reader, req.cursor.as_deref(), query, now)?;
    let env = Env::new(now);
    let reachable = reachable_subjects(reader.schema, &*data, &req.resource, &req.permission, env)?;
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
    let want = req.limit.map_or(usize::MAX, |l| l + 1);
    let started = std::time::Instant::now();
    let mut items = Vec::new();
    let candidates: Vec<SubjectRef> =
        candidates.into_iter().filter(|s| s.object.id.as_str() > after.as_str()).collect();
    // Each candidate is decided by a point Check: on the fast path when the index holds this
    // revision (one evaluator, retargeted per subject), else by the reference.
    let index = reader.index.filter(|(r, _)| *r == revision).map(|(_, ix)| ix);
    let mut point: Option<Point<'_>> = None;
    for subject in &candidates {
        if started.elapsed() > env.limits.deadline {
            return Err(EvalError::Deadline(env.limits.deadline));
        }
        let fast = match index {
            Some(ix) => {
                let p = match &mut point {
                    Some(p) => {
                        p.retarget(subject, &req.context);
                        p
                    }
                    None => point.insert(Point::new(
                        reader.schema,
                        ix,
                        &*data,
                        reader.conditions,
                        subject,
                        &req.context,
                        env,
                    )),
                };
                p.check(&req.resource, &req.permission)?
            }
            None => None,
        };
        let v = match fast {
            Some(v) => v,
            None => {
                check::solve(
                    reader.schema,
                    &*data,
                    reader.conditions,
                    &req.resource,
                    &req.permission,
                    subject,
                    &req.context,
                    env,
                )?
                .1
            }
        };
        if v.is_false() {
            continue;
        }
        let excluded = if subject.is_wildcard() {
            wildcard_exclusions(
                reader.schema,
                &*data,
                reader.conditions,
                &req.resource,
                &req.permission,
                subject,
                &v,
                &req.context,
                env,
            )?
            .into_iter()
            .map(|(s, conditional)| {
                let d = if conditional { conditional_decision(reader, &*data, req, &s, env) } else { Decision::No };
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
    Ok(finish(reader, items, req.limit, revision, now, query, |r| r.subject.object.id.clone()))
}

/// The conditional answer for one excluded subject (which names its missing context).
fn conditional_decision(
    reader: &Reader<'_>,
    data: &dyn Relations,
    req: &LookupSubjectsRequest,
    s: &SubjectRef,
    env: Env,
) -> Decision {
    match check::solve(reader.schema, data, reader.conditions, &req.resource, &req.permission, s, &req.context, env) {
        Ok((_, Tri::Unknown(m))) => Decision::Conditional((*m).into_iter().collect()),
        _ => Decision::Conditional(Vec::new()),
    }
}

impl From<CursorError> for EvalError {
    fn from(e: CursorError) -> Self {
        EvalError::Cursor(e)
    }
}

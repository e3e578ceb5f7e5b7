//! Queries on a named snapshot: Check, CheckBulk, LookupResources, LookupSubjects and Expand,
//! each answered by the fast evaluator over the index where it has a path and by the reference
//! evaluator (reading the same index through `engine::Relations`) where it does not.
//!
//! A [`View`] is one tenant's state at one revision: the schema, the index and the fast
//! evaluator's plan for that pair, built on first use and kept beside them. A [`Snapshot`] is
//! what a reader holds: a view, the tenant's [`Scope`] (its name, the rhai engine, the cursor
//! key and the lookup cache) and the `now` the request pinned. Every query takes a snapshot.
//!
//! Architecture invariant: this is the only layer that chooses between the evaluators; `engine`
//! knows nothing of the index and `index` never calls the reference. Nothing here knows the
//! store: whoever makes a snapshot (`db`) finds or builds the view it needs.

mod cache;
mod check;
mod expand;
mod lookup_resources;
mod lookup_subjects;

use std::sync::{Arc, OnceLock};

pub use cache::{CacheStats, LookupCache};

use crate::conditions::Conditions;
use crate::engine::cursor::CursorKey;
use crate::engine::{self, Env, EvalError, Limits};
use crate::index::IndexGraph;
use crate::index::eval::{self as fast, Plan};
use crate::model::{Revision, Timestamp};
use crate::schema::CompiledSchema;

/// One tenant's state at one revision. Immutable once made: a write makes the next view (its
/// index built from this one's by structural sharing), so a reader holding a view never sees
/// it change.
pub struct View {
    revision: Revision,
    schema: Option<CompiledSchema>,
    /// The schema text as written (what ReadSchema returns).
    schema_text: Option<Arc<str>>,
    /// Every relationship and attribute at `revision`.
    index: Arc<IndexGraph>,
    /// What the fast evaluator resolves about `schema` on `index`, built on the first query.
    plan: OnceLock<Plan>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").field("revision", &self.revision).finish_non_exhaustive()
    }
}

impl View {
    pub fn new(
        revision: Revision,
        schema: Option<CompiledSchema>,
        schema_text: Option<Arc<str>>,
        index: Arc<IndexGraph>,
    ) -> View {
        View { revision, schema, schema_text, index, plan: OnceLock::new() }
    }

    pub fn revision(&self) -> Revision {
        self.revision
    }

    pub fn schema(&self) -> Option<&CompiledSchema> {
        self.schema.as_ref()
    }

    pub fn schema_text(&self) -> Option<&Arc<str>> {
        self.schema_text.as_ref()
    }

    pub fn index(&self) -> &Arc<IndexGraph> {
        &self.index
    }

    /// The plan of `schema` (this view's) on this view's index, built once.
    fn plan(&self, schema: &CompiledSchema) -> &Plan {
        self.plan.get_or_init(|| Plan::build(schema, &self.index))
    }
}

/// What every snapshot of one tenant shares.
pub struct Scope {
    tenant: String,
    conditions: Conditions,
    key: CursorKey,
    cache: LookupCache,
}

impl Scope {
    pub fn new(tenant: impl Into<String>, conditions: Conditions, key: CursorKey, cache: LookupCache) -> Scope {
        Scope { tenant: tenant.into(), conditions, key, cache }
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn cursor_key(&self) -> &CursorKey {
        &self.key
    }

    pub fn cache(&self) -> &LookupCache {
        &self.cache
    }
}

/// A reader's handle on one tenant at one revision and one instant: every query on it answers
/// from the same data at the same `now`. Cheap to make and to clone.
#[derive(Clone)]
pub struct Snapshot {
    scope: Arc<Scope>,
    view: Arc<View>,
    // INVARIANT: the view's schema (a snapshot is only made of a view that has one).
    schema: CompiledSchema,
    now: Timestamp,
    limits: Limits,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("tenant", &self.scope.tenant)
            .field("revision", &self.view.revision)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// A snapshot of `view` at `now`; `None` when the view has no schema yet (nothing can be
    /// asked of it).
    pub fn new(scope: Arc<Scope>, view: Arc<View>, now: Timestamp, limits: Limits) -> Option<Snapshot> {
        let schema = view.schema.clone()?;
        Some(Snapshot { scope, view, schema, now, limits })
    }

    /// A snapshot of data no database holds (validation files, tests, benchmarks): revision 1,
    /// with a scope of its own (a random cursor key, an empty lookup cache) and default limits.
    pub fn detached(
        schema: CompiledSchema,
        index: Arc<IndexGraph>,
        conditions: &Conditions,
        now: Timestamp,
    ) -> Snapshot {
        let view = Arc::new(View::new(Revision(1), Some(schema.clone()), None, index));
        let scope = Arc::new(Scope::new("", conditions.clone(), CursorKey::random(), LookupCache::default()));
        Snapshot { scope, view, schema, now, limits: Limits::default() }
    }

    /// The same snapshot with other evaluation limits.
    pub fn with_limits(mut self, limits: Limits) -> Snapshot {
        self.limits = limits;
        self
    }

    pub fn revision(&self) -> Revision {
        self.view.revision
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }

    pub fn tenant(&self) -> &str {
        &self.scope.tenant
    }

    pub fn schema(&self) -> &CompiledSchema {
        &self.schema
    }

    pub fn view(&self) -> &Arc<View> {
        &self.view
    }

    pub fn index(&self) -> &IndexGraph {
        &self.view.index
    }

    fn env(&self) -> Env {
        Env { now: self.now, limits: self.limits }
    }

    /// The fast evaluator's context.
    fn fast(&self) -> fast::Ctx<'_> {
        fast::Ctx {
            schema: &self.schema,
            ix: &self.view.index,
            plan: self.view.plan(&self.schema),
            conditions: &self.scope.conditions,
            env: self.env(),
        }
    }

    /// The reference evaluator's context, reading the same index.
    fn reference(&self) -> engine::Ctx<'_> {
        engine::Ctx {
            schema: &self.schema,
            data: &*self.view.index,
            conditions: &self.scope.conditions,
            env: self.env(),
        }
    }

    /// Opens a lookup's cursor: the id the page continues after (empty on a first page). The
    /// cursor must pin this snapshot's revision and `now` (`Database` makes the snapshot a
    /// cursor names).
    fn resume(&self, cursor: Option<&str>, query: [u8; 16]) -> Result<String, EvalError> {
        let Some(text) = cursor else { return Ok(String::new()) };
        let c = self.scope.key.open(text, query, &self.scope.tenant)?;
        if c.revision != self.view.revision || c.now != self.now {
            return Err(EvalError::CursorSnapshot { cursor: c.revision, snapshot: self.view.revision });
        }
        Ok(c.after)
    }

    /// What every cursor of a lookup at this snapshot begins with: append a result's id for the
    /// cursor after it (one tag per stream, not one per result).
    pub fn cursor_prefix(&self, query: [u8; 16]) -> String {
        self.paging(query, String::new()).cursor_prefix()
    }

    fn paging(&self, query: [u8; 16], after: String) -> engine::lookup::Paging<'_> {
        engine::lookup::Paging {
            key: &self.scope.key,
            tenant: &self.scope.tenant,
            query,
            revision: self.view.revision,
            now: self.now,
            after,
        }
    }
}

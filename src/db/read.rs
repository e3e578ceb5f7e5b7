//! Reads: a consistency level to a view, views built from the store, snapshots and the queries
//! on them, relationships read back from the store, and the changelog.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::error::DbError;
use super::tenant::Tenant;
use super::{Consistency, Database};
use crate::engine::expand::ExpandTree;
use crate::engine::lookup::{LookupResourcesRequest, LookupSubjectsRequest, Page, ResourceResult, SubjectResult};
use crate::engine::{CheckRequest, Decision, EvalError};
use crate::index::IndexGraph;
use crate::model::{ObjectRef, Relationship, Revision, Timestamp};
use crate::query::{Snapshot, View};
use crate::store::{self, Commit, RelationshipFilter, StoreError};

/// CheckBulk's answers, one per item, in order.
pub type BulkAnswers = Vec<Result<Decision, EvalError>>;

impl Database {
    /// A view with no data and no schema (a new tenant).
    pub(super) fn empty_view(&self) -> View {
        View::new(Revision::ZERO, None, None, Arc::new(IndexGraph::new()))
    }

    /// A tenant's state at a revision, from the store. The store reads and decodes rows on this
    /// thread while a second one builds the index from them, batch by batch; the batches come
    /// back to be freed by the thread that allocated them (freeing across threads makes the
    /// allocator the bottleneck: the build took about 1.6x as long).
    pub(super) fn build_view(&self, tenant: &str, revision: Revision) -> Result<View, DbError> {
        let (snap, index) = std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Relationship>>(16);
            let (done_tx, done_rx) = std::sync::mpsc::channel::<Vec<Relationship>>();
            let builder = scope.spawn(move || {
                let mut index = IndexGraph::new();
                for batch in rx {
                    for r in &batch {
                        index.insert(r);
                    }
                    // The reader may be gone (it only stops early on an error): then drop here.
                    let _ = done_tx.send(batch);
                }
                index
            });
            let snap = self.store.snapshot_streamed(tenant, revision, &mut |batch| {
                done_rx.try_iter().for_each(drop);
                // The builder only stops early by panicking; join reports that below.
                let _ = tx.send(batch);
            });
            drop(tx);
            let index = builder.join().map_err(|_| DbError::Internal("building the index panicked".into()));
            done_rx.try_iter().for_each(drop);
            (snap, index)
        });
        let snap = snap.map_err(|e| self.window_error(e))?;
        let mut index = index?;
        let schema = match &snap.schema {
            Some(text) => Some(self.compile(text)?),
            None => None,
        };
        for (o, a) in snap.attributes {
            index.set_attributes(o, a);
        }
        Ok(View::new(snap.revision, schema, snap.schema.map(Arc::from), Arc::new(index)))
    }

    /// The store's "outside the window" named with this database's window.
    fn window_error(&self, e: StoreError) -> DbError {
        match e {
            StoreError::OutsideWindow { revision, oldest } => {
                DbError::OutsideWindow { revision, oldest, window: self.limits.window }
            }
            e => DbError::Store(e),
        }
    }

    /// The view a read at `consistency` sees.
    fn view(&self, t: &Tenant, tenant: &str, consistency: Consistency) -> Result<Arc<View>, DbError> {
        let head = t.head()?;
        match consistency {
            Consistency::MinimizeLatency | Consistency::FullyConsistent => Ok(head),
            Consistency::AtLeastAsFresh(r) if r > head.revision() => {
                Err(DbError::FutureRevision { requested: r, head: head.revision() })
            }
            Consistency::AtLeastAsFresh(_) => Ok(head),
            Consistency::AtExactSnapshot(r) => self.view_at(t, tenant, head, r),
        }
    }

    /// The view of exactly `revision`: the head, one the tenant keeps, or one built from the
    /// store (at most once: concurrent readers of the same revision wait for the first).
    fn view_at(&self, t: &Tenant, tenant: &str, head: Arc<View>, revision: Revision) -> Result<Arc<View>, DbError> {
        if revision == head.revision() {
            return Ok(head);
        }
        if revision > head.revision() {
            return Err(DbError::FutureRevision { requested: revision, head: head.revision() });
        }
        if revision < t.oldest() {
            return Err(DbError::OutsideWindow { revision, oldest: t.oldest(), window: self.limits.window });
        }
        if let Some(v) = t.kept_view(revision)? {
            return Ok(v);
        }
        let _building = t.building.lock().map_err(super::error::poisoned)?;
        if let Some(v) = t.kept_view(revision)? {
            return Ok(v);
        }
        let view = Arc::new(self.build_view(tenant, revision)?);
        t.keep_older(view.clone(), &self.limits)?;
        Ok(view)
    }

    /// A snapshot of a tenant at `consistency`, with `now` taken now: every query on it reads
    /// one revision at one instant.
    pub fn snapshot(&self, tenant: &str, consistency: Consistency) -> Result<Snapshot, DbError> {
        let t = self.tenant(tenant)?;
        let view = self.view(&t, tenant, consistency)?;
        self.snapshot_of(&t, tenant, view, Timestamp::now())
    }

    fn snapshot_of(&self, t: &Tenant, tenant: &str, view: Arc<View>, now: Timestamp) -> Result<Snapshot, DbError> {
        Snapshot::new(t.scope.clone(), view, now, self.limits.evaluation)
            .ok_or_else(|| DbError::NoSchema(tenant.to_string()))
    }

    /// The snapshot a lookup page reads: the one its cursor pins (revision and `now`), or a new
    /// one at `consistency` for a first page.
    fn lookup_snapshot(
        &self,
        tenant: &str,
        consistency: Consistency,
        cursor: Option<&str>,
    ) -> Result<Snapshot, DbError> {
        let t = self.tenant(tenant)?;
        let Some(text) = cursor else { return self.snapshot(tenant, consistency) };
        let c = t.scope.cursor_key().open_any(text, tenant).map_err(EvalError::from)?;
        let head = t.head()?;
        let view = self.view_at(&t, tenant, head, c.revision)?;
        self.snapshot_of(&t, tenant, view, c.now)
    }

    fn check_context(&self, context: &Map<String, Value>) -> Result<(), DbError> {
        if context.is_empty() {
            return Ok(());
        }
        let bytes = Value::Object(context.clone()).to_string().len();
        if bytes > self.limits.max_context_bytes {
            return Err(DbError::ContextTooLarge { bytes, limit: self.limits.max_context_bytes });
        }
        Ok(())
    }

    fn page_size(&self, limit: Option<usize>) -> Result<(), DbError> {
        match limit {
            Some(n) if n == 0 || n > self.limits.max_page_size => {
                Err(DbError::InvalidPageSize { size: n, limit: self.limits.max_page_size })
            }
            _ => Ok(()),
        }
    }

    pub fn check(
        &self,
        tenant: &str,
        consistency: Consistency,
        req: &CheckRequest,
    ) -> Result<(Decision, Revision), DbError> {
        self.check_until(tenant, consistency, req).map(|(d, _, rev)| (d, rev))
    }

    /// [`Database::check`], with the time until which the answer holds absent writes (the
    /// earliest expiration among the expiring relationships it read; `None`: none).
    pub fn check_until(
        &self,
        tenant: &str,
        consistency: Consistency,
        req: &CheckRequest,
    ) -> Result<(Decision, Option<Timestamp>, Revision), DbError> {
        self.check_context(&req.context)?;
        let s = self.snapshot(tenant, consistency)?;
        let (d, until) = s.check_until(req)?;
        Ok((d, until, s.revision()))
    }

    /// Many Checks at one revision and one `now`; each item gets its own answer or error.
    pub fn check_bulk(
        &self,
        tenant: &str,
        consistency: Consistency,
        reqs: &[CheckRequest],
    ) -> Result<(BulkAnswers, Revision), DbError> {
        if reqs.len() > self.limits.max_bulk_checks {
            return Err(DbError::TooManyChecks { count: reqs.len(), limit: self.limits.max_bulk_checks });
        }
        for r in reqs {
            self.check_context(&r.context)?;
        }
        let s = self.snapshot(tenant, consistency)?;
        Ok((s.check_bulk(reqs), s.revision()))
    }

    /// A page of LookupResources; a cursor continues at the revision and `now` of the first page
    /// (`consistency` applies to a first page only).
    pub fn lookup_resources(
        &self,
        tenant: &str,
        consistency: Consistency,
        req: &LookupResourcesRequest,
    ) -> Result<Page<ResourceResult>, DbError> {
        self.page_size(req.limit)?;
        self.check_context(&req.context)?;
        let s = self.lookup_snapshot(tenant, consistency, req.cursor.as_deref())?;
        Ok(s.lookup_resources(req)?)
    }

    /// A page of LookupSubjects (cursors as for [`Database::lookup_resources`]).
    pub fn lookup_subjects(
        &self,
        tenant: &str,
        consistency: Consistency,
        req: &LookupSubjectsRequest,
    ) -> Result<Page<SubjectResult>, DbError> {
        self.page_size(req.limit)?;
        self.check_context(&req.context)?;
        let s = self.lookup_snapshot(tenant, consistency, req.cursor.as_deref())?;
        Ok(s.lookup_subjects(req)?)
    }

    /// LookupResources from the request's cursor to the end (or `max` results), a page at a
    /// time, each result handed to `emit` with a cursor that resumes after it and the revision
    /// the lookup reads (`emit` returning false stops). Returns that revision.
    pub fn lookup_resources_each(
        &self,
        tenant: &str,
        consistency: Consistency,
        req: &LookupResourcesRequest,
        max: Option<usize>,
        emit: &mut dyn FnMut(ResourceResult, String, Revision) -> bool,
    ) -> Result<Revision, DbError> {
        self.check_context(&req.context)?;
        let s = self.lookup_snapshot(tenant, consistency, req.cursor.as_deref())?;
        let query = crate::engine::lookup::resources_query(s.schema(), req);
        let first = req.cursor.clone();
        let mut req = req.clone();
        let page = |limit, cursor| {
            req.limit = Some(limit);
            req.cursor = cursor;
            s.lookup_resources(&req)
        };
        self.each(&s, query, first, max, page, |r: &ResourceResult| &r.id, emit)
    }

    /// LookupSubjects as [`Database::lookup_resources_each`] does LookupResources.
    pub fn lookup_subjects_each(
        &self,
        tenant: &str,
        consistency: Consistency,
        req: &LookupSubjectsRequest,
        max: Option<usize>,
        emit: &mut dyn FnMut(SubjectResult, String, Revision) -> bool,
    ) -> Result<Revision, DbError> {
        self.check_context(&req.context)?;
        let s = self.lookup_snapshot(tenant, consistency, req.cursor.as_deref())?;
        let query = crate::engine::lookup::subjects_query(s.schema(), req);
        let first = req.cursor.clone();
        let mut req = req.clone();
        let page = |limit, cursor| {
            req.limit = Some(limit);
            req.cursor = cursor;
            s.lookup_subjects(&req)
        };
        self.each(&s, query, first, max, page, |r: &SubjectResult| &r.subject.object.id, emit)
    }

    /// The paging loop of the `_each` lookups: pages of at most the page limit, from `cursor`
    /// (the request's own) until the end or `max` results.
    #[expect(clippy::too_many_arguments, reason = "one private loop shared by the two lookups")]
    fn each<T>(
        &self,
        s: &Snapshot,
        query: [u8; 16],
        mut cursor: Option<String>,
        max: Option<usize>,
        mut page: impl FnMut(usize, Option<String>) -> Result<Page<T>, EvalError>,
        id: impl Fn(&T) -> &str,
        emit: &mut dyn FnMut(T, String, Revision) -> bool,
    ) -> Result<Revision, DbError> {
        let mut left = max.unwrap_or(usize::MAX);
        let prefix = s.cursor_prefix(query);
        while left > 0 {
            let p = page(left.min(self.limits.max_page_size), cursor.take())?;
            for item in p.items {
                left -= 1;
                let id = id(&item);
                let mut after = String::with_capacity(prefix.len() + 2 * id.len());
                after.push_str(&prefix);
                crate::engine::cursor::push_hex(&mut after, id.as_bytes());
                if !emit(item, after, s.revision()) {
                    return Ok(s.revision());
                }
            }
            match p.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(s.revision())
    }

    pub fn expand(
        &self,
        tenant: &str,
        consistency: Consistency,
        object: &ObjectRef,
        permission: &str,
    ) -> Result<(ExpandTree, Revision), DbError> {
        let s = self.snapshot(tenant, consistency)?;
        Ok((s.expand(object, permission)?, s.revision()))
    }

    /// Relationships matching a filter, in key order, a page at a time: pass back the key of
    /// the last one returned (`store::relationship_key`) as `after`. Read from the store.
    pub fn read_relationships(
        &self,
        tenant: &str,
        consistency: Consistency,
        filter: &RelationshipFilter,
        limit: usize,
        after: Option<&str>,
    ) -> Result<(Vec<Relationship>, Revision), DbError> {
        self.page_size(Some(limit))?;
        let head = self.tenant(tenant)?.head()?.revision();
        let rev = match consistency {
            Consistency::AtExactSnapshot(r) | Consistency::AtLeastAsFresh(r) if r > head => {
                return Err(DbError::FutureRevision { requested: r, head });
            }
            Consistency::AtExactSnapshot(r) => r,
            _ => head,
        };
        // Expired relationships do not exist for readers, even before garbage collection removes
        // them: skip them and keep reading until the page is full or the data ends.
        let now = Timestamp::now();
        let mut out = Vec::new();
        let mut cursor = after.map(str::to_string);
        loop {
            let page = self
                .store
                .read_relationships(tenant, rev, filter, cursor.as_deref(), limit)
                .map_err(|e| self.window_error(e))?;
            let full = page.len() == limit;
            cursor = page.last().map(store::relationship_key);
            out.extend(page.into_iter().filter(|r| r.expiration.is_none_or(|e| e > now)));
            if out.len() >= limit || !full {
                out.truncate(limit);
                return Ok((out, rev));
            }
        }
    }

    /// Committed batches after `after`, oldest first, at most `limit` of them (for Watch and
    /// for following replicas). Only what is visible: a batch in the store whose write has not
    /// returned yet is not reported.
    pub fn changes_after(&self, tenant: &str, after: Revision, limit: usize) -> Result<Vec<Commit>, DbError> {
        let head = self.revision(tenant)?;
        if after > head {
            return Err(DbError::FutureRevision { requested: after, head });
        }
        let mut changes = self.store.changes_after(tenant, after, limit).map_err(|e| self.window_error(e))?;
        changes.retain(|c| c.revision <= head);
        Ok(changes)
    }
}

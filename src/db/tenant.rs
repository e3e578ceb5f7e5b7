//! One tenant's state: its head view, the views of recent revisions before it, views of older
//! revisions built from the store on demand, its writer lock and its query scope (with the
//! lookup cache). Nothing here is shared between tenants.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::Limits;
use super::error::{DbError, poisoned};
use crate::conditions::Conditions;
use crate::engine::cursor::CursorKey;
use crate::model::Revision;
use crate::query::{LookupCache, Scope, View};

pub(super) struct Tenant {
    /// Held for the whole of a write: one writer per tenant.
    pub(super) writer: Mutex<()>,
    /// The newest committed state, swapped (never changed) by each write.
    head: RwLock<Arc<View>>,
    pub(super) scope: Arc<Scope>,
    /// Views of the revisions just before the head, oldest first, each with the number of
    /// changes the write after it made. Structural sharing makes each cost only what the writes
    /// after it copied.
    recent: Mutex<VecDeque<(Arc<View>, usize)>>,
    /// Views of older revisions built from the store, least recently used first, with their
    /// heap bytes.
    older: Mutex<Older>,
    /// Held while an older view is built, so each is built at most once.
    pub(super) building: Mutex<()>,
    /// The oldest revision still readable (garbage collection moves it up): kept views older
    /// than it are not served, so every read outside the window fails alike.
    oldest: AtomicU64,
}

#[derive(Default)]
struct Older {
    views: VecDeque<(Arc<View>, usize)>,
    bytes: usize,
}

impl Tenant {
    pub(super) fn new(name: &str, head: View, oldest: Revision, conditions: &Conditions, key: &CursorKey) -> Tenant {
        Tenant {
            writer: Mutex::new(()),
            head: RwLock::new(Arc::new(head)),
            scope: Arc::new(Scope::new(name, conditions.clone(), key.clone(), LookupCache::default())),
            recent: Mutex::new(VecDeque::new()),
            older: Mutex::new(Older::default()),
            building: Mutex::new(()),
            oldest: AtomicU64::new(oldest.0),
        }
    }

    /// The oldest revision still readable.
    pub(super) fn oldest(&self) -> Revision {
        Revision(self.oldest.load(Ordering::Acquire))
    }

    pub(super) fn set_oldest(&self, oldest: Revision) {
        self.oldest.fetch_max(oldest.0, Ordering::AcqRel);
    }

    pub(super) fn head(&self) -> Result<Arc<View>, DbError> {
        Ok(self.head.read().map_err(poisoned)?.clone())
    }

    /// Makes `view` the head (a write of `changes` changes produced it from the current head,
    /// which joins the recent views).
    pub(super) fn publish(&self, view: Arc<View>, changes: usize, limits: &Limits) -> Result<(), DbError> {
        let old = std::mem::replace(&mut *self.head.write().map_err(poisoned)?, view);
        let mut evicted = Vec::new();
        {
            let mut recent = self.recent.lock().map_err(poisoned)?;
            recent.push_back((old, changes));
            let mut spanned: usize = recent.iter().map(|(_, c)| c).sum();
            while recent.len() > limits.recent_views || (spanned > limits.recent_view_changes && !recent.is_empty()) {
                let Some((v, c)) = recent.pop_front() else { break };
                spanned -= c;
                evicted.push(v);
            }
        }
        // Freed outside the lock: a view alone in holding much of an index frees it here.
        drop(evicted);
        Ok(())
    }

    /// Replaces the head with a view read back from the store (after a write whose outcome is
    /// unknown): the recent views stay valid, they are older revisions.
    pub(super) fn replace_head(&self, view: Arc<View>) -> Result<(), DbError> {
        *self.head.write().map_err(poisoned)? = view;
        Ok(())
    }

    /// A view of `revision` this tenant still holds: a recent one, one a lookup cache entry
    /// keeps, or an older one built before.
    pub(super) fn kept_view(&self, revision: Revision) -> Result<Option<Arc<View>>, DbError> {
        if let Some((v, _)) = self.recent.lock().map_err(poisoned)?.iter().find(|(v, _)| v.revision() == revision) {
            return Ok(Some(v.clone()));
        }
        if let Some(v) = self.scope.cache().view_at(revision) {
            return Ok(Some(v));
        }
        let mut older = self.older.lock().map_err(poisoned)?;
        let pos = older.views.iter().position(|(v, _)| v.revision() == revision);
        Ok(pos.and_then(|p| older.views.remove(p)).map(|entry| {
            let v = entry.0.clone();
            older.views.push_back(entry);
            v
        }))
    }

    /// Keeps a view built from the store, within the tenant's memory bound for them.
    pub(super) fn keep_older(&self, view: Arc<View>, limits: &Limits) -> Result<(), DbError> {
        let bytes = view.index().heap_bytes();
        if bytes > limits.older_view_bytes {
            return Ok(());
        }
        let mut evicted = Vec::new();
        {
            let mut older = self.older.lock().map_err(poisoned)?;
            older.bytes += bytes;
            older.views.push_back((view, bytes));
            while older.bytes > limits.older_view_bytes {
                let Some((v, b)) = older.views.pop_front() else { break };
                older.bytes -= b;
                evicted.push(v);
            }
        }
        drop(evicted);
        Ok(())
    }
}

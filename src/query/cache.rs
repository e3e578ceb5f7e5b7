//! One tenant's lookup cache: the candidate set a LookupResources' first page computed, kept
//! for its later pages (which carry the same revision and `now`), with the view it was computed
//! on, so a later page finds its revision's data even after writes moved the head on.
//!
//! Bounded twice: at most [`LookupCache::ENTRIES`] entries and [`LookupCache::BYTES`] bytes of
//! candidates; the oldest entry goes first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::View;
use crate::engine::lookup::Candidates;
use crate::model::{Revision, Timestamp};

/// A lookup's identity: its query digest, revision and `now` (what a cursor pins).
pub(crate) type Key = ([u8; 16], Revision, Timestamp);

/// What one entry keeps.
pub(crate) struct Entry {
    pub(crate) view: Arc<View>,
    pub(crate) candidates: Arc<Candidates>,
}

#[derive(Default)]
pub struct LookupCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: VecDeque<(Key, Arc<Entry>)>,
    bytes: usize,
    hits: u64,
    misses: u64,
}

/// Counters of one tenant's lookup cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: usize,
    pub hits: u64,
    pub misses: u64,
}

impl std::fmt::Debug for LookupCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LookupCache").field(&self.stats()).finish()
    }
}

impl LookupCache {
    /// Most entries kept.
    pub const ENTRIES: usize = 16;
    /// Most bytes of candidates kept (an entry larger than this is not kept at all).
    pub const BYTES: usize = 64 << 20;

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves only counters and a queue: still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        let mut inner = self.lock();
        let found = inner.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        match found {
            Some(_) => inner.hits += 1,
            None => inner.misses += 1,
        }
        found
    }

    pub(crate) fn put(&self, key: Key, entry: Arc<Entry>) {
        let size = entry.candidates.heap_bytes();
        if size > Self::BYTES {
            return;
        }
        let mut inner = self.lock();
        if let Some(pos) = inner.entries.iter().position(|(k, _)| k == &key)
            && let Some((_, old)) = inner.entries.remove(pos)
        {
            inner.bytes -= old.candidates.heap_bytes();
        }
        inner.bytes += size;
        inner.entries.push_back((key, entry));
        while inner.entries.len() > Self::ENTRIES || inner.bytes > Self::BYTES {
            let Some((_, old)) = inner.entries.pop_front() else { break };
            inner.bytes -= old.candidates.heap_bytes();
        }
    }

    /// The view of `revision` an entry keeps, if any (a later page's data).
    pub fn view_at(&self, revision: Revision) -> Option<Arc<View>> {
        let inner = self.lock();
        inner.entries.iter().find(|((_, r, _), _)| *r == revision).map(|(_, e)| e.view.clone())
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats { entries: inner.entries.len(), bytes: inner.bytes, hits: inner.hits, misses: inner.misses }
    }
}

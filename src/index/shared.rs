//! Containers that snapshots of the index share. Cloning one copies pointers to its parts, not
//! the parts; changing a clone copies only the part it changes (`Arc::make_mut`). A write under
//! concurrent readers therefore builds the next index from the previous one at the cost of the
//! parts it touches, not of the whole index.
//!
//! - [`ShardMap`]: a map from `u32` keys, one table while small, 64 tables by the key's low bits
//!   once large.
//! - [`ChunkVec`]: a vector in chunks of [`CHUNK`] slots.
//! - [`Bits`]: a set of ids as bits, for asking whether a map may hold an id without reading
//!   the map.

use std::sync::Arc;

use super::hash::FastMap;

/// Tables of a large [`ShardMap`].
const SHARDS: usize = 64;
/// Entries past which a one-table [`ShardMap`] splits into [`SHARDS`] tables.
const SPLIT_AT: usize = 2048;

/// A map from `u32` keys (dense ids, or hashes) whose tables snapshots share.
#[derive(Debug)]
pub struct ShardMap<V> {
    /// None (empty), one table, or [`SHARDS`] tables chosen by `key % SHARDS`.
    shards: Vec<Arc<FastMap<u32, V>>>,
}

impl<V> Default for ShardMap<V> {
    fn default() -> Self {
        ShardMap { shards: Vec::new() }
    }
}

impl<V> Clone for ShardMap<V> {
    fn clone(&self) -> Self {
        ShardMap { shards: self.shards.clone() }
    }
}

impl<V> ShardMap<V> {
    fn at(&self, k: u32) -> usize {
        if self.shards.len() == SHARDS { k as usize % SHARDS } else { 0 }
    }

    pub fn get(&self, k: u32) -> Option<&V> {
        self.shards.get(self.at(k))?.get(&k)
    }

    pub fn contains_key(&self, k: u32) -> bool {
        self.get(k).is_some()
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.is_empty())
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &V)> {
        self.shards.iter().flat_map(|s| s.iter().map(|(k, v)| (*k, v)))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.shards.iter().flat_map(|s| s.values())
    }

    /// Bytes of the tables themselves, with `entry` bytes a slot (the values' own heap is the
    /// caller's to count).
    pub fn table_bytes(&self, entry: usize) -> usize {
        self.shards.capacity() * std::mem::size_of::<usize>()
            + self.shards.iter().map(|s| 64 + s.capacity() * (entry + 1)).sum::<usize>()
    }
}

impl<V: Clone> ShardMap<V> {
    /// The table holding `k`, made this snapshot's own (copied if another snapshot shares it).
    fn table_mut(&mut self, k: u32) -> &mut FastMap<u32, V> {
        if self.shards.is_empty() {
            self.shards.push(Arc::new(FastMap::default()));
        } else if self.shards.len() == 1 && self.shards.iter().map(|s| s.len()).sum::<usize>() >= SPLIT_AT {
            let mut tables: Vec<FastMap<u32, V>> = (0..SHARDS).map(|_| FastMap::default()).collect();
            for one in self.shards.drain(..) {
                for (key, v) in Arc::unwrap_or_clone(one) {
                    if let Some(t) = tables.get_mut(key as usize % SHARDS) {
                        t.insert(key, v);
                    }
                }
            }
            self.shards = tables.into_iter().map(Arc::new).collect();
        }
        let i = self.at(k);
        // INVARIANT: `at` returns 0 for one table and `k % SHARDS` for SHARDS tables.
        #[expect(clippy::indexing_slicing, reason = "at() indexes an existing table")]
        Arc::make_mut(&mut self.shards[i])
    }

    /// The value of `k` to change, if present (a table is copied only when the key is in it).
    pub fn get_mut(&mut self, k: u32) -> Option<&mut V> {
        if !self.contains_key(k) {
            return None;
        }
        self.table_mut(k).get_mut(&k)
    }

    pub fn insert(&mut self, k: u32, v: V) -> Option<V> {
        self.table_mut(k).insert(k, v)
    }

    pub fn remove(&mut self, k: u32) -> Option<V> {
        if !self.contains_key(k) {
            return None;
        }
        self.table_mut(k).remove(&k)
    }

    pub fn entry_or_default(&mut self, k: u32) -> &mut V
    where
        V: Default,
    {
        self.table_mut(k).entry(k).or_default()
    }

    /// Every entry, leaving the map empty.
    pub fn take_all(&mut self) -> Vec<(u32, V)> {
        self.shards.drain(..).flat_map(|s| Arc::unwrap_or_clone(s).into_iter()).collect()
    }
}

/// Slots of one [`ChunkVec`] chunk.
pub const CHUNK: usize = 256;

/// Slots of a vector's first chunk: it doubles up to [`CHUNK`] as the vector grows.
const FIRST_CHUNK: usize = 4;

/// A vector whose chunks of [`CHUNK`] slots snapshots share. Each chunk is one `Arc<[T]>`,
/// whose address and length sit in `chunks` itself: reading a slot reads the chunk's pointer
/// (in `chunks`, which stays in cache) and the slot, not a vector header in between. Every
/// chunk but the last holds [`CHUNK`] slots; the last holds a power of two of them (from
/// [`FIRST_CHUNK`], so a small vector stays small), filled out with defaults past `len`.
#[derive(Debug)]
pub struct ChunkVec<T> {
    chunks: Vec<Arc<[T]>>,
    len: usize,
}

impl<T> Default for ChunkVec<T> {
    fn default() -> Self {
        ChunkVec { chunks: Vec::new(), len: 0 }
    }
}

impl<T> Clone for ChunkVec<T> {
    fn clone(&self) -> Self {
        ChunkVec { chunks: self.chunks.clone(), len: self.len }
    }
}

impl<T> ChunkVec<T> {
    pub fn get(&self, i: usize) -> Option<&T> {
        if i >= self.len {
            return None;
        }
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flat_map(|c| c.iter()).take(self.len)
    }

    /// Bytes of the chunks' slots (the values' own heap is the caller's to count).
    pub fn slot_bytes(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<Arc<[T]>>()
            + self.chunks.iter().map(|c| 16 + c.len() * std::mem::size_of::<T>()).sum::<usize>()
    }
}

impl<T: Clone + Default> ChunkVec<T> {
    /// Slot `i` to change (its chunk is copied if another snapshot shares it).
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        if i >= self.len {
            return None;
        }
        Arc::make_mut(self.chunks.get_mut(i / CHUNK)?).get_mut(i % CHUNK)
    }

    pub fn push(&mut self, v: T) {
        let i = self.len;
        let room = self.chunks.len() * CHUNK > i && self.chunks.last().is_some_and(|c| i % CHUNK < c.len());
        if !room {
            match self.chunks.last_mut() {
                // The last chunk is short of CHUNK slots: it doubles (copied once).
                Some(c) if c.len() < CHUNK => {
                    let grown = (c.len() * 2).min(CHUNK);
                    *c = c.iter().cloned().chain(std::iter::repeat_with(T::default)).take(grown).collect();
                }
                // A new chunk: whole, unless it is the first.
                _ => {
                    let n = if self.chunks.is_empty() { FIRST_CHUNK } else { CHUNK };
                    self.chunks.push(std::iter::repeat_with(T::default).take(n).collect());
                }
            }
        }
        self.len += 1;
        if let Some(slot) = self.get_mut(i) {
            *slot = v;
        }
    }

    /// Slot `i` to change, growing the vector with `f()` to hold it first.
    #[expect(clippy::indexing_slicing, reason = "the vector is grown to hold slot i first")]
    pub fn slot(&mut self, i: usize, f: impl FnMut() -> T) -> &mut T {
        self.grow_to(i + 1, f);
        // INVARIANT: len > i, and every chunk holds at least its share of the first len slots.
        &mut Arc::make_mut(&mut self.chunks[i / CHUNK])[i % CHUNK]
    }

    /// Grows to `n` slots, filling with `f()`.
    pub fn grow_to(&mut self, n: usize, mut f: impl FnMut() -> T) {
        while self.len < n {
            self.push(f());
        }
    }
}

/// Ids one [`Bits`] chunk covers (512 bytes).
const BITS_CHUNK: usize = 1 << 12;
/// Words of one [`Bits`] chunk.
const BITS_WORDS: usize = BITS_CHUNK / 64;

/// A set of ids as one bit each, in chunks of [`BITS_CHUNK`] ids that snapshots share; a
/// chunk with no bit set is not allocated. It tells at the cost of a read that usually stays
/// in cache (a type of 240k objects takes 30 KB) whether a map keyed by ids may hold an id,
/// where asking the map itself costs two or three reads that miss.
#[derive(Debug, Clone, Default)]
pub struct Bits {
    chunks: Vec<Option<Arc<[u64; BITS_WORDS]>>>,
}

impl Bits {
    /// The word holding `id`'s bit (0 when its chunk is absent).
    pub fn word(&self, id: u32) -> u64 {
        let i = id as usize;
        self.chunks
            .get(i / BITS_CHUNK)
            .and_then(Option::as_ref)
            .and_then(|c| c.get(i % BITS_CHUNK / 64))
            .copied()
            .unwrap_or(0)
    }

    pub fn contains(&self, id: u32) -> bool {
        (self.word(id) >> (id % 64)) & 1 == 1
    }

    pub fn insert(&mut self, id: u32) {
        if self.contains(id) {
            return;
        }
        let i = id as usize;
        let c = i / BITS_CHUNK;
        if self.chunks.len() <= c {
            self.chunks.resize(c + 1, None);
        }
        if let Some(chunk) = self.chunks.get_mut(c) {
            let words = Arc::make_mut(chunk.get_or_insert_with(|| Arc::new([0; BITS_WORDS])));
            if let Some(w) = words.get_mut(i % BITS_CHUNK / 64) {
                *w |= 1 << (i % 64);
            }
        }
    }

    pub fn remove(&mut self, id: u32) {
        if !self.contains(id) {
            return;
        }
        let i = id as usize;
        if let Some(chunk) = self.chunks.get_mut(i / BITS_CHUNK) {
            let emptied = chunk.as_mut().is_some_and(|c| {
                let words = Arc::make_mut(c);
                let word = words.get_mut(i % BITS_CHUNK / 64).map(|w| {
                    *w &= !(1 << (i % 64));
                    *w
                });
                // The whole chunk is read only when this word emptied.
                word == Some(0) && words.iter().all(|w| *w == 0)
            });
            if emptied {
                *chunk = None;
            }
        }
        while self.chunks.last().is_some_and(Option::is_none) {
            self.chunks.pop();
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<usize>()
            + self.chunks.iter().flatten().count() * (16 + std::mem::size_of::<[u64; BITS_WORDS]>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inserts, removals and the split, against a BTreeMap, with keys that crowd one table.
    #[test]
    fn shard_map_matches_a_btreemap() {
        use std::collections::BTreeMap;
        let mut m: ShardMap<u32> = ShardMap::default();
        let mut model = BTreeMap::new();
        let mut x: u64 = 7;
        for step in 0..60_000u32 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            // Keys from a range that grows, then shrinks: the map splits and empties again.
            let span = if step < 40_000 { 1 + step / 4 } else { 1 + (60_000 - step) / 4 };
            let k = ((x >> 33) as u32 % span) * 64;
            match (x >> 20) % 4 {
                0 | 1 => assert_eq!(m.insert(k, step), model.insert(k, step)),
                2 => assert_eq!(m.remove(k), model.remove(&k)),
                _ => {
                    *m.entry_or_default(k) += 1;
                    *model.entry(k).or_default() += 1;
                }
            }
            if step % 997 == 0 {
                let mut got: Vec<(u32, u32)> = m.iter().map(|(k, v)| (k, *v)).collect();
                got.sort_unstable();
                assert_eq!(got, model.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
                assert_eq!(m.len(), model.len());
            }
            assert_eq!(m.get(k), model.get(&k));
        }
        for k in (0..20_000).map(|k| k * 64) {
            assert_eq!(m.get(k), model.get(&k), "{k}");
        }
    }

    /// A clone shares every table and chunk; changing it copies only what it changes, and the
    /// original keeps its values.
    #[test]
    fn clones_share_until_changed() {
        let mut m: ShardMap<u32> = ShardMap::default();
        for k in 0..10_000 {
            m.insert(k, k);
        }
        assert_eq!(m.shards.len(), SHARDS);
        let mut c = m.clone();
        c.insert(5, 50);
        *c.get_mut(7).unwrap() = 70;
        c.remove(9);
        assert_eq!((m.get(5), m.get(7), m.get(9)), (Some(&5), Some(&7), Some(&9)));
        assert_eq!((c.get(5), c.get(7), c.get(9)), (Some(&50), Some(&70), None));
        let shared = m.shards.iter().zip(&c.shards).filter(|(a, b)| Arc::ptr_eq(a, b)).count();
        assert_eq!(shared, SHARDS - 3);
        assert_eq!(c.len(), 9_999);

        let mut v: ChunkVec<u32> = ChunkVec::default();
        v.grow_to(5 * CHUNK + 3, || 1);
        let mut w = v.clone();
        *w.get_mut(2 * CHUNK + 1).unwrap() = 9;
        w.push(4);
        assert_eq!((v.get(2 * CHUNK + 1), w.get(2 * CHUNK + 1)), (Some(&1), Some(&9)));
        assert_eq!(
            (v.len(), w.len(), v.get(5 * CHUNK + 3), w.get(5 * CHUNK + 3)),
            (5 * CHUNK + 3, 5 * CHUNK + 4, None, Some(&4))
        );
        let shared = v.chunks.iter().zip(&w.chunks).filter(|(a, b)| Arc::ptr_eq(a, b)).count();
        assert_eq!(shared, 4);
        assert_eq!(w.iter().filter(|x| **x == 9).count(), 1);
    }

    /// Bits against a set, over ids far apart (chunks allocated and dropped again) and a clone
    /// that must keep its bits.
    #[test]
    fn bits_match_a_set() {
        let mut b = Bits::default();
        let mut model = std::collections::BTreeSet::new();
        let mut x: u64 = 3;
        let mut saved = None;
        for step in 0..30_000u32 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let id = ((x >> 33) as u32 % 64) * 5_003 + (x >> 20) as u32 % 3;
            if (x >> 10).is_multiple_of(2) {
                b.insert(id);
                model.insert(id);
            } else {
                b.remove(id);
                model.remove(&id);
            }
            if step == 15_000 {
                saved = Some((b.clone(), model.clone()));
            }
            assert_eq!(b.contains(id), model.contains(&id));
        }
        for id in 0..70_000 {
            assert_eq!(b.contains(id), model.contains(&id), "{id}");
            // The word read ahead is the one holding the id's bit.
            assert_eq!((b.word(id) >> (id % 64)) & 1 == 1, model.contains(&id), "{id}");
        }
        let (old, old_model) = saved.unwrap();
        for id in 0..70_000 {
            assert_eq!(old.contains(id), old_model.contains(&id), "{id}");
        }
        for id in model.clone() {
            b.remove(id);
        }
        assert!(b.chunks.is_empty(), "every chunk is dropped once empty");
        assert!(!b.contains(u32::MAX));
    }
}

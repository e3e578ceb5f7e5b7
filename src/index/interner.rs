//! Dense ids of one object type: names interned to `u32` in arrival order, stored back to back
//! in shared segments, found by a keyed hash in an open-addressed table whose slots say where
//! each name's bytes are.

use std::sync::Arc;

use super::shared::CHUNK;

/// Tables of a large interner.
const SHARDS: usize = 64;
/// Names past which the one table splits into [`SHARDS`] tables.
const SPLIT_AT: usize = 2048;
/// Slots of a new table.
const MIN_SLOTS: usize = 16;
/// An empty slot (its id, the low half, is `u32::MAX`, which no name gets: ids share a `u32`
/// space with the index's wildcard marker).
const EMPTY: u64 = u64::MAX;
/// A slot's offset field when the name's record starts too far into its segment to say (only
/// for names far longer than object ids may be): the name is then read through `ends`.
const FAR: u64 = (1 << 20) - 1;

/// Dense ids of one object type. Names are stored once, back to back in segments of [`CHUNK`]
/// names in id order (so walking ids in order reads memory in order), each as its length
/// (LEB128) then its bytes. A name is found by a keyed hash (std's randomized SipHash, so ids
/// chosen by clients cannot be crafted to collide) in an open-addressed table of 8-byte slots:
/// the id, where its record starts in its segment, and 12 more bits of the hash. A lookup
/// reads one slot and the record (two cache misses for a name not in cache; a map to the id,
/// then the name's end offsets and text, took five).
#[derive(Debug, Clone, Default)]
pub struct Interner {
    /// Full segments' records ([`CHUNK`] names each), shared between snapshots.
    texts: Vec<Arc<[u8]>>,
    /// End of each record in its full segment.
    ends: Vec<Arc<[u32]>>,
    /// The segment being filled (shared between snapshots until one adds a name).
    tail: Arc<Tail>,
    len: usize,
    /// None (no names), one table, or [`SHARDS`] tables chosen by the hash's low bits; each a
    /// power of two of slots, at most three quarters full, probed linearly from the hash's
    /// next bits.
    tables: Vec<Arc<[u64]>>,
    /// Names in each table.
    filled: Vec<u32>,
    state: std::hash::RandomState,
    /// Tests narrow the hash to a few bits so that names share hashes and table positions.
    #[cfg(test)]
    hash_mask: Option<u64>,
}

/// A lookup begun by [`Interner::begin`]: the name's hash and the first slot its probe reads.
#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    hash: u64,
    first: u64,
}

/// The names of the segment being filled.
#[derive(Debug, Clone, Default)]
struct Tail {
    text: Vec<u8>,
    ends: Vec<u32>,
}

/// A slot: the id in the low 32 bits, the record's offset in the next 20, the hash's top 12
/// bits above.
fn slot(id: u32, offset: usize, hash: u64) -> u64 {
    let offset = (offset as u64).min(FAR);
    u64::from(id) | (offset << 32) | (hash >> 52 << 52)
}

fn slot_id(s: u64) -> u32 {
    s as u32
}

/// The table position a hash starts probing at (the low six bits chose the table).
fn home(hash: u64, mask: usize) -> usize {
    (hash >> 6) as usize & mask
}

/// The name of a record starting at `at` in `text`.
fn record(text: &[u8], at: usize) -> Option<&[u8]> {
    let (mut len, mut shift, mut i) = (0usize, 0u32, at);
    loop {
        let b = *text.get(i)?;
        i += 1;
        len |= usize::from(b & 0x7F).checked_shl(shift)?;
        if b < 0x80 {
            break;
        }
        shift += 7;
    }
    text.get(i..i.checked_add(len)?)
}

impl Interner {
    fn hash(&self, name: &[u8]) -> u64 {
        let h = std::hash::BuildHasher::hash_one(&self.state, name);
        #[cfg(test)]
        let h = self.hash_mask.map_or(h, |m| h & m);
        h
    }

    /// The table a hash belongs to.
    fn table_of(&self, hash: u64) -> usize {
        if self.tables.len() == SHARDS { hash as usize % SHARDS } else { 0 }
    }

    pub fn get(&self, name: &str) -> Option<u32> {
        self.find(name.as_bytes(), self.hash(name.as_bytes())).ok()
    }

    /// Begins looking up `name`: hashes it and reads the first slot its probe visits. Lookups
    /// begun one after the other wait for their first slots together; [`Interner::finish`]
    /// ends each.
    pub fn begin(&self, name: &str) -> Lookup {
        let hash = self.hash(name.as_bytes());
        let first = self
            .tables
            .get(self.table_of(hash))
            .and_then(|t| t.get(home(hash, t.len().wrapping_sub(1))).copied())
            .unwrap_or(EMPTY);
        Lookup { hash, first }
    }

    /// The id of `name`, from its lookup begun with [`Interner::begin`] on this interner.
    pub fn finish(&self, name: &str, lookup: Lookup) -> Option<u32> {
        let Lookup { hash, first } = lookup;
        if first == EMPTY {
            // The probe's first slot is empty (or there is no table): the name is not here.
            return None;
        }
        if first >> 52 == hash >> 52 && self.bytes_of(first) == Some(name.as_bytes()) {
            return Some(slot_id(first));
        }
        self.find(name.as_bytes(), hash).ok()
    }

    /// The id of `name` (with hash `hash`), or the table and position of the empty slot
    /// where it would go (`None` when there is no table yet, or, which the load limit rules
    /// out, a table without an empty slot).
    fn find(&self, name: &[u8], hash: u64) -> Result<u32, Option<(usize, usize)>> {
        let t = self.table_of(hash);
        let Some(table) = self.tables.get(t) else { return Err(None) };
        let mask = table.len().wrapping_sub(1);
        let mut pos = home(hash, mask);
        // A table is never full: the loop ends at an empty slot within its length.
        for _ in 0..table.len() {
            let Some(&s) = table.get(pos) else { break };
            if s == EMPTY {
                return Err(Some((t, pos)));
            }
            if s >> 52 == hash >> 52 && self.bytes_of(s) == Some(name) {
                return Ok(slot_id(s));
            }
            pos = (pos + 1) & mask;
        }
        Err(None)
    }

    /// The name a slot points at.
    fn bytes_of(&self, s: u64) -> Option<&[u8]> {
        let id = slot_id(s);
        let offset = (s >> 32) & FAR;
        if offset == FAR {
            return self.name_bytes(id);
        }
        let seg = id as usize / CHUNK;
        let text = match self.texts.get(seg) {
            Some(t) => t,
            None if seg == self.texts.len() => self.tail.text.as_slice(),
            None => return None,
        };
        record(text, offset as usize)
    }

    /// The id of `name`, allocated on first sight. Ids are never reused (a removed object keeps
    /// its id, so sets built earlier stay meaningful).
    pub fn intern(&mut self, name: &str) -> u32 {
        let hash = self.hash(name.as_bytes());
        let at = match self.find(name.as_bytes(), hash) {
            Ok(id) => return id,
            Err(at) => at,
        };
        let id = self.len as u32;
        let tail = Arc::make_mut(&mut self.tail);
        let offset = tail.text.len();
        let mut n = name.len();
        while n >= 0x80 {
            tail.text.push((n & 0x7F) as u8 | 0x80);
            n >>= 7;
        }
        tail.text.push(n as u8);
        tail.text.extend_from_slice(name.as_bytes());
        tail.ends.push(tail.text.len() as u32);
        if tail.ends.len() >= CHUNK {
            let full = std::mem::take(tail);
            self.texts.push(Arc::from(full.text));
            self.ends.push(Arc::from(full.ends));
        }
        self.len += 1;
        let new = slot(id, offset, hash);
        let must_split = self.tables.len() == 1 && self.len > SPLIT_AT;
        let room = |t: usize| {
            let filled = self.filled.get(t).map_or(0, |f| *f as usize);
            self.tables.get(t).is_some_and(|table| (filled + 1) * 4 <= table.len() * 3)
        };
        match at {
            Some((t, pos)) if !must_split && room(t) => {
                if let Some(s) = self.tables.get_mut(t).and_then(|table| Arc::make_mut(table).get_mut(pos)) {
                    *s = new;
                }
                if let Some(f) = self.filled.get_mut(t) {
                    *f += 1;
                }
            }
            _ => self.rebuild_with(new, hash, must_split),
        }
        id
    }

    /// Adds slot `new` (of a name with hash `hash`) where its table has no room, or where the
    /// one table must split: the table is rebuilt twice as large, or split into [`SHARDS`].
    /// Slots keep only 12 bits of their hash: the others' hashes are computed again from
    /// their names.
    fn rebuild_with(&mut self, new: u64, hash: u64, split: bool) {
        let t = self.table_of(hash);
        let old: Vec<u64> = if split {
            self.tables.iter().flat_map(|t| t.iter().copied()).collect()
        } else {
            self.tables.get(t).map_or_else(Vec::new, |table| table.to_vec())
        };
        let mut slots: Vec<(u64, u64)> = old
            .into_iter()
            .filter(|s| *s != EMPTY)
            .filter_map(|s| Some((s, self.hash(self.name_bytes(slot_id(s))?))))
            .collect();
        // Every slot's name is readable (its id is below `len`, its record in place).
        let held = if split { self.filled.iter().sum::<u32>() } else { self.filled.get(t).copied().unwrap_or(0) };
        debug_assert_eq!(slots.len(), held as usize, "a slot whose name cannot be read");
        slots.push((new, hash));
        if split {
            let mut parts: Vec<Vec<(u64, u64)>> = vec![Vec::new(); SHARDS];
            for (s, h) in slots {
                if let Some(part) = parts.get_mut(h as usize % SHARDS) {
                    part.push((s, h));
                }
            }
            self.filled = parts.iter().map(|p| p.len() as u32).collect();
            self.tables = parts.iter().map(|p| table_of_slots(p)).collect();
            return;
        }
        let table = table_of_slots(&slots);
        match (self.tables.get_mut(t), self.filled.get_mut(t)) {
            (Some(old), Some(f)) => {
                *old = table;
                *f = slots.len() as u32;
            }
            _ => {
                self.tables.push(table);
                self.filled.push(slots.len() as u32);
            }
        }
    }

    fn name_bytes(&self, id: u32) -> Option<&[u8]> {
        let seg = id as usize / CHUNK;
        let (text, ends): (&[u8], &[u32]) = match (self.texts.get(seg), self.ends.get(seg)) {
            (Some(t), Some(e)) => (t, e),
            _ if seg == self.texts.len() => (&self.tail.text, &self.tail.ends),
            _ => return None,
        };
        let i = id as usize % CHUNK;
        ends.get(i)?;
        let start = if i == 0 { 0 } else { *ends.get(i - 1)? as usize };
        record(text, start)
    }

    pub fn name(&self, id: u32) -> Option<&str> {
        std::str::from_utf8(self.name_bytes(id)?).ok()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn heap_bytes(&self) -> usize {
        // Each `Arc` allocation: two counters beside the data.
        self.texts.capacity() * 16
            + self.ends.capacity() * 16
            + self.texts.iter().map(|t| 16 + t.len()).sum::<usize>()
            + self.ends.iter().map(|e| 16 + e.len() * 4).sum::<usize>()
            + 16
            + 48
            + self.tail.text.capacity()
            + self.tail.ends.capacity() * 4
            + self.tables.capacity() * 16
            + self.filled.capacity() * 4
            + self.tables.iter().map(|t| 16 + t.len() * 8).sum::<usize>()
    }
}

/// A table holding `slots` (distinct names, with their hashes), a power of two of slots at
/// most half full.
fn table_of_slots(slots: &[(u64, u64)]) -> Arc<[u64]> {
    let size = (slots.len() * 2).next_power_of_two().max(MIN_SLOTS);
    let mut table = vec![EMPTY; size];
    let mask = size - 1;
    for (s, hash) in slots {
        let mut pos = home(*hash, mask);
        while table.get(pos).is_some_and(|x| *x != EMPTY) {
            pos = (pos + 1) & mask;
        }
        if let Some(x) = table.get_mut(pos) {
            *x = *s;
        }
    }
    Arc::from(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        (0..5000).map(|n| format!("doc-{n}")).chain(["".to_string(), "ü∂".to_string()]).collect()
    }

    fn round_trip(mut i: Interner) {
        let names = names();
        for (n, name) in names.iter().enumerate() {
            assert_eq!(i.intern(name), n as u32);
        }
        let snapshot = i.clone();
        for (n, name) in names.iter().enumerate() {
            assert_eq!(i.intern(name), n as u32);
            assert_eq!(i.get(name), Some(n as u32));
            assert_eq!(i.name(n as u32), Some(name.as_str()));
            // A lookup in two steps finds the same, past names that share its first slot.
            assert_eq!(i.finish(name, i.begin(name)), Some(n as u32));
        }
        assert_eq!(i.get("doc-5000"), None);
        assert_eq!(i.finish("doc-5000", i.begin("doc-5000")), None);
        let empty = Interner::default();
        assert_eq!(empty.finish("doc-1", empty.begin("doc-1")), None);
        assert_eq!(i.get("doc-50"), Some(50));
        assert_eq!(i.get("doc-5"), Some(5));
        assert_eq!(i.name(names.len() as u32), None);
        assert_eq!(i.len(), names.len());
        // A later snapshot's names are not the earlier one's.
        let more: Vec<String> = (0..600).map(|n| format!("late-{n}")).collect();
        for (n, name) in more.iter().enumerate() {
            assert_eq!(i.intern(name), (names.len() + n) as u32);
        }
        for (n, name) in more.iter().enumerate() {
            assert_eq!(i.get(name), Some((names.len() + n) as u32));
            assert_eq!(snapshot.get(name), None);
            assert_eq!(i.name((names.len() + n) as u32), Some(name.as_str()));
        }
        assert_eq!(snapshot.get("doc-4999"), Some(4999));
        assert_eq!(snapshot.name(names.len() as u32), None);
        assert!(i.tables.iter().all(|t| t.iter().filter(|s| **s != EMPTY).count() * 4 <= t.len() * 3));
    }

    #[test]
    pub(super) fn interner_ids_are_dense_and_names_round_trip() {
        round_trip(Interner::default());
    }

    /// Names that share a hash (here most do: the hash is cut to 4 bits) sit in consecutive
    /// slots and are told apart by their bytes.
    #[test]
    fn names_sharing_a_hash_are_told_apart() {
        round_trip(Interner { hash_mask: Some(0xF), ..Interner::default() });
        round_trip(Interner { hash_mask: Some(0x3F_FFC0), ..Interner::default() });
        round_trip(Interner { hash_mask: Some(0xFFF0_0000_0000_003F), ..Interner::default() });
    }

    /// Long names: lengths of two and three LEB128 bytes, and records that start past what a
    /// slot's offset can say (found through the end offsets instead).
    #[test]
    fn long_names_round_trip() {
        let mut i = Interner::default();
        let names: Vec<String> = (0..300).map(|n| format!("{n}-{}", "x".repeat(n * 37))).collect();
        for (n, name) in names.iter().enumerate() {
            assert_eq!(i.intern(name), n as u32);
        }
        for (n, name) in names.iter().enumerate() {
            assert_eq!(i.get(name), Some(n as u32), "{n}");
            assert_eq!(i.name(n as u32), Some(name.as_str()));
        }
        assert_eq!(i.get(&"x".repeat(200)), None);
    }
}

//! Dense ids of one object type: names interned to `u32` in arrival order, stored back to back
//! in shared segments, found by a keyed hash.

use std::collections::HashMap;
use std::sync::Arc;

use super::shared::{CHUNK, ShardMap};

/// Dense ids of one object type. Names are stored once, back to back in one buffer in id
/// order (so walking ids in order reads memory in order), and found by a keyed hash of
/// the name (std's randomized SipHash, so ids chosen by clients cannot be crafted to collide);
/// the rare names whose hash another name already holds go to a small overflow map.
#[derive(Debug, Clone, Default)]
pub struct Interner {
    /// Names by id, [`CHUNK`] names a segment (segments are shared between snapshots).
    segments: Vec<Arc<Segment>>,
    len: usize,
    /// 32 bits of the name's hash → id. With a keyed hash, colliding names are rare (a few per
    /// million names) and cannot be chosen by clients; they go to `overflow`.
    by_hash: ShardMap<u32>,
    overflow: Arc<HashMap<String, u32>>,
    state: std::hash::RandomState,
}

/// The names of [`CHUNK`] consecutive ids, back to back.
#[derive(Debug, Clone, Default)]
struct Segment {
    text: String,
    /// End of each name in `text`.
    ends: Vec<u32>,
}

impl Interner {
    pub(super) fn hash(&self, name: &str) -> u32 {
        std::hash::BuildHasher::hash_one(&self.state, name) as u32
    }

    pub fn get(&self, name: &str) -> Option<u32> {
        if let Some(&id) = self.by_hash.get(self.hash(name))
            && self.name(id) == Some(name)
        {
            return Some(id);
        }
        self.overflow.get(name).copied()
    }

    /// The id of `name`, allocated on first sight. Ids are never reused (a removed object keeps
    /// its id, so sets built earlier stay meaningful).
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.get(name) {
            return id;
        }
        let id = self.len as u32;
        if self.segments.last().is_none_or(|seg| seg.ends.len() >= CHUNK) {
            self.segments.push(Arc::new(Segment::default()));
        }
        if let Some(seg) = self.segments.last_mut() {
            let seg = Arc::make_mut(seg);
            seg.text.push_str(name);
            seg.ends.push(seg.text.len() as u32);
        }
        self.len += 1;
        let h = self.hash(name);
        if self.by_hash.contains_key(h) {
            Arc::make_mut(&mut self.overflow).insert(name.to_string(), id);
        } else {
            self.by_hash.insert(h, id);
        }
        id
    }

    pub fn name(&self, id: u32) -> Option<&str> {
        let seg = self.segments.get(id as usize / CHUNK)?;
        let i = id as usize % CHUNK;
        let end = *seg.ends.get(i)? as usize;
        let start = if i == 0 { 0 } else { *seg.ends.get(i - 1)? as usize };
        seg.text.get(start..end)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.segments.capacity() * 8
            + self.segments.iter().map(|s| 16 + 48 + s.text.capacity() + s.ends.capacity() * 4).sum::<usize>()
            + self.by_hash.table_bytes(std::mem::size_of::<(u32, u32)>())
            + self.overflow.keys().map(|k| k.capacity() + 24 + 4 + 8).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn interner_ids_are_dense_and_names_round_trip() {
        let mut i = Interner::default();
        let names: Vec<String> =
            (0..5000).map(|n| format!("doc-{n}")).chain(["".to_string(), "ü∂".to_string()]).collect();
        for (n, name) in names.iter().enumerate() {
            assert_eq!(i.intern(name), n as u32);
        }
        for (n, name) in names.iter().enumerate() {
            assert_eq!(i.intern(name), n as u32);
            assert_eq!(i.get(name), Some(n as u32));
            assert_eq!(i.name(n as u32), Some(name.as_str()));
        }
        assert_eq!(i.get("doc-5000"), None);
        assert_eq!(i.name(names.len() as u32), None);
        assert_eq!(i.len(), names.len());
        // Names whose hash is taken go to the overflow map and are still found.
        let h = i.hash("doc-1");
        i.by_hash.insert(i.hash("late"), 1);
        assert_eq!(i.intern("late"), names.len() as u32);
        assert_eq!(i.get("late"), Some(names.len() as u32));
        assert_eq!(i.get("doc-1"), Some(1));
        assert!(i.by_hash.contains_key(h));
    }
}

//! Sets of dense object ids that stay small when they are small: nothing, one id, a short sorted
//! vector, and a roaring bitmap past [`PROMOTE_AT`] ids (a one-element roaring bitmap costs about
//! 200 bytes; most edges in real data have one or a few subjects).

use roaring::RoaringBitmap;

/// The subject id used for wildcard edges in the side table: no object gets it (an interner
/// stops one short of it).
pub const WILDCARD: u32 = u32::MAX;

/// A set grows from a sorted vector into a bitmap when it reaches this many ids, and shrinks
/// back when it falls to a quarter of it.
pub const PROMOTE_AT: usize = 32;

/// Up to this many ids live in the set itself, with no allocation (most edges in real data
/// have one to three subjects; a boxed vector of two ids costs about 64 bytes and a second
/// dependent memory read on every lookup).
pub const FEW: usize = 3;

/// 16 bytes whatever it holds: larger sets live behind one thin pointer.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum IdSet {
    #[default]
    Empty,
    /// 1 to [`FEW`] ids, sorted, in place: the first `n` entries count, the rest are zero.
    Few(u8, [u32; FEW]),
    /// Sorted, no duplicates, `FEW + 1` to `PROMOTE_AT - 1` ids.
    Small(Box<Vec<u32>>),
    Bitmap(Box<RoaringBitmap>),
}

/// The ids of an [`IdSet`] in increasing order (not boxed: a Check iterates sets without
/// allocating).
pub enum Iter<'a> {
    Ids(std::slice::Iter<'a, u32>),
    Bitmap(roaring::bitmap::Iter<'a>),
}

impl Iterator for Iter<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        match self {
            Iter::Ids(i) => i.next().copied(),
            Iter::Bitmap(i) => i.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Ids(i) => i.size_hint(),
            Iter::Bitmap(i) => i.size_hint(),
        }
    }
}

impl IdSet {
    /// The set of sorted, distinct `ids`, in the representation its size calls for.
    pub fn from_sorted(ids: Vec<u32>) -> IdSet {
        match ids.len() {
            0 => IdSet::Empty,
            n if n <= FEW => {
                let mut a = [0; FEW];
                for (slot, id) in a.iter_mut().zip(&ids) {
                    *slot = *id;
                }
                IdSet::Few(n as u8, a)
            }
            n if n < PROMOTE_AT => IdSet::Small(Box::new(ids)),
            _ => IdSet::Bitmap(Box::new(ids.into_iter().collect())),
        }
    }

    /// The set of one id.
    pub fn one(id: u32) -> IdSet {
        IdSet::Few(1, [id, 0, 0])
    }

    /// The ids of a set held as a sorted slice (not a bitmap).
    fn slice(&self) -> Option<&[u32]> {
        match self {
            IdSet::Empty => Some(&[]),
            IdSet::Few(n, a) => a.get(..*n as usize),
            IdSet::Small(v) => Some(v.as_slice()),
            IdSet::Bitmap(_) => None,
        }
    }

    pub fn contains(&self, id: u32) -> bool {
        match self {
            IdSet::Empty => false,
            IdSet::Few(n, a) => a.iter().take(*n as usize).any(|x| *x == id),
            IdSet::Small(v) => v.binary_search(&id).is_ok(),
            IdSet::Bitmap(b) => b.contains(id),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            IdSet::Empty => 0,
            IdSet::Few(n, _) => *n as usize,
            IdSet::Small(v) => v.len(),
            IdSet::Bitmap(b) => b.len() as usize,
        }
    }

    /// Without reading what a pointer holds: a vector always holds more than [`FEW`] ids and a
    /// bitmap more than `PROMOTE_AT / 4` (they shrink to a smaller form below that).
    pub fn is_empty(&self) -> bool {
        matches!(self, IdSet::Empty)
    }

    /// Adds an id; returns whether it was new.
    pub fn insert(&mut self, id: u32) -> bool {
        match self {
            IdSet::Bitmap(b) => b.insert(id),
            IdSet::Small(v) => match v.binary_search(&id) {
                Ok(_) => false,
                Err(pos) => {
                    v.insert(pos, id);
                    if v.len() >= PROMOTE_AT {
                        *self = IdSet::Bitmap(Box::new(v.iter().copied().collect()));
                    }
                    true
                }
            },
            IdSet::Empty => {
                *self = IdSet::Few(1, [id, 0, 0]);
                true
            }
            IdSet::Few(n, a) => {
                let len = *n as usize;
                let Some(ids) = a.get(..len) else { return false };
                let Err(pos) = ids.binary_search(&id) else { return false };
                if len < FEW {
                    // In place: shift the larger ids up one slot (the last slot is a zero).
                    if let Some(tail) = a.get_mut(pos..=len) {
                        tail.rotate_right(1);
                        if let Some(first) = tail.first_mut() {
                            *first = id;
                        }
                    }
                    *n += 1;
                } else {
                    let mut v = Vec::with_capacity(FEW + 1);
                    v.extend_from_slice(ids);
                    v.insert(pos, id);
                    *self = IdSet::Small(Box::new(v));
                }
                true
            }
        }
    }

    /// Removes an id; returns whether it was present.
    pub fn remove(&mut self, id: u32) -> bool {
        match self {
            IdSet::Empty => false,
            IdSet::Bitmap(b) => {
                let removed = b.remove(id);
                if removed && b.len() as usize <= PROMOTE_AT / 4 {
                    *self = IdSet::from_sorted(b.iter().collect());
                }
                removed
            }
            IdSet::Small(v) => match v.binary_search(&id) {
                Ok(pos) => {
                    v.remove(pos);
                    if v.len() <= FEW {
                        *self = IdSet::from_sorted(std::mem::take(v.as_mut()));
                    }
                    true
                }
                Err(_) => false,
            },
            IdSet::Few(n, a) => {
                let len = *n as usize;
                let Some(Ok(pos)) = a.get(..len).map(|ids| ids.binary_search(&id)) else { return false };
                // In place: shift the larger ids down one slot and zero the freed one.
                if let Some(tail) = a.get_mut(pos..len) {
                    tail.rotate_left(1);
                    if let Some(last) = tail.last_mut() {
                        *last = 0;
                    }
                }
                *n -= 1;
                if *n == 0 {
                    *self = IdSet::Empty;
                }
                true
            }
        }
    }

    /// Ids in increasing order.
    pub fn iter(&self) -> Iter<'_> {
        match (self, self.slice()) {
            (_, Some(ids)) => Iter::Ids(ids.iter()),
            (IdSet::Bitmap(b), None) => Iter::Bitmap(b.iter()),
            _ => Iter::Ids([].iter()),
        }
    }

    /// Calls `f` with each id in increasing order (no boxed iterator).
    pub fn for_each(&self, mut f: impl FnMut(u32)) {
        match (self, self.slice()) {
            (_, Some(ids)) => ids.iter().for_each(|x| f(*x)),
            (IdSet::Bitmap(b), None) => b.iter().for_each(f),
            _ => {}
        }
    }

    /// Whether `f` holds for some id, trying them in increasing order (no boxed iterator).
    pub fn any(&self, mut f: impl FnMut(u32) -> bool) -> bool {
        match (self, self.slice()) {
            (_, Some(ids)) => ids.iter().any(|x| f(*x)),
            (IdSet::Bitmap(b), None) => b.iter().any(f),
            _ => false,
        }
    }

    /// Adds every id of `self` to a bitmap.
    pub fn union_into(&self, out: &mut RoaringBitmap) {
        match (self, self.slice()) {
            (_, Some(ids)) => out.extend(ids.iter().copied()),
            (IdSet::Bitmap(b), None) => *out |= b.as_ref(),
            _ => {}
        }
    }

    /// Whether the two sets share an id, without building either as a bitmap.
    pub fn intersects(&self, other: &IdSet) -> bool {
        let (small, large) = if self.len() <= other.len() { (self, other) } else { (other, self) };
        match (small, large) {
            (IdSet::Bitmap(a), IdSet::Bitmap(b)) => !a.is_disjoint(b.as_ref()),
            _ => small.any(|id| large.contains(id)),
        }
    }

    /// Heap bytes held (capacity for vectors, roaring's serialized size as its estimate).
    pub fn heap_bytes(&self) -> usize {
        match self {
            IdSet::Empty | IdSet::Few(..) => 0,
            // The boxed vector's own 24 bytes, its elements, and the allocator's header of each.
            IdSet::Small(v) => 24 + v.capacity() * 4 + 32,
            IdSet::Bitmap(b) => b.serialized_size() + 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn an_idset_is_16_bytes() {
        assert_eq!(std::mem::size_of::<IdSet>(), 16);
    }

    /// A deterministic sequence of inserts and removes, checked against `BTreeSet`.
    #[test]
    fn idset_matches_a_btreeset_through_promotion_and_shrinking() {
        let mut set = IdSet::default();
        let mut model = BTreeSet::new();
        let mut x: u64 = 1;
        for step in 0..20_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let id = ((x >> 33) % 200) as u32;
            // Grow for a while, then mostly shrink, so every representation is visited.
            let insert =
                if (step / 2000) % 2 == 0 { !(x >> 20).is_multiple_of(4) } else { (x >> 20).is_multiple_of(4) };
            if insert {
                assert_eq!(set.insert(id), model.insert(id));
            } else {
                assert_eq!(set.remove(id), model.remove(&id));
            }
            assert_eq!(set.len(), model.len());
            assert_eq!(set.is_empty(), model.is_empty());
            assert!(set.contains(id) == model.contains(&id));
            if step % 97 == 0 {
                assert_eq!(set.iter().collect::<Vec<_>>(), model.iter().copied().collect::<Vec<_>>());
                let other = IdSet::from_sorted(vec![id, id + 1000]);
                assert_eq!(set.intersects(&other), model.contains(&id));
            }
            match &set {
                IdSet::Small(v) => assert!(v.len() > FEW && v.len() < PROMOTE_AT),
                IdSet::Few(n, a) => {
                    assert!((1..=FEW).contains(&(*n as usize)) && model.len() == *n as usize);
                    assert!(
                        a.iter().skip(*n as usize).all(|x| *x == 0),
                        "unused slots are zero (equal sets compare equal)"
                    );
                }
                IdSet::Empty => assert!(model.is_empty()),
                IdSet::Bitmap(_) => assert!(model.len() > PROMOTE_AT / 4),
            }
        }
    }
}

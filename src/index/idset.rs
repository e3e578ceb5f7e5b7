//! Sets of dense object ids that stay small when they are small: nothing, one id, a short sorted
//! vector, and a roaring bitmap past [`PROMOTE_AT`] ids (a one-element roaring bitmap costs about
//! 200 bytes; most edges in real data have one or a few subjects).

use roaring::RoaringBitmap;

/// A set grows from a sorted vector into a bitmap when it reaches this many ids, and shrinks
/// back when it falls to a quarter of it.
pub const PROMOTE_AT: usize = 32;

/// 16 bytes whatever it holds: larger sets live behind one thin pointer.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum IdSet {
    #[default]
    Empty,
    One(u32),
    /// Sorted, no duplicates, 2 to `PROMOTE_AT - 1` ids.
    Small(Box<Vec<u32>>),
    Bitmap(Box<RoaringBitmap>),
}

impl IdSet {
    pub fn contains(&self, id: u32) -> bool {
        match self {
            IdSet::Empty => false,
            IdSet::One(x) => *x == id,
            IdSet::Small(v) => v.binary_search(&id).is_ok(),
            IdSet::Bitmap(b) => b.contains(id),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            IdSet::Empty => 0,
            IdSet::One(_) => 1,
            IdSet::Small(v) => v.len(),
            IdSet::Bitmap(b) => b.len() as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds an id; returns whether it was new.
    pub fn insert(&mut self, id: u32) -> bool {
        match self {
            IdSet::Empty => {
                *self = IdSet::One(id);
                true
            }
            IdSet::One(x) if *x == id => false,
            IdSet::One(x) => {
                let v = if *x < id { vec![*x, id] } else { vec![id, *x] };
                *self = IdSet::Small(Box::new(v));
                true
            }
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
            IdSet::Bitmap(b) => b.insert(id),
        }
    }

    /// Removes an id; returns whether it was present.
    pub fn remove(&mut self, id: u32) -> bool {
        let removed = match self {
            IdSet::Empty => false,
            IdSet::One(x) if *x == id => {
                *self = IdSet::Empty;
                true
            }
            IdSet::One(_) => false,
            IdSet::Small(v) => match v.binary_search(&id) {
                Ok(pos) => {
                    v.remove(pos);
                    true
                }
                Err(_) => false,
            },
            IdSet::Bitmap(b) => b.remove(id),
        };
        if removed {
            self.shrink();
        }
        removed
    }

    fn shrink(&mut self) {
        let len = self.len();
        match self {
            IdSet::Small(v) if len == 1 => *self = IdSet::One(v.first().copied().unwrap_or_default()),
            IdSet::Small(v) if len == 0 => {
                let _ = v;
                *self = IdSet::Empty;
            }
            IdSet::Bitmap(b) if len <= PROMOTE_AT / 4 => {
                let v: Vec<u32> = b.iter().collect();
                *self = match v.len() {
                    0 => IdSet::Empty,
                    1 => IdSet::One(v.first().copied().unwrap_or_default()),
                    _ => IdSet::Small(Box::new(v)),
                };
            }
            _ => {}
        }
    }

    /// Ids in increasing order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = u32> + '_> {
        match self {
            IdSet::Empty => Box::new(std::iter::empty()),
            IdSet::One(x) => Box::new(std::iter::once(*x)),
            IdSet::Small(v) => Box::new(v.iter().copied()),
            IdSet::Bitmap(b) => Box::new(b.iter()),
        }
    }

    /// Calls `f` with each id in increasing order (no boxed iterator).
    pub fn for_each(&self, mut f: impl FnMut(u32)) {
        match self {
            IdSet::Empty => {}
            IdSet::One(x) => f(*x),
            IdSet::Small(v) => v.iter().for_each(|x| f(*x)),
            IdSet::Bitmap(b) => b.iter().for_each(f),
        }
    }

    /// Whether `f` holds for some id, trying them in increasing order (no boxed iterator).
    pub fn any(&self, mut f: impl FnMut(u32) -> bool) -> bool {
        match self {
            IdSet::Empty => false,
            IdSet::One(x) => f(*x),
            IdSet::Small(v) => v.iter().any(|x| f(*x)),
            IdSet::Bitmap(b) => b.iter().any(f),
        }
    }

    /// Adds every id of `self` to a bitmap.
    pub fn union_into(&self, out: &mut RoaringBitmap) {
        match self {
            IdSet::Empty => {}
            IdSet::One(x) => {
                out.insert(*x);
            }
            IdSet::Small(v) => out.extend(v.iter().copied()),
            IdSet::Bitmap(b) => *out |= b.as_ref(),
        }
    }

    /// Whether the two sets share an id, without building either as a bitmap.
    pub fn intersects(&self, other: &IdSet) -> bool {
        let (small, large) = if self.len() <= other.len() { (self, other) } else { (other, self) };
        match (small, large) {
            (IdSet::Bitmap(a), IdSet::Bitmap(b)) => !a.is_disjoint(b.as_ref()),
            _ => small.iter().any(|id| large.contains(id)),
        }
    }

    /// Heap bytes held (capacity for vectors, roaring's serialized size as its estimate).
    pub fn heap_bytes(&self) -> usize {
        match self {
            IdSet::Empty | IdSet::One(_) => 0,
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
            let insert = if (step / 2000) % 2 == 0 { (x >> 20) % 4 != 0 } else { (x >> 20) % 4 == 0 };
            if insert {
                assert_eq!(set.insert(id), model.insert(id));
            } else {
                assert_eq!(set.remove(id), model.remove(&id));
            }
            assert_eq!(set.len(), model.len());
            assert!(set.contains(id) == model.contains(&id));
            if step % 97 == 0 {
                assert_eq!(set.iter().collect::<Vec<_>>(), model.iter().copied().collect::<Vec<_>>());
                let other: IdSet = IdSet::Small(Box::new(vec![id, id + 1000]));
                assert_eq!(set.intersects(&other), model.contains(&id));
            }
            match &set {
                IdSet::Small(v) => assert!(v.len() >= 2 && v.len() < PROMOTE_AT),
                IdSet::One(_) => assert_eq!(model.len(), 1),
                IdSet::Empty => assert!(model.is_empty()),
                IdSet::Bitmap(_) => assert!(model.len() > PROMOTE_AT / 4),
            }
        }
    }
}

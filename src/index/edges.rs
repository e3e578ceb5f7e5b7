//! The edges of one edge kind (resource type and relation, to one subject type and subject
//! relation): unconditional edges by resource (`ForwardSets`: a column for resources with one
//! subject, sets for the rest) and by subject (`DenseSets`), wildcards, and a side table of
//! conditional and expiring edges indexed both ways.

use std::borrow::Cow;
use std::sync::Arc;

use super::idset::{IdSet, WILDCARD};
use super::shared::{Bits, ChunkVec, ShardMap};
use crate::model::{CaveatRef, Timestamp};

/// Sets by dense id: a map while few ids have a set, a vector indexed by id once most do (16
/// bytes a slot, no hashing). A sparse edge kind (`banned`, say) over 240k documents would
/// otherwise pay 16 bytes for every document. The map keeps a bit per id saying which ids may
/// have a set, so asking about an id without one (most ids, in a sparse kind) does not read
/// the map.
#[derive(Debug, Clone)]
pub enum DenseSets {
    /// The map, the largest id it has held, and its keys as bits (every id whose set is not
    /// empty, and possibly some whose set was emptied but not yet tidied: sets grow only
    /// through [`DenseSets::slot`], which sets the bit).
    Sparse(ShardMap<IdSet>, u32, Bits),
    Dense(ChunkVec<IdSet>),
}

impl Default for DenseSets {
    fn default() -> Self {
        DenseSets::Sparse(ShardMap::default(), 0, Bits::default())
    }
}

/// Bytes of one entry of a sparse map (key, set, control byte, and the table's slack).
const SPARSE_ENTRY: usize = 28;

impl DenseSets {
    pub fn get(&self, id: u32) -> Option<&IdSet> {
        match self {
            DenseSets::Sparse(m, _, present) => present.contains(id).then(|| m.get(id)).flatten(),
            DenseSets::Dense(v) => v.get(id as usize),
        }
        .filter(|s| !s.is_empty())
    }

    /// Reads the memory `get(id)` first waits for (the slot, or the bit that guards the map)
    /// and returns a word of it: see [`RelationIndex::read_ahead`](super::relation::RelationIndex::read_ahead).
    pub fn read_ahead(&self, id: u32) -> u64 {
        match self {
            DenseSets::Sparse(_, _, present) => present.word(id),
            DenseSets::Dense(v) => v.get(id as usize).map_or(0, |s| u64::from(matches!(s, IdSet::Empty))),
        }
    }

    /// `id`'s set to shrink (`None` when `id` has no entry): a set grows only through
    /// [`DenseSets::slot`].
    pub(super) fn get_mut(&mut self, id: u32) -> Option<&mut IdSet> {
        match self {
            DenseSets::Sparse(m, _, present) => present.contains(id).then(|| m.get_mut(id)).flatten(),
            DenseSets::Dense(v) => v.get_mut(id as usize),
        }
    }

    /// Removes `id`'s set if it became empty (sparse form only; dense slots stay).
    pub(super) fn tidy(&mut self, id: u32) {
        if let DenseSets::Sparse(m, _, present) = self
            && m.get(id).is_none_or(IdSet::is_empty)
        {
            m.remove(id);
            present.remove(id);
        }
    }

    /// `id`'s set to change or grow (created empty if it has none).
    pub(super) fn slot(&mut self, id: u32) -> &mut IdSet {
        if let DenseSets::Sparse(m, largest, present) = self {
            present.insert(id);
            *largest = (*largest).max(id);
            let max = *largest as usize;
            // Switch to the vector once it costs less than the map would.
            if (max + 1) * std::mem::size_of::<IdSet>() < (m.len() + 1) * SPARSE_ENTRY {
                let mut entries = m.take_all();
                entries.sort_unstable_by_key(|(k, _)| *k);
                let mut v: ChunkVec<IdSet> = ChunkVec::default();
                for (k, set) in entries {
                    v.grow_to(k as usize, IdSet::default);
                    v.push(set);
                }
                v.grow_to(max + 1, IdSet::default);
                *self = DenseSets::Dense(v);
            }
        }
        match self {
            DenseSets::Sparse(m, _, _) => m.entry_or_default(id),
            DenseSets::Dense(v) => v.slot(id as usize, IdSet::default),
        }
    }

    /// (id, set) for every non-empty set (in id order for the vector, any order for the map).
    pub fn iter(&self) -> Box<dyn Iterator<Item = (u32, &IdSet)> + '_> {
        match self {
            DenseSets::Sparse(m, _, _) => Box::new(m.iter().filter(|(_, s)| !s.is_empty())),
            DenseSets::Dense(v) => {
                Box::new(v.iter().enumerate().filter(|(_, s)| !s.is_empty()).map(|(i, s)| (i as u32, s)))
            }
        }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            DenseSets::Sparse(m, _, present) => {
                m.table_bytes(std::mem::size_of::<(u32, IdSet)>())
                    + m.values().map(IdSet::heap_bytes).sum::<usize>()
                    + present.heap_bytes()
            }
            DenseSets::Dense(v) => v.slot_bytes() + v.iter().map(IdSet::heap_bytes).sum::<usize>(),
        }
    }
}

/// Resources with a subject from which [`ForwardSets`] first asks whether a column of single
/// subjects would pay.
const SINGLES_FROM: usize = 64;

/// Each resource's subjects in one edge kind. Most resources name one subject of a kind (a
/// document's parent, its owner). Once a column of 4-byte slots by resource id costs less than
/// a map of sets would, and most resources have one subject, such a resource's subject sits in
/// that column, and only resources with more keep a set: a Check reads one slot in an array a
/// quarter the size of one of sets (16 bytes a slot), so it touches fewer cache lines and
/// pages.
#[derive(Debug, Clone, Default)]
pub struct ForwardSets {
    /// Resource id → its one subject + 1 (0: none here, see `many`); `None` until it pays, and
    /// again once fewer than a quarter of the resources are in it. A resource whose id would
    /// grow it past what a map of sets would cost goes to `many` instead.
    singles: Option<ChunkVec<u32>>,
    /// The other resources' sets (every resource's while there is no column).
    many: DenseSets,
    /// Resources with at least one subject.
    resources: usize,
    /// The largest resource id given a subject.
    largest: u32,
    /// `resources` when the column was last considered or folded (it is considered again at
    /// twice as many).
    considered_at: usize,
    /// Resources whose subject is in the column.
    in_column: usize,
}

impl ForwardSets {
    /// `res`'s subjects (a set built on the spot for a resource with one subject in the column).
    pub fn get(&self, res: u32) -> Option<Cow<'_, IdSet>> {
        match self.single(res) {
            Some(one) => Some(Cow::Owned(IdSet::one(one))),
            None => self.many.get(res).map(Cow::Borrowed),
        }
    }

    /// Reads the memory `get(res)` first waits for (the column's slot and the sets' first
    /// read) and returns a word of it: see [`RelationIndex::read_ahead`](super::relation::RelationIndex::read_ahead).
    pub fn read_ahead(&self, res: u32) -> u64 {
        let one = self.singles.as_ref().and_then(|c| c.get(res as usize)).copied().unwrap_or(0);
        u64::from(one) ^ self.many.read_ahead(res)
    }

    fn single(&self, res: u32) -> Option<u32> {
        self.singles.as_ref()?.get(res as usize)?.checked_sub(1)
    }

    fn set_single(&mut self, res: u32, slot: u32) {
        if let Some(x) = self.singles.as_mut().and_then(|c| c.get_mut(res as usize)) {
            *x = slot;
        }
    }

    /// Adds `subj` to `res`'s subjects; returns whether it was new.
    pub(super) fn insert(&mut self, res: u32, subj: u32) -> bool {
        if let Some(one) = self.single(res) {
            if one == subj {
                return false;
            }
            // A second subject: the resource moves to a set.
            self.set_single(res, 0);
            self.in_column -= 1;
            let set = self.many.slot(res);
            set.insert(one);
            let new = set.insert(subj);
            self.fold_if_sparse();
            return new;
        }
        if self.many.get(res).is_some() {
            return self.many.slot(res).insert(subj);
        }
        self.resources += 1;
        self.largest = self.largest.max(res);
        let affordable = (res as usize + 1) * std::mem::size_of::<u32>() <= self.resources * SPARSE_ENTRY;
        match (self.singles.as_mut(), subj.checked_add(1)) {
            (Some(column), Some(slot)) if affordable || (res as usize) < column.len() => {
                *column.slot(res as usize, || 0) = slot;
                self.in_column += 1;
            }
            _ => {
                self.many.slot(res).insert(subj);
            }
        }
        if self.singles.is_none() && self.resources >= SINGLES_FROM.max(self.considered_at * 2) {
            self.consider_singles();
        }
        true
    }

    /// Removes `subj` from `res`'s subjects; returns whether it was there.
    pub(super) fn remove(&mut self, res: u32, subj: u32) -> bool {
        if self.single(res) == Some(subj) {
            self.set_single(res, 0);
            self.resources -= 1;
            self.in_column -= 1;
            self.fold_if_sparse();
            return true;
        }
        let removed = self.many.get_mut(res).is_some_and(|s| s.remove(subj));
        if removed && self.many.get(res).is_none() {
            self.resources -= 1;
        }
        self.many.tidy(res);
        removed
    }

    /// Moves resources with one subject into a column when the column costs less than a map
    /// of sets (28 bytes an entry) and most resources have one subject.
    fn consider_singles(&mut self) {
        self.considered_at = self.resources;
        let column_bytes = (self.largest as usize + 1) * std::mem::size_of::<u32>();
        let ones = self.many.iter().filter(|(_, s)| s.len() == 1).count();
        if column_bytes >= self.resources * SPARSE_ENTRY || ones * 2 < self.resources {
            return;
        }
        let mut column: ChunkVec<u32> = ChunkVec::default();
        column.grow_to(self.largest as usize + 1, || 0);
        let mut many = DenseSets::default();
        self.in_column = 0;
        for (res, set) in self.many.iter() {
            match set.iter().next().and_then(|one| one.checked_add(1)) {
                Some(slot) if set.len() == 1 => {
                    *column.slot(res as usize, || 0) = slot;
                    self.in_column += 1;
                }
                _ => *many.slot(res) = set.clone(),
            }
        }
        self.singles = Some(column);
        self.many = many;
    }

    /// Moves the column's subjects back into sets once fewer than a quarter of the resources
    /// are in it (resources given more subjects over time, say): a read of the column would
    /// then mostly find nothing and cost a miss before the set's.
    fn fold_if_sparse(&mut self) {
        if self.in_column * 4 >= self.resources {
            return;
        }
        let Some(column) = self.singles.take() else { return };
        for (res, slot) in column.iter().enumerate() {
            if let Some(one) = slot.checked_sub(1) {
                self.many.slot(res as u32).insert(one);
            }
        }
        self.in_column = 0;
        self.considered_at = self.resources;
    }

    /// Every resource with a subject, once each (in no particular order).
    pub fn resources(&self) -> impl Iterator<Item = u32> + '_ {
        let singles = self
            .singles
            .iter()
            .flat_map(|c| c.iter().enumerate().filter(|(_, slot)| **slot != 0).map(|(res, _)| res as u32));
        singles.chain(self.many.iter().map(|(res, _)| res))
    }

    /// Every (resource, subject) pair.
    pub fn pairs(&self) -> Box<dyn Iterator<Item = (u32, u32)> + '_> {
        let singles = self
            .singles
            .iter()
            .flat_map(|c| c.iter().enumerate().filter_map(|(res, slot)| Some((res as u32, slot.checked_sub(1)?))));
        Box::new(singles.chain(self.many.iter().flat_map(|(r, s)| s.iter().map(move |x| (r, x)))))
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.singles.as_ref().map_or(0, ChunkVec::slot_bytes) + self.many.heap_bytes()
    }
}

/// One kind of unconditional edge, both directions.
#[derive(Debug, Clone, Default)]
pub struct Edges {
    pub forward: ForwardSets,
    pub reverse: DenseSets,
    /// (resource, subject) pairs held.
    pub len: usize,
}

impl Edges {
    pub(super) fn insert(&mut self, res: u32, subj: u32) -> u64 {
        // Only a set that changes is touched (and so copied, when a snapshot shares it).
        if self.forward.get(res).is_some_and(|s| s.contains(subj)) {
            return 0;
        }
        let a = self.forward.insert(res, subj);
        let b = self.reverse.slot(subj).insert(res);
        self.len += usize::from(a);
        u64::from(a) + u64::from(b)
    }

    pub(super) fn remove(&mut self, res: u32, subj: u32) -> u64 {
        if !self.forward.get(res).is_some_and(|s| s.contains(subj)) {
            return 0;
        }
        let a = self.forward.remove(res, subj);
        let b = self.reverse.get_mut(subj).is_some_and(|s| s.remove(res));
        self.len -= usize::from(a);
        self.reverse.tidy(subj);
        u64::from(a) + u64::from(b)
    }

    /// Every (resource, subject) pair.
    pub fn pairs(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.forward.pairs()
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.forward.heap_bytes() + self.reverse.heap_bytes()
    }
}

/// An edge whose answer depends on a caveat or an expiration.
#[derive(Debug, Clone, PartialEq)]
pub struct SideEdge {
    pub resource: u32,
    /// The subject's id, or [`WILDCARD`].
    pub subject: u32,
    pub caveat: Option<CaveatRef>,
    pub expiration: Option<Timestamp>,
}

/// Conditional and expiring edges of one kind, by resource and by subject.
#[derive(Debug, Clone, Default)]
pub struct SideEdges {
    by_resource: ShardMap<Vec<SideEdge>>,
    /// Subject id (or [`WILDCARD`]) → resources with a side edge naming it.
    by_subject: ShardMap<IdSet>,
    /// The keys of `by_resource`, and of `by_subject` but the wildcard: most objects have no
    /// side edge, and asking these costs no read of the maps.
    resources: Bits,
    subjects: Bits,
    len: usize,
}

impl SideEdges {
    /// The side edges of one resource.
    pub fn of_resource(&self, resource: u32) -> &[SideEdge] {
        if !self.resources.contains(resource) {
            return &[];
        }
        self.by_resource.get(resource).map_or(&[], Vec::as_slice)
    }

    /// Reads the word `of_resource(resource)` first waits for and returns it: see
    /// [`RelationIndex::read_ahead`](super::relation::RelationIndex::read_ahead).
    pub fn read_ahead(&self, resource: u32) -> u64 {
        self.resources.word(resource)
    }

    /// Resources with a side edge naming `subject` (or [`WILDCARD`]).
    pub fn naming(&self, subject: u32) -> Option<&IdSet> {
        if subject != WILDCARD && !self.subjects.contains(subject) {
            return None;
        }
        self.by_subject.get(subject)
    }

    pub fn iter(&self) -> impl Iterator<Item = &SideEdge> {
        self.by_resource.values().flatten()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn insert(&mut self, e: SideEdge) {
        self.resources.insert(e.resource);
        if e.subject != WILDCARD {
            self.subjects.insert(e.subject);
        }
        self.by_subject.entry_or_default(e.subject).insert(e.resource);
        self.by_resource.entry_or_default(e.resource).push(e);
        self.len += 1;
    }

    pub(super) fn remove(&mut self, resource: u32, subject: u32) -> bool {
        if !self.of_resource(resource).iter().any(|e| e.subject == subject) {
            return false;
        }
        let Some(list) = self.by_resource.get_mut(resource) else { return false };
        let before = list.len();
        list.retain(|e| e.subject != subject);
        let removed = before - list.len();
        if list.is_empty() {
            self.by_resource.remove(resource);
            self.resources.remove(resource);
        }
        self.len -= removed;
        if let Some(s) = self.by_subject.get_mut(subject) {
            s.remove(resource);
            if s.is_empty() {
                self.by_subject.remove(subject);
                self.subjects.remove(subject);
            }
        }
        true
    }

    pub(super) fn heap_bytes(&self) -> usize {
        let edges: usize = self
            .by_resource
            .values()
            .map(|v| {
                v.capacity() * std::mem::size_of::<SideEdge>()
                    + v.iter()
                        .map(|e| {
                            e.caveat.as_ref().map_or(0, |c| {
                                c.name.capacity() + serde_json::Value::Object(c.context.clone()).to_string().len() * 2
                            })
                        })
                        .sum::<usize>()
            })
            .sum();
        edges
            + self.resources.heap_bytes()
            + self.subjects.heap_bytes()
            + self.by_resource.table_bytes(std::mem::size_of::<(u32, Vec<SideEdge>)>())
            + self.by_subject.table_bytes(std::mem::size_of::<(u32, IdSet)>())
            + self.by_subject.values().map(IdSet::heap_bytes).sum::<usize>()
    }
}

/// The edges of one (resource type, relation) to one subject type and subject relation.
#[derive(Debug, Clone)]
pub struct EdgeKind {
    pub subject_type: String,
    /// `None` for terminal subjects (and wildcards).
    pub subject_relation: Option<String>,
    /// Unconditional edges.
    pub edges: Edges,
    /// Resources with an unconditional wildcard edge (terminal kinds only).
    pub wildcards: Arc<IdSet>,
    /// Conditional and expiring edges, wildcards included.
    pub side: SideEdges,
}

impl EdgeKind {
    pub(super) fn heap_bytes(&self) -> usize {
        self.subject_type.capacity()
            + self.subject_relation.as_ref().map_or(0, String::capacity)
            + self.edges.heap_bytes()
            + self.wildcards.heap_bytes()
            + self.side.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// Sets by id against a BTreeMap model, through inserts and removals that empty sets, the
    /// switch from the map to the vector, and a clone taken midway that must keep its values.
    #[test]
    fn dense_sets_match_a_btreemap() {
        let mut d = DenseSets::default();
        let mut model: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
        let mut x: u64 = 11;
        let mut saved = None;
        for step in 0..40_000u32 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            // Ids spread thin first (the map, bits in several chunks), then packed (the vector).
            let id = if step < 20_000 { ((x >> 33) as u32 % 400) * 37 } else { (step - 20_000) * 7 % 15_000 };
            let member = (x >> 20) as u32 % 5;
            if (x >> 12).is_multiple_of(3) {
                let had = model.get_mut(&id).is_some_and(|s| s.remove(&member));
                let removed = d.get_mut(id).is_some_and(|s| s.remove(member));
                d.tidy(id);
                assert_eq!(removed, had, "remove {member} from {id}");
                if model.get(&id).is_some_and(BTreeSet::is_empty) {
                    model.remove(&id);
                }
            } else {
                assert_eq!(d.slot(id).insert(member), model.entry(id).or_default().insert(member));
            }
            if step == 10_000 {
                saved = Some((d.clone(), model.clone()));
            }
            let got = d.get(id).map(|s| s.iter().collect::<BTreeSet<u32>>());
            assert_eq!(got.as_ref(), model.get(&id), "step {step}, id {id}");
        }
        assert!(matches!(d, DenseSets::Dense(_)));
        let all = |d: &DenseSets| {
            let mut v: Vec<(u32, Vec<u32>)> = d.iter().map(|(k, s)| (k, s.iter().collect())).collect();
            v.sort_unstable();
            v
        };
        let want = |m: &BTreeMap<u32, BTreeSet<u32>>| -> Vec<(u32, Vec<u32>)> {
            m.iter().map(|(k, s)| (*k, s.iter().copied().collect())).collect()
        };
        assert_eq!(all(&d), want(&model));
        let (old, old_model) = saved.unwrap();
        assert!(matches!(old, DenseSets::Sparse(..)));
        assert_eq!(all(&old), want(&old_model));
        for id in 0..16_000 {
            assert_eq!(old.get(id).is_some(), old_model.contains_key(&id), "{id}");
        }
    }

    /// Each resource's subjects against a BTreeMap model: resources with one subject move to
    /// the column once it pays, gain a second subject (to a set) and lose them again; a clone
    /// taken before the switch keeps its values.
    #[test]
    fn forward_sets_match_a_btreemap() {
        let mut f = ForwardSets::default();
        let mut model: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
        let mut x: u64 = 5;
        // Clones before the column and just after it: later writes must not change them.
        let (mut saved, mut saved_column) = (None, None);
        for step in 0..30_000u32 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let res = (x >> 33) as u32 % 5_000;
            // Mostly one subject per resource (subject 0), sometimes a second, sometimes removed.
            let subj = if (x >> 14).is_multiple_of(8) { 1 + (x >> 20) as u32 % 3 } else { res % 7 };
            if (x >> 8).is_multiple_of(5) {
                let had = model.get_mut(&res).is_some_and(|s| s.remove(&subj));
                if model.get(&res).is_some_and(BTreeSet::is_empty) {
                    model.remove(&res);
                }
                assert_eq!(f.remove(res, subj), had, "remove {subj} from {res}");
            } else {
                assert_eq!(f.insert(res, subj), model.entry(res).or_default().insert(subj));
            }
            if step == 100 {
                saved = Some((f.clone(), model.clone()));
            }
            if saved_column.is_none() && f.singles.is_some() {
                saved_column = Some((f.clone(), model.clone()));
            }
            let got = f.get(res).map(|s| s.iter().collect::<BTreeSet<u32>>());
            assert_eq!(got.as_ref(), model.get(&res), "step {step}, resource {res}");
            assert_eq!(f.resources, model.len());
        }
        assert!(f.singles.is_some(), "the column was taken up");
        let filled = f.singles.as_ref().map_or(0, |c| c.iter().filter(|x| **x != 0).count());
        assert_eq!(f.in_column, filled);
        let pairs = |f: &ForwardSets| {
            let mut v: Vec<(u32, u32)> = f.pairs().collect();
            v.sort_unstable();
            v
        };
        let want = |m: &BTreeMap<u32, BTreeSet<u32>>| -> Vec<(u32, u32)> {
            m.iter().flat_map(|(r, s)| s.iter().map(move |x| (*r, *x))).collect()
        };
        assert_eq!(pairs(&f), want(&model));
        let (old, old_model) = saved.unwrap();
        assert!(old.singles.is_none());
        assert_eq!(pairs(&old), want(&old_model));
        let (old, old_model) = saved_column.unwrap();
        assert_eq!(pairs(&old), want(&old_model));
        for res in 0..5_000 {
            let got = old.get(res).map(|s| s.iter().collect::<BTreeSet<u32>>());
            assert_eq!(got.as_ref(), old_model.get(&res), "resource {res}");
        }
        let mut resources: Vec<u32> = f.resources().collect();
        resources.sort_unstable();
        assert_eq!(resources, model.keys().copied().collect::<Vec<_>>());
        // A resource far past the column goes to a set (the column does not grow to it), and a
        // subject id with no room for the column's +1 too.
        assert!(f.insert(4_000_000, 3) && f.insert(7, u32::MAX));
        assert_eq!(f.singles.as_ref().map(ChunkVec::len), Some(5_000));
        assert_eq!(f.get(4_000_000).map(|s| s.iter().collect::<Vec<_>>()), Some(vec![3]));
        assert!(f.get(7).is_some_and(|s| s.contains(u32::MAX)));
    }

    /// A column most of whose resources gained a second subject goes back to sets, with every
    /// subject kept; it is taken up again once enough resources with one subject arrive.
    #[test]
    fn a_column_left_mostly_empty_goes_back_to_sets() {
        let mut f = ForwardSets::default();
        let mut model: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
        fn add(f: &mut ForwardSets, model: &mut BTreeMap<u32, BTreeSet<u32>>, res: u32, subj: u32) {
            assert!(f.insert(res, subj));
            model.entry(res).or_default().insert(subj);
        }
        for res in 0..100 {
            add(&mut f, &mut model, res, res % 9);
        }
        assert!(f.singles.is_some() && f.in_column == 100);
        for res in 0..80 {
            add(&mut f, &mut model, res, 50);
        }
        assert!(f.singles.is_none(), "folded once fewer than a quarter were single");
        assert_eq!(f.in_column, 0);
        for res in 0..100 {
            let got = f.get(res).map(|s| s.iter().collect::<BTreeSet<u32>>());
            assert_eq!(got.as_ref(), model.get(&res), "resource {res}");
        }
        for res in 100..300 {
            add(&mut f, &mut model, res, 1);
        }
        assert!(f.singles.is_some(), "taken up again at twice the resources");
        let mut pairs: Vec<(u32, u32)> = f.pairs().collect();
        pairs.sort_unstable();
        let want: Vec<(u32, u32)> = model.iter().flat_map(|(r, s)| s.iter().map(move |x| (*r, *x))).collect();
        assert_eq!(pairs, want);
    }

    /// Side edges are found by resource and by subject (the wildcard too) while they exist,
    /// and not once removed.
    #[test]
    fn side_edges_are_found_both_ways_until_removed() {
        let mut side = SideEdges::default();
        let edge = |resource, subject| SideEdge { resource, subject, caveat: None, expiration: None };
        side.insert(edge(40_000, 7));
        side.insert(edge(40_000, WILDCARD));
        side.insert(edge(3, 7));
        assert_eq!(side.of_resource(40_000).len(), 2);
        assert_eq!(side.naming(7).map(|s| s.iter().collect::<Vec<_>>()), Some(vec![3, 40_000]));
        assert_eq!(side.naming(WILDCARD).map(|s| s.iter().collect::<Vec<_>>()), Some(vec![40_000]));
        assert!(side.of_resource(4).is_empty() && side.naming(8).is_none());
        assert!(side.remove(40_000, 7) && side.remove(40_000, WILDCARD));
        assert!(side.of_resource(40_000).is_empty() && side.naming(WILDCARD).is_none());
        assert_eq!(side.naming(7).map(|s| s.iter().collect::<Vec<_>>()), Some(vec![3]));
        assert!(side.remove(3, 7));
        assert!(side.naming(7).is_none() && side.is_empty());
    }
}

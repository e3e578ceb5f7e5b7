//! LookupResources by set algebra: for every schema node the permission depends on, `yes` and
//! `maybe` bitmaps of object ids, strongly connected groups of nodes iterated semi-naively to
//! their least fixpoint (see the module documentation of `eval`).

use std::time::Instant;

use roaring::RoaringBitmap;

use super::{Ctx, subject_id, subject_member};
use crate::engine::EvalError;
use crate::engine::lookup::Candidates;
use crate::index::edges::EdgeKind;
use crate::index::graph::WILDCARD;
use crate::index::hash::FastMap;
use crate::index::idset::IdSet;
use crate::model::SubjectRef;
use crate::schema::ast::ArrowKind;
use crate::schema::{AllowedKind, MemberId, Rewrite};

/// The first 16 bytes of an id as a big-endian number, zero-padded: ordering by it agrees with
/// ordering by the text wherever the keys differ (ids contain no zero bytes), so only ids with
/// equal keys need their text compared.
fn prefix_key(id: &str) -> u128 {
    let mut w = [0u8; 16];
    for (d, s) in w.iter_mut().zip(id.as_bytes()) {
        *d = *s;
    }
    u128::from_be_bytes(w)
}

/// The `yes` and `maybe` sets of one schema node.
#[derive(Clone, Default, PartialEq)]
struct Sets {
    yes: RoaringBitmap,
    maybe: RoaringBitmap,
}

/// The objects of `resource_type` on which `subject` may hold `permission`, by set algebra over
/// the index; `Ok(None)` when the reference must answer (a subject set whose object no
/// relationship names, or a permission that depends on recursion through an exclusion). The
/// request must already be validated against the schema.
pub fn resource_sets(
    ctx: &Ctx<'_>,
    resource_type: &str,
    permission: &str,
    subject: &SubjectRef,
) -> Result<Option<Candidates>, EvalError> {
    let (schema, ix, plan) = (ctx.schema, ctx.ix, ctx.plan);
    let sid = subject_id(ix, subject);
    if subject.relation.is_some() && sid.is_none() {
        return Ok(None);
    }
    let Some(root) = schema.definition(resource_type).and_then(|d| d.member(permission)) else {
        return Ok(Some(Candidates::default()));
    };
    // The schema nodes the permission depends on, and their dependencies, by member.
    let relations = schema.relation_count();
    let mut node_of = vec![usize::MAX; relations + schema.permission_count()];
    let mut nodes: Vec<MemberId> = Vec::new();
    let mut edges: Vec<(usize, usize)> = Vec::new();
    let mut stack = Vec::new();
    let mut add = |m: MemberId, nodes: &mut Vec<MemberId>, stack: &mut Vec<usize>| -> usize {
        let Some(slot) = node_of.get_mut(m.dense(relations)) else { return usize::MAX };
        if *slot == usize::MAX {
            *slot = nodes.len();
            stack.push(nodes.len());
            nodes.push(m);
        }
        *slot
    };
    add(root, &mut nodes, &mut stack);
    while let Some(n) = stack.pop() {
        let Some(&member) = nodes.get(n) else { continue };
        let mut deps: Vec<MemberId> = Vec::new();
        match member {
            MemberId::Relation(rid) => {
                if let Some(r) = schema.relation(rid) {
                    for a in &r.allowed {
                        if let AllowedKind::Relation(x) = &a.kind
                            && let Some(m) = schema.definition(&a.ty).and_then(|d| d.member(x))
                        {
                            deps.push(m);
                        }
                    }
                }
                if let Some(slot) = plan.relation(rid).slot {
                    let kinds = ix.slot(slot).map_or(0, |ri| ri.kinds.len());
                    deps.extend((0..kinds).filter_map(|pos| plan.kind_member(slot, pos)));
                }
            }
            MemberId::Permission(pid) => {
                for rw in schema.permission(pid).map(|p| p.rewrite.nodes()).into_iter().flatten() {
                    match rw {
                        Rewrite::Computed { member, .. } => deps.push(*member),
                        // Subject types the data holds: one without edges adds nothing.
                        Rewrite::Arrow { id, .. } => {
                            deps.extend(plan.arrow(*id).into_iter().flat_map(|a| a.targets.iter().flatten().copied()));
                        }
                        Rewrite::Nil | Rewrite::Union(..) | Rewrite::Intersection(..) | Rewrite::Exclusion(..) => {}
                    }
                }
            }
        }
        for m in deps {
            let to = add(m, &mut nodes, &mut stack);
            edges.push((n, to));
        }
    }
    // Set algebra climbs to a least fixpoint, which recursion through an exclusion's right-hand
    // side does not have: such lookups take the reference's candidates and Checks (which name a
    // cycle the data closes).
    if nodes.iter().any(|m| schema.unstratified(*m)) {
        return Ok(None);
    }
    let mut solver = SetSolver {
        ctx: *ctx,
        subject,
        sid,
        subject_member: subject_member(schema, subject),
        node_of: &node_of,
        sets: vec![Sets::default(); nodes.len()],
        images: FastMap::default(),
        dense: Dense::default(),
        work: 0,
        started: Instant::now(),
    };
    for comp in crate::scc::strongly_connected_components(nodes.len(), &edges) {
        let recursive = comp.len() > 1 || comp.first().is_some_and(|&c| edges.contains(&(c, c)));
        loop {
            let mut changed = false;
            for &n in &comp {
                let Some(&m) = nodes.get(n) else { continue };
                let next = solver.node(m)?;
                if let Some(slot) = solver.sets.get_mut(n)
                    && *slot != next
                {
                    *slot = next;
                    changed = true;
                }
            }
            if !recursive || !changed {
                break;
            }
        }
    }
    let root = solver.sets.swap_remove(0);
    let Some(names) = ix.types.get(resource_type) else { return Ok(Some(Candidates::default())) };
    // Sort by the first 16 bytes as one integer (ids that share them are put in order by their
    // full text afterwards): integer comparisons instead of string comparisons.
    let all_sure = root.yes == root.maybe;
    let mut found: Vec<(u128, u32)> = Vec::with_capacity(root.maybe.len() as usize);
    for id in &root.maybe {
        if let Some(n) = names.name(id) {
            found.push((prefix_key(n), id));
        }
    }
    found.sort_unstable_by_key(|e| e.0);
    let name = |id: u32| names.name(id).unwrap_or_default();
    let mut i = 0;
    while i < found.len() {
        let key = found.get(i).map_or(0, |e| e.0);
        let run = found.get(i..).map_or(0, |rest| rest.iter().take_while(|e| e.0 == key).count());
        if run > 1
            && let Some(slice) = found.get_mut(i..i + run)
        {
            slice.sort_unstable_by(|a, b| name(a.1).cmp(name(b.1)));
        }
        i += run.max(1);
    }
    Ok(Some(Candidates::from_sorted(found.into_iter().map(|(_, id)| (name(id), all_sure || root.yes.contains(id))))))
}

/// The term of an image taken through a relation's own edges (arrows use their [`ArrowId`]).
///
/// [`ArrowId`]: crate::schema::ArrowId
const RELATION_TERM: u32 = u32::MAX;

struct SetSolver<'a> {
    ctx: Ctx<'a>,
    subject: &'a SubjectRef,
    sid: Option<u32>,
    subject_member: Option<MemberId>,
    /// Member (dense) → its node, or `usize::MAX`.
    node_of: &'a [usize],
    sets: Vec<Sets>,
    /// Reverse images already computed, per (slot, edge kind, term): inside a recursive group
    /// the subject sets only grow from one round to the next, so each round reverses only the
    /// ids new since the last one (semi-naive evaluation).
    images: FastMap<(u32, u32, u32), Image>,
    dense: Dense,
    work: usize,
    started: Instant,
}

/// The reverse image of a subject set through one edge kind, and the subjects it covers.
#[derive(Default)]
struct Image {
    seen_yes: RoaringBitmap,
    yes: RoaringBitmap,
    seen_maybe: RoaringBitmap,
    maybe: RoaringBitmap,
}

impl SetSolver<'_> {
    fn step(&mut self, n: usize) -> Result<(), EvalError> {
        self.work += n;
        let limits = self.ctx.env.limits;
        if self.work > limits.max_work {
            return Err(EvalError::WorkLimit(limits.max_work));
        }
        if self.started.elapsed() > limits.deadline {
            return Err(EvalError::Deadline(limits.deadline));
        }
        Ok(())
    }

    fn get(&self, m: MemberId) -> Option<&Sets> {
        let n = *self.node_of.get(m.dense(self.ctx.schema.relation_count()))?;
        self.sets.get(n)
    }

    /// The resources whose edges of kind `k` (at `slot`, position `pos`) name a subject in
    /// `member`'s sets: through unconditional edges to its `yes` when `with_yes`, through any
    /// edge to its `maybe`. Only subjects new since the last call for this (kind, term) are
    /// reversed.
    fn image(
        &mut self,
        (slot, pos, k): (u32, usize, &EdgeKind),
        member: Option<MemberId>,
        term: u32,
        with_yes: bool,
    ) -> Result<(RoaringBitmap, RoaringBitmap), EvalError> {
        let relations = self.ctx.schema.relation_count();
        let Some(&n) = member.and_then(|m| self.node_of.get(m.dense(relations))) else { return Ok(Default::default()) };
        let key = (slot, pos as u32, term);
        let mut image = self.images.remove(&key).unwrap_or_default();
        let Some(sub) = self.sets.get(n) else { return Ok(Default::default()) };
        if !image.seen_yes.is_subset(&sub.yes) || !image.seen_maybe.is_subset(&sub.maybe) {
            // Sets only grow inside a fixpoint; anything else starts the image over.
            image = Image::default();
        }
        let new_yes = if with_yes { &sub.yes - &image.seen_yes } else { RoaringBitmap::new() };
        let new_maybe = &sub.maybe - &image.seen_maybe;
        let work = (new_yes.len() + new_maybe.len()) as usize;
        let dense = &mut self.dense;
        dense.gather(new_yes.iter().filter_map(|x| k.edges.reverse.get(x)), &mut image.yes);
        if new_maybe == new_yes {
            // The common case (no conditional subjects): the unconditional part is the same.
            image.maybe |= &image.yes;
        } else {
            dense.gather(new_maybe.iter().filter_map(|x| k.edges.reverse.get(x)), &mut image.maybe);
        }
        dense.gather(new_maybe.iter().filter_map(|x| k.side.naming(x)), &mut image.maybe);
        image.seen_yes |= new_yes;
        image.seen_maybe |= new_maybe;
        let out = (image.yes.clone(), image.maybe.clone());
        self.images.insert(key, image);
        self.step(work)?;
        Ok(out)
    }

    fn node(&mut self, m: MemberId) -> Result<Sets, EvalError> {
        let mut out = match m {
            MemberId::Relation(rid) => self.relation(rid)?,
            MemberId::Permission(pid) => match self.ctx.schema.permission(pid) {
                Some(p) => self.rewrite(&p.rewrite)?,
                None => Sets::default(),
            },
        };
        if let Some(sid) = self.sid
            && self.subject_member == Some(m)
        {
            out.yes.insert(sid);
            out.maybe.insert(sid);
        }
        Ok(out)
    }

    fn relation(&mut self, rid: crate::schema::RelationId) -> Result<Sets, EvalError> {
        let mut out = Sets::default();
        let (ix, plan) = (self.ctx.ix, self.ctx.plan);
        let Some(slot) = plan.relation(rid).slot else { return Ok(out) };
        let Some(ri) = ix.slot(slot) else { return Ok(out) };
        let s = self.subject;
        for (pos, k) in ri.kinds.iter().enumerate() {
            match &k.subject_relation {
                None => {
                    if s.relation.is_some() || k.subject_type != s.object.ty {
                        continue;
                    }
                    if let Some(sid) = self.sid {
                        if let Some(set) = k.edges.reverse.get(sid) {
                            set.union_into(&mut out.yes);
                        }
                        if let Some(set) = k.side.naming(sid) {
                            set.union_into(&mut out.maybe);
                        }
                    }
                    k.wildcards.union_into(&mut out.yes);
                    if let Some(set) = k.side.naming(WILDCARD) {
                        set.union_into(&mut out.maybe);
                    }
                }
                Some(_) => {
                    let image = self.image((slot, pos, k), plan.kind_member(slot, pos), RELATION_TERM, true)?;
                    out.yes |= &image.0;
                    out.maybe |= &image.1;
                }
            }
        }
        out.maybe |= &out.yes;
        Ok(out)
    }

    fn rewrite(&mut self, rw: &Rewrite) -> Result<Sets, EvalError> {
        Ok(match rw {
            Rewrite::Nil => Sets::default(),
            Rewrite::Computed { member, .. } => self.get(*member).cloned().unwrap_or_default(),
            Rewrite::Union(a, b) => {
                let (x, y) = (self.rewrite(a)?, self.rewrite(b)?);
                Sets { yes: x.yes | y.yes, maybe: x.maybe | y.maybe }
            }
            Rewrite::Intersection(a, b) => {
                let (x, y) = (self.rewrite(a)?, self.rewrite(b)?);
                Sets { yes: x.yes & y.yes, maybe: x.maybe & y.maybe }
            }
            Rewrite::Exclusion(a, b) => {
                let (x, y) = (self.rewrite(a)?, self.rewrite(b)?);
                Sets { yes: x.yes - &y.maybe, maybe: x.maybe - &y.yes }
            }
            Rewrite::Arrow { id, kind, .. } => {
                let mut out = Sets::default();
                let (ix, plan) = (self.ctx.ix, self.ctx.plan);
                let Some(arrow) = plan.arrow(*id) else { return Ok(out) };
                let Some(slot) = arrow.slot else { return Ok(out) };
                let Some(ri) = ix.slot(slot) else { return Ok(out) };
                for (pos, k) in ri.kinds.iter().enumerate() {
                    let target = arrow.targets.get(pos).copied().flatten();
                    let with_yes = !matches!(kind, ArrowKind::All);
                    let image = self.image((slot, pos, k), target, id.index() as u32, with_yes)?;
                    out.yes |= &image.0;
                    out.maybe |= &image.1;
                }
                out.maybe |= &out.yes;
                out
            }
        })
    }
}

/// A scratch bit vector for gathering many id sets into a bitmap: setting bits in a flat
/// vector and appending them in order beats inserting ids into a bitmap one by one in random
/// order.
#[derive(Default)]
struct Dense {
    words: Vec<u64>,
}

impl Dense {
    /// Adds the union of `sets` to `out`.
    fn gather<'s>(&mut self, sets: impl Iterator<Item = &'s IdSet>, out: &mut RoaringBitmap) {
        let mut touched = false;
        let words = &mut self.words;
        for set in sets {
            touched = true;
            set.for_each(|x| {
                let w = x as usize / 64;
                if words.len() <= w {
                    words.resize(w + 1, 0);
                }
                if let Some(word) = words.get_mut(w) {
                    *word |= 1u64 << (x % 64);
                }
            });
        }
        if !touched {
            return;
        }
        let mut ids: Vec<u32> = Vec::new();
        for (i, word) in self.words.iter_mut().enumerate() {
            let mut w = std::mem::take(word);
            while w != 0 {
                ids.push((i as u32) * 64 + w.trailing_zeros());
                w &= w - 1;
            }
        }
        // Ids come out in increasing order, so building from them cannot fail.
        let found = RoaringBitmap::from_sorted_iter(ids).unwrap_or_default();
        *out |= found;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::eval::Fixture;
    use crate::model::Relationship;

    /// Candidates come out in id order, including ids that share their first 16 bytes (the
    /// integer sort key) and ids that are prefixes of others.
    #[test]
    fn lookup_candidates_are_in_id_order() {
        let ids = [
            "document-0000000000-b",
            "document-0000000000-a",
            "document-0000000000",
            "document-000000000",
            "b",
            "a",
            "ab",
            "document-0000000001",
            "Z",
        ];
        let rels: Vec<Relationship> =
            ids.iter().map(|id| Relationship::parse(&format!("doc:{id}#viewer@user:ann")).unwrap()).collect();
        let fixture = Fixture::new(
            "definition user {}\ndefinition doc {\n  relation viewer: user\n  permission view = viewer\n}",
            &rels,
        );
        let subject = SubjectRef::parse("user:ann").unwrap();
        let c = resource_sets(&fixture.ctx(), "doc", "view", &subject).unwrap().unwrap();
        let got: Vec<&str> = (0..c.len())
            .filter_map(|i| c.get(i))
            .map(|(id, sure)| {
                assert!(sure);
                id
            })
            .collect();
        let mut want = ids.to_vec();
        want.sort_unstable();
        assert_eq!(got, want);
        assert_eq!(c.first_after("ab"), want.iter().position(|x| *x == "ab").unwrap() + 1);
    }
}

//! Point Checks: one subject's evaluations of `object#member` nodes over interned ids, depth
//! first, memoized, cheap operands first, short-circuiting; relations that nest only in
//! themselves from their closure, tree-summarized permissions from the tree closure and the
//! subject's grants. Gives up (the caller asks the reference evaluator) on a cycle in the data
//! or past its frame budget.

use std::sync::Arc;
use std::time::Instant;

use roaring::RoaringBitmap;
use serde_json::{Map, Value};

use super::plan::{LeafKind, TreeSummary};
use super::{Ctx, direct_member, meets, subject_id, subject_member};
use crate::conditions::{self, Outcome};
use crate::engine::{EvalError, Relations, Tri};
use crate::index::closure::Closure;
use crate::index::edges::{EdgeKind, SideEdge};
use crate::index::graph::WILDCARD;
use crate::index::hash::{FastMap, FastSet};
use crate::index::idset::IdSet;
use crate::index::relation::RelationIndex;
use crate::model::{CaveatRef, ObjectRef, SubjectRef, Timestamp};
use crate::schema::ast::ArrowKind;
use crate::schema::{ArrowId, MemberId, Permission, PermissionId, Relation, Rewrite};

/// Most nested evaluation frames (nodes plus expression levels) one point Check may use before
/// handing the request to the reference evaluator, which does not recurse on the native stack.
pub const MAX_FRAMES: usize = 400;

/// Most operands a chain of unions is ordered across (longer chains go pairwise).
const FLAT_UNION: usize = 8;

/// How many Checks of one permission for one subject look at the object and its tree
/// ancestors alone before the subject's grant set is built (`Point::summary_at`).
const POINT_SUMMARIES: u32 = 4;

/// Most tree ancestors an object may have for `Point::summary_at` to look at them one by one.
const POINT_SUMMARY_SPAN: usize = 64;

/// Largest grant set a summary builds for one subject: a subject with more grants (or a
/// wildcard grant on more objects) is answered by the walk, which visits only the object and
/// what it reaches.
const GRANT_BUDGET: u64 = 1 << 16;

/// How many membership questions one subject's evaluator answers from its direct groups before
/// building its memberships (`Point::in_group`).
const POINT_MEMBERSHIPS: u32 = 8;

/// Why the fast path stopped.
enum Stop {
    /// A cycle or the frame budget: the reference evaluator must answer.
    Fallback,
    /// Boxed: every evaluation step returns a `Result<Tri, Stop>`, which stays small.
    Error(Box<EvalError>),
}

impl From<EvalError> for Stop {
    fn from(e: EvalError) -> Self {
        Stop::Error(Box::new(e))
    }
}

enum Slot {
    InProgress,
    Done(Tri),
}

/// A node: the member's dense number (over relations, then permissions) in the high half, the
/// object's id in the low half.
type NodeKey = u64;

fn node_key(member: usize, id: u32) -> NodeKey {
    ((member as u64) << 32) | u64::from(id)
}

/// A summarized permission's state for the evaluator's subject.
enum Grants {
    /// Answered this many times from the object and its tree ancestors alone.
    Asked(u32),
    /// The subject's grant set (`None` when the summary cannot answer for the subject).
    Set(Option<RoaringBitmap>),
}

/// A summary leaf resolved in one snapshot.
enum Leaf<'a> {
    Terminal(&'a EdgeKind),
    /// The subject-set kind, the group relation and its slot.
    Sets(&'a EdgeKind, &'a RelationIndex, u32),
    Empty,
    Unusable,
}

/// One subject's point evaluations. Reusable across Checks with the same subject, context and
/// `now` (CheckBulk): memoized node values stay valid.
pub struct Point<'a> {
    ctx: Ctx<'a>,
    subject: &'a SubjectRef,
    /// The subject object's dense id (`None`: a wildcard, or an object no relationship names).
    sid: Option<u32>,
    /// The member a subject set names: that node on the subject's object is true.
    subject_member: Option<MemberId>,
    context: &'a Map<String, Value>,
    /// When this Check's clock started: at its first deadline test (after 1,024 steps of work,
    /// or before a condition), so a Check that does less never reads the clock.
    started: std::cell::Cell<Option<Instant>>,
    work: usize,
    frames: usize,
    memo: FastMap<NodeKey, Slot>,
    /// For a terminal subject and a self-nesting relation (by slot): every object the subject
    /// is named by directly, and every object those are nested in (Leopard).
    memberships: FastMap<u32, RoaringBitmap>,
    /// Membership questions answered without `memberships`, per relation slot.
    membership_asks: FastMap<u32, u32>,
    /// (Permission, object) pairs a tree summary answered no: a summary within that one's is
    /// no there too ([`TreeSummary`]'s `within`).
    summary_no: FastSet<NodeKey>,
    /// Per permission with a summary: the objects where one of its relations holds for this
    /// subject (`None` when conditional edges or exclusions concern the subject).
    grants: FastMap<PermissionId, Grants>,
    /// The earliest expiration among the unexpired expiring edges read since the last
    /// [`Point::check_id`]: absent writes, the answer holds until then.
    expires_at: Option<Timestamp>,
}

/// The maps one evaluator fills. A thread keeps one set between evaluators, emptied
/// ([`Values::take`], [`Point`]'s drop), so a Check does not allocate them afresh: the memo was
/// one allocation and one free per Check, and each other map one more whenever the Check used
/// it (5.26 allocations per cold Check at M, with the boxed set iterators; keeping the maps
/// made such Checks about 5 % faster).
#[derive(Default)]
struct Values {
    memo: FastMap<NodeKey, Slot>,
    memberships: FastMap<u32, RoaringBitmap>,
    membership_asks: FastMap<u32, u32>,
    summary_no: FastSet<NodeKey>,
    grants: FastMap<PermissionId, Grants>,
}

/// Entries past whose room a thread does not keep an evaluator's maps: emptying a map costs a
/// pass over its table, and a LookupResources may fill one with thousands (one per candidate
/// a tree summary rules out).
const KEEP_ROOM: usize = 1024;

thread_local! {
    static SPARE: std::cell::RefCell<Option<Values>> = const { std::cell::RefCell::new(None) };
}

impl Values {
    /// The thread's spare maps, or new ones.
    fn take() -> Values {
        // INVARIANT: a spare is always empty (`keep` empties it before storing it), so no value
        // of one evaluator reaches another.
        let spare = SPARE.try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.take())).ok().flatten();
        // Most Checks memoize a few nodes: room for 8 is the start (16 and 32 were slower,
        // 4 no faster).
        spare.unwrap_or_else(|| Values {
            memo: FastMap::with_capacity_and_hasher(8, Default::default()),
            ..Values::default()
        })
    }

    /// Keeps these maps, emptied, for the thread's next evaluator.
    fn keep(mut self) {
        let rooms = [
            self.memo.capacity(),
            self.memberships.capacity(),
            self.membership_asks.capacity(),
            self.summary_no.capacity(),
            self.grants.capacity(),
        ];
        if rooms.iter().any(|&room| room > KEEP_ROOM) {
            return;
        }
        self.memo.clear();
        self.memberships.clear();
        self.membership_asks.clear();
        self.summary_no.clear();
        self.grants.clear();
        let _ = SPARE.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                *s = Some(self);
            }
        });
    }
}

impl Drop for Point<'_> {
    fn drop(&mut self) {
        Values {
            memo: std::mem::take(&mut self.memo),
            memberships: std::mem::take(&mut self.memberships),
            membership_asks: std::mem::take(&mut self.membership_asks),
            summary_no: std::mem::take(&mut self.summary_no),
            grants: std::mem::take(&mut self.grants),
        }
        .keep();
    }
}

impl<'a> Point<'a> {
    pub fn new(ctx: Ctx<'a>, subject: &'a SubjectRef, context: &'a Map<String, Value>) -> Point<'a> {
        Point::with_subject_id(ctx, subject, subject_id(ctx.ix, subject), context)
    }

    /// [`Point::new`] with the subject's id already looked up ([`subject_id`]).
    pub fn with_subject_id(
        ctx: Ctx<'a>,
        subject: &'a SubjectRef,
        sid: Option<u32>,
        context: &'a Map<String, Value>,
    ) -> Point<'a> {
        let Values { memo, memberships, membership_asks, summary_no, grants } = Values::take();
        Point {
            ctx,
            subject,
            sid,
            subject_member: subject_member(ctx.schema, subject),
            context,
            started: std::cell::Cell::new(None),
            work: 0,
            frames: 0,
            memo,
            memberships,
            membership_asks,
            summary_no,
            grants,
            expires_at: None,
        }
    }

    /// The earliest expiration among the unexpired expiring relationships the last Check read
    /// (`None`: it read none). Edges a short-circuit skipped cannot change its answer: losing
    /// an edge only makes relations smaller, and an unread edge supported nothing.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.expires_at
    }

    /// Whether a side edge is unexpired at `now`; records its expiration when it has one.
    fn live(&mut self, e: &SideEdge) -> bool {
        match e.expiration {
            Some(x) if x <= self.ctx.env.now => false,
            Some(x) => {
                self.expires_at = Some(self.expires_at.map_or(x, |y| y.min(x)));
                true
            }
            None => true,
        }
    }

    /// Points the evaluator at another subject and context, keeping what it resolved about the
    /// schema and the index and forgetting every value.
    pub fn retarget(&mut self, subject: &'a SubjectRef, context: &'a Map<String, Value>) {
        self.retarget_to(subject, subject_id(self.ctx.ix, subject), context);
    }

    /// [`Point::retarget`] with the subject's id already looked up ([`subject_id`]):
    /// CheckBulk looks up every item's ids in one pass, so their memory reads overlap.
    pub fn retarget_to(&mut self, subject: &'a SubjectRef, sid: Option<u32>, context: &'a Map<String, Value>) {
        self.sid = sid;
        self.subject_member = subject_member(self.ctx.schema, subject);
        self.subject = subject;
        self.context = context;
        self.memo.clear();
        self.memberships.clear();
        self.membership_asks.clear();
        self.summary_no.clear();
        self.grants.clear();
    }

    /// Whether the evaluator's values hold for this subject and context.
    pub fn serves(&self, subject: &SubjectRef, context: &Map<String, Value>) -> bool {
        self.subject == subject && self.context == context
    }

    /// `resource#permission` for this subject: `Ok(None)` when the reference evaluator must
    /// answer (a cycle in the data, the frame budget, or a resource no relationship names).
    /// The request must already be validated against the schema.
    pub fn check(&mut self, resource: &ObjectRef, permission: &str) -> Result<Option<Tri>, EvalError> {
        self.check_id(resource, self.ctx.ix.id(resource), permission)
    }

    /// [`Point::check`] with the resource's id already looked up (`ix.id(resource)`).
    pub fn check_id(
        &mut self,
        resource: &ObjectRef,
        id: Option<u32>,
        permission: &str,
    ) -> Result<Option<Tri>, EvalError> {
        let Some(def) = self.ctx.schema.definition(&resource.ty) else { return Ok(None) };
        let Some(member) = def.member(permission) else { return Ok(Some(Tri::False)) };
        let Some(id) = id else {
            // An object the index has never seen has no relationships: each of its relations is
            // empty, and so is every permission built from them (arrows walk its own
            // relations), unless the subject is a set on this very object
            // (`doc:1#view@doc:1#editor`), which the reference decides.
            let own_set = self.subject.relation.is_some() && self.subject.object == *resource;
            return Ok(if own_set { None } else { Some(Tri::False) });
        };
        self.started.set(None);
        self.work = 0;
        self.frames = 0;
        self.expires_at = None;
        // The object's edges in each of its relations, read ahead: their misses overlap
        // (cold Checks at M: p50 about 9 % lower, in one process switching every 1,000
        // requests).
        let ix = self.ctx.ix;
        let row = self.ctx.plan.row(def.id).iter().filter_map(|s| ix.slot(*s));
        std::hint::black_box(row.fold(0, |acc, ri| acc ^ ri.read_ahead(id)));
        match self.node(member, id) {
            Ok(v) => Ok(Some(v)),
            Err(Stop::Fallback) => {
                // Values computed before the stop are exact, but nodes left in progress are not
                // values: forget them so a later Check on this evaluator starts clean.
                self.memo.retain(|_, s| matches!(s, Slot::Done(_)));
                Ok(None)
            }
            Err(Stop::Error(e)) => {
                self.memo.clear();
                Err(*e)
            }
        }
    }

    fn step(&mut self, n: usize) -> Result<(), Stop> {
        self.work += n;
        let limits = self.ctx.env.limits;
        if self.work > limits.max_work {
            return Err(EvalError::WorkLimit(limits.max_work).into());
        }
        if self.work % 1024 < n && self.elapsed() > limits.deadline {
            return Err(EvalError::Deadline(limits.deadline).into());
        }
        Ok(())
    }

    /// Time since this Check's clock started (starting it at the first call).
    fn elapsed(&self) -> std::time::Duration {
        let started = self.started.get().unwrap_or_else(Instant::now);
        self.started.set(Some(started));
        started.elapsed()
    }

    fn enter(&mut self) -> Result<(), Stop> {
        self.frames += 1;
        if self.frames > MAX_FRAMES { Err(Stop::Fallback) } else { Ok(()) }
    }

    /// The name of the type a relation or permission belongs to.
    fn type_of(&self, definition: crate::schema::DefinitionId) -> &'a str {
        self.ctx.schema.definition_by_id(definition).map_or("", |d| d.name.as_str())
    }

    fn node(&mut self, member: MemberId, id: u32) -> Result<Tri, Stop> {
        if self.sid == Some(id) && self.subject_member == Some(member) {
            return Ok(Tri::True);
        }
        let (schema, ix) = (self.ctx.schema, self.ctx.ix);
        enum M<'s> {
            Rel(&'s Relation, &'s RelationIndex, u32),
            Perm(&'s Permission),
        }
        let m = match member {
            MemberId::Relation(rid) => {
                let info = self.ctx.plan.relation(rid);
                let (Some(r), Some(slot)) = (schema.relation(rid), info.slot) else { return Ok(Tri::False) };
                let Some(ri) = ix.slot(slot) else { return Ok(Tri::False) };
                if info.closure {
                    return self.closure_value(r, ri, slot, id);
                }
                if !info.nests {
                    // Only terminal subjects: nothing below to recurse into, nothing worth memoizing.
                    self.step(1)?;
                    return self.relation(r, ri, slot, id);
                }
                M::Rel(r, ri, slot)
            }
            MemberId::Permission(pid) => {
                let Some(p) = schema.permission(pid) else { return Ok(Tri::False) };
                if let Some(v) = self.summarized(p, id)? {
                    return Ok(v);
                }
                M::Perm(p)
            }
        };
        let key = node_key(member.dense(schema.relation_count()), id);
        match self.memo.get(&key) {
            Some(Slot::Done(v)) => return Ok(v.clone()),
            Some(Slot::InProgress) => return Err(Stop::Fallback),
            None => {}
        }
        self.step(1)?;
        self.enter()?;
        self.memo.insert(key, Slot::InProgress);
        let v = match m {
            M::Rel(r, ri, slot) => self.relation(r, ri, slot, id)?,
            M::Perm(p) => self.rewrite(self.type_of(p.definition), &p.rewrite, id)?,
        };
        self.frames -= 1;
        self.memo.insert(key, Slot::Done(v.clone()));
        Ok(v)
    }

    /// `p` on `id` from its tree summary ([`TreeSummary`]), when it has one and it holds for
    /// this subject.
    fn summarized(&mut self, p: &'a Permission, id: u32) -> Result<Option<Tri>, Stop> {
        if !p.recursive {
            return Ok(None);
        }
        let Some(summary) = self.ctx.plan.summary(p.id).map(Arc::clone) else { return Ok(None) };
        let Some(tree) = self.ctx.ix.slot(summary.tree).and_then(RelationIndex::tree) else { return Ok(None) };
        self.step(1)?;
        if summary.within.iter().any(|b| self.summary_no.contains(&node_key(b.index(), id))) {
            return Ok(Some(Tri::False));
        }
        let v = self.summary_value(&summary, p.id, tree, id)?;
        if v.as_ref().is_some_and(Tri::is_false) {
            self.summary_no.insert(node_key(p.id.index(), id));
        }
        Ok(v)
    }

    fn summary_value(
        &mut self,
        summary: &TreeSummary,
        key: PermissionId,
        tree: &'a Closure,
        id: u32,
    ) -> Result<Option<Tri>, Stop> {
        let up = tree.descendants(id);
        // A subject's first few Checks of a permission look at the object and what the tree
        // reaches from it only; one asked about more often gets its grant set, built once.
        let asked = match self.grants.get(&key) {
            Some(Grants::Set(_)) => None,
            Some(Grants::Asked(n)) => Some(*n),
            None => Some(0),
        };
        if let Some(n) = asked {
            if n < POINT_SUMMARIES && up.map_or(0, |u| u.len()) < POINT_SUMMARY_SPAN {
                self.grants.insert(key, Grants::Asked(n + 1));
                return self.summary_at(summary, id, up);
            }
            let g = self.tree_grants(summary)?;
            self.grants.insert(key, Grants::Set(g));
        }
        let Some(Grants::Set(Some(yes))) = self.grants.get(&key) else { return Ok(None) };
        let hit = yes.contains(id) || up.is_some_and(|up| up.any(|x| yes.contains(x)));
        Ok(Some(if hit { Tri::True } else { Tri::False }))
    }

    /// A summary leaf's edge kind in this snapshot (with the group relation for subject sets).
    fn leaf(&self, leaf: &LeafKind) -> Leaf<'a> {
        let ix = self.ctx.ix;
        let kind = |slot: u32, kind: usize| ix.slot(slot).and_then(|ri| ri.kinds.get(kind));
        match *leaf {
            LeafKind::Terminal { slot, kind: i } => kind(slot, i).map_or(Leaf::Unusable, Leaf::Terminal),
            LeafKind::Sets { slot, kind: i, group } => match (kind(slot, i), ix.slot(group)) {
                (Some(k), Some(g)) => Leaf::Sets(k, g, group),
                _ => Leaf::Unusable,
            },
            LeafKind::Empty => Leaf::Empty,
            LeafKind::Unusable => Leaf::Unusable,
        }
    }

    /// A summarized permission on `id` for this subject, from `id` and the objects the tree
    /// reaches from it (`up`) alone: those are all its value depends on. It holds when a leaf
    /// names the subject on one of them through unconditional edges and no excluded relation
    /// may name the subject on any of them. `None` (the walk answers) when the subject is a
    /// subject set, an excluded relation may name it there, or, with no unconditional grant
    /// found, a conditional or expiring edge there, a wildcard or conditional membership, or a
    /// subject set the summary cannot follow could still add to the answer. These are
    /// [`Point::tree_grants`]'s conditions, asked of these objects only.
    fn summary_at(&mut self, summary: &TreeSummary, id: u32, up: Option<&'a IdSet>) -> Result<Option<Tri>, Stop> {
        let s = self.subject;
        if s.relation.is_some() {
            return Ok(None);
        }
        let (ty, sid) = (&s.object.ty, self.sid);
        let any_of = |mut f: &mut dyn FnMut(u32) -> bool| f(id) || up.is_some_and(|u| u.any(&mut f));
        let names = |e: &SideEdge| e.subject == WILDCARD || Some(e.subject) == sid;
        let side_names =
            |k: &EdgeKind| sid.is_some_and(|x| k.side.naming(x).is_some()) || k.side.naming(WILDCARD).is_some();
        for ri in summary.excluded.iter().filter_map(|x| self.ctx.ix.slot(*x)) {
            for k in &ri.kinds {
                if k.subject_relation.is_some() {
                    return Ok(None);
                }
                if &k.subject_type != ty {
                    continue;
                }
                self.step(1)?;
                let anywhere =
                    !k.wildcards.is_empty() || side_names(k) || sid.is_some_and(|x| k.edges.reverse.get(x).is_some());
                if anywhere
                    && any_of(&mut |y| {
                        k.wildcards.contains(y)
                            || sid.is_some_and(|x| k.edges.forward.get(y).is_some_and(|set| set.contains(x)))
                            || k.side.of_resource(y).iter().any(names)
                    })
                {
                    return Ok(None);
                }
            }
        }
        let mut unsure = false;
        for leaf in &summary.leaves {
            self.step(1)?;
            match self.leaf(leaf) {
                Leaf::Terminal(k) => {
                    if &k.subject_type != ty {
                        continue;
                    }
                    // One lookup of the subject's own edges, met with the few objects here.
                    let named = sid.and_then(|x| k.edges.reverse.get(x));
                    if named.is_some_and(|set| meets(set, id, up))
                        || (!k.wildcards.is_empty() && meets(&k.wildcards, id, up))
                    {
                        return Ok(Some(Tri::True));
                    }
                    unsure |= [sid, Some(WILDCARD)]
                        .into_iter()
                        .flatten()
                        .any(|x| k.side.naming(x).is_some_and(|set| meets(set, id, up)));
                }
                Leaf::Sets(k, group, group_slot) => {
                    if !group.closure_enabled() {
                        unsure = true;
                        continue;
                    }
                    let Some(gk) = group.kind(ty, None) else { continue };
                    unsure |= !gk.wildcards.is_empty() || side_names(gk);
                    let direct = sid.and_then(|x| gk.edges.reverse.get(x));
                    let built = self.memberships.get(&group_slot);
                    if built.map_or(direct.is_none(), RoaringBitmap::is_empty) {
                        continue;
                    }
                    let is_member = |g: u32| {
                        g != WILDCARD && built.map_or_else(|| direct_member(group, direct, g), |b| b.contains(g))
                    };
                    // From the subject's groups or from the objects here, whichever are fewer.
                    let span = 1 + up.map_or(0, |u| u.len() as u64);
                    let hit = match built {
                        Some(groups) if groups.len() <= span => {
                            groups.iter().any(|g| k.edges.reverse.get(g).is_some_and(|set| meets(set, id, up)))
                        }
                        _ => any_of(&mut |y| k.edges.forward.get(y).is_some_and(|gs| gs.any(is_member))),
                    };
                    if hit {
                        return Ok(Some(Tri::True));
                    }
                    unsure |= any_of(&mut |y| k.side.of_resource(y).iter().any(|e| is_member(e.subject)));
                }
                Leaf::Empty => {}
                Leaf::Unusable => unsure = true,
            }
        }
        Ok(if unsure { None } else { Some(Tri::False) })
    }

    /// The objects where one of a summary's leaves holds for this (terminal) subject through
    /// unconditional edges; `None` when the summary cannot answer for it: the subject is a
    /// subject set, an excluded relation may name it, or a conditional or expiring edge, a
    /// wildcard membership or a subject set without a closure could add to the answer.
    fn tree_grants(&mut self, summary: &TreeSummary) -> Result<Option<RoaringBitmap>, Stop> {
        let s = self.subject;
        if s.relation.is_some() {
            return Ok(None);
        }
        let (ty, sid) = (&s.object.ty, self.sid);
        let side_names = |k: &EdgeKind, who: Option<u32>| {
            who.is_some_and(|x| k.side.naming(x).is_some()) || k.side.naming(WILDCARD).is_some()
        };
        for ri in summary.excluded.iter().filter_map(|x| self.ctx.ix.slot(*x)) {
            for k in &ri.kinds {
                if k.subject_relation.is_some() {
                    return Ok(None);
                }
                if &k.subject_type == ty
                    && (!k.wildcards.is_empty()
                        || side_names(k, sid)
                        || sid.is_some_and(|x| k.edges.reverse.get(x).is_some()))
                {
                    return Ok(None);
                }
            }
        }
        let mut yes = RoaringBitmap::new();
        for leaf in &summary.leaves {
            self.step(1)?;
            match self.leaf(leaf) {
                Leaf::Terminal(k) => {
                    if &k.subject_type != ty {
                        continue;
                    }
                    if side_names(k, sid) {
                        return Ok(None);
                    }
                    let named = sid.and_then(|x| k.edges.reverse.get(x));
                    if yes.len() + named.map_or(0, |s| s.len() as u64) + k.wildcards.len() as u64 > GRANT_BUDGET {
                        return Ok(None);
                    }
                    if let Some(set) = named {
                        set.union_into(&mut yes);
                    }
                    k.wildcards.union_into(&mut yes);
                }
                Leaf::Sets(k, group, group_slot) => {
                    // Subject sets `g#m`: the subject's memberships from `m`'s closure.
                    if !group.closure_enabled() {
                        return Ok(None);
                    }
                    let Some(gk) = group.kind(ty, None) else { continue };
                    if !gk.wildcards.is_empty() || side_names(gk, sid) {
                        return Ok(None);
                    }
                    let groups = self.memberships_in(group_slot, group, gk)?.clone();
                    for g in &groups {
                        if k.side.naming(g).is_some() {
                            return Ok(None);
                        }
                        if let Some(set) = k.edges.reverse.get(g) {
                            if yes.len() + set.len() as u64 > GRANT_BUDGET {
                                return Ok(None);
                            }
                            set.union_into(&mut yes);
                        }
                    }
                }
                Leaf::Empty => {}
                Leaf::Unusable => return Ok(None),
            }
        }
        Ok(Some(yes))
    }

    /// Whether the terminal subject is in `g` of a self-nesting relation with a valid closure:
    /// from its memberships once built, else by meeting its direct groups with `g` and the
    /// groups nested below `g` (Leopard's one intersection). A subject asked about more than
    /// [`POINT_MEMBERSHIPS`] times gets its memberships built.
    fn in_group(&mut self, slot: u32, ri: &'a RelationIndex, k: &'a EdgeKind, g: u32) -> Result<bool, Stop> {
        if let Some(all) = self.memberships.get(&slot) {
            return Ok(all.contains(g));
        }
        let asks = self.membership_asks.entry(slot).or_insert(0);
        *asks += 1;
        if *asks > POINT_MEMBERSHIPS {
            return Ok(self.memberships_in(slot, ri, k)?.contains(g));
        }
        self.step(1)?;
        Ok(direct_member(ri, self.sid.and_then(|x| k.edges.reverse.get(x)), g))
    }

    /// Every object of a self-nesting relation (with a valid closure) that names the terminal
    /// subject directly, and every object those are nested in (Leopard), once per subject.
    fn memberships_in(&mut self, slot: u32, ri: &'a RelationIndex, k: &'a EdgeKind) -> Result<&RoaringBitmap, Stop> {
        if !self.memberships.contains_key(&slot) {
            let mut all = RoaringBitmap::new();
            if let Some(direct) = self.sid.and_then(|sid| k.edges.reverse.get(sid)) {
                direct.for_each(|g| {
                    all.insert(g);
                    if let Some(up) = ri.closure().and_then(|c| c.ancestors(g)) {
                        up.union_into(&mut all);
                    }
                });
            }
            self.step(all.len() as usize)?;
            self.memberships.insert(slot, all);
        }
        match self.memberships.get(&slot) {
            Some(m) => Ok(m),
            None => Err(Stop::Fallback),
        }
    }

    /// A relation's value on `id` from its edges: the subject named (or its type's wildcard),
    /// subject sets evaluated, conditional and expiring edges with their caveats.
    fn relation(&mut self, r: &'a Relation, ri: &'a RelationIndex, slot: u32, id: u32) -> Result<Tri, Stop> {
        let s = self.subject;
        let plan = self.ctx.plan;
        if s.relation.is_none()
            && let Some(k) = ri.kind(&s.object.ty, None)
        {
            let named = self.sid.is_some_and(|sid| k.edges.forward.get(id).is_some_and(|set| set.contains(sid)));
            if named || k.wildcards.contains(id) {
                return Ok(Tri::True);
            }
        }
        let mut acc = Tri::False;
        for (pos, k) in ri.kinds.iter().enumerate() {
            let (Some(_), Some(set)) = (&k.subject_relation, k.edges.forward.get(id)) else { continue };
            let Some(m) = plan.kind_member(slot, pos) else { continue };
            self.step(set.len())?;
            for x in set.iter() {
                acc = acc.or(self.node(m, x)?);
                if acc.is_true() {
                    return Ok(acc);
                }
            }
        }
        for (pos, k) in ri.kinds.iter().enumerate() {
            for e in k.side.of_resource(id) {
                // Every side edge read is work, expired ones too (the index keeps them until they
                // are collected), so the limits bound a Check that skips many.
                self.step(1)?;
                if !self.live(e) {
                    continue;
                }
                let reach = match &k.subject_relation {
                    Some(_) if e.subject != WILDCARD => match plan.kind_member(slot, pos) {
                        Some(m) => self.node(m, e.subject)?,
                        None => Tri::False,
                    },
                    Some(_) => Tri::False,
                    None if s.relation.is_some() || k.subject_type != s.object.ty => Tri::False,
                    None if e.subject == WILDCARD || Some(e.subject) == self.sid => Tri::True,
                    None => Tri::False,
                };
                if reach.is_false() {
                    continue;
                }
                let c = match &e.caveat {
                    Some(c) => self.caveat(c, self.type_of(r.definition), id, k, e.subject)?,
                    None => Tri::True,
                };
                acc = acc.or(reach.and(c));
                if acc.is_true() {
                    return Ok(acc);
                }
            }
        }
        Ok(acc)
    }

    /// A relation that nests only in itself, while its closure is valid: the subject holds it on
    /// `id` when a relationship of `id` or of an object nested below it names the subject (or
    /// its type's wildcard); conditional edges add their caveats' values.
    fn closure_value(&mut self, r: &'a Relation, ri: &'a RelationIndex, slot: u32, id: u32) -> Result<Tri, Stop> {
        self.step(1)?;
        let s = self.subject;
        let reaches = |x: u32| ri.reaches(id, x).unwrap_or(false);
        if s.relation.is_some() {
            // A subject set is reached when it is this object or one nested below it (the node
            // itself was matched by the caller).
            let hit = self.subject_member == Some(MemberId::Relation(r.id)) && self.sid.is_some_and(reaches);
            return Ok(if hit { Tri::True } else { Tri::False });
        }
        let Some(k) = ri.kind(&s.object.ty, None) else { return Ok(Tri::False) };
        let below = ri.closure().and_then(|c| c.descendants(id)).map_or(0, |d| d.len()) + 1;
        let any_in = |set: &IdSet| -> bool {
            if set.len() <= below {
                set.any(reaches)
            } else {
                set.contains(id)
                    || ri.closure().and_then(|c| c.descendants(id)).is_some_and(|d| d.any(|x| set.contains(x)))
            }
        };
        if self.sid.is_some() && self.in_group(slot, ri, k, id)? {
            return Ok(Tri::True);
        }
        if any_in(&k.wildcards) {
            return Ok(Tri::True);
        }
        let ty = self.type_of(r.definition);
        let mut acc = Tri::False;
        for who in [self.sid, Some(WILDCARD)].into_iter().flatten() {
            let Some(resources) = k.side.naming(who) else { continue };
            for res in resources.iter().filter(|x| reaches(*x)) {
                for e in k.side.of_resource(res).iter().filter(|e| e.subject == who) {
                    // Every side edge read is work, expired ones too (the index keeps them until they
                    // are collected), so the limits bound a Check that skips many.
                    self.step(1)?;
                    if !self.live(e) {
                        continue;
                    }
                    let c = match &e.caveat {
                        Some(c) => self.caveat(c, ty, res, k, e.subject)?,
                        None => Tri::True,
                    };
                    acc = acc.or(c);
                    if acc.is_true() {
                        return Ok(acc);
                    }
                }
            }
        }
        Ok(acc)
    }

    /// The tupleset relation of an arrow in this snapshot.
    fn arrow_relation(&self, arrow: ArrowId) -> Option<&'a RelationIndex> {
        let ix = self.ctx.ix;
        self.ctx.plan.arrow(arrow)?.slot.and_then(|s| ix.slot(s))
    }

    /// How cheap an operand is to evaluate on `id`, for ordering a union's or intersection's
    /// operands (the order never changes the value, only how soon a short-circuit comes): a
    /// relation is one lookup; an arrow with at most one edge here is one step to one node; a
    /// permission of the same object may expand to many nodes; a wider arrow more. A union
    /// costs its cheapest operand (it may stop there), an intersection or exclusion its dearest.
    fn cost(&self, rw: &'a Rewrite, id: u32, depth: u8) -> u8 {
        if depth > 8 {
            return 6;
        }
        match rw {
            Rewrite::Nil => 0,
            Rewrite::Computed { member: MemberId::Relation(_), .. } => 1,
            Rewrite::Computed { .. } => 4,
            Rewrite::Arrow { id: arrow, .. } => {
                let fan_out: usize = self.arrow_relation(*arrow).map_or(0, |ri| {
                    ri.kinds
                        .iter()
                        .map(|k| {
                            k.edges.forward.get(id).map_or(0, |s| s.len())
                                + usize::from(k.wildcards.contains(id))
                                + k.side.of_resource(id).len()
                        })
                        .sum()
                });
                if fan_out <= 1 { 2 } else { 5 }
            }
            Rewrite::Union(a, b) => self.cost(a, id, depth + 1).min(self.cost(b, id, depth + 1)).saturating_add(1),
            Rewrite::Intersection(a, b) | Rewrite::Exclusion(a, b) => {
                self.cost(a, id, depth + 1).max(self.cost(b, id, depth + 1)).saturating_add(1)
            }
        }
    }

    /// `rw` on object `id` of type `ty`.
    fn rewrite(&mut self, ty: &'a str, rw: &'a Rewrite, id: u32) -> Result<Tri, Stop> {
        self.enter()?;
        let v = match rw {
            Rewrite::Nil => Tri::False,
            Rewrite::Computed { member, .. } => self.node(*member, id)?,
            Rewrite::Union(a, b) => match self.union_flat(ty, rw, id)? {
                Some(v) => v,
                None => self.pair(ty, a, b, true, id)?,
            },
            Rewrite::Intersection(a, b) => self.pair(ty, a, b, false, id)?,
            Rewrite::Exclusion(a, b) => {
                let x = self.rewrite(ty, a, id)?;
                if x.is_false() { Tri::False } else { x.minus(self.rewrite(ty, b, id)?) }
            }
            Rewrite::Arrow { id: arrow, kind, .. } => self.arrow(ty, *arrow, *kind, id)?,
        };
        self.frames -= 1;
        Ok(v)
    }

    /// `a + b` or `a & b`, the cheaper operand first, stopping when it decides.
    fn pair(&mut self, ty: &'a str, a: &'a Rewrite, b: &'a Rewrite, union: bool, id: u32) -> Result<Tri, Stop> {
        let (first, second) = if self.cost(b, id, 0) < self.cost(a, id, 0) { (b, a) } else { (a, b) };
        let x = self.rewrite(ty, first, id)?;
        if (union && x.is_true()) || (!union && x.is_false()) {
            return Ok(x);
        }
        let y = self.rewrite(ty, second, id)?;
        Ok(if union { x.or(y) } else { x.and(y) })
    }

    /// A chain of unions (`a + b + c`) evaluated as one: its operands in order of cost, stopping
    /// at the first yes (union is associative and commutative in Kleene logic, so the order
    /// changes only how soon it stops). `None` when the chain has more than [`FLAT_UNION`]
    /// operands (the caller goes pairwise).
    fn union_flat(&mut self, ty: &'a str, rw: &'a Rewrite, id: u32) -> Result<Option<Tri>, Stop> {
        // Operands and their costs, gathered without allocating.
        let mut ops: [(Option<&'a Rewrite>, u8); FLAT_UNION] = [(None, u8::MAX); FLAT_UNION];
        let mut n = 0;
        let mut stack: [Option<&'a Rewrite>; FLAT_UNION] = [None; FLAT_UNION];
        let mut top = 1;
        if let Some(slot) = stack.first_mut() {
            *slot = Some(rw);
        }
        while top > 0 {
            top -= 1;
            let Some(x) = stack.get_mut(top).and_then(Option::take) else { continue };
            if let Rewrite::Union(a, b) = x {
                if top + 2 > FLAT_UNION {
                    return Ok(None);
                }
                if let Some(slot) = stack.get_mut(top) {
                    *slot = Some(b);
                }
                if let Some(slot) = stack.get_mut(top + 1) {
                    *slot = Some(a);
                }
                top += 2;
            } else {
                // An arrow is placed as if it reached one object; its fan-out is looked at only
                // if the operands before it do not decide (below).
                let c = if matches!(x, Rewrite::Arrow { .. }) { 2 } else { self.cost(x, id, 0) };
                let Some(slot) = ops.get_mut(n) else { return Ok(None) };
                *slot = (Some(x), c);
                n += 1;
            }
        }
        // Unused slots cost `u8::MAX`, so they sort last and are skipped.
        ops.sort_by_key(|(_, c)| *c);
        let mut acc = Tri::False;
        let mut later: [Option<&'a Rewrite>; FLAT_UNION] = [None; FLAT_UNION];
        for (i, (leaf, _)) in ops.iter().enumerate() {
            let Some(leaf) = leaf else { break };
            // An arrow that reaches several objects goes after the operands left behind it.
            let more = ops.get(i + 1).is_some_and(|(next, _)| next.is_some());
            if matches!(leaf, Rewrite::Arrow { .. })
                && more
                && self.cost(leaf, id, 0) > 4
                && let Some(slot) = later.get_mut(i)
            {
                *slot = Some(leaf);
                continue;
            }
            acc = acc.or(self.rewrite(ty, leaf, id)?);
            if acc.is_true() {
                return Ok(Some(acc));
            }
        }
        for leaf in later.iter().flatten() {
            acc = acc.or(self.rewrite(ty, leaf, id)?);
            if acc.is_true() {
                break;
            }
        }
        Ok(Some(acc))
    }

    fn arrow(&mut self, ty: &'a str, arrow: ArrowId, kind: ArrowKind, id: u32) -> Result<Tri, Stop> {
        let all = matches!(kind, ArrowKind::All);
        let Some(plan) = self.ctx.plan.arrow(arrow) else { return Ok(Tri::False) };
        let Some(ri) = plan.slot.and_then(|s| self.ctx.ix.slot(s)) else { return Ok(Tri::False) };
        let mut acc = if all { Tri::True } else { Tri::False };
        let mut terms = 0usize;
        // Folds one operand in; returns true when the arrow's value is decided.
        let fold = |acc: &mut Tri, v: Tri| -> bool {
            if all {
                *acc = std::mem::replace(acc, Tri::False).and(v);
                acc.is_false()
            } else {
                *acc = std::mem::replace(acc, Tri::False).or(v);
                acc.is_true()
            }
        };
        for (pos, k) in ri.kinds.iter().enumerate() {
            // A subject whose type lacks the computed member contributes false.
            let target = plan.targets.get(pos).copied().flatten();
            if let Some(set) = k.edges.forward.get(id) {
                self.step(set.len())?;
                for x in set.iter() {
                    terms += 1;
                    let v = match target {
                        Some(t) => self.node(t, x)?,
                        None => Tri::False,
                    };
                    if fold(&mut acc, v) {
                        return Ok(acc);
                    }
                }
            }
            if k.wildcards.contains(id) {
                terms += 1;
                if fold(&mut acc, Tri::False) {
                    return Ok(acc);
                }
            }
            for e in k.side.of_resource(id) {
                // Every side edge read is work, expired ones too (the index keeps them until they
                // are collected), so the limits bound a Check that skips many.
                self.step(1)?;
                if !self.live(e) {
                    continue;
                }
                terms += 1;
                let reach = match target {
                    Some(t) if e.subject != WILDCARD => self.node(t, e.subject)?,
                    _ => Tri::False,
                };
                let v = match (&e.caveat, reach.is_false()) {
                    (Some(c), false) => reach.and(self.caveat(c, ty, id, k, e.subject)?),
                    _ => reach,
                };
                if fold(&mut acc, v) {
                    return Ok(acc);
                }
            }
        }
        Ok(if terms == 0 { Tri::False } else { acc })
    }

    /// A caveat's three-valued outcome for the edge `res_ty:res#…@kind.subject_type:subject`.
    fn caveat(&self, c: &CaveatRef, res_ty: &str, res: u32, k: &EdgeKind, subject: u32) -> Result<Tri, Stop> {
        let ctx = self.ctx;
        // A condition may take up to its own time limit: check the request's deadline first.
        if self.elapsed() > ctx.env.limits.deadline {
            return Err(EvalError::Deadline(ctx.env.limits.deadline).into());
        }
        let caveat = ctx.schema.caveat(&c.name).ok_or_else(|| EvalError::UnknownCaveat(c.name.clone()))?;
        let resource = ObjectRef::new(res_ty, ctx.ix.name(res_ty, res).unwrap_or_default());
        let subject_id =
            if subject == WILDCARD { "*" } else { ctx.ix.name(&k.subject_type, subject).unwrap_or_default() };
        let subject = ObjectRef::new(k.subject_type.as_str(), subject_id);
        let env = conditions::Env {
            now: ctx.env.now,
            resource: ctx.ix.attributes(&resource),
            subject: ctx.ix.attributes(&subject),
        };
        Ok(
            match ctx.conditions.evaluate(&caveat.condition, &c.context, self.context, env).map_err(EvalError::from)? {
                Outcome::True => Tri::True,
                Outcome::False => Tri::False,
                Outcome::Missing(m) => Tri::unknown(m.into_iter().collect()),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::eval::Fixture;
    use crate::model::Relationship;

    fn spare_memo() -> Option<(usize, usize)> {
        SPARE.with(|s| s.borrow().as_ref().map(|v| (v.memo.len(), v.memo.capacity())))
    }

    /// Evaluators on one thread take the maps the last one left, emptied: a Check after
    /// another, for another subject, sees none of its values; maps of which one has grown
    /// past [`KEEP_ROOM`] are not kept.
    #[test]
    fn a_thread_reuses_an_evaluators_maps_emptied() {
        // A chain of 3,000 documents: a Check at its end memoizes a node per document.
        let mut rels: Vec<Relationship> =
            (1..3000).map(|i| Relationship::parse(&format!("doc:d{i}#parent@doc:d{}", i - 1)).unwrap()).collect();
        rels.push(Relationship::parse("doc:d0#viewer@user:ann").unwrap());
        let fixture = Fixture::new(
            "definition user {}\ndefinition doc {\n  relation parent: doc\n  relation viewer: user\n  permission view = viewer + parent->view\n}",
            &rels,
        );
        let ctx = fixture.ctx();
        let context = Map::new();
        let ask = |doc: &str, who: &str| {
            let subject = SubjectRef::parse(who).unwrap();
            let mut p = Point::new(ctx, &subject, &context);
            let v = p.check(&ObjectRef::new("doc", doc), "view").unwrap();
            drop(p);
            v.map(|v| v.is_true())
        };
        assert_eq!(ask("d3", "user:ann"), Some(true));
        assert_eq!(spare_memo().map(|(len, _)| len), Some(0), "kept, and emptied");
        assert_eq!(ask("d3", "user:bob"), Some(false), "the last subject's values are gone");
        assert_eq!(ask("d2", "user:ann"), Some(true));
        let cap = spare_memo().map_or(0, |(_, cap)| cap);
        assert!((8..=KEEP_ROOM).contains(&cap), "{cap}");
        // Past the frame budget the walk stops (the reference answers); what it memoized is
        // gone from the next Check.
        assert_eq!(ask("d2999", "user:bob"), None);
        assert_eq!(ask("d2", "user:bob"), Some(false));
        assert_eq!(ask("d2", "user:ann"), Some(true));
        // Maps of which one has grown past the bound are not kept.
        drop(Values::take());
        assert_eq!(spare_memo(), None);
        let mut big = Values::default();
        big.memo.reserve(KEEP_ROOM + 1);
        big.keep();
        assert_eq!(spare_memo(), None);
        let mut big = Values::default();
        big.summary_no.reserve(KEEP_ROOM + 1);
        big.keep();
        assert_eq!(spare_memo(), None);
        Values::default().keep();
        assert_eq!(spare_memo(), Some((0, 0)));
    }
}

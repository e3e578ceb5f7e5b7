//! The fast evaluator: Check and LookupResources over the index's dense ids and id sets, with
//! the reference evaluator's semantics.
//!
//! Check (`check`) walks `object#member` nodes depth first over interned ids, memoizing each
//! node's three-valued value, trying a permission's cheap terms first and stopping a union at
//! the first yes and an intersection or exclusion at the first no. Relations that nest only in
//! themselves are answered from the Leopard closure (one intersection with the subject's direct
//! groups). Why this equals the reference's least fixpoint: when the walk meets no node that is
//! still being evaluated, the nodes it visits form a DAG, and on a DAG the least fixpoint is
//! exactly bottom-up evaluation; short-circuits skip only operands that cannot change the value
//! (`True ∨ x = True`, `False ∧ x = False`, `False − x = False`). When the walk does meet a
//! node still in progress (a cycle in the data), or exceeds its frame budget, it gives up and
//! the caller asks the reference evaluator, which solves cycles by Kleene iteration.
//!
//! LookupResources (`resource_sets`) computes, for every schema node the permission depends on,
//! two bitmaps of object ids: `yes` (surely true: derived from unconditional edges only) and
//! `maybe` (possibly true or conditional: caveated and expiring edges counted as present), by
//! set algebra over the schema's equations, each strongly connected group of nodes iterated to
//! its least fixpoint. `yes ⊆ true ⊆ true ∪ conditional ⊆ maybe` holds node by node (for
//! `a − b`: `yes = yes(a) − maybe(b)`, `maybe = maybe(a) − yes(b)`), so objects in `yes` are
//! answered at once and only `maybe − yes` needs a point Check.
//!
//! Differences from the reference, both deliberate: a caveat whose value cannot change the
//! answer is not evaluated (so its errors are not reported), and work is counted differently.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use roaring::RoaringBitmap;
use serde_json::{Map, Value};

use super::graph::{EdgeKind, IndexGraph, RelationIndex, WILDCARD};
use super::hash::{FastMap, FastSet};
use crate::conditions::{self, Conditions, Outcome};
use crate::engine::{Env, EvalError, Relations, Tri};
use crate::model::{CaveatRef, ObjectRef, SubjectRef};
use crate::schema::ast::ArrowKind;
use crate::schema::{AllowedKind, CompiledSchema, Definition, Relation, Rewrite};

/// Most nested evaluation frames (nodes plus expression levels) one point Check may use before
/// handing the request to the reference evaluator, which does not recurse on the native stack.
pub const MAX_FRAMES: usize = 400;

/// Most operands a chain of unions is ordered across (longer chains go pairwise).
const FLAT_UNION: usize = 8;

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

/// A node: the address of the schema's relation or permission (stable while the schema is
/// borrowed) and the object's dense id.
type NodeKey = (usize, u32);

/// One subject's point evaluations. Reusable across Checks with the same subject, context and
/// `now` (CheckBulk): memoized node values stay valid.
pub struct Point<'a> {
    schema: &'a CompiledSchema,
    ix: &'a IndexGraph,
    data: &'a dyn Relations,
    conditions: &'a Conditions,
    subject: &'a SubjectRef,
    /// The subject object's dense id (`None`: a wildcard, or an object no relationship names).
    sid: Option<u32>,
    context: &'a Map<String, Value>,
    env: Env,
    started: Instant,
    work: usize,
    frames: usize,
    memo: FastMap<NodeKey, Slot>,
    /// What is resolved about the schema on this snapshot, shared by every Check on it.
    plan: Arc<Plan>,
    /// Member names resolved per (definition, name): keyed by the name's address and length,
    /// which is sound because every name cached is borrowed for `'a` (schema or index text).
    members: FastMap<(usize, usize, usize), Member<'a>>,
    /// An arrow target: the subject type of an edge kind when it has the computed member.
    targets: FastMap<(usize, usize, usize), Option<&'a Definition>>,
    /// For a terminal subject and a self-nesting relation (by index address): every object the
    /// subject is named by directly, and every object those are nested in (Leopard).
    memberships: FastMap<usize, RoaringBitmap>,
    /// Membership questions answered without `memberships`, per relation (by index address).
    membership_asks: FastMap<usize, u32>,
    /// (Permission, object) pairs a tree summary answered no: a summary within that one's is
    /// no there too ([`TreeSummary`]'s `within`).
    summary_no: FastSet<NodeKey>,
    /// Per permission with a summary: the objects where one of its relations holds for this
    /// subject (`None` when conditional edges or exclusions concern the subject).
    grants: FastMap<usize, Grants>,
}

/// A permission that recursion through a tree relation only widens: every member reached from
/// it through same-object references (its members, `M`) is a union of relations, of members
/// of `M`, and of arrows `tree->m` with `m` in `M`, minus relations (`excluded`); and each
/// member of `M` has the arrow `tree->itself`. The tree relation links objects of one type
/// only, and the index keeps its closure. Then, for a subject that no excluded relation names
/// anywhere, the permission holds on `x` exactly when one of the `leaves` holds on `x` or on
/// an object the closure reaches from `x`: its least fixpoint is that union. (Drive's folder
/// `view` and `edit`, with `parent` as the tree and `banned` excluded.)
struct TreeSummary {
    /// The tree relation's slot in the index.
    tree: u32,
    /// The leaves' edge kinds (a leaf without edges has none).
    leaves: Vec<LeafKind>,
    /// The excluded relations' slots (one without edges names nobody and is left out).
    excluded: Vec<u32>,
    /// Other permissions of the definition (by address) whose summaries have the same tree and
    /// exclusions and every leaf of this one: where the summary answers, this permission
    /// holds only where they hold (Drive's `edit` is within `view`).
    within: Vec<usize>,
}

impl TreeSummary {
    /// Whether every leaf of `self` is a leaf of `other`, over the same tree with the same
    /// exclusions: then, where both summaries answer, `self` holds only where `other` does.
    fn is_within(&self, other: &TreeSummary) -> bool {
        let same_excluded = self.excluded.iter().all(|x| other.excluded.contains(x))
            && other.excluded.iter().all(|x| self.excluded.contains(x));
        self.tree == other.tree && same_excluded && self.leaves.iter().all(|l| other.leaves.contains(l))
    }
}

/// One edge kind of a summary's leaf: the relation's slot and the kind's position in it.
#[derive(PartialEq)]
enum LeafKind {
    /// Terminal subjects (and wildcards) of the kind's subject type.
    Terminal { slot: u32, kind: usize },
    /// Subject sets `g#m` of a relation that nests only in itself: the subject's memberships
    /// come from the closure of `group` (a slot).
    Sets { slot: u32, kind: usize, group: u32 },
    /// Subject sets of a relation no relationship has: nobody is a member.
    Empty,
    /// Subject sets the summary cannot follow (a permission, or a relation nesting in others).
    Unusable,
}

/// A summarized permission's state for the evaluator's subject.
enum Grants {
    /// Answered this many times from the object and its tree ancestors alone.
    Asked(u32),
    /// The subject's grant set (`None` when the summary cannot answer for the subject).
    Set(Option<RoaringBitmap>),
}

/// How many Checks of one permission for one subject look at the object and its tree
/// ancestors alone before the subject's grant set is built (`Point::summary_at`).
const POINT_SUMMARIES: u32 = 4;

/// Most tree ancestors an object may have for `Point::summary_at` to look at them one by one.
const POINT_SUMMARY_SPAN: usize = 64;

/// Largest grant set a summary builds for one subject: a subject with more grants (or a
/// wildcard grant on more objects) is answered by the walk, which visits only the object and
/// what it reaches.
const GRANT_BUDGET: u64 = 1 << 16;

/// Most members a permission's summary may span.
const SUMMARY_MEMBERS: usize = 16;

/// The summary of `p` on `def`, if `p` has the shape [`TreeSummary`] describes and the index
/// keeps the tree's closure.
fn analyze<'a>(
    schema: &'a CompiledSchema,
    def: &'a Definition,
    p: &'a crate::schema::Permission,
    ix: &IndexGraph,
) -> Option<TreeSummary> {
    let mut members: Vec<&'a crate::schema::Permission> = vec![p];
    let mut targets: Vec<&'a crate::schema::Permission> = Vec::new();
    let (mut leaves, mut excluded) = (Vec::new(), Vec::new());
    let mut tree: Option<&'a str> = None;
    let mut i = 0;
    while let Some(q) = members.get(i).copied() {
        i += 1;
        let mut rw = &q.rewrite;
        while let Rewrite::Exclusion(a, b) = rw {
            let Rewrite::Computed(name) = &**b else { return None };
            excluded.push(def.relations.get(name)?);
            rw = a;
        }
        let mut self_arrow = false;
        let mut stack = vec![rw];
        while let Some(x) = stack.pop() {
            match x {
                Rewrite::Nil => {}
                Rewrite::Union(a, b) => {
                    stack.push(a);
                    stack.push(b);
                }
                Rewrite::Computed(name) => match resolve(def, name) {
                    Member::Rel(r) => leaves.push(r),
                    Member::Perm(m) => {
                        if !members.iter().any(|x| std::ptr::eq(*x, m)) {
                            if members.len() >= SUMMARY_MEMBERS {
                                return None;
                            }
                            members.push(m);
                        }
                    }
                    Member::Missing => {}
                },
                Rewrite::Arrow { tupleset, computed, kind: ArrowKind::Arrow | ArrowKind::Any } => {
                    if tree.is_some_and(|t| t != tupleset) {
                        return None;
                    }
                    tree = Some(tupleset);
                    let Member::Perm(m) = resolve(def, computed) else { return None };
                    self_arrow |= std::ptr::eq(m, q);
                    targets.push(m);
                }
                _ => return None,
            }
        }
        if !self_arrow {
            return None;
        }
    }
    if !targets.iter().all(|t| members.iter().any(|m| std::ptr::eq(*m, *t))) {
        return None;
    }
    let name = tree?;
    let rel = def.relations.get(name)?;
    if !rel.allowed.iter().all(|a| a.ty == def.name && !matches!(a.kind, AllowedKind::Relation(_))) {
        return None;
    }
    let tree = ix.relation_slot(&def.name, name)?;
    ix.slot(tree)?.tree()?;
    let excluded = excluded.iter().filter_map(|r| ix.relation_slot(&def.name, &r.name)).collect();
    let mut kinds = Vec::new();
    for r in leaves {
        let Some(slot) = ix.relation_slot(&def.name, &r.name) else { continue };
        let Some(ri) = ix.slot(slot) else { continue };
        for (kind, k) in ri.kinds.iter().enumerate() {
            let Some(sr) = &k.subject_relation else {
                kinds.push(LeafKind::Terminal { slot, kind });
                continue;
            };
            let plan = match schema.definition(&k.subject_type).and_then(|g| Some((g, g.relations.get(sr)?))) {
                Some((gdef, grel))
                    if grel
                        .allowed
                        .iter()
                        .all(|a| !matches!(&a.kind, AllowedKind::Relation(x) if a.ty != gdef.name || x != sr)) =>
                {
                    match ix.relation_slot(&gdef.name, sr) {
                        Some(group) => LeafKind::Sets { slot, kind, group },
                        None => LeafKind::Empty,
                    }
                }
                _ => LeafKind::Unusable,
            };
            kinds.push(plan);
        }
    }
    Some(TreeSummary { tree, leaves: kinds, excluded, within: Vec::new() })
}

/// The id a [`Point`] gives its subject (none for a wildcard, or a subject no edge names).
pub fn subject_id(ix: &IndexGraph, subject: &SubjectRef) -> Option<u32> {
    if subject.is_wildcard() { None } else { ix.id(&subject.object) }
}

/// Whether `set` holds `id` or one of `up`, trying the smaller side against the larger.
fn meets(set: &super::IdSet, id: u32, up: Option<&super::IdSet>) -> bool {
    set.contains(id)
        || up
            .is_some_and(|u| if set.len() <= u.len() { set.any(|x| u.contains(x)) } else { u.any(|y| set.contains(y)) })
}

/// Whether a subject whose direct objects of a self-nesting relation (with a valid closure)
/// are `direct` is in `g`: one of them is `g` or nested below it.
fn direct_member(ri: &RelationIndex, direct: Option<&super::IdSet>, g: u32) -> bool {
    direct.is_some_and(|d| meets(d, g, ri.closure().and_then(|c| c.descendants(g))))
}

/// How many membership questions one subject's evaluator answers from its direct groups before
/// building its memberships (`Point::in_group`).
const POINT_MEMBERSHIPS: u32 = 8;

/// A summary leaf resolved in one snapshot.
enum Leaf<'a> {
    Terminal(&'a EdgeKind),
    Sets(&'a EdgeKind, &'a RelationIndex),
    Empty,
    Unusable,
}

/// What the fast evaluator resolves about one schema against one index snapshot, once for
/// every Check on that snapshot instead of once per Check: each schema relation's slot in the
/// index and how it may be evaluated, each arrow's tupleset slot, and each permission's tree
/// summary. Kept in the index (built on the first Check, dropped by the next change); entries
/// are keyed by the address of the schema item, which the plan keeps alive.
pub struct Plan {
    schema: CompiledSchema,
    /// By schema relation.
    relations: FastMap<usize, RelPlan>,
    /// By arrow rewrite: its tupleset relation's slot.
    arrows: FastMap<usize, Option<u32>>,
    /// By permission, for those with a summary.
    summaries: FastMap<usize, Arc<TreeSummary>>,
    /// Built for every item of the schema (an empty plan stands in while none is shared).
    complete: bool,
}

#[derive(Clone, Copy)]
struct RelPlan {
    slot: Option<u32>,
    closure: bool,
    nests: bool,
}

impl Plan {
    /// The plan of `schema` on `ix`: the one the index keeps if it was built for this schema,
    /// else a new one (kept by the index if it has none yet).
    pub fn of(schema: &CompiledSchema, ix: &IndexGraph) -> Arc<Plan> {
        if let Some(p) = ix.plan.0.get() {
            if p.schema.same(schema) {
                return Arc::clone(p);
            }
            // Another schema's plan: resolve lazily, per evaluator.
            return Arc::new(Plan {
                schema: schema.clone(),
                relations: FastMap::default(),
                arrows: FastMap::default(),
                summaries: FastMap::default(),
                complete: false,
            });
        }
        let p = Arc::new(Plan::build(schema, ix));
        // Another thread may have kept its own first: both are equal.
        let _ = ix.plan.0.set(Arc::clone(&p));
        p
    }

    fn build(schema: &CompiledSchema, ix: &IndexGraph) -> Plan {
        let mut plan = Plan {
            schema: schema.clone(),
            relations: FastMap::default(),
            arrows: FastMap::default(),
            summaries: FastMap::default(),
            complete: true,
        };
        for def in schema.definitions() {
            for r in def.relations.values() {
                plan.relations.insert(r as *const Relation as usize, rel_plan(ix, def, r));
            }
            for p in def.permissions.values() {
                let mut stack = vec![&p.rewrite];
                while let Some(rw) = stack.pop() {
                    match rw {
                        Rewrite::Union(a, b) | Rewrite::Intersection(a, b) | Rewrite::Exclusion(a, b) => {
                            stack.push(a);
                            stack.push(b);
                        }
                        Rewrite::Arrow { tupleset, .. } => {
                            plan.arrows.insert(rw as *const Rewrite as usize, ix.relation_slot(&def.name, tupleset));
                        }
                        Rewrite::Nil | Rewrite::Computed(_) => {}
                    }
                }
            }
            let mut summaries: Vec<(usize, TreeSummary)> = def
                .permissions
                .values()
                .filter(|p| p.recursive)
                .filter_map(|p| Some((p as *const crate::schema::Permission as usize, analyze(schema, def, p, ix)?)))
                .collect();
            for i in 0..summaries.len() {
                let within: Vec<usize> = match summaries.get(i) {
                    Some((a, s)) => {
                        summaries.iter().filter(|(b, t)| b != a && s.is_within(t)).map(|(b, _)| *b).collect()
                    }
                    None => Vec::new(),
                };
                if let Some((_, s)) = summaries.get_mut(i) {
                    s.within = within;
                }
            }
            for (addr, s) in summaries {
                plan.summaries.insert(addr, Arc::new(s));
            }
        }
        plan
    }
}

/// How a point Check may evaluate schema relation `r` of `def` in `ix`.
fn rel_plan(ix: &IndexGraph, def: &Definition, r: &Relation) -> RelPlan {
    let slot = ix.relation_slot(&def.name, &r.name);
    let index = slot.and_then(|s| ix.slot(s));
    // A relation naming only terminal subjects is one lookup: no closure to consult.
    let nests = index.is_some_and(|ri| ri.kinds.iter().any(|k| k.subject_relation.is_some()));
    let nests_only_in_itself = r.allowed.iter().all(|a| match &a.kind {
        AllowedKind::Relation(x) => a.ty == def.name && x == &r.name,
        _ => true,
    });
    RelPlan { slot, closure: nests && nests_only_in_itself && index.is_some_and(RelationIndex::closure_enabled), nests }
}

/// What a member name of a definition refers to.
#[derive(Clone, Copy)]
enum Member<'a> {
    Rel(&'a Relation),
    Perm(&'a crate::schema::Permission),
    Missing,
}

fn resolve<'a>(def: &'a Definition, name: &str) -> Member<'a> {
    if let Some(r) = def.relations.get(name) {
        Member::Rel(r)
    } else if let Some(p) = def.permissions.get(name) {
        Member::Perm(p)
    } else {
        Member::Missing
    }
}

/// What a point Check needs to know about one schema relation, looked up once per evaluator.
#[derive(Clone, Copy)]
struct RelInfo<'a> {
    index: Option<&'a RelationIndex>,
    /// The relation nests subject sets only in itself and its closure is valid: answered by
    /// `closure_value`, which never evaluates another node.
    closure: bool,
    /// Some edge names a subject set, so evaluating it may reach other nodes (and cycles).
    nests: bool,
}

impl<'a> Point<'a> {
    pub fn new(
        schema: &'a CompiledSchema,
        ix: &'a IndexGraph,
        data: &'a dyn Relations,
        conditions: &'a Conditions,
        subject: &'a SubjectRef,
        context: &'a Map<String, Value>,
        env: Env,
    ) -> Point<'a> {
        let sid = subject_id(ix, subject);
        Point {
            schema,
            ix,
            data,
            conditions,
            subject,
            sid,
            context,
            env,
            started: Instant::now(),
            work: 0,
            frames: 0,
            memo: FastMap::with_capacity_and_hasher(32, Default::default()),
            plan: Plan::of(schema, ix),
            members: FastMap::default(),
            targets: FastMap::default(),
            memberships: FastMap::default(),
            membership_asks: FastMap::default(),
            summary_no: FastSet::default(),
            grants: FastMap::default(),
        }
    }

    /// Points the evaluator at another subject and context, keeping what it resolved about the
    /// schema and the index (names, relations, arrows) and forgetting every value.
    pub fn retarget(&mut self, subject: &'a SubjectRef, context: &'a Map<String, Value>) {
        self.retarget_to(subject, subject_id(self.ix, subject), context);
    }

    /// [`Point::retarget`] with the subject's id already looked up ([`subject_id`]):
    /// CheckBulk looks up every item's ids in one pass, so their memory reads overlap.
    pub fn retarget_to(&mut self, subject: &'a SubjectRef, sid: Option<u32>, context: &'a Map<String, Value>) {
        self.sid = sid;
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
        self.check_id(resource, self.ix.id(resource), permission)
    }

    /// [`Point::check`] with the resource's id already looked up (`ix.id(resource)`).
    pub fn check_id(
        &mut self,
        resource: &ObjectRef,
        id: Option<u32>,
        permission: &str,
    ) -> Result<Option<Tri>, EvalError> {
        let Some(def) = self.schema.definition(&resource.ty) else { return Ok(None) };
        let Some(id) = id else { return Ok(None) };
        self.started = Instant::now();
        self.work = 0;
        self.frames = 0;
        // The permission's name is not borrowed for `'a`: resolve it without the cache.
        match self.node_resolved(def, resolve(def, permission), permission, id) {
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
        if self.work > self.env.limits.max_work {
            return Err(EvalError::WorkLimit(self.env.limits.max_work).into());
        }
        if self.work % 1024 < n && self.started.elapsed() > self.env.limits.deadline {
            return Err(EvalError::Deadline(self.env.limits.deadline).into());
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<(), Stop> {
        self.frames += 1;
        if self.frames > MAX_FRAMES { Err(Stop::Fallback) } else { Ok(()) }
    }

    /// `def`'s member `name`, resolved once per evaluator.
    fn member(&mut self, def: &'a Definition, name: &'a str) -> Member<'a> {
        let key = (def as *const Definition as usize, name.as_ptr() as usize, name.len());
        if let Some(m) = self.members.get(&key) {
            return *m;
        }
        let m = resolve(def, name);
        self.members.insert(key, m);
        m
    }

    fn node(&mut self, def: &'a Definition, member: &'a str, id: u32) -> Result<Tri, Stop> {
        let m = self.member(def, member);
        self.node_resolved(def, m, member, id)
    }

    fn node_resolved(&mut self, def: &'a Definition, member: Member<'a>, name: &str, id: u32) -> Result<Tri, Stop> {
        let s = self.subject;
        if self.sid == Some(id) && s.relation.as_deref() == Some(name) && s.object.ty == def.name {
            return Ok(Tri::True);
        }
        enum M<'s> {
            Rel(&'s RelationIndex),
            Perm(&'s Rewrite),
        }
        let (addr, m) = if let Member::Rel(r) = member {
            let addr = r as *const Relation as usize;
            let info = self.rel_info(def, r, addr);
            let Some(ri) = info.index else { return Ok(Tri::False) };
            if info.closure {
                return self.closure_value(def, r, ri, id);
            }
            if !info.nests {
                // Only terminal subjects: nothing below to recurse into, nothing worth memoizing.
                self.step(1)?;
                return self.relation(def, ri, id);
            }
            (addr, M::Rel(ri))
        } else if let Member::Perm(p) = member {
            if let Some(v) = self.summarized(def, p, id)? {
                return Ok(v);
            }
            (p as *const _ as usize, M::Perm(&p.rewrite))
        } else {
            return Ok(Tri::False);
        };
        match self.memo.get(&(addr, id)) {
            Some(Slot::Done(v)) => return Ok(v.clone()),
            Some(Slot::InProgress) => return Err(Stop::Fallback),
            None => {}
        }
        self.step(1)?;
        self.enter()?;
        self.memo.insert((addr, id), Slot::InProgress);
        let v = match m {
            M::Rel(ri) => self.relation(def, ri, id)?,
            M::Perm(rw) => self.rewrite(def, rw, id)?,
        };
        self.frames -= 1;
        self.memo.insert((addr, id), Slot::Done(v.clone()));
        Ok(v)
    }

    /// `p` on `id` from its tree summary ([`TreeSummary`]), when it has one and it holds for
    /// this subject.
    fn summarized(
        &mut self,
        def: &'a Definition,
        p: &'a crate::schema::Permission,
        id: u32,
    ) -> Result<Option<Tri>, Stop> {
        let key = p as *const crate::schema::Permission as usize;
        if !p.recursive {
            return Ok(None);
        }
        let summary = match self.plan.summaries.get(&key) {
            Some(s) => Arc::clone(s),
            None if self.plan.complete => return Ok(None),
            None => match analyze(self.schema, def, p, self.ix) {
                Some(s) => Arc::new(s),
                None => return Ok(None),
            },
        };
        let Some(tree) = self.ix.slot(summary.tree).and_then(RelationIndex::tree) else { return Ok(None) };
        self.step(1)?;
        if summary.within.iter().any(|b| self.summary_no.contains(&(*b, id))) {
            return Ok(Some(Tri::False));
        }
        let v = self.summary_value(&summary, key, tree, id)?;
        if v.as_ref().is_some_and(Tri::is_false) {
            self.summary_no.insert((key, id));
        }
        Ok(v)
    }

    fn summary_value(
        &mut self,
        summary: &TreeSummary,
        key: usize,
        tree: &'a super::closure::Closure,
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
        let ix = self.ix;
        let kind = |slot: u32, kind: usize| ix.slot(slot).and_then(|ri| ri.kinds.get(kind));
        match *leaf {
            LeafKind::Terminal { slot, kind: i } => kind(slot, i).map_or(Leaf::Unusable, Leaf::Terminal),
            LeafKind::Sets { slot, kind: i, group } => match (kind(slot, i), ix.slot(group)) {
                (Some(k), Some(g)) => Leaf::Sets(k, g),
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
    fn summary_at(
        &mut self,
        summary: &TreeSummary,
        id: u32,
        up: Option<&'a super::IdSet>,
    ) -> Result<Option<Tri>, Stop> {
        let s = self.subject;
        if s.relation.is_some() {
            return Ok(None);
        }
        let (ty, sid) = (&s.object.ty, self.sid);
        let any_of = |mut f: &mut dyn FnMut(u32) -> bool| f(id) || up.is_some_and(|u| u.any(&mut f));
        let names = |e: &super::graph::SideEdge| e.subject == WILDCARD || Some(e.subject) == sid;
        let side_names =
            |k: &EdgeKind| sid.is_some_and(|x| k.side.naming(x).is_some()) || k.side.naming(WILDCARD).is_some();
        for ri in summary.excluded.iter().filter_map(|x| self.ix.slot(*x)) {
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
                Leaf::Sets(k, group) => {
                    if !group.closure_enabled() {
                        unsure = true;
                        continue;
                    }
                    let Some(gk) = group.kind(ty, None) else { continue };
                    unsure |= !gk.wildcards.is_empty() || side_names(gk);
                    let direct = sid.and_then(|x| gk.edges.reverse.get(x));
                    let built = self.memberships.get(&(group as *const RelationIndex as usize));
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
        for ri in summary.excluded.iter().filter_map(|x| self.ix.slot(*x)) {
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
                Leaf::Sets(k, group) => {
                    // Subject sets `g#m`: the subject's memberships from `m`'s closure.
                    if !group.closure_enabled() {
                        return Ok(None);
                    }
                    let Some(gk) = group.kind(ty, None) else { continue };
                    if !gk.wildcards.is_empty() || side_names(gk, sid) {
                        return Ok(None);
                    }
                    let groups = self.memberships_in(group, gk)?.clone();
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
    fn in_group(&mut self, ri: &'a RelationIndex, k: &'a EdgeKind, g: u32) -> Result<bool, Stop> {
        let key = ri as *const RelationIndex as usize;
        if let Some(all) = self.memberships.get(&key) {
            return Ok(all.contains(g));
        }
        let asks = self.membership_asks.entry(key).or_insert(0);
        *asks += 1;
        if *asks > POINT_MEMBERSHIPS {
            return Ok(self.memberships_in(ri, k)?.contains(g));
        }
        self.step(1)?;
        Ok(direct_member(ri, self.sid.and_then(|x| k.edges.reverse.get(x)), g))
    }

    /// Every object of a self-nesting relation (with a valid closure) that names the terminal
    /// subject directly, and every object those are nested in (Leopard), once per subject.
    fn memberships_in(&mut self, ri: &'a RelationIndex, k: &'a EdgeKind) -> Result<&RoaringBitmap, Stop> {
        let key = ri as *const RelationIndex as usize;
        if !self.memberships.contains_key(&key) {
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
            self.memberships.insert(key, all);
        }
        match self.memberships.get(&key) {
            Some(m) => Ok(m),
            None => Err(Stop::Fallback),
        }
    }

    fn rel_info(&mut self, def: &'a Definition, r: &'a Relation, addr: usize) -> RelInfo<'a> {
        let p = match self.plan.relations.get(&addr) {
            Some(p) => *p,
            None => rel_plan(self.ix, def, r),
        };
        RelInfo { index: p.slot.and_then(|s| self.ix.slot(s)), closure: p.closure, nests: p.nests }
    }

    /// A relation's value on `id` from its edges: the subject named (or its type's wildcard),
    /// subject sets evaluated, conditional and expiring edges with their caveats.
    fn relation(&mut self, def: &'a Definition, ri: &'a RelationIndex, id: u32) -> Result<Tri, Stop> {
        let s = self.subject;
        let schema = self.schema;
        if s.relation.is_none()
            && let Some(k) = ri.kind(&s.object.ty, None)
        {
            let named = self.sid.is_some_and(|sid| k.edges.forward.get(id).is_some_and(|set| set.contains(sid)));
            if named || k.wildcards.contains(id) {
                return Ok(Tri::True);
            }
        }
        let mut acc = Tri::False;
        for k in &ri.kinds {
            let (Some(sr), Some(set)) = (&k.subject_relation, k.edges.forward.get(id)) else { continue };
            let Some(sdef) = schema.definition(&k.subject_type) else { continue };
            self.step(set.len())?;
            for x in set.iter() {
                acc = acc.or(self.node(sdef, sr, x)?);
                if acc.is_true() {
                    return Ok(acc);
                }
            }
        }
        for k in &ri.kinds {
            for e in k.side.of_resource(id) {
                if e.expiration.is_some_and(|x| x <= self.env.now) {
                    continue;
                }
                self.step(1)?;
                let reach = match &k.subject_relation {
                    Some(sr) if e.subject != WILDCARD => match schema.definition(&k.subject_type) {
                        Some(sdef) => self.node(sdef, sr, e.subject)?,
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
                    Some(c) => self.caveat(c, &def.name, id, k, e.subject)?,
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
    fn closure_value(
        &mut self,
        def: &'a Definition,
        r: &'a Relation,
        ri: &'a RelationIndex,
        id: u32,
    ) -> Result<Tri, Stop> {
        self.step(1)?;
        let s = self.subject;
        let reaches = |x: u32| ri.reaches(id, x).unwrap_or(false);
        if let Some(sr) = &s.relation {
            // A subject set is reached when it is this object or one nested below it (the node
            // itself was matched by the caller).
            let hit = s.object.ty == def.name && sr == &r.name && self.sid.is_some_and(reaches);
            return Ok(if hit { Tri::True } else { Tri::False });
        }
        let Some(k) = ri.kind(&s.object.ty, None) else { return Ok(Tri::False) };
        let below = ri.closure().and_then(|c| c.descendants(id)).map_or(0, |d| d.len()) + 1;
        let any_in = |set: &super::IdSet| -> bool {
            if set.len() <= below {
                set.any(reaches)
            } else {
                set.contains(id)
                    || ri.closure().and_then(|c| c.descendants(id)).is_some_and(|d| d.any(|x| set.contains(x)))
            }
        };
        if self.sid.is_some() && self.in_group(ri, k, id)? {
            return Ok(Tri::True);
        }
        if any_in(&k.wildcards) {
            return Ok(Tri::True);
        }
        let mut acc = Tri::False;
        for who in [self.sid, Some(WILDCARD)].into_iter().flatten() {
            let Some(resources) = k.side.naming(who) else { continue };
            for res in resources.iter().filter(|x| reaches(*x)) {
                for e in k.side.of_resource(res).iter().filter(|e| e.subject == who) {
                    if e.expiration.is_some_and(|x| x <= self.env.now) {
                        continue;
                    }
                    self.step(1)?;
                    let c = match &e.caveat {
                        Some(c) => self.caveat(c, &def.name, res, k, e.subject)?,
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

    /// How cheap an operand is to evaluate on `id`, for ordering a union's or intersection's
    /// operands (the order never changes the value, only how soon a short-circuit comes): a
    /// relation is one lookup; an arrow with at most one edge here is one step to one node; a
    /// permission of the same object may expand to many nodes; a wider arrow more. A union
    /// costs its cheapest operand (it may stop there), an intersection or exclusion its dearest.
    fn cost(&mut self, def: &'a Definition, rw: &'a Rewrite, id: u32, depth: u8) -> u8 {
        if depth > 8 {
            return 6;
        }
        match rw {
            Rewrite::Nil => 0,
            Rewrite::Computed(m) if matches!(self.member(def, m), Member::Rel(_)) => 1,
            Rewrite::Computed(_) => 4,
            Rewrite::Arrow { tupleset, .. } => {
                let fan_out: usize = self.arrow_relation(def, rw, tupleset).map_or(0, |ri| {
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
            Rewrite::Union(a, b) => {
                self.cost(def, a, id, depth + 1).min(self.cost(def, b, id, depth + 1)).saturating_add(1)
            }
            Rewrite::Intersection(a, b) | Rewrite::Exclusion(a, b) => {
                self.cost(def, a, id, depth + 1).max(self.cost(def, b, id, depth + 1)).saturating_add(1)
            }
        }
    }

    fn rewrite(&mut self, def: &'a Definition, rw: &'a Rewrite, id: u32) -> Result<Tri, Stop> {
        self.enter()?;
        let v = match rw {
            Rewrite::Nil => Tri::False,
            Rewrite::Computed(m) => self.node(def, m, id)?,
            Rewrite::Union(a, b) => match self.union_flat(def, rw, id)? {
                Some(v) => v,
                None => self.pair(def, a, b, true, id)?,
            },
            Rewrite::Intersection(a, b) => self.pair(def, a, b, false, id)?,
            Rewrite::Exclusion(a, b) => {
                let x = self.rewrite(def, a, id)?;
                if x.is_false() { Tri::False } else { x.minus(self.rewrite(def, b, id)?) }
            }
            Rewrite::Arrow { tupleset, computed, kind } => self.arrow(def, rw, tupleset, computed, *kind, id)?,
        };
        self.frames -= 1;
        Ok(v)
    }

    /// An arrow's tupleset relation in the index, looked up once per evaluator.
    fn arrow_relation(&mut self, def: &'a Definition, rw: &'a Rewrite, tupleset: &str) -> Option<&'a RelationIndex> {
        match self.plan.arrows.get(&(rw as *const Rewrite as usize)) {
            Some(slot) => slot.and_then(|s| self.ix.slot(s)),
            None => self.ix.relation(&def.name, tupleset),
        }
    }

    /// `a + b` or `a & b`, the cheaper operand first, stopping when it decides.
    fn pair(&mut self, def: &'a Definition, a: &'a Rewrite, b: &'a Rewrite, union: bool, id: u32) -> Result<Tri, Stop> {
        let (first, second) = if self.cost(def, b, id, 0) < self.cost(def, a, id, 0) { (b, a) } else { (a, b) };
        let x = self.rewrite(def, first, id)?;
        if (union && x.is_true()) || (!union && x.is_false()) {
            return Ok(x);
        }
        let y = self.rewrite(def, second, id)?;
        Ok(if union { x.or(y) } else { x.and(y) })
    }

    /// A chain of unions (`a + b + c`) evaluated as one: its operands in order of cost, stopping
    /// at the first yes (union is associative and commutative in Kleene logic, so the order
    /// changes only how soon it stops). `None` when the chain has more than [`FLAT_UNION`]
    /// operands (the caller goes pairwise).
    fn union_flat(&mut self, def: &'a Definition, rw: &'a Rewrite, id: u32) -> Result<Option<Tri>, Stop> {
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
                let c = if matches!(x, Rewrite::Arrow { .. }) { 2 } else { self.cost(def, x, id, 0) };
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
                && self.cost(def, leaf, id, 0) > 4
                && let Some(slot) = later.get_mut(i)
            {
                *slot = Some(leaf);
                continue;
            }
            acc = acc.or(self.rewrite(def, leaf, id)?);
            if acc.is_true() {
                return Ok(Some(acc));
            }
        }
        for leaf in later.iter().flatten() {
            acc = acc.or(self.rewrite(def, leaf, id)?);
            if acc.is_true() {
                break;
            }
        }
        Ok(Some(acc))
    }

    fn arrow(
        &mut self,
        def: &'a Definition,
        rw: &'a Rewrite,
        tupleset: &str,
        computed: &'a str,
        kind: ArrowKind,
        id: u32,
    ) -> Result<Tri, Stop> {
        let all = matches!(kind, ArrowKind::All);
        let Some(ri) = self.arrow_relation(def, rw, tupleset) else { return Ok(Tri::False) };
        let schema = self.schema;
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
        for k in &ri.kinds {
            // A subject whose type lacks the computed member contributes false.
            let tkey = (k as *const EdgeKind as usize, computed.as_ptr() as usize, computed.len());
            let target = match self.targets.get(&tkey) {
                Some(t) => *t,
                None => {
                    let t = schema.definition(&k.subject_type).filter(|d| d.member_kind(computed).is_some());
                    self.targets.insert(tkey, t);
                    t
                }
            };
            if let Some(set) = k.edges.forward.get(id) {
                self.step(set.len())?;
                for x in set.iter() {
                    terms += 1;
                    let v = match target {
                        Some(t) => self.node(t, computed, x)?,
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
                if e.expiration.is_some_and(|x| x <= self.env.now) {
                    continue;
                }
                self.step(1)?;
                terms += 1;
                let reach = match target {
                    Some(t) if e.subject != WILDCARD => self.node(t, computed, e.subject)?,
                    _ => Tri::False,
                };
                let v = match (&e.caveat, reach.is_false()) {
                    (Some(c), false) => reach.and(self.caveat(c, &def.name, id, k, e.subject)?),
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
        // A condition may take up to its own time limit: check the request's deadline first.
        if self.started.elapsed() > self.env.limits.deadline {
            return Err(EvalError::Deadline(self.env.limits.deadline).into());
        }
        let caveat = self.schema.caveat(&c.name).ok_or_else(|| EvalError::UnknownCaveat(c.name.clone()))?;
        let resource = ObjectRef::new(res_ty, self.ix.name(res_ty, res).unwrap_or_default());
        let subject_id =
            if subject == WILDCARD { "*" } else { self.ix.name(&k.subject_type, subject).unwrap_or_default() };
        let subject = ObjectRef::new(k.subject_type.as_str(), subject_id);
        let env = conditions::Env {
            now: self.env.now,
            resource: self.data.attributes(&resource),
            subject: self.data.attributes(&subject),
        };
        Ok(
            match self.conditions.evaluate(&caveat.condition, &c.context, self.context, env).map_err(EvalError::from)? {
                Outcome::True => Tri::True,
                Outcome::False => Tri::False,
                Outcome::Missing(m) => Tri::unknown(m.into_iter().collect()),
            },
        )
    }
}

/// One lookup's candidates: object ids sorted, each with `true` when the object surely holds
/// the permission (`false`: a point Check decides). The ids live in one buffer, so a set of
/// 100k candidates is two allocations, not 100k.
#[derive(Debug, Default)]
pub struct Candidates {
    text: String,
    /// (start in `text`, length, surely).
    spans: Vec<(u32, u32, bool)>,
}

impl Candidates {
    /// From ids already in increasing order.
    pub fn from_sorted<'s>(ids: impl IntoIterator<Item = (&'s str, bool)>) -> Candidates {
        let mut c = Candidates::default();
        for (id, sure) in ids {
            c.spans.push((c.text.len() as u32, id.len() as u32, sure));
            c.text.push_str(id);
        }
        c
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The `i`th id and whether it surely holds.
    pub fn get(&self, i: usize) -> Option<(&str, bool)> {
        let &(start, len, sure) = self.spans.get(i)?;
        let id = self.text.get(start as usize..(start + len) as usize)?;
        Some((id, sure))
    }

    /// The position of the first id after `after`.
    pub fn first_after(&self, after: &str) -> usize {
        self.spans.partition_point(|&(start, len, _)| {
            self.text.get(start as usize..(start + len) as usize).is_some_and(|id| id <= after)
        })
    }
}

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
/// relationship names). The request must already be validated against the schema.
pub fn resource_sets(
    schema: &CompiledSchema,
    ix: &IndexGraph,
    resource_type: &str,
    permission: &str,
    subject: &SubjectRef,
    env: Env,
) -> Result<Option<Candidates>, EvalError> {
    let sid = subject_id(ix, subject);
    if subject.relation.is_some() && sid.is_none() {
        return Ok(None);
    }
    // The schema nodes the permission depends on, and their dependencies.
    let mut ids: HashMap<(String, String), usize> = HashMap::new();
    let mut nodes: Vec<(String, String)> = Vec::new();
    let mut edges: Vec<(usize, usize)> = Vec::new();
    let mut stack = vec![0usize];
    ids.insert((resource_type.to_string(), permission.to_string()), 0);
    nodes.push((resource_type.to_string(), permission.to_string()));
    let add = |ty: &str,
               m: &str,
               ids: &mut HashMap<(String, String), usize>,
               nodes: &mut Vec<(String, String)>,
               stack: &mut Vec<usize>|
     -> usize {
        let key = (ty.to_string(), m.to_string());
        if let Some(&i) = ids.get(&key) {
            return i;
        }
        let i = nodes.len();
        ids.insert(key.clone(), i);
        nodes.push(key);
        stack.push(i);
        i
    };
    while let Some(n) = stack.pop() {
        let Some((ty, m)) = nodes.get(n).cloned() else { continue };
        let Some(def) = schema.definition(&ty) else { continue };
        let mut deps: Vec<(String, String)> = Vec::new();
        if let Some(r) = def.relations.get(&m) {
            for a in &r.allowed {
                if let AllowedKind::Relation(x) = &a.kind {
                    deps.push((a.ty.clone(), x.clone()));
                }
            }
            for k in ix.relation(&ty, &m).map_or(&[][..], |ri| ri.kinds.as_slice()) {
                if let Some(x) = &k.subject_relation {
                    deps.push((k.subject_type.clone(), x.clone()));
                }
            }
        } else if let Some(p) = def.permissions.get(&m) {
            let mut rws = vec![&p.rewrite];
            while let Some(rw) = rws.pop() {
                match rw {
                    Rewrite::Nil => {}
                    Rewrite::Computed(x) => deps.push((ty.clone(), x.clone())),
                    Rewrite::Arrow { tupleset, computed, .. } => {
                        for t in arrow_targets(ix, def, tupleset) {
                            if schema.definition(&t).is_some_and(|d| d.member_kind(computed).is_some()) {
                                deps.push((t, computed.clone()));
                            }
                        }
                    }
                    Rewrite::Union(a, b) | Rewrite::Intersection(a, b) | Rewrite::Exclusion(a, b) => {
                        rws.push(a);
                        rws.push(b);
                    }
                }
            }
        }
        for (t, x) in deps {
            let to = add(&t, &x, &mut ids, &mut nodes, &mut stack);
            edges.push((n, to));
        }
    }
    let mut solver = SetSolver {
        schema,
        ix,
        subject,
        sid,
        ids: &ids,
        sets: vec![Sets::default(); nodes.len()],
        images: FastMap::default(),
        dense: Dense::default(),
        work: 0,
        env,
        started: Instant::now(),
    };
    for comp in crate::graph::strongly_connected_components(nodes.len(), &edges) {
        let recursive = comp.len() > 1 || comp.first().is_some_and(|&c| edges.contains(&(c, c)));
        loop {
            let mut changed = false;
            for &n in &comp {
                let Some((ty, m)) = nodes.get(n) else { continue };
                let next = solver.node(ty, m)?;
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

/// Subject types an arrow over `def#tupleset` may reach: the schema's allowed types and any the
/// data holds.
fn arrow_targets(ix: &IndexGraph, def: &Definition, tupleset: &str) -> Vec<String> {
    let mut out: Vec<String> =
        def.relations.get(tupleset).map(|r| r.allowed.iter().map(|a| a.ty.clone()).collect()).unwrap_or_default();
    out.extend(
        ix.relation(&def.name, tupleset)
            .map_or(&[][..], |ri| ri.kinds.as_slice())
            .iter()
            .map(|k| k.subject_type.clone()),
    );
    out.sort();
    out.dedup();
    out
}

struct SetSolver<'a> {
    schema: &'a CompiledSchema,
    ix: &'a IndexGraph,
    subject: &'a SubjectRef,
    sid: Option<u32>,
    ids: &'a HashMap<(String, String), usize>,
    sets: Vec<Sets>,
    /// Reverse images already computed, per (edge kind, term): inside a recursive group the
    /// subject sets only grow from one round to the next, so each round reverses only the ids
    /// new since the last one (semi-naive evaluation).
    images: FastMap<(usize, usize), Image>,
    dense: Dense,
    work: usize,
    env: Env,
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
        if self.work > self.env.limits.max_work {
            return Err(EvalError::WorkLimit(self.env.limits.max_work));
        }
        if self.started.elapsed() > self.env.limits.deadline {
            return Err(EvalError::Deadline(self.env.limits.deadline));
        }
        Ok(())
    }

    fn get(&self, ty: &str, m: &str) -> Option<&Sets> {
        self.ids.get(&(ty.to_string(), m.to_string())).and_then(|&i| self.sets.get(i))
    }

    /// The resources whose edges of kind `k` name a subject in `k.subject_type#member`'s sets:
    /// (through unconditional edges to its `yes` when `with_yes`, through any edge to its
    /// `maybe`). Only subjects new since the last call for this (kind, term) are reversed.
    fn image(
        &mut self,
        k: &EdgeKind,
        member: &str,
        term: usize,
        with_yes: bool,
    ) -> Result<(RoaringBitmap, RoaringBitmap), EvalError> {
        let Some(&n) = self.ids.get(&(k.subject_type.clone(), member.to_string())) else {
            return Ok(Default::default());
        };
        let key = (k as *const EdgeKind as usize, term);
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

    fn node(&mut self, ty: &str, m: &str) -> Result<Sets, EvalError> {
        let mut out = match self.schema.definition(ty) {
            Some(def) if def.relations.contains_key(m) => self.relation(ty, m)?,
            Some(def) => match def.permissions.get(m) {
                Some(p) => self.rewrite(def, &p.rewrite)?,
                None => Sets::default(),
            },
            None => Sets::default(),
        };
        let s = self.subject;
        if let (Some(sr), Some(sid)) = (&s.relation, self.sid)
            && sr == m
            && s.object.ty == ty
        {
            out.yes.insert(sid);
            out.maybe.insert(sid);
        }
        Ok(out)
    }

    fn relation(&mut self, ty: &str, m: &str) -> Result<Sets, EvalError> {
        let mut out = Sets::default();
        let Some(ri) = self.ix.relation(ty, m) else { return Ok(out) };
        let s = self.subject;
        for k in &ri.kinds {
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
                Some(sr) => {
                    let image = self.image(k, sr, k as *const EdgeKind as usize, true)?;
                    out.yes |= &image.0;
                    out.maybe |= &image.1;
                }
            }
        }
        out.maybe |= &out.yes;
        Ok(out)
    }

    fn rewrite(&mut self, def: &Definition, rw: &Rewrite) -> Result<Sets, EvalError> {
        Ok(match rw {
            Rewrite::Nil => Sets::default(),
            Rewrite::Computed(m) => self.get(&def.name, m).cloned().unwrap_or_default(),
            Rewrite::Union(a, b) => {
                let (x, y) = (self.rewrite(def, a)?, self.rewrite(def, b)?);
                Sets { yes: x.yes | y.yes, maybe: x.maybe | y.maybe }
            }
            Rewrite::Intersection(a, b) => {
                let (x, y) = (self.rewrite(def, a)?, self.rewrite(def, b)?);
                Sets { yes: x.yes & y.yes, maybe: x.maybe & y.maybe }
            }
            Rewrite::Exclusion(a, b) => {
                let (x, y) = (self.rewrite(def, a)?, self.rewrite(def, b)?);
                Sets { yes: x.yes - &y.maybe, maybe: x.maybe - &y.yes }
            }
            Rewrite::Arrow { tupleset, computed, kind } => {
                let mut out = Sets::default();
                let Some(ri) = self.ix.relation(&def.name, tupleset) else { return Ok(out) };
                for k in &ri.kinds {
                    let image =
                        self.image(k, computed, rw as *const Rewrite as usize, !matches!(kind, ArrowKind::All))?;
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
    fn gather<'s>(&mut self, sets: impl Iterator<Item = &'s super::IdSet>, out: &mut RoaringBitmap) {
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
    use crate::model::Relationship;

    /// Candidates come out in id order, including ids that share their first 16 bytes (the
    /// integer sort key) and ids that are prefixes of others.
    #[test]
    fn lookup_candidates_are_in_id_order() {
        let conditions = Conditions::new();
        let schema = crate::schema::compile_text(
            "definition user {}\ndefinition doc {\n  relation viewer: user\n  permission view = viewer\n}",
            &conditions,
        )
        .unwrap();
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
        let ix = IndexGraph::build(&rels);
        let subject = SubjectRef::parse("user:ann").unwrap();
        let c = resource_sets(&schema, &ix, "doc", "view", &subject, Env::new(crate::model::Timestamp::now()))
            .unwrap()
            .unwrap();
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

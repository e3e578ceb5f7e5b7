//! The reference evaluator for Check: the least fixpoint of the schema's equations over the data,
//! computed on the part of the graph a request can reach.
//!
//! How it works, and why it is obviously correct:
//! 1. Explore from `resource#permission`: each node `object#member` gets an equation (a `Term`)
//!    over other nodes and constants. Constants are decided here: whether a relationship's subject
//!    is the requested subject (or a wildcard of its type), and its caveat's three-valued outcome.
//!    A node equal to the requested subject set (`doc:1#view` checked for `doc:1#view`) is true.
//! 2. Split the node graph into strongly connected components, dependencies first.
//! 3. Solve each component by Kleene iteration from "all false" until nothing changes. Inside a
//!    component every operation is monotone (the compiler rejects recursion through the
//!    right-hand side of `-`, and data edges follow schema edges), so this reaches the least
//!    fixpoint: cycles in the data add nothing, and deep nesting is only more nodes, never native
//!    stack.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::Map;

use super::data::Membership;
use super::{CheckRequest, Ctx, Decision, EvalError, Tri};
use crate::conditions::{self, Outcome};
use crate::model::{ObjectRef, Relationship, SubjectRef, Timestamp};
use crate::scc;
use crate::schema::ast::ArrowKind;
use crate::schema::{CompiledSchema, Member, Relation, Rewrite};

/// An equation's right-hand side.
#[derive(Debug, Clone)]
pub(crate) enum Term {
    Const(Tri),
    Node(usize),
    Or(Vec<Term>),
    And(Vec<Term>),
    AndNot(Box<Term>, Box<Term>),
}

/// The equations of the nodes explored for one subject (the part of the data graph a request
/// reaches), and their solution.
pub(crate) struct Equations<'a> {
    ctx: Ctx<'a>,
    /// Explore every node, even those the data could answer from a closure, so that every
    /// node on a path has a value (explanations and the recursive expansion read them).
    explain: bool,
    subject: &'a SubjectRef,
    context: &'a Map<String, serde_json::Value>,
    started: Instant,
    work: usize,
    ids: HashMap<(ObjectRef, String), usize>,
    pub(crate) nodes: Vec<(ObjectRef, String)>,
    equations: Vec<Term>,
    /// Each node's value (its lower estimate, where an exclusion closes a cycle).
    pub(crate) values: Vec<Tri>,
    /// Each node's upper estimate: equal to its value exactly when the node has an answer.
    high: Vec<Tri>,
    /// The earliest expiration among the unexpired expiring relationships explored.
    expires_at: std::cell::Cell<Option<Timestamp>>,
}

/// Most nodes an exclusion-cycle error names.
const MAX_CYCLE_SHOWN: usize = 12;

impl<'a> Equations<'a> {
    pub(crate) fn new(
        ctx: Ctx<'a>,
        subject: &'a SubjectRef,
        context: &'a Map<String, serde_json::Value>,
        explain: bool,
    ) -> Equations<'a> {
        Equations {
            ctx,
            explain,
            subject,
            context,
            started: Instant::now(),
            work: 0,
            ids: HashMap::new(),
            nodes: Vec::new(),
            equations: Vec::new(),
            values: Vec::new(),
            high: Vec::new(),
            expires_at: std::cell::Cell::new(None),
        }
    }

    fn step(&mut self, n: usize) -> Result<(), EvalError> {
        self.work += n;
        let limits = self.ctx.env.limits;
        if self.work > limits.max_work {
            return Err(EvalError::WorkLimit(limits.max_work));
        }
        if self.work % 1024 < n && self.started.elapsed() > limits.deadline {
            return Err(EvalError::Deadline(limits.deadline));
        }
        Ok(())
    }

    /// The node id of `object#member`, allocated (and queued for exploration) on first sight.
    pub(crate) fn node(&mut self, object: &ObjectRef, member: &str, queue: &mut Vec<usize>) -> usize {
        if let Some(&id) = self.ids.get(&(object.clone(), member.to_string())) {
            return id;
        }
        let id = self.nodes.len();
        self.ids.insert((object.clone(), member.to_string()), id);
        self.nodes.push((object.clone(), member.to_string()));
        self.equations.push(Term::Const(Tri::False));
        self.values.push(Tri::False);
        queue.push(id);
        id
    }

    /// Explores everything reachable from the queued nodes, building their equations.
    pub(crate) fn explore(&mut self, mut queue: Vec<usize>) -> Result<(), EvalError> {
        while let Some(id) = queue.pop() {
            self.step(1)?;
            let Some((object, member)) = self.nodes.get(id).cloned() else { continue };
            let term = self.equation(&object, &member, &mut queue)?;
            if let Some(slot) = self.equations.get_mut(id) {
                *slot = term;
            }
        }
        Ok(())
    }

    fn caveat(&self, rel: &Relationship) -> Result<Tri, EvalError> {
        let Some(c) = &rel.caveat else { return Ok(Tri::True) };
        // A condition may take up to its own time limit: check the request's deadline before
        // each one, so many slow conditions cannot add up past it.
        let ctx = self.ctx;
        if self.started.elapsed() > ctx.env.limits.deadline {
            return Err(EvalError::Deadline(ctx.env.limits.deadline));
        }
        let caveat = ctx.schema.caveat(&c.name).ok_or_else(|| EvalError::UnknownCaveat(c.name.clone()))?;
        let env = conditions::Env {
            now: ctx.env.now,
            resource: ctx.data.attributes(&rel.resource),
            subject: ctx.data.attributes(&rel.subject.object),
        };
        Ok(match ctx.conditions.evaluate(&caveat.condition, &c.context, self.context, env)? {
            Outcome::True => Tri::True,
            Outcome::False => Tri::False,
            Outcome::Missing(m) => Tri::unknown(m.into_iter().collect()),
        })
    }

    /// Relationships `object#relation@…`, expired ones included (callers skip them with
    /// [`Equations::expired`]).
    fn all_edges(&self, object: &ObjectRef, relation: &str) -> std::borrow::Cow<'a, [Relationship]> {
        self.ctx.data.edges(object, relation)
    }

    /// Whether a relationship has expired at `now`; an unexpired one's expiration is recorded.
    fn expired(&self, r: &Relationship) -> bool {
        match r.expiration {
            Some(e) if e <= self.ctx.env.now => true,
            Some(e) => {
                self.expires_at.set(Some(self.expires_at.get().map_or(e, |x| x.min(e))));
                false
            }
            None => false,
        }
    }

    fn equation(&mut self, object: &ObjectRef, member: &str, queue: &mut Vec<usize>) -> Result<Term, EvalError> {
        if self.subject.relation.as_deref() == Some(member) && &self.subject.object == object {
            return Ok(Term::Const(Tri::True));
        }
        let schema = self.ctx.schema;
        let Some(def) = schema.definition(&object.ty) else { return Ok(Term::Const(Tri::False)) };
        match schema.member_of(def, member) {
            None => Ok(Term::Const(Tri::False)),
            Some(Member::Relation(relation)) => {
                if let Some(v) = self.closure_value(object, relation)? {
                    return Ok(Term::Const(v));
                }
                let all = self.all_edges(object, member);
                let edges: Vec<&Relationship> = all.iter().filter(|r| !self.expired(r)).collect();
                self.step(edges.len())?;
                let mut terms = Vec::new();
                for rel in edges {
                    let s = &rel.subject;
                    let reach = match &s.relation {
                        Some(r) => Term::Node(self.node(&s.object, r, queue)),
                        None if self.subject.relation.is_some() => continue,
                        None if s.object == self.subject.object => Term::Const(Tri::True),
                        None if s.is_wildcard() && s.object.ty == self.subject.object.ty => Term::Const(Tri::True),
                        None => continue,
                    };
                    terms.push(with_caveat(reach, self.caveat(rel)?));
                }
                Ok(Term::Or(terms))
            }
            Some(Member::Permission(p)) => self.rewrite(object, &p.rewrite, queue),
        }
    }

    /// The value of `object#relation` when the relation nests only in itself (its allowed
    /// subject sets are all `type#relation`) and the data answers the membership from a closure
    /// (see [`super::Relations::nested_membership`]); `None` to explore instead. The node's least
    /// fixpoint is then: the subject is named, directly or by a wildcard, by a relationship of
    /// the object or of an object nested below it; conditional ones add their caveats' values.
    fn closure_value(&self, object: &ObjectRef, relation: &Relation) -> Result<Option<Tri>, EvalError> {
        if self.explain || !relation.nests_only_in_itself(&object.ty) {
            return Ok(None);
        }
        let found = self.ctx.data.nested_membership(object, &relation.name, self.subject, self.ctx.env.now);
        Ok(match found {
            None => None,
            Some(Membership::Yes) => Some(Tri::True),
            Some(Membership::Conditional(rels)) => {
                let mut acc = Tri::False;
                for rel in rels.iter().filter(|r| !self.expired(r)) {
                    acc = acc.or(self.caveat(rel)?);
                }
                Some(acc)
            }
        })
    }

    fn rewrite(&mut self, object: &ObjectRef, rw: &Rewrite, queue: &mut Vec<usize>) -> Result<Term, EvalError> {
        Ok(match rw {
            Rewrite::Nil => Term::Const(Tri::False),
            Rewrite::Computed { name, .. } => Term::Node(self.node(object, name, queue)),
            Rewrite::Union(a, b) => Term::Or(vec![self.rewrite(object, a, queue)?, self.rewrite(object, b, queue)?]),
            Rewrite::Intersection(a, b) => {
                Term::And(vec![self.rewrite(object, a, queue)?, self.rewrite(object, b, queue)?])
            }
            Rewrite::Exclusion(a, b) => {
                Term::AndNot(Box::new(self.rewrite(object, a, queue)?), Box::new(self.rewrite(object, b, queue)?))
            }
            Rewrite::Arrow { tupleset, computed, kind, .. } => {
                let all = self.all_edges(object, tupleset);
                let edges: Vec<&Relationship> = all.iter().filter(|r| !self.expired(r)).collect();
                self.step(edges.len())?;
                let mut terms = Vec::new();
                for rel in edges {
                    let target = &rel.subject.object;
                    // A subject whose type lacks the computed member contributes nothing to
                    // `.any` and fails `.all`.
                    let has_member =
                        self.ctx.schema.definition(&target.ty).is_some_and(|d| d.member(computed).is_some());
                    let reach = if has_member && !target.is_wildcard() {
                        Term::Node(self.node(target, computed, queue))
                    } else {
                        Term::Const(Tri::False)
                    };
                    terms.push(with_caveat(reach, self.caveat(rel)?));
                }
                match kind {
                    ArrowKind::Arrow | ArrowKind::Any => Term::Or(terms),
                    ArrowKind::All if terms.is_empty() => Term::Const(Tri::False),
                    ArrowKind::All => Term::And(terms),
                }
            }
        })
    }

    /// A term's value, reading nodes in positive position (under an even number of exclusions'
    /// right-hand sides) from `pos` and in negative position from `neg`.
    fn eval(t: &Term, pos: &dyn Fn(usize) -> Tri, neg: &dyn Fn(usize) -> Tri) -> Tri {
        match t {
            Term::Const(v) => v.clone(),
            Term::Node(n) => pos(*n),
            Term::Or(ts) => {
                let mut acc = Tri::False;
                for t in ts {
                    acc = acc.or(Self::eval(t, pos, neg));
                    if acc.is_true() {
                        break;
                    }
                }
                acc
            }
            Term::And(ts) => {
                let mut acc = Tri::True;
                for t in ts {
                    acc = acc.and(Self::eval(t, pos, neg));
                    if acc.is_false() {
                        break;
                    }
                }
                acc
            }
            Term::AndNot(a, b) => Self::eval(a, pos, neg).minus(Self::eval(b, neg, pos)),
        }
    }

    /// The nodes a term reads, each with whether it reads it in negative position.
    fn dependencies(t: &Term, out: &mut Vec<(usize, bool)>) {
        let mut stack = vec![(t, false)];
        while let Some((t, negative)) = stack.pop() {
            match t {
                Term::Const(_) => {}
                Term::Node(n) => out.push((*n, negative)),
                Term::Or(ts) | Term::And(ts) => stack.extend(ts.iter().map(|t| (t, negative))),
                Term::AndNot(a, b) => {
                    stack.push((a, negative));
                    stack.push((b, !negative));
                }
            }
        }
    }

    /// Solves every explored node, components of the node graph in dependency order.
    ///
    /// A component whose inputs are all decided and that no exclusion's right-hand side closes
    /// (the usual case) is monotone: Kleene iteration from false, driven by a worklist, reaches
    /// its least fixpoint. Otherwise its nodes get the alternating fixpoint of the well-founded
    /// semantics: a lower estimate (the least fixpoint reading negated nodes at their upper
    /// estimate) and an upper one (reading them at the new lower estimate), repeated until both
    /// settle. A node whose estimates agree is decided; one whose estimates differ depends on
    /// itself through an exclusion and has no answer (`high` keeps the upper estimates;
    /// `values` the lower).
    pub(crate) fn solve(&mut self) -> Result<(), EvalError> {
        let n = self.nodes.len();
        let mut edges = Vec::new();
        let mut reads: Vec<Vec<(usize, bool)>> = Vec::with_capacity(n);
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (from, eq) in self.equations.iter().enumerate() {
            let mut deps = Vec::new();
            Self::dependencies(eq, &mut deps);
            for &(to, _) in &deps {
                edges.push((from, to));
                if let Some(d) = dependents.get_mut(to) {
                    d.push(from);
                }
            }
            reads.push(deps);
        }
        self.step(edges.len())?;
        self.high = self.values.clone();
        let components = scc::strongly_connected_components(n, &edges);
        let mut component_of = vec![usize::MAX; n];
        for (ci, comp) in components.iter().enumerate() {
            for &x in comp {
                if let Some(slot) = component_of.get_mut(x) {
                    *slot = ci;
                }
            }
        }
        let mut queued = vec![false; n];
        for (ci, comp) in components.iter().enumerate() {
            let inside = |y: usize| component_of.get(y) == Some(&ci);
            let mut closes_exclusion = false;
            let mut undecided_input = false;
            for &x in comp {
                for &(y, negative) in reads.get(x).map(Vec::as_slice).unwrap_or(&[]) {
                    if inside(y) {
                        closes_exclusion |= negative;
                    } else {
                        undecided_input |= self.values.get(y) != self.high.get(y);
                    }
                }
            }
            if closes_exclusion || undecided_input {
                self.alternate(comp)?;
                continue;
            }
            let mut work: std::collections::VecDeque<usize> = comp.iter().rev().copied().collect();
            for &x in comp {
                if let Some(q) = queued.get_mut(x) {
                    *q = true;
                }
            }
            while let Some(x) = work.pop_front() {
                if let Some(q) = queued.get_mut(x) {
                    *q = false;
                }
                self.step(1)?;
                let Some(eq) = self.equations.get(x) else { continue };
                let values = &self.values;
                let read = |y: usize| values.get(y).cloned().unwrap_or(Tri::False);
                let v = Self::eval(eq, &read, &read);
                if self.values.get(x) == Some(&v) {
                    continue;
                }
                if let Some(slot) = self.values.get_mut(x) {
                    *slot = v;
                }
                for &d in dependents.get(x).map(Vec::as_slice).unwrap_or(&[]) {
                    if component_of.get(d) == Some(&ci) && queued.get(d) == Some(&false) {
                        if let Some(q) = queued.get_mut(d) {
                            *q = true;
                        }
                        work.push_back(d);
                    }
                }
            }
            for &x in comp {
                if let (Some(h), Some(v)) = (self.high.get_mut(x), self.values.get(x)) {
                    *h = v.clone();
                }
            }
        }
        Ok(())
    }

    /// The alternating fixpoint of one component (see [`Equations::solve`]): `values` ends with
    /// the lower estimates, `high` with the upper.
    fn alternate(&mut self, comp: &[usize]) -> Result<(), EvalError> {
        let position: HashMap<usize, usize> = comp.iter().enumerate().map(|(i, &x)| (x, i)).collect();
        let at = |v: &[Tri], i: Option<&usize>| i.and_then(|&i| v.get(i)).cloned().unwrap_or(Tri::False);
        let (mut low, mut high) = (vec![Tri::False; comp.len()], vec![Tri::True; comp.len()]);
        loop {
            // The lower estimate: negated nodes read at their upper estimates; other nodes'
            // positive reads at their (final) lower values.
            let (values, highs) = (&self.values, &self.high);
            let outside_low = |y: usize| values.get(y).cloned().unwrap_or(Tri::False);
            let neg_high = |y: usize| match position.get(&y) {
                Some(i) => at(&high, Some(i)),
                None => highs.get(y).cloned().unwrap_or(Tri::False),
            };
            let (new_low, work) = self.least(comp, &position, &outside_low, &neg_high);
            self.step(work)?;
            // The upper estimate: negated nodes read at the new lower estimates; other nodes'
            // positive reads at their upper values.
            let (values, highs) = (&self.values, &self.high);
            let outside_high = |y: usize| highs.get(y).cloned().unwrap_or(Tri::False);
            let neg_low = |y: usize| match position.get(&y) {
                Some(i) => at(&new_low, Some(i)),
                None => values.get(y).cloned().unwrap_or(Tri::False),
            };
            let (new_high, work) = self.least(comp, &position, &outside_high, &neg_low);
            self.step(work)?;
            // Equal estimates are the answer (another round would give them again); else they
            // settle when a round changes neither.
            let settled = new_low == new_high || (new_low == low && new_high == high);
            (low, high) = (new_low, new_high);
            if settled {
                break;
            }
        }
        for ((&x, l), h) in comp.iter().zip(low).zip(high) {
            if let Some(slot) = self.values.get_mut(x) {
                *slot = l;
            }
            if let Some(slot) = self.high.get_mut(x) {
                *slot = h;
            }
        }
        Ok(())
    }

    /// The least fixpoint of a component's equations, iterated from false: positive reads of the
    /// component's own nodes see the iteration, of other nodes `outside`; negative reads see
    /// `neg`. Returns it with the work done (node evaluations).
    fn least(
        &self,
        comp: &[usize],
        position: &HashMap<usize, usize>,
        outside: &dyn Fn(usize) -> Tri,
        neg: &dyn Fn(usize) -> Tri,
    ) -> (Vec<Tri>, usize) {
        let mut cur: Vec<Tri> = vec![Tri::False; comp.len()];
        let mut work = 0;
        loop {
            work += comp.len();
            let mut changed = false;
            for (i, &x) in comp.iter().enumerate() {
                let Some(eq) = self.equations.get(x) else { continue };
                let pos = |y: usize| -> Tri {
                    match position.get(&y) {
                        Some(&j) => cur.get(j).cloned().unwrap_or(Tri::False),
                        None => outside(y),
                    }
                };
                let v = Self::eval(eq, &pos, neg);
                if cur.get(i) != Some(&v) {
                    if let Some(slot) = cur.get_mut(i) {
                        *slot = v;
                    }
                    changed = true;
                }
            }
            if !changed {
                return (cur, work);
            }
        }
    }

    /// Whether node `x` has an answer (its lower and upper estimates agree).
    fn decided(&self, x: usize) -> bool {
        self.values.get(x) == self.high.get(x)
    }

    /// The error for an undecided `root`: a cycle of nodes through an exclusion it depends on,
    /// found by following undecided nodes from the root to a negative read whose target leads
    /// back to its reader.
    fn cycle_error(&self, root: usize) -> EvalError {
        let name = |x: usize| self.nodes.get(x).map(|(o, m)| format!("{o}#{m}")).unwrap_or_default();
        let reads = |x: usize| {
            let mut deps = Vec::new();
            if let Some(eq) = self.equations.get(x) {
                Self::dependencies(eq, &mut deps);
            }
            deps.retain(|(y, _)| !self.decided(*y));
            deps
        };
        // Every undecided node the root depends on, breadth first.
        let mut seen = vec![false; self.nodes.len()];
        let mut order = vec![root];
        if let Some(s) = seen.get_mut(root) {
            *s = true;
        }
        let mut i = 0;
        while let Some(&x) = order.get(i) {
            i += 1;
            for (y, _) in reads(x) {
                if seen.get(y) == Some(&false) {
                    if let Some(s) = seen.get_mut(y) {
                        *s = true;
                    }
                    order.push(y);
                }
            }
        }
        for &u in &order {
            for (v, negative) in reads(u) {
                if !negative {
                    continue;
                }
                // A path from `v` back to `u` among undecided nodes closes the cycle.
                let mut back: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
                let mut queue = std::collections::VecDeque::from([v]);
                back.insert(v, v);
                while let Some(x) = queue.pop_front() {
                    if x == u {
                        let mut path = vec![u];
                        let mut at = u;
                        while at != v {
                            at = back.get(&at).copied().unwrap_or(v);
                            path.push(at);
                        }
                        path.push(u);
                        // `path` runs u ← … ← v ← u backwards: reverse it into reading order.
                        path.reverse();
                        let mut cycle: Vec<String> = path.iter().map(|&x| name(x)).collect();
                        if cycle.len() > MAX_CYCLE_SHOWN {
                            cycle.truncate(MAX_CYCLE_SHOWN);
                            cycle.push("…".into());
                        }
                        return EvalError::ExclusionCycle(cycle);
                    }
                    for (y, _) in reads(x) {
                        if let std::collections::hash_map::Entry::Vacant(e) = back.entry(y) {
                            e.insert(x);
                            queue.push_back(y);
                        }
                    }
                }
            }
        }
        EvalError::ExclusionCycle(order.iter().take(MAX_CYCLE_SHOWN).map(|&x| name(x)).collect())
    }

    /// The solved value of `object#member`, if it was explored and has an answer.
    pub(crate) fn value_of(&self, object: &ObjectRef, member: &str) -> Option<&Tri> {
        self.ids
            .get(&(object.clone(), member.to_string()))
            .filter(|&&id| self.decided(id))
            .and_then(|&id| self.values.get(id))
    }
}

fn with_caveat(reach: Term, caveat: Tri) -> Term {
    match caveat {
        Tri::True => reach,
        c => Term::And(vec![reach, Term::Const(c)]),
    }
}

/// Checks that a request names things the schema knows: the resource type and its member, the
/// subject type and, for a subject set, its member.
pub fn validate_request(
    schema: &CompiledSchema,
    resource: &ObjectRef,
    permission: &str,
    subject: &SubjectRef,
) -> Result<(), EvalError> {
    let def = schema.definition(&resource.ty).ok_or_else(|| EvalError::UnknownType(resource.ty.clone()))?;
    if def.member_kind(permission).is_none() {
        return Err(EvalError::UnknownMember { ty: resource.ty.clone(), name: permission.to_string() });
    }
    let sdef =
        schema.definition(&subject.object.ty).ok_or_else(|| EvalError::UnknownType(subject.object.ty.clone()))?;
    if let Some(r) = &subject.relation
        && sdef.member_kind(r).is_none()
    {
        return Err(EvalError::UnknownMember { ty: subject.object.ty.clone(), name: r.clone() });
    }
    Ok(())
}

/// Explores and solves the graph of `resource#permission` for one subject; the root's value is
/// the Check answer, and every explored node's value is available for explanations.
pub(crate) fn solve<'a>(
    ctx: Ctx<'a>,
    resource: &ObjectRef,
    permission: &str,
    subject: &'a SubjectRef,
    context: &'a Map<String, serde_json::Value>,
) -> Result<(Equations<'a>, Tri), EvalError> {
    solve_with(ctx, resource, permission, subject, context, false)
}

/// [`solve`] exploring every node it reaches, closures or not: the graph then explains the
/// answer (every node on a path to the subject has its value).
pub(crate) fn explain<'a>(
    ctx: Ctx<'a>,
    resource: &ObjectRef,
    permission: &str,
    subject: &'a SubjectRef,
    context: &'a Map<String, serde_json::Value>,
) -> Result<(Equations<'a>, Tri), EvalError> {
    solve_with(ctx, resource, permission, subject, context, true)
}

fn solve_with<'a>(
    ctx: Ctx<'a>,
    resource: &ObjectRef,
    permission: &str,
    subject: &'a SubjectRef,
    context: &'a Map<String, serde_json::Value>,
    explain: bool,
) -> Result<(Equations<'a>, Tri), EvalError> {
    let mut g = Equations::new(ctx, subject, context, explain);
    let mut queue = Vec::new();
    let root = g.node(resource, permission, &mut queue);
    g.explore(queue)?;
    g.solve()?;
    if !g.decided(root) {
        return Err(g.cycle_error(root));
    }
    let value = g.values.get(root).cloned().unwrap_or(Tri::False);
    Ok((g, value))
}

/// Decides one Check with the reference evaluator.
pub fn check(ctx: &Ctx<'_>, req: &CheckRequest) -> Result<Decision, EvalError> {
    check_until(ctx, req).map(|(d, _)| d)
}

/// [`check`], with the earliest expiration among the unexpired expiring relationships the
/// evaluation explored: absent writes, the answer holds until then (`None`: it read none).
pub fn check_until(ctx: &Ctx<'_>, req: &CheckRequest) -> Result<(Decision, Option<Timestamp>), EvalError> {
    validate_request(ctx.schema, &req.resource, &req.permission, &req.subject)?;
    let (g, value) = solve(*ctx, &req.resource, &req.permission, &req.subject, &req.context)?;
    Ok((Decision::from_tri(&value), g.expires_at.get()))
}

/// Decides many Checks at one `now`; each item gets its own answer or error.
pub fn check_bulk(ctx: &Ctx<'_>, reqs: &[CheckRequest]) -> Vec<Result<Decision, EvalError>> {
    reqs.iter().map(|r| check(ctx, r)).collect()
}

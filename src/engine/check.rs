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

use super::{CheckRequest, Decision, Env, EvalError, Relations, Tri};
use crate::conditions::{self, Conditions, Outcome};
use crate::graph;
use crate::index::IndexGraph;
use crate::model::{ObjectRef, Relationship, SubjectRef};
use crate::schema::ast::ArrowKind;
use crate::schema::{AllowedKind, CompiledSchema, MemberKind, Rewrite};

/// An equation's right-hand side.
#[derive(Debug, Clone)]
pub(crate) enum Term {
    Const(Tri),
    Node(usize),
    Or(Vec<Term>),
    And(Vec<Term>),
    AndNot(Box<Term>, Box<Term>),
}

/// The explored part of the graph for one subject, and its solution.
pub(crate) struct Graph<'a> {
    schema: &'a CompiledSchema,
    data: &'a dyn Relations,
    conditions: &'a Conditions,
    subject: &'a SubjectRef,
    context: &'a Map<String, serde_json::Value>,
    env: Env,
    started: Instant,
    work: usize,
    ids: HashMap<(ObjectRef, String), usize>,
    pub(crate) nodes: Vec<(ObjectRef, String)>,
    equations: Vec<Term>,
    pub(crate) values: Vec<Tri>,
    /// The index, when the caller keeps one: nested memberships it summarizes are answered from
    /// its closures instead of being explored.
    index: Option<&'a IndexGraph>,
}

impl<'a> Graph<'a> {
    pub(crate) fn new(
        schema: &'a CompiledSchema,
        data: &'a dyn Relations,
        conditions: &'a Conditions,
        subject: &'a SubjectRef,
        context: &'a Map<String, serde_json::Value>,
        env: Env,
    ) -> Graph<'a> {
        Graph {
            schema,
            data,
            conditions,
            subject,
            context,
            env,
            started: Instant::now(),
            work: 0,
            ids: HashMap::new(),
            nodes: Vec::new(),
            equations: Vec::new(),
            values: Vec::new(),
            index: None,
        }
    }

    fn step(&mut self, n: usize) -> Result<(), EvalError> {
        self.work += n;
        if self.work > self.env.limits.max_work {
            return Err(EvalError::WorkLimit(self.env.limits.max_work));
        }
        if self.work % 1024 < n && self.started.elapsed() > self.env.limits.deadline {
            return Err(EvalError::Deadline(self.env.limits.deadline));
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
        if self.started.elapsed() > self.env.limits.deadline {
            return Err(EvalError::Deadline(self.env.limits.deadline));
        }
        let caveat = self.schema.caveat(&c.name).ok_or_else(|| EvalError::UnknownCaveat(c.name.clone()))?;
        let env = conditions::Env {
            now: self.env.now,
            resource: self.data.attributes(&rel.resource),
            subject: self.data.attributes(&rel.subject.object),
        };
        Ok(match self.conditions.evaluate(&caveat.condition, &c.context, self.context, env)? {
            Outcome::True => Tri::True,
            Outcome::False => Tri::False,
            Outcome::Missing(m) => Tri::unknown(m.into_iter().collect()),
        })
    }

    /// Relationships `object#relation@…`, expired ones included (callers skip them with
    /// [`Graph::expired`]).
    fn all_edges(&self, object: &ObjectRef, relation: &str) -> std::borrow::Cow<'a, [Relationship]> {
        self.data.edges(object, relation)
    }

    fn expired(&self, r: &Relationship) -> bool {
        r.expiration.is_some_and(|e| e <= self.env.now)
    }

    fn equation(&mut self, object: &ObjectRef, member: &str, queue: &mut Vec<usize>) -> Result<Term, EvalError> {
        if self.subject.relation.as_deref() == Some(member) && &self.subject.object == object {
            return Ok(Term::Const(Tri::True));
        }
        let Some(def) = self.schema.definition(&object.ty) else { return Ok(Term::Const(Tri::False)) };
        match def.member_kind(member) {
            None => Ok(Term::Const(Tri::False)),
            Some(MemberKind::Relation) => {
                if let Some(v) = self.closure_value(object, member)? {
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
            Some(MemberKind::Permission) => {
                let rewrite = def.permissions.get(member).map(|p| p.rewrite.clone()).unwrap_or(Rewrite::Nil);
                self.rewrite(object, &rewrite, queue)
            }
        }
    }

    /// The value of `object#relation` from the index's closure, when the relation nests only in
    /// itself (its allowed subject sets are all `type#relation`) and every nesting edge is
    /// unconditional (else the index keeps no closure and this returns `None`). Then the node's
    /// least fixpoint is: the subject is named, directly or by a wildcard, by a relationship of
    /// the object or of an object nested below it. Conditional edges of those objects add their
    /// caveats' values.
    fn closure_value(&self, object: &ObjectRef, relation: &str) -> Result<Option<Tri>, EvalError> {
        let Some(ix) = self.index else { return Ok(None) };
        let Some(rel) = self.schema.definition(&object.ty).and_then(|d| d.relations.get(relation)) else {
            return Ok(None);
        };
        let nests_only_in_itself = rel.allowed.iter().all(|a| match &a.kind {
            AllowedKind::Relation(r) => a.ty == object.ty && r == relation,
            _ => true,
        });
        if !nests_only_in_itself {
            return Ok(None);
        }
        let Some(gid) = ix.id(object) else {
            // An object the index has never seen has no relationships.
            return Ok(Some(Tri::False));
        };
        let Some(members) = ix.nested(&object.ty, relation, gid) else { return Ok(None) };
        let s = self.subject;
        if let Some(sr) = &s.relation {
            // A subject set is reached when it is this object or one nested below it.
            let hit =
                s.object.ty == object.ty && sr == relation && ix.id(&s.object).is_some_and(|x| members.contains(&x));
            return Ok(Some(if hit { Tri::True } else { Tri::False }));
        }
        if let Some(sid) = ix.id(&s.object).filter(|_| !s.is_wildcard())
            && let Some(direct) = ix.reverse(&object.ty, relation, &s.object.ty, sid)
            && members.iter().any(|g| direct.contains(*g))
        {
            return Ok(Some(Tri::True));
        }
        if let Some(w) = ix.wildcard(&object.ty, relation, &s.object.ty)
            && members.iter().any(|g| w.contains(*g))
        {
            return Ok(Some(Tri::True));
        }
        let mut acc = Tri::False;
        let sid = ix.id(&s.object);
        let side = ix.kind(&object.ty, relation, &s.object.ty, None).map(|k| &k.side);
        for e in side.into_iter().flat_map(|s| s.iter()) {
            let names_subject =
                e.subject == crate::index::graph::WILDCARD || (Some(e.subject) == sid && !s.is_wildcard());
            if !names_subject || !members.contains(&e.resource) || e.expiration.is_some_and(|x| x <= self.env.now) {
                continue;
            }
            let resource =
                ObjectRef::new(object.ty.clone(), ix.name(&object.ty, e.resource).unwrap_or_default().to_string());
            let subject_object = if e.subject == crate::index::graph::WILDCARD {
                ObjectRef::new(s.object.ty.clone(), "*")
            } else {
                s.object.clone()
            };
            let rel = Relationship {
                resource,
                relation: relation.to_string(),
                subject: SubjectRef::new(subject_object, None),
                caveat: e.caveat.clone(),
                expiration: e.expiration,
            };
            acc = acc.or(self.caveat(&rel)?);
        }
        Ok(Some(acc))
    }

    fn rewrite(&mut self, object: &ObjectRef, rw: &Rewrite, queue: &mut Vec<usize>) -> Result<Term, EvalError> {
        Ok(match rw {
            Rewrite::Nil => Term::Const(Tri::False),
            Rewrite::Computed(m) => Term::Node(self.node(object, m, queue)),
            Rewrite::Union(a, b) => Term::Or(vec![self.rewrite(object, a, queue)?, self.rewrite(object, b, queue)?]),
            Rewrite::Intersection(a, b) => {
                Term::And(vec![self.rewrite(object, a, queue)?, self.rewrite(object, b, queue)?])
            }
            Rewrite::Exclusion(a, b) => {
                Term::AndNot(Box::new(self.rewrite(object, a, queue)?), Box::new(self.rewrite(object, b, queue)?))
            }
            Rewrite::Arrow { tupleset, computed, kind } => {
                let all = self.all_edges(object, tupleset);
                let edges: Vec<&Relationship> = all.iter().filter(|r| !self.expired(r)).collect();
                self.step(edges.len())?;
                let mut terms = Vec::new();
                for rel in edges {
                    let target = &rel.subject.object;
                    // A subject whose type lacks the computed member contributes nothing to
                    // `.any` and fails `.all`.
                    let has_member =
                        self.schema.definition(&target.ty).is_some_and(|d| d.member_kind(computed).is_some());
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

    fn eval(&self, t: &Term) -> Tri {
        match t {
            Term::Const(v) => v.clone(),
            Term::Node(n) => self.values.get(*n).cloned().unwrap_or(Tri::False),
            Term::Or(ts) => {
                let mut acc = Tri::False;
                for t in ts {
                    acc = acc.or(self.eval(t));
                    if acc.is_true() {
                        break;
                    }
                }
                acc
            }
            Term::And(ts) => {
                let mut acc = Tri::True;
                for t in ts {
                    acc = acc.and(self.eval(t));
                    if acc.is_false() {
                        break;
                    }
                }
                acc
            }
            Term::AndNot(a, b) => self.eval(a).minus(self.eval(b)),
        }
    }

    fn dependencies(t: &Term, out: &mut Vec<usize>) {
        let mut stack = vec![t];
        while let Some(t) = stack.pop() {
            match t {
                Term::Const(_) => {}
                Term::Node(n) => out.push(*n),
                Term::Or(ts) | Term::And(ts) => stack.extend(ts),
                Term::AndNot(a, b) => {
                    stack.push(a);
                    stack.push(b);
                }
            }
        }
    }

    /// Solves every explored node: components in dependency order, each by Kleene iteration
    /// driven by a worklist (a node is evaluated again only when something it reads changed).
    pub(crate) fn solve(&mut self) -> Result<(), EvalError> {
        let n = self.nodes.len();
        let mut edges = Vec::new();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut deps = Vec::new();
        for (from, eq) in self.equations.iter().enumerate() {
            deps.clear();
            Self::dependencies(eq, &mut deps);
            for &to in &deps {
                edges.push((from, to));
                if let Some(d) = dependents.get_mut(to) {
                    d.push(from);
                }
            }
        }
        self.step(edges.len())?;
        let components = graph::strongly_connected_components(n, &edges);
        let mut component_of = vec![usize::MAX; n];
        let mut queued = vec![false; n];
        for (ci, comp) in components.iter().enumerate() {
            for &x in comp {
                if let Some(slot) = component_of.get_mut(x) {
                    *slot = ci;
                }
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
                let v = self.eval(eq);
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
        }
        Ok(())
    }

    /// The solved value of `object#member`, if it was explored.
    pub(crate) fn value_of(&self, object: &ObjectRef, member: &str) -> Option<&Tri> {
        self.ids.get(&(object.clone(), member.to_string())).and_then(|&id| self.values.get(id))
    }
}

fn with_caveat(reach: Term, caveat: Tri) -> Term {
    match caveat {
        Tri::True => reach,
        c => Term::And(vec![reach, Term::Const(c)]),
    }
}

/// Checks that the request names things the schema knows.
pub(crate) fn validate_request(
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
#[allow(clippy::too_many_arguments)]
pub(crate) fn solve<'a>(
    schema: &'a CompiledSchema,
    data: &'a dyn Relations,
    conditions: &'a Conditions,
    resource: &ObjectRef,
    permission: &str,
    subject: &'a SubjectRef,
    context: &'a Map<String, serde_json::Value>,
    env: Env,
) -> Result<(Graph<'a>, Tri), EvalError> {
    solve_indexed(schema, data, None, conditions, resource, permission, subject, context, env)
}

/// [`solve`], answering nested memberships from the index's closures where it keeps them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn solve_indexed<'a>(
    schema: &'a CompiledSchema,
    data: &'a dyn Relations,
    index: Option<&'a IndexGraph>,
    conditions: &'a Conditions,
    resource: &ObjectRef,
    permission: &str,
    subject: &'a SubjectRef,
    context: &'a Map<String, serde_json::Value>,
    env: Env,
) -> Result<(Graph<'a>, Tri), EvalError> {
    let mut g = Graph::new(schema, data, conditions, subject, context, env);
    g.index = index;
    let mut queue = Vec::new();
    let root = g.node(resource, permission, &mut queue);
    g.explore(queue)?;
    g.solve()?;
    let value = g.values.get(root).cloned().unwrap_or(Tri::False);
    Ok((g, value))
}

/// Decides one Check with the reference evaluator.
pub fn check(
    schema: &CompiledSchema,
    data: &dyn Relations,
    conditions: &Conditions,
    req: &CheckRequest,
    env: Env,
) -> Result<Decision, EvalError> {
    validate_request(schema, &req.resource, &req.permission, &req.subject)?;
    let (_, value) = solve(schema, data, conditions, &req.resource, &req.permission, &req.subject, &req.context, env)?;
    Ok(Decision::from_tri(&value))
}

/// Decides one Check with the index's closures standing in for nested memberships. Equal to
/// [`check`] by construction (tested against it on random data).
pub fn check_indexed(
    schema: &CompiledSchema,
    data: &dyn Relations,
    index: &IndexGraph,
    conditions: &Conditions,
    req: &CheckRequest,
    env: Env,
) -> Result<Decision, EvalError> {
    validate_request(schema, &req.resource, &req.permission, &req.subject)?;
    let (_, value) = solve_indexed(
        schema,
        data,
        Some(index),
        conditions,
        &req.resource,
        &req.permission,
        &req.subject,
        &req.context,
        env,
    )?;
    Ok(Decision::from_tri(&value))
}

/// Decides many Checks at one `now`; each item gets its own answer or error.
pub fn check_bulk(
    schema: &CompiledSchema,
    data: &dyn Relations,
    conditions: &Conditions,
    reqs: &[CheckRequest],
    env: Env,
) -> Vec<Result<Decision, EvalError>> {
    reqs.iter().map(|r| check(schema, data, conditions, r, env)).collect()
}

/// Decides one Check on the fast path (`index::eval`: interned ids, memoized depth-first walk),
/// handing it to the reference evaluator (with the index's closures) when the walk meets a cycle
/// in the data or its frame budget. Equal to [`check`] (tested against it on random data).
pub fn check_fast(
    schema: &CompiledSchema,
    data: &dyn Relations,
    index: &IndexGraph,
    conditions: &Conditions,
    req: &CheckRequest,
    env: Env,
) -> Result<Decision, EvalError> {
    validate_request(schema, &req.resource, &req.permission, &req.subject)?;
    let mut point = crate::index::eval::Point::new(schema, index, data, conditions, &req.subject, &req.context, env);
    match point.check(&req.resource, &req.permission)? {
        Some(v) => Ok(Decision::from_tri(&v)),
        None => check_indexed(schema, data, index, conditions, req, env),
    }
}

/// Decides many Checks at one `now` on the fast path. One evaluator serves the whole batch:
/// consecutive items with the same subject and context share its memoized values, and every
/// item shares what it resolved about the schema and the index.
pub fn check_bulk_fast<'a>(
    schema: &'a CompiledSchema,
    data: &'a dyn Relations,
    index: &'a IndexGraph,
    conditions: &'a Conditions,
    reqs: &'a [CheckRequest],
    env: Env,
) -> Vec<Result<Decision, EvalError>> {
    let mut out = Vec::with_capacity(reqs.len());
    // Every item's ids first, in one pass: the lookups are independent, so the processor
    // overlaps their memory reads instead of waiting for each inside an evaluation.
    let ids: Vec<(Option<u32>, Option<u32>)> =
        reqs.iter().map(|r| (index.id(&r.resource), crate::index::eval::subject_id(index, &r.subject))).collect();
    let mut point: Option<crate::index::eval::Point<'a>> = None;
    for (req, (rid, sid)) in reqs.iter().zip(ids) {
        if let Err(e) = validate_request(schema, &req.resource, &req.permission, &req.subject) {
            out.push(Err(e));
            continue;
        }
        let p = match &mut point {
            Some(p) => {
                if !p.serves(&req.subject, &req.context) {
                    p.retarget_to(&req.subject, sid, &req.context);
                }
                p
            }
            None => point.insert(crate::index::eval::Point::new(
                schema,
                index,
                data,
                conditions,
                &req.subject,
                &req.context,
                env,
            )),
        };
        let answer = match p.check_id(&req.resource, rid, &req.permission) {
            Ok(Some(v)) => Ok(Decision::from_tri(&v)),
            Err(e) => Err(e),
            Ok(None) => check_indexed(schema, data, index, conditions, req, env),
        };
        out.push(answer);
    }
    out
}

//! A second, deliberately naive evaluator for Check, written independently of the engine: it
//! computes every (object, member) value for one subject, stratum by stratum (schema-level
//! strongly connected components found by a reachability matrix), by Kleene iteration over all
//! objects. Slow and simple; the engine's reference evaluator must agree with it.

use std::collections::{BTreeMap, BTreeSet};

use pemba::conditions::{Conditions, Env as CondEnv, Outcome};
use pemba::engine::{Decision, Tri, Tuples};
use pemba::model::{ObjectRef, Relationship, SubjectRef, Timestamp};
use pemba::schema::ast::ArrowKind;
use pemba::schema::{AllowedKind, CompiledSchema, MemberKind, Rewrite};
use serde_json::{Map, Value};

type Key = (String, String);

fn member_edges(schema: &CompiledSchema) -> (Vec<Key>, Vec<(usize, usize)>) {
    let mut keys = Vec::new();
    for d in schema.definitions() {
        for m in d.member_names() {
            keys.push((d.name.clone(), m.clone()));
        }
    }
    let idx = |t: &str, m: &str| keys.iter().position(|k| k.0 == t && k.1 == m);
    let mut edges = Vec::new();
    for d in schema.definitions() {
        for r in schema.relations_of(d) {
            for a in &r.allowed {
                if let AllowedKind::Relation(sr) = &a.kind
                    && let (Some(x), Some(y)) = (idx(&d.name, &r.name), idx(&a.ty, sr))
                {
                    edges.push((x, y));
                }
            }
        }
        for p in schema.permissions_of(d) {
            let from = idx(&d.name, &p.name).unwrap();
            let mut stack = vec![&p.rewrite];
            while let Some(rw) = stack.pop() {
                match rw {
                    Rewrite::Nil => {}
                    Rewrite::Computed { name, .. } => edges.push((from, idx(&d.name, name).unwrap())),
                    Rewrite::Arrow { tupleset, computed, .. } => {
                        edges.push((from, idx(&d.name, tupleset).unwrap()));
                        for a in &schema.relation_of(d, tupleset).unwrap().allowed {
                            if let Some(y) = idx(&a.ty, computed) {
                                edges.push((from, y));
                            }
                        }
                    }
                    Rewrite::Union(a, b) | Rewrite::Intersection(a, b) | Rewrite::Exclusion(a, b) => {
                        stack.push(a);
                        stack.push(b);
                    }
                }
            }
        }
    }
    (keys, edges)
}

/// Strata of members, dependencies first.
fn strata(schema: &CompiledSchema) -> Vec<Vec<Key>> {
    let (keys, edges) = member_edges(schema);
    let n = keys.len();
    let mut reach = vec![vec![false; n]; n];
    for (a, b) in edges {
        reach[a][b] = true;
    }
    for k in 0..n {
        for i in 0..n {
            for j in 0..n {
                if reach[i][k] && reach[k][j] {
                    reach[i][j] = true;
                }
            }
        }
    }
    let mut comps: Vec<Vec<usize>> = Vec::new();
    let mut assigned = vec![false; n];
    for i in 0..n {
        if assigned[i] {
            continue;
        }
        let comp: Vec<usize> = (0..n).filter(|&j| j == i || (reach[i][j] && reach[j][i])).collect();
        for &j in &comp {
            assigned[j] = true;
        }
        comps.push(comp);
    }
    let mut done: Vec<bool> = vec![false; comps.len()];
    let mut order = Vec::new();
    while order.len() < comps.len() {
        for (ci, comp) in comps.iter().enumerate() {
            if done[ci] {
                continue;
            }
            let ready = comp.iter().all(|&i| {
                (0..n).all(|j| {
                    !reach[i][j]
                        || comp.contains(&j)
                        || comps.iter().enumerate().any(|(cj, c)| done[cj] && c.contains(&j))
                })
            });
            if ready {
                done[ci] = true;
                order.push(comp.iter().map(|&i| keys[i].clone()).collect());
            }
        }
    }
    order
}

pub struct Oracle<'a> {
    schema: &'a CompiledSchema,
    data: &'a Tuples,
    conditions: &'a Conditions,
    now: Timestamp,
}

impl<'a> Oracle<'a> {
    pub fn new(schema: &'a CompiledSchema, data: &'a Tuples, conditions: &'a Conditions, now: Timestamp) -> Self {
        Oracle { schema, data, conditions, now }
    }

    /// Every node's lower and upper estimate for one subject and context: stratum by stratum,
    /// the alternating fixpoint (the lower estimate is the least fixpoint reading negated nodes
    /// at their upper estimates, the upper one reads them at the new lower estimates, repeated
    /// until both settle). A node has an answer where the two agree; in a stratum without
    /// recursion through an exclusion they always do.
    pub fn solve(
        &self,
        subject: &SubjectRef,
        ctx: &Map<String, Value>,
        extra: &[ObjectRef],
    ) -> Result<(Vals, Vals), String> {
        let mut objects: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for t in self.data.object_types() {
            objects.insert(t.to_string(), self.data.object_ids(t).map(str::to_string).collect());
        }
        for o in extra.iter().chain([&subject.object]) {
            if !o.is_wildcard() {
                objects.entry(o.ty.clone()).or_default().insert(o.id.clone());
            }
        }
        let (mut low, mut high) = (Vals::new(), Vals::new());
        for stratum in strata(self.schema) {
            let nodes: Vec<(ObjectRef, String)> = stratum
                .iter()
                .flat_map(|(ty, m)| {
                    objects
                        .get(ty)
                        .into_iter()
                        .flatten()
                        .map(move |id| (ObjectRef::new(ty.clone(), id.clone()), m.clone()))
                })
                .collect();
            for n in &nodes {
                low.insert(n.clone(), Tri::False);
                high.insert(n.clone(), Tri::True);
            }
            loop {
                let new_low = self.least(&nodes, &low, &high, subject, ctx)?;
                let new_high = self.least(&nodes, &high, &new_low, subject, ctx)?;
                // Equal estimates are the answer (another round would give them again); else they
                // settle when a round changes neither.
                let settled = nodes.iter().all(|n| new_low.get(n) == new_high.get(n))
                    || nodes.iter().all(|n| new_low.get(n) == low.get(n) && new_high.get(n) == high.get(n));
                (low, high) = (new_low, new_high);
                if settled {
                    break;
                }
            }
        }
        Ok((low, high))
    }

    /// The least fixpoint of one stratum's nodes from false, reading others' values from `base`
    /// and negated nodes from `neg`.
    fn least(
        &self,
        nodes: &[(ObjectRef, String)],
        base: &Vals,
        neg: &Vals,
        subject: &SubjectRef,
        ctx: &Map<String, Value>,
    ) -> Result<Vals, String> {
        let mut cur = base.clone();
        for n in nodes {
            cur.insert(n.clone(), Tri::False);
        }
        loop {
            let mut changed = false;
            for (o, m) in nodes {
                let v = self.member(o, m, subject, ctx, Views { pos: &cur, neg })?;
                if cur.get(&(o.clone(), m.clone())) != Some(&v) {
                    cur.insert((o.clone(), m.clone()), v);
                    changed = true;
                }
            }
            if !changed {
                return Ok(cur);
            }
        }
    }

    pub fn check(
        &self,
        resource: &ObjectRef,
        perm: &str,
        subject: &SubjectRef,
        ctx: &Map<String, Value>,
    ) -> Result<Decision, String> {
        let (low, high) = self.solve(subject, ctx, std::slice::from_ref(resource))?;
        let (l, h) = (get(&low, resource, perm, subject), get(&high, resource, perm, subject));
        if l != h {
            return Err(EXCLUSION_CYCLE.into());
        }
        Ok(Decision::from_tri(&l))
    }

    fn caveat(&self, rel: &Relationship, ctx: &Map<String, Value>) -> Result<Tri, String> {
        let Some(c) = &rel.caveat else { return Ok(Tri::True) };
        let cav = self.schema.caveat(&c.name).ok_or("unknown caveat")?;
        let env = CondEnv {
            now: self.now,
            resource: self.data.attributes(&rel.resource),
            subject: self.data.attributes(&rel.subject.object),
        };
        match self.conditions.evaluate(&cav.condition, &c.context, ctx, env).map_err(|e| e.to_string())? {
            Outcome::True => Ok(Tri::True),
            Outcome::False => Ok(Tri::False),
            Outcome::Missing(m) => Ok(Tri::unknown(m.into_iter().collect())),
        }
    }

    fn live(&self, o: &ObjectRef, rel: &str) -> Vec<&'a Relationship> {
        self.data.edges(o, rel).iter().filter(|r| r.expiration.is_none_or(|e| e > self.now)).collect()
    }

    fn member(
        &self,
        o: &ObjectRef,
        m: &str,
        s: &SubjectRef,
        ctx: &Map<String, Value>,
        values: Views<'_>,
    ) -> Result<Tri, String> {
        if s.relation.as_deref() == Some(m) && &s.object == o {
            return Ok(Tri::True);
        }
        let def = self.schema.definition(&o.ty).unwrap();
        match def.member_kind(m) {
            None => Ok(Tri::False),
            Some(MemberKind::Relation) => {
                let mut acc = Tri::False;
                for rel in self.live(o, m) {
                    let reach = match &rel.subject.relation {
                        Some(r) => get(values.pos, &rel.subject.object, r, s),
                        None if s.relation.is_none()
                            && (rel.subject.object == s.object
                                || (rel.subject.is_wildcard() && rel.subject.object.ty == s.object.ty)) =>
                        {
                            Tri::True
                        }
                        None => Tri::False,
                    };
                    acc = acc.or(reach.and(self.caveat(rel, ctx)?));
                }
                Ok(acc)
            }
            Some(MemberKind::Permission) => {
                self.rewrite(o, &self.schema.permission_of(def, m).unwrap().rewrite, s, ctx, values)
            }
        }
    }

    fn rewrite(
        &self,
        o: &ObjectRef,
        rw: &Rewrite,
        s: &SubjectRef,
        ctx: &Map<String, Value>,
        values: Views<'_>,
    ) -> Result<Tri, String> {
        Ok(match rw {
            Rewrite::Nil => Tri::False,
            Rewrite::Computed { name, .. } => get(values.pos, o, name, s),
            Rewrite::Union(a, b) => self.rewrite(o, a, s, ctx, values)?.or(self.rewrite(o, b, s, ctx, values)?),
            Rewrite::Intersection(a, b) => self.rewrite(o, a, s, ctx, values)?.and(self.rewrite(o, b, s, ctx, values)?),
            // The right-hand side reads negated nodes: the views swap.
            Rewrite::Exclusion(a, b) => {
                self.rewrite(o, a, s, ctx, values)?.minus(self.rewrite(o, b, s, ctx, values.swapped())?)
            }
            Rewrite::Arrow { tupleset, computed, kind, .. } => {
                let edges = self.live(o, tupleset);
                let all = *kind == ArrowKind::All;
                if all && edges.is_empty() {
                    return Ok(Tri::False);
                }
                let mut acc = if all { Tri::True } else { Tri::False };
                for rel in edges {
                    let t = &rel.subject.object;
                    let has = self.schema.definition(&t.ty).is_some_and(|d| d.member_kind(computed).is_some());
                    let v = if has { get(values.pos, t, computed, s) } else { Tri::False }.and(self.caveat(rel, ctx)?);
                    acc = if all { acc.and(v) } else { acc.or(v) };
                }
                acc
            }
        })
    }
}

/// Node values.
pub type Vals = BTreeMap<(ObjectRef, String), Tri>;

/// What a Check answers where the answer depends on itself through an exclusion (the engine's
/// error, normalized by the tests that compare the two).
pub const EXCLUSION_CYCLE: &str = "exclusion cycle";

/// The values an equation reads: positive occurrences from `pos`, negated ones from `neg`.
#[derive(Clone, Copy)]
struct Views<'m> {
    pos: &'m Vals,
    neg: &'m Vals,
}

impl<'m> Views<'m> {
    fn swapped(self) -> Views<'m> {
        Views { pos: self.neg, neg: self.pos }
    }
}

fn get(values: &Vals, o: &ObjectRef, m: &str, s: &SubjectRef) -> Tri {
    if s.relation.as_deref() == Some(m) && &s.object == o {
        return Tri::True;
    }
    values.get(&(o.clone(), m.to_string())).cloned().unwrap_or(Tri::False)
}

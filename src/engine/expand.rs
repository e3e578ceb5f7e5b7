//! Expand: the one-level permission tree (the shape of SpiceDB's v1 ExpandPermissionTree), and
//! the recursive expansion that follows subject sets down to every subject found, with the
//! relationships that name each one directly (the `validation:` section and the agreement checks
//! are built on it).
//!
//! The recursive expansion walks the whole rewrite (unions, intersections, both sides of
//! exclusions, arrows, subject sets) to find candidate subjects, then decides each candidate with
//! Check, so it can never disagree with Check.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::Map;

use super::check::{self, validate_request};
use super::{Ctx, EvalError, Tri};
use crate::model::{ObjectRef, Relationship, SubjectRef};
use crate::schema::ast::ArrowKind;
use crate::schema::{Member, Rewrite};

/// One node of an expansion tree.
#[derive(Debug, Clone, PartialEq)]
pub enum ExpandTree {
    /// The direct subjects of a relation (subject sets are leaves, not followed).
    Leaf {
        object: ObjectRef,
        relation: String,
        subjects: Vec<ExpandSubject>,
    },
    Union {
        object: ObjectRef,
        relation: String,
        children: Vec<ExpandTree>,
    },
    Intersection {
        object: ObjectRef,
        relation: String,
        children: Vec<ExpandTree>,
    },
    /// The first child minus the rest.
    Exclusion {
        object: ObjectRef,
        relation: String,
        children: Vec<ExpandTree>,
    },
}

/// A subject in a leaf, with whether its relationship carries a caveat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandSubject {
    pub subject: SubjectRef,
    pub caveated: bool,
}

/// The most nodes one expansion tree may have.
pub const MAX_EXPAND_NODES: usize = 10_000;
/// The deepest an expansion tree may be (permissions reached through arrows, and the operators
/// of each rewrite, count one level each); deeper trees are an error, not a stack overflow.
pub const MAX_EXPAND_DEPTH: usize = 256;

/// The relationships `object#relation@…` that have not expired at the request's `now`.
fn live(ctx: &Ctx<'_>, object: &ObjectRef, relation: &str) -> Vec<Relationship> {
    let now = ctx.env.now;
    let all = ctx.data.edges(object, relation);
    match all {
        std::borrow::Cow::Owned(mut v) => {
            v.retain(|r| r.expiration.is_none_or(|e| e > now));
            v
        }
        std::borrow::Cow::Borrowed(v) => v.iter().filter(|r| r.expiration.is_none_or(|e| e > now)).cloned().collect(),
    }
}

/// Expands `object#member` one level: permissions are expanded through their rewrite on this
/// object (arrows into one child per walked subject), relations become leaves of their direct
/// subjects. Subject sets are not followed.
pub fn expand(ctx: &Ctx<'_>, object: &ObjectRef, member: &str) -> Result<ExpandTree, EvalError> {
    let def = ctx.schema.definition(&object.ty).ok_or_else(|| EvalError::UnknownType(object.ty.clone()))?;
    if def.member_kind(member).is_none() {
        return Err(EvalError::UnknownMember { ty: object.ty.clone(), name: member.to_string() });
    }
    Expander { ctx: *ctx, budget: MAX_EXPAND_NODES, on_path: Vec::new() }.member(object, member)
}

/// One expansion: its node budget and the `object#member` path from the root (operator levels
/// push a marker, so they count toward the depth limit too).
struct Expander<'a> {
    ctx: Ctx<'a>,
    budget: usize,
    on_path: Vec<(ObjectRef, String)>,
}

impl Expander<'_> {
    fn member(&mut self, object: &ObjectRef, member: &str) -> Result<ExpandTree, EvalError> {
        self.budget = self.budget.checked_sub(1).ok_or(EvalError::WorkLimit(MAX_EXPAND_NODES))?;
        if self.on_path.len() >= MAX_EXPAND_DEPTH {
            return Err(EvalError::DepthLimit(MAX_EXPAND_DEPTH));
        }
        let schema = self.ctx.schema;
        let key = (object.clone(), member.to_string());
        let found = schema.definition(&object.ty).and_then(|d| schema.member_of(d, member));
        let leaf = |subjects| ExpandTree::Leaf { object: object.clone(), relation: member.to_string(), subjects };
        // A permission that reaches itself again on this path (through arrows over cyclic data,
        // or through permissions that name each other) is shown as a leaf naming it, which is
        // what it contributes: nothing new.
        let permission = match found {
            Some(Member::Permission(p)) if !self.on_path.contains(&key) => p,
            Some(Member::Relation(_)) => {
                let subjects = live(&self.ctx, object, member)
                    .into_iter()
                    .map(|r| ExpandSubject { subject: r.subject.clone(), caveated: r.caveat.is_some() })
                    .collect();
                return Ok(leaf(subjects));
            }
            Some(Member::Permission(_)) => {
                let me = SubjectRef::new(object.clone(), Some(member.to_string()));
                return Ok(leaf(vec![ExpandSubject { subject: me, caveated: false }]));
            }
            None => return Ok(leaf(Vec::new())),
        };
        self.on_path.push(key);
        let tree = self.rewrite(object, member, &permission.rewrite);
        self.on_path.pop();
        tree
    }

    fn rewrite(&mut self, object: &ObjectRef, member: &str, rw: &Rewrite) -> Result<ExpandTree, EvalError> {
        let node = |children| (object.clone(), member.to_string(), children);
        if self.on_path.len() >= MAX_EXPAND_DEPTH {
            return Err(EvalError::DepthLimit(MAX_EXPAND_DEPTH));
        }
        Ok(match rw {
            Rewrite::Nil => {
                ExpandTree::Leaf { object: object.clone(), relation: member.to_string(), subjects: Vec::new() }
            }
            Rewrite::Computed { name, .. } => self.member(object, name)?,
            Rewrite::Arrow { tupleset, computed, kind, .. } => {
                let mut children = Vec::new();
                for rel in live(&self.ctx, object, tupleset) {
                    let target = &rel.subject.object;
                    if self.ctx.schema.definition(&target.ty).is_some_and(|d| d.member(computed).is_some()) {
                        children.push(self.member(target, computed)?);
                    }
                }
                let (object, relation, children) = node(children);
                match kind {
                    ArrowKind::All => ExpandTree::Intersection { object, relation, children },
                    _ => ExpandTree::Union { object, relation, children },
                }
            }
            Rewrite::Union(a, b) | Rewrite::Intersection(a, b) | Rewrite::Exclusion(a, b) => {
                // A marker that can never equal a real member (names cannot be empty).
                self.on_path.push((object.clone(), String::new()));
                let children =
                    [a, b].into_iter().map(|x| self.rewrite(object, member, x)).collect::<Result<Vec<_>, _>>();
                self.on_path.pop();
                let children = children?;
                let (object, relation, children) = node(children);
                match rw {
                    Rewrite::Union(..) => ExpandTree::Union { object, relation, children },
                    Rewrite::Intersection(..) => ExpandTree::Intersection { object, relation, children },
                    _ => ExpandTree::Exclusion { object, relation, children },
                }
            }
        })
    }
}

/// A subject found by the recursive expansion, decided by Check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundSubject {
    pub subject: SubjectRef,
    /// `Tri::True` or `Tri::Unknown` (a subject decided false is not found).
    pub value: Tri,
    /// For a wildcard: the subjects of its type that it does not include, each with whether the
    /// exclusion is conditional.
    pub excluded: Vec<(SubjectRef, bool)>,
    /// The `resource#relation` of each relationship that names the subject directly and counts.
    pub paths: BTreeSet<(ObjectRef, String)>,
}

impl FoundSubject {
    /// zed's text for the subject: `user:tom`, `user:tom[...]`, `user:* - {user:bob}`.
    pub fn validation_subject(&self) -> String {
        let mut s = self.subject.to_string();
        if matches!(self.value, Tri::Unknown(_)) {
            s.push_str("[...]");
        }
        if !self.excluded.is_empty() {
            let mut ex: Vec<String> = self
                .excluded
                .iter()
                .map(|(x, caveated)| if *caveated { format!("{x}[...]") } else { x.to_string() })
                .collect();
            ex.sort();
            s.push_str(&format!(" - {{{}}}", ex.join(", ")));
        }
        s
    }

    /// zed's line: `[user:tom] is <document:1#viewer>/<group:eng#member>`.
    pub fn validation_line(&self) -> String {
        let paths: Vec<String> = self.paths.iter().map(|(o, r)| format!("<{o}#{r}>")).collect();
        format!("[{}] is {}", self.validation_subject(), paths.join("/"))
    }
}

/// Follows `object#member` down through every subject set and arrow and returns every subject
/// found there that Check confirms (true or conditional), in order.
pub fn found_subjects(ctx: &Ctx<'_>, object: &ObjectRef, member: &str) -> Result<Vec<FoundSubject>, EvalError> {
    let def = ctx.schema.definition(&object.ty).ok_or_else(|| EvalError::UnknownType(object.ty.clone()))?;
    if def.member_kind(member).is_none() {
        return Err(EvalError::UnknownMember { ty: object.ty.clone(), name: member.to_string() });
    }
    let candidates = reachable_subjects(ctx, object, member)?.found;
    let context = Map::new();
    let mut out = Vec::new();
    for (subject, paths) in candidates {
        validate_request(ctx.schema, object, member, &subject)?;
        let (graph, value) = check::explain(*ctx, object, member, &subject, &context)?;
        if value.is_false() {
            continue;
        }
        let paths: BTreeSet<(ObjectRef, String)> =
            paths.into_iter().filter(|(o, r)| graph.value_of(o, r).is_some_and(|v| !v.is_false())).collect();
        let excluded = if subject.is_wildcard() {
            wildcard_exclusions(ctx, object, member, &subject, &value, &context)?
        } else {
            Vec::new()
        };
        out.push(FoundSubject { subject, value, excluded, paths });
    }
    Ok(out)
}

/// Subjects of `subject.object.ty` in the data that a wildcard result does not cover.
pub(crate) fn wildcard_exclusions(
    ctx: &Ctx<'_>,
    object: &ObjectRef,
    member: &str,
    wildcard: &SubjectRef,
    wildcard_value: &Tri,
    context: &Map<String, serde_json::Value>,
) -> Result<Vec<(SubjectRef, bool)>, EvalError> {
    let mut excluded = Vec::new();
    let ty = wildcard.object.ty.clone();
    for id in ctx.data.object_ids(&ty) {
        let s = SubjectRef::new(ObjectRef::new(ty.clone(), id), None);
        let (_, v) = check::solve(*ctx, object, member, &s, context)?;
        match (&v, wildcard_value) {
            (Tri::False, _) => excluded.push((s, false)),
            (Tri::Unknown(_), Tri::True) => excluded.push((s, true)),
            _ => {}
        }
    }
    Ok(excluded)
}

/// Every subject named by a live relationship anywhere below `object#member` (both sides of an
/// exclusion: excluding an exclusion makes its subjects members again), with the relation nodes
/// that name it directly.
pub(crate) fn reachable_subjects(ctx: &Ctx<'_>, object: &ObjectRef, member: &str) -> Result<Reachable, EvalError> {
    let schema = ctx.schema;
    let mut found: BTreeMap<SubjectRef, BTreeSet<(ObjectRef, String)>> = BTreeMap::new();
    let mut visited: HashSet<(ObjectRef, String)> = HashSet::new();
    let mut stack = vec![(object.clone(), member.to_string())];
    while let Some((obj, m)) = stack.pop() {
        if !visited.insert((obj.clone(), m.clone())) {
            continue;
        }
        if visited.len() > ctx.env.limits.max_work {
            return Err(EvalError::WorkLimit(ctx.env.limits.max_work));
        }
        let Some(def) = schema.definition(&obj.ty) else { continue };
        match schema.member_of(def, &m) {
            None => {}
            Some(Member::Relation(_)) => {
                for rel in live(ctx, &obj, &m) {
                    found.entry(rel.subject.clone()).or_default().insert((obj.clone(), m.clone()));
                    if let Some(r) = &rel.subject.relation {
                        stack.push((rel.subject.object.clone(), r.clone()));
                    }
                }
            }
            Some(Member::Permission(p)) => {
                for rw in p.rewrite.nodes() {
                    match rw {
                        Rewrite::Computed { name, .. } => stack.push((obj.clone(), name.clone())),
                        Rewrite::Arrow { tupleset, computed, .. } => {
                            for rel in live(ctx, &obj, tupleset) {
                                let t = &rel.subject.object;
                                if !t.is_wildcard()
                                    && schema.definition(&t.ty).is_some_and(|d| d.member(computed).is_some())
                                {
                                    stack.push((t.clone(), computed.clone()));
                                }
                            }
                        }
                        Rewrite::Nil | Rewrite::Union(..) | Rewrite::Intersection(..) | Rewrite::Exclusion(..) => {}
                    }
                }
            }
        }
    }
    Ok(Reachable { found, visited })
}

/// What an expansion reaches.
pub(crate) struct Reachable {
    /// Subjects named by live relationships, with the relation nodes naming them.
    pub(crate) found: BTreeMap<SubjectRef, BTreeSet<(ObjectRef, String)>>,
    /// Every `object#member` node visited.
    pub(crate) visited: HashSet<(ObjectRef, String)>,
}

//! The schema compiler: resolves names, checks types, compiles caveat bodies (through
//! `conditions`) and analyses recursion, producing a [`CompiledSchema`].
//!
//! Architecture invariant: a `CompiledSchema` can only be built here, so every holder may assume
//! that each name it mentions resolves, that arrows walk relations, and that no recursion passes
//! through the right-hand side of an exclusion.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::ast::*;
use super::diagnostic::{Diagnostic, Span};
use crate::conditions::{BUILTIN_VARIABLES, CompiledCondition, ConditionError, Conditions};
use crate::graph;
use crate::model::{ParamType, Relationship, valid_relation_name, valid_type_name};

/// Features a schema may turn on with `use`.
pub const KNOWN_FEATURES: [&str; 1] = ["expiration"];

/// A validated schema. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct CompiledSchema {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    definitions: BTreeMap<String, Definition>,
    caveats: BTreeMap<String, Caveat>,
    features: BTreeSet<String>,
    ast: SchemaAst,
    fingerprint: u64,
}

#[derive(Debug, Clone)]
pub struct Definition {
    pub name: String,
    pub relations: BTreeMap<String, Relation>,
    pub permissions: BTreeMap<String, Permission>,
    pub attributes: BTreeMap<String, ParamType>,
}

/// What a name inside a definition refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberKind {
    Relation,
    Permission,
}

impl Definition {
    pub fn member_kind(&self, name: &str) -> Option<MemberKind> {
        if self.relations.contains_key(name) {
            Some(MemberKind::Relation)
        } else if self.permissions.contains_key(name) {
            Some(MemberKind::Permission)
        } else {
            None
        }
    }

    /// Whether the relation or permission `name` is part of a recursive cycle.
    pub fn is_recursive(&self, name: &str) -> bool {
        self.relations
            .get(name)
            .map(|r| r.recursive)
            .or_else(|| self.permissions.get(name).map(|p| p.recursive))
            .unwrap_or(false)
    }
}

#[derive(Debug, Clone)]
pub struct Relation {
    pub name: String,
    pub allowed: Vec<AllowedType>,
    pub recursive: bool,
}

impl Relation {
    /// The allowed entry matching a subject shape and caveat, if any.
    pub fn allows(&self, ty: &str, kind: &AllowedKind, caveat: Option<&str>, expiration: bool) -> bool {
        self.allowed
            .iter()
            .any(|a| a.ty == ty && &a.kind == kind && a.caveat.as_deref() == caveat && a.expiration == expiration)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedKind {
    Direct,
    Wildcard,
    Relation(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedType {
    pub ty: String,
    pub kind: AllowedKind,
    pub caveat: Option<String>,
    pub expiration: bool,
}

impl std::fmt::Display for AllowedType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.ty)?;
        match &self.kind {
            AllowedKind::Direct => {}
            AllowedKind::Wildcard => write!(f, ":*")?,
            AllowedKind::Relation(r) => write!(f, "#{r}")?,
        }
        match (&self.caveat, self.expiration) {
            (Some(c), true) => write!(f, " with {c} and expiration"),
            (Some(c), false) => write!(f, " with {c}"),
            (None, true) => write!(f, " with expiration"),
            (None, false) => Ok(()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Permission {
    pub name: String,
    pub rewrite: Rewrite,
    pub recursive: bool,
}

/// A permission's expression with names resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    Nil,
    /// A relation or permission on the same object.
    Computed(String),
    /// `tupleset->computed` walking the subjects of the relation `tupleset`.
    Arrow {
        tupleset: String,
        computed: String,
        kind: ArrowKind,
    },
    Union(Box<Rewrite>, Box<Rewrite>),
    Intersection(Box<Rewrite>, Box<Rewrite>),
    Exclusion(Box<Rewrite>, Box<Rewrite>),
}

#[derive(Debug, Clone)]
pub struct Caveat {
    pub name: String,
    pub params: Vec<(String, ParamType)>,
    pub condition: CompiledCondition,
}

impl CompiledSchema {
    /// Whether both are the same compiled schema (one compilation, shared), so that addresses
    /// of their definitions, relations and permissions are the same.
    pub fn same(&self, other: &CompiledSchema) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub fn definition(&self, name: &str) -> Option<&Definition> {
        self.inner.definitions.get(name)
    }

    pub fn definitions(&self) -> impl Iterator<Item = &Definition> {
        self.inner.definitions.values()
    }

    pub fn caveat(&self, name: &str) -> Option<&Caveat> {
        self.inner.caveats.get(name)
    }

    pub fn caveats(&self) -> impl Iterator<Item = &Caveat> {
        self.inner.caveats.values()
    }

    pub fn uses(&self, feature: &str) -> bool {
        self.inner.features.contains(feature)
    }

    /// Checks that a relationship fits the schema: its resource relation exists and is a
    /// relation, its subject is one of the allowed subject types (with the same caveat), and
    /// its caveat context has values of the declared types. Expiration needs `with expiration`.
    pub fn check_relationship(&self, rel: &Relationship) -> Result<(), SchemaViolation> {
        let def =
            self.definition(&rel.resource.ty).ok_or_else(|| SchemaViolation::UnknownType(rel.resource.ty.clone()))?;
        let relation = match def.member_kind(&rel.relation) {
            Some(MemberKind::Relation) => def.relations.get(&rel.relation),
            Some(MemberKind::Permission) => {
                return Err(SchemaViolation::WriteToPermission { ty: def.name.clone(), name: rel.relation.clone() });
            }
            None => None,
        }
        .ok_or_else(|| SchemaViolation::UnknownRelation { ty: def.name.clone(), name: rel.relation.clone() })?;
        let subject_def = self
            .definition(&rel.subject.object.ty)
            .ok_or_else(|| SchemaViolation::UnknownType(rel.subject.object.ty.clone()))?;
        let kind = match &rel.subject.relation {
            _ if rel.subject.is_wildcard() => AllowedKind::Wildcard,
            None => AllowedKind::Direct,
            Some(r) => {
                if subject_def.member_kind(r).is_none() {
                    return Err(SchemaViolation::UnknownRelation { ty: subject_def.name.clone(), name: r.clone() });
                }
                AllowedKind::Relation(r.clone())
            }
        };
        let caveat = rel.caveat.as_ref().map(|c| c.name.as_str());
        let allowed = relation.allowed.iter().any(|a| {
            a.ty == rel.subject.object.ty
                && a.kind == kind
                && a.caveat.as_deref() == caveat
                && (a.expiration || rel.expiration.is_none())
        });
        if !allowed {
            let shown = AllowedType {
                ty: rel.subject.object.ty.clone(),
                kind,
                caveat: caveat.map(str::to_string),
                expiration: rel.expiration.is_some(),
            };
            let list: Vec<String> = relation.allowed.iter().map(|a| format!("`{a}`")).collect();
            return Err(SchemaViolation::SubjectNotAllowed {
                relation: format!("{}#{}", def.name, relation.name),
                subject: shown.to_string(),
                allowed: list.join(", "),
            });
        }
        if let Some(c) = &rel.caveat {
            let cav = self.caveat(&c.name).ok_or_else(|| SchemaViolation::UnknownCaveat(c.name.clone()))?;
            for (key, value) in &c.context {
                let Some((_, ty)) = cav.params.iter().find(|(p, _)| p == key) else {
                    return Err(SchemaViolation::UnknownParameter { caveat: c.name.clone(), param: key.clone() });
                };
                Conditions::check_value(value, ty).map_err(|detail| SchemaViolation::WrongContextType {
                    caveat: c.name.clone(),
                    param: key.clone(),
                    expected: ty.to_string(),
                    detail,
                })?;
            }
        }
        Ok(())
    }

    /// Identifies the schema (a hash of its canonical text): cursors carry it, so a page is never
    /// read under a different schema than the first page.
    pub fn fingerprint(&self) -> u64 {
        self.inner.fingerprint
    }

    /// The tree the schema was compiled from (for `fmt` and for reading the schema back).
    pub fn ast(&self) -> &SchemaAst {
        &self.inner.ast
    }
}

/// Why a relationship does not fit the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaViolation {
    #[error("unknown object type `{0}`")]
    UnknownType(String),
    #[error("type `{ty}` has no relation `{name}`")]
    UnknownRelation { ty: String, name: String },
    #[error("`{ty}#{name}` is a permission; relationships can only be written to relations")]
    WriteToPermission { ty: String, name: String },
    #[error("relation `{relation}` does not allow subject `{subject}`; it allows {allowed}")]
    SubjectNotAllowed { relation: String, subject: String, allowed: String },
    #[error("unknown caveat `{0}`")]
    UnknownCaveat(String),
    #[error("caveat `{caveat}` has no parameter `{param}`")]
    UnknownParameter { caveat: String, param: String },
    #[error("context value for parameter `{param}` of caveat `{caveat}` is not a valid {expected}: {detail}")]
    WrongContextType { caveat: String, param: String, expected: String, detail: String },
}

/// Compiles a parsed tree. All problems are reported, each with its span.
pub fn compile(ast: &SchemaAst, conditions: &Conditions) -> Result<CompiledSchema, Vec<Diagnostic>> {
    let mut c = Compiler { diags: Vec::new() };
    let result = c.run(ast, conditions);
    if c.diags.is_empty() { Ok(result) } else { Err(c.diags) }
}

struct Compiler {
    diags: Vec<Diagnostic>,
}

impl Compiler {
    fn err(&mut self, message: impl Into<String>, span: Span) {
        self.diags.push(Diagnostic::new(message, span));
    }

    fn run(&mut self, ast: &SchemaAst, conditions: &Conditions) -> CompiledSchema {
        let mut features = BTreeSet::new();
        let mut def_asts: BTreeMap<String, &DefinitionAst> = BTreeMap::new();
        let mut cav_asts: BTreeMap<String, &CaveatAst> = BTreeMap::new();
        for item in &ast.items {
            match item {
                Item::Use(u) => {
                    if KNOWN_FEATURES.contains(&u.feature.text.as_str()) {
                        features.insert(u.feature.text.clone());
                    } else {
                        self.err(
                            format!("unknown feature `{}` in `use`: known features are `expiration`", u.feature.text),
                            u.feature.span,
                        );
                    }
                }
                Item::Definition(d) => {
                    if !valid_type_name(&d.name.text) {
                        self.err(format!("invalid definition name `{}`: names are lowercase letters, digits and `_`, starting with a letter, with `/` between segments", d.name.text), d.name.span);
                    }
                    if def_asts.insert(d.name.text.clone(), d).is_some() {
                        self.err(format!("definition `{}` is defined more than once", d.name.text), d.name.span);
                    }
                }
                Item::Caveat(cv) => {
                    if !valid_type_name(&cv.name.text) {
                        self.err(format!("invalid caveat name `{}`", cv.name.text), cv.name.span);
                    }
                    if cav_asts.insert(cv.name.text.clone(), cv).is_some() {
                        self.err(format!("caveat `{}` is defined more than once", cv.name.text), cv.name.span);
                    }
                }
            }
        }

        let mut caveats = BTreeMap::new();
        for cv in cav_asts.values() {
            if let Some(c) = self.caveat(cv, conditions) {
                caveats.insert(c.name.clone(), c);
            }
        }

        // First pass: names and kinds of every member, so references can be resolved in any order.
        let mut members: HashMap<&str, HashMap<&str, MemberKind>> = HashMap::new();
        for d in def_asts.values() {
            let mut seen: HashMap<&str, MemberKind> = HashMap::new();
            let mut all_names: BTreeSet<&str> = BTreeSet::new();
            for m in &d.members {
                let n = m.name();
                if !valid_relation_name(&n.text) {
                    self.err(
                        format!(
                            "invalid name `{}`: names are lowercase letters, digits and `_`, starting with a letter",
                            n.text
                        ),
                        n.span,
                    );
                }
                if !all_names.insert(n.text.as_str()) {
                    self.err(format!("`{}` is defined more than once in definition `{}`", n.text, d.name.text), n.span);
                    continue;
                }
                match m {
                    Member::Relation(_) => {
                        seen.insert(&n.text, MemberKind::Relation);
                    }
                    Member::Permission(_) => {
                        seen.insert(&n.text, MemberKind::Permission);
                    }
                    Member::Attribute(_) => {}
                }
            }
            members.insert(&d.name.text, seen);
        }

        let mut definitions = BTreeMap::new();
        for d in def_asts.values() {
            let mut def = Definition {
                name: d.name.text.clone(),
                relations: BTreeMap::new(),
                permissions: BTreeMap::new(),
                attributes: BTreeMap::new(),
            };
            for m in &d.members {
                match m {
                    Member::Relation(r) => {
                        let allowed = self.relation(d, r, &members, &caveats, &features);
                        def.relations.entry(r.name.text.clone()).or_insert(Relation {
                            name: r.name.text.clone(),
                            allowed,
                            recursive: false,
                        });
                    }
                    Member::Attribute(a) => {
                        def.attributes.entry(a.name.text.clone()).or_insert(a.ty.ty.clone());
                    }
                    Member::Permission(_) => {}
                }
            }
            definitions.insert(def.name.clone(), def);
        }
        // Permissions need every definition's relations (arrows look at subject types).
        let mut rewrites: Vec<(String, String, Rewrite, &Expr)> = Vec::new();
        for d in def_asts.values() {
            for m in &d.members {
                if let Member::Permission(p) = m
                    && let Some(rw) = self.rewrite(d, &p.expr, &definitions, &members)
                {
                    rewrites.push((d.name.text.clone(), p.name.text.clone(), rw, &p.expr));
                }
            }
        }
        for (def, name, rewrite, _) in &rewrites {
            if let Some(d) = definitions.get_mut(def) {
                d.permissions.entry(name.clone()).or_insert(Permission {
                    name: name.clone(),
                    rewrite: rewrite.clone(),
                    recursive: false,
                });
            }
        }
        if self.diags.is_empty() {
            self.recursion(&mut definitions, &rewrites);
        }
        // The canonical text identifies the schema whatever its layout or comments' places.
        let fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            super::format::format(ast).hash(&mut h);
            h.finish()
        };
        CompiledSchema { inner: Arc::new(Inner { definitions, caveats, features, ast: ast.clone(), fingerprint }) }
    }

    fn caveat(&mut self, cv: &CaveatAst, conditions: &Conditions) -> Option<Caveat> {
        let mut params = Vec::new();
        let mut ok = true;
        for (n, t) in &cv.params {
            if params.iter().any(|(p, _): &(String, ParamType)| p == &n.text) {
                self.err(
                    format!("parameter `{}` is declared more than once in caveat `{}`", n.text, cv.name.text),
                    n.span,
                );
                ok = false;
            }
            if BUILTIN_VARIABLES.contains(&n.text.as_str()) && n.text != "now" {
                self.err(format!("parameter name `{}` is reserved: conditions see it as a built-in", n.text), n.span);
                ok = false;
            }
            params.push((n.text.clone(), t.ty.clone()));
        }
        if !ok {
            return None;
        }
        match conditions.compile(&cv.name.text, &params, &cv.body) {
            Ok(condition) => Some(Caveat { name: cv.name.text.clone(), params, condition }),
            Err(ConditionError::Compile { message, line, column }) => {
                let offset = body_offset(&cv.body, line, column);
                let at = cv.body_span.start + offset;
                self.err(format!("caveat `{}` does not compile: {message}", cv.name.text), Span::new(at, at + 1));
                None
            }
            Err(other) => {
                self.err(format!("caveat `{}` does not compile: {other}", cv.name.text), cv.body_span);
                None
            }
        }
    }

    fn relation(
        &mut self,
        d: &DefinitionAst,
        r: &RelationAst,
        members: &HashMap<&str, HashMap<&str, MemberKind>>,
        caveats: &BTreeMap<String, Caveat>,
        features: &BTreeSet<String>,
    ) -> Vec<AllowedType> {
        let mut allowed: Vec<AllowedType> = Vec::new();
        for t in &r.types {
            let Some(target) = members.get(t.ty.text.as_str()) else {
                self.err(
                    format!("relation `{}` on `{}` allows unknown type `{}`", r.name.text, d.name.text, t.ty.text),
                    t.ty.span,
                );
                continue;
            };
            let kind = match &t.kind {
                AllowedKindAst::Direct => AllowedKind::Direct,
                AllowedKindAst::Wildcard => AllowedKind::Wildcard,
                AllowedKindAst::Relation(rel) => {
                    if !target.contains_key(rel.text.as_str()) {
                        self.err(
                            format!(
                                "relation `{}` on `{}` allows `{}#{}`, but `{}` has no relation or permission `{}`",
                                r.name.text, d.name.text, t.ty.text, rel.text, t.ty.text, rel.text
                            ),
                            rel.span,
                        );
                        continue;
                    }
                    AllowedKind::Relation(rel.text.clone())
                }
            };
            if let Some(c) = &t.caveat
                && !caveats.contains_key(&c.text)
            {
                self.err(format!("unknown caveat `{}`", c.text), c.span);
                continue;
            }
            if t.expiration && !features.contains("expiration") {
                self.err("`with expiration` needs `use expiration` at the top of the schema", t.span);
                continue;
            }
            let a = AllowedType {
                ty: t.ty.text.clone(),
                kind,
                caveat: t.caveat.as_ref().map(|c| c.text.clone()),
                expiration: t.expiration,
            };
            if allowed.contains(&a) {
                self.err(format!("`{a}` is allowed more than once in relation `{}`", r.name.text), t.span);
                continue;
            }
            allowed.push(a);
        }
        allowed
    }

    fn rewrite(
        &mut self,
        d: &DefinitionAst,
        e: &Expr,
        definitions: &BTreeMap<String, Definition>,
        members: &HashMap<&str, HashMap<&str, MemberKind>>,
    ) -> Option<Rewrite> {
        let own = members.get(d.name.text.as_str())?;
        Some(match &e.kind {
            ExprKind::Nil => Rewrite::Nil,
            ExprKind::Ref(n) => {
                if !own.contains_key(n.text.as_str()) {
                    self.err(
                        format!("definition `{}` has no relation or permission `{}`", d.name.text, n.text),
                        n.span,
                    );
                    return None;
                }
                Rewrite::Computed(n.text.clone())
            }
            ExprKind::Arrow { left, right, kind } => {
                match own.get(left.text.as_str()) {
                    None => {
                        self.err(
                            format!(
                                "definition `{}` has no relation `{}` for the left side of an arrow",
                                d.name.text, left.text
                            ),
                            left.span,
                        );
                        return None;
                    }
                    Some(MemberKind::Permission) => {
                        self.err(
                            format!(
                                "the left side of an arrow must be a relation, and `{}` is a permission",
                                left.text
                            ),
                            left.span,
                        );
                        return None;
                    }
                    Some(MemberKind::Relation) => {}
                }
                let rel = definitions.get(&d.name.text).and_then(|def| def.relations.get(&left.text))?;
                if let Some(w) = rel.allowed.iter().find(|a| a.kind == AllowedKind::Wildcard) {
                    self.err(
                        format!(
                            "arrow over `{}` is not allowed: the relation allows the wildcard `{}:*`",
                            left.text, w.ty
                        ),
                        left.span,
                    );
                    return None;
                }
                let reachable = rel
                    .allowed
                    .iter()
                    .any(|a| members.get(a.ty.as_str()).is_some_and(|m| m.contains_key(right.text.as_str())));
                if !reachable && !rel.allowed.is_empty() {
                    let types: Vec<&str> = rel.allowed.iter().map(|a| a.ty.as_str()).collect();
                    self.err(
                        format!(
                            "no subject type of `{}` ({}) has a relation or permission `{}`",
                            left.text,
                            types.join(", "),
                            right.text
                        ),
                        right.span,
                    );
                    return None;
                }
                Rewrite::Arrow { tupleset: left.text.clone(), computed: right.text.clone(), kind: *kind }
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let l = self.rewrite(d, lhs, definitions, members);
                let r = self.rewrite(d, rhs, definitions, members);
                let (l, r) = (Box::new(l?), Box::new(r?));
                match op {
                    BinOp::Union => Rewrite::Union(l, r),
                    BinOp::Intersection => Rewrite::Intersection(l, r),
                    BinOp::Exclusion => Rewrite::Exclusion(l, r),
                }
            }
        })
    }

    /// Marks recursive relations and permissions (strongly connected components of the
    /// dependency graph of `(type, member)` pairs) and rejects recursion through the right-hand
    /// side of an exclusion.
    fn recursion(
        &mut self,
        definitions: &mut BTreeMap<String, Definition>,
        rewrites: &[(String, String, Rewrite, &Expr)],
    ) {
        let mut ids: HashMap<(String, String), usize> = HashMap::new();
        let mut names: Vec<(String, String)> = Vec::new();
        for d in definitions.values() {
            for m in d.relations.keys().chain(d.permissions.keys()) {
                ids.insert((d.name.clone(), m.clone()), names.len());
                names.push((d.name.clone(), m.clone()));
            }
        }
        let id = |t: &str, m: &str| ids.get(&(t.to_string(), m.to_string())).copied();
        // Edges: (from, to, through the right side of an exclusion, span to blame).
        let mut edges: Vec<(usize, usize, bool, Span)> = Vec::new();
        for d in definitions.values() {
            for r in d.relations.values() {
                let Some(from) = id(&d.name, &r.name) else { continue };
                for a in &r.allowed {
                    if let AllowedKind::Relation(sr) = &a.kind
                        && let Some(to) = id(&a.ty, sr)
                    {
                        edges.push((from, to, false, Span::default()));
                    }
                }
            }
        }
        for (def, perm, rw, expr) in rewrites {
            let Some(from) = id(def, perm) else { continue };
            let mut stack: Vec<(&Rewrite, Option<&Expr>, bool)> = vec![(rw, Some(*expr), false)];
            while let Some((node, ast, negated)) = stack.pop() {
                let span = ast.map_or(Span::default(), |e| e.span);
                match node {
                    Rewrite::Nil => {}
                    Rewrite::Computed(m) => {
                        if let Some(to) = id(def, m) {
                            edges.push((from, to, negated, span));
                        }
                    }
                    Rewrite::Arrow { tupleset, computed, .. } => {
                        if let Some(to) = id(def, tupleset) {
                            edges.push((from, to, negated, span));
                        }
                        let subject_types = definitions
                            .get(def)
                            .and_then(|d| d.relations.get(tupleset))
                            .map(|r| r.allowed.clone())
                            .unwrap_or_default();
                        for a in subject_types {
                            if let Some(to) = id(&a.ty, computed) {
                                edges.push((from, to, negated, span));
                            }
                        }
                    }
                    Rewrite::Union(l, r) | Rewrite::Intersection(l, r) | Rewrite::Exclusion(l, r) => {
                        let (la, ra) = match ast.map(|e| &e.kind) {
                            Some(ExprKind::Binary { lhs, rhs, .. }) => (Some(&**lhs), Some(&**rhs)),
                            _ => (None, None),
                        };
                        let right_negated = negated || matches!(node, Rewrite::Exclusion(..));
                        stack.push((l, la, negated));
                        stack.push((r, ra, right_negated));
                    }
                }
            }
        }
        let plain: Vec<(usize, usize)> = edges.iter().map(|(a, b, _, _)| (*a, *b)).collect();
        let components = graph::strongly_connected_components(names.len(), &plain);
        let mut component_of = vec![0usize; names.len()];
        let mut recursive = vec![false; names.len()];
        for (ci, comp) in components.iter().enumerate() {
            for &n in comp {
                if let Some(slot) = component_of.get_mut(n) {
                    *slot = ci;
                }
                if comp.len() > 1
                    && let Some(slot) = recursive.get_mut(n)
                {
                    *slot = true;
                }
            }
        }
        for (a, b, _, _) in &edges {
            if a == b
                && let Some(slot) = recursive.get_mut(*a)
            {
                *slot = true;
            }
        }
        let mut reported = BTreeSet::new();
        for (a, b, negated, span) in &edges {
            if *negated
                && component_of.get(*a) == component_of.get(*b)
                && recursive.get(*a) == Some(&true)
                && let (Some((t, p)), Some((t2, m))) = (names.get(*a), names.get(*b))
                && reported.insert((*a, *b))
            {
                let through = if a == b {
                    "excludes itself".to_string()
                } else {
                    format!("excludes `{t2}#{m}`, which depends on `{t}#{p}`")
                };
                self.err(
                            format!("permission `{p}` on `{t}` {through}: recursion through the right-hand side of `-` has no well-defined answer"),
                            *span,
                        );
            }
        }
        for (n, (t, m)) in names.iter().enumerate() {
            let rec = recursive.get(n).copied().unwrap_or(false);
            if let Some(d) = definitions.get_mut(t) {
                if let Some(r) = d.relations.get_mut(m) {
                    r.recursive = rec;
                } else if let Some(p) = d.permissions.get_mut(m) {
                    p.recursive = rec;
                }
            }
        }
    }
}

/// Byte offset inside a caveat body of a 1-based line and column reported by rhai.
fn body_offset(body: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in body.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let col: usize = l.chars().take(column.saturating_sub(1)).map(char::len_utf8).sum();
            return offset + col;
        }
        offset += l.len();
    }
    offset.min(body.len())
}

//! The schema compiler: resolves names, checks types, compiles caveat bodies (through
//! `conditions`) and analyses recursion, producing a [`CompiledSchema`].
//!
//! Architecture invariant: a `CompiledSchema` can only be built here, so every holder may assume
//! that each name it mentions resolves and that arrows walk relations. Recursion through the
//! right-hand side of an exclusion compiles with a warning, and the members it involves are marked
//! ([`CompiledSchema::unstratified`]): evaluators must not assume those are monotone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::ast::*;
use super::diagnostic::{Diagnostic, Span};
use crate::conditions::{BUILTIN_VARIABLES, CompiledCondition, ConditionError, Conditions};
use crate::model::{ParamType, Relationship, valid_relation_name, valid_type_name};
use crate::scc;

/// Features a schema may turn on with `use`.
pub const KNOWN_FEATURES: [&str; 1] = ["expiration"];

/// A validated schema. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct CompiledSchema {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// In name order; a [`DefinitionId`] is a position here.
    definitions: Vec<Definition>,
    by_name: BTreeMap<String, DefinitionId>,
    /// Every relation of every definition, definitions in name order, then relations in name
    /// order; a [`RelationId`] is a position here.
    relations: Vec<Relation>,
    /// The same for permissions.
    permissions: Vec<Permission>,
    /// In name order; a [`CaveatId`] is a position here.
    caveats: Vec<Caveat>,
    caveat_names: BTreeMap<String, CaveatId>,
    /// How many arrows the permissions hold (each has an [`ArrowId`] below this).
    arrows: u32,
    /// By [`MemberId::dense`]: the member is in a recursive group that passes through the
    /// right-hand side of an exclusion.
    unstratified: Vec<bool>,
    warnings: Vec<Diagnostic>,
    features: BTreeSet<String>,
    ast: SchemaAst,
    fingerprint: u64,
}

macro_rules! dense_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u32);

        impl $name {
            /// The position this id names, for tables indexed by it.
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}

dense_id!(
    /// A definition of one compiled schema: small, dense (`0..definitions`), meaningless in
    /// another schema.
    DefinitionId
);
dense_id!(
    /// A relation of one compiled schema, dense over all definitions' relations.
    RelationId
);
dense_id!(
    /// A permission of one compiled schema, dense over all definitions' permissions.
    PermissionId
);
dense_id!(
    /// A caveat of one compiled schema.
    CaveatId
);
dense_id!(
    /// One arrow (`a->b`, `a.any(b)`, `a.all(b)`) in the permissions of one compiled schema.
    ArrowId
);

/// A relation or a permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberId {
    Relation(RelationId),
    Permission(PermissionId),
}

impl MemberId {
    /// One dense number over relations and permissions: relations first, then permissions
    /// (`relations` is the schema's relation count).
    pub fn dense(self, relations: usize) -> usize {
        match self {
            MemberId::Relation(r) => r.index(),
            MemberId::Permission(p) => relations + p.index(),
        }
    }
}

/// A relation or a permission, resolved.
#[derive(Debug, Clone, Copy)]
pub enum Member<'a> {
    Relation(&'a Relation),
    Permission(&'a Permission),
}

impl<'a> Member<'a> {
    pub fn id(self) -> MemberId {
        match self {
            Member::Relation(r) => MemberId::Relation(r.id),
            Member::Permission(p) => MemberId::Permission(p.id),
        }
    }

    pub fn name(self) -> &'a str {
        match self {
            Member::Relation(r) => &r.name,
            Member::Permission(p) => &p.name,
        }
    }

    pub fn kind(self) -> MemberKind {
        match self {
            Member::Relation(_) => MemberKind::Relation,
            Member::Permission(_) => MemberKind::Permission,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Definition {
    pub id: DefinitionId,
    pub name: String,
    relations: BTreeMap<String, RelationId>,
    permissions: BTreeMap<String, PermissionId>,
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
        self.member(name).map(|m| match m {
            MemberId::Relation(_) => MemberKind::Relation,
            MemberId::Permission(_) => MemberKind::Permission,
        })
    }

    /// The relation or permission `name`.
    pub fn member(&self, name: &str) -> Option<MemberId> {
        match self.relations.get(name) {
            Some(r) => Some(MemberId::Relation(*r)),
            None => self.permissions.get(name).map(|p| MemberId::Permission(*p)),
        }
    }

    pub fn relation_id(&self, name: &str) -> Option<RelationId> {
        self.relations.get(name).copied()
    }

    pub fn permission_id(&self, name: &str) -> Option<PermissionId> {
        self.permissions.get(name).copied()
    }

    pub fn has_relation(&self, name: &str) -> bool {
        self.relations.contains_key(name)
    }

    /// Relation names, then permission names, each in name order.
    pub fn member_names(&self) -> impl Iterator<Item = &String> {
        self.relations.keys().chain(self.permissions.keys())
    }
}

#[derive(Debug, Clone)]
pub struct Relation {
    pub id: RelationId,
    /// The definition the relation belongs to.
    pub definition: DefinitionId,
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

    /// Whether every subject set the relation allows is the relation itself on its own type
    /// (`group#member` in `group`'s `member`): then its recursion stays inside it, and a
    /// Leopard closure of its self-nesting edges answers it.
    pub fn nests_only_in_itself(&self, own_type: &str) -> bool {
        self.allowed.iter().all(|a| match &a.kind {
            AllowedKind::Relation(r) => a.ty == own_type && r == &self.name,
            _ => true,
        })
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
    pub id: PermissionId,
    /// The definition the permission belongs to.
    pub definition: DefinitionId,
    pub name: String,
    pub rewrite: Rewrite,
    pub recursive: bool,
}

/// A permission's expression with names resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    Nil,
    /// A relation or permission on the same object.
    Computed {
        name: String,
        member: MemberId,
    },
    /// `tupleset->computed` walking the subjects of the relation `tupleset` (of the same
    /// definition); `computed` is looked up on each subject's type.
    Arrow {
        id: ArrowId,
        tupleset: String,
        tupleset_id: RelationId,
        computed: String,
        kind: ArrowKind,
    },
    Union(Box<Rewrite>, Box<Rewrite>),
    Intersection(Box<Rewrite>, Box<Rewrite>),
    Exclusion(Box<Rewrite>, Box<Rewrite>),
}

impl Rewrite {
    /// Every node of the tree, this one first, each before its operands (left before right).
    /// Iterative: a deep expression costs heap, not native stack.
    pub fn nodes(&self) -> impl Iterator<Item = &Rewrite> {
        let mut stack = vec![self];
        std::iter::from_fn(move || {
            let node = stack.pop()?;
            if let Rewrite::Union(a, b) | Rewrite::Intersection(a, b) | Rewrite::Exclusion(a, b) = node {
                stack.push(b);
                stack.push(a);
            }
            Some(node)
        })
    }
}

#[derive(Debug, Clone)]
pub struct Caveat {
    pub id: CaveatId,
    pub name: String,
    pub params: Vec<(String, ParamType)>,
    pub condition: CompiledCondition,
}

impl CompiledSchema {
    /// Whether both are the same compiled schema (one compilation, shared), so that their ids
    /// name the same items.
    pub fn same(&self, other: &CompiledSchema) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub fn definition(&self, name: &str) -> Option<&Definition> {
        self.inner.by_name.get(name).and_then(|id| self.inner.definitions.get(id.index()))
    }

    pub fn definition_by_id(&self, id: DefinitionId) -> Option<&Definition> {
        self.inner.definitions.get(id.index())
    }

    pub fn definitions(&self) -> impl Iterator<Item = &Definition> {
        self.inner.definitions.iter()
    }

    pub fn relation(&self, id: RelationId) -> Option<&Relation> {
        self.inner.relations.get(id.index())
    }

    pub fn permission(&self, id: PermissionId) -> Option<&Permission> {
        self.inner.permissions.get(id.index())
    }

    pub fn member(&self, id: MemberId) -> Option<Member<'_>> {
        match id {
            MemberId::Relation(r) => self.relation(r).map(Member::Relation),
            MemberId::Permission(p) => self.permission(p).map(Member::Permission),
        }
    }

    /// `def`'s relation or permission `name`.
    pub fn member_of(&self, def: &Definition, name: &str) -> Option<Member<'_>> {
        self.member(def.member(name)?)
    }

    /// `def`'s relation `name`.
    pub fn relation_of(&self, def: &Definition, name: &str) -> Option<&Relation> {
        self.relation(def.relation_id(name)?)
    }

    /// `def`'s permission `name`.
    pub fn permission_of(&self, def: &Definition, name: &str) -> Option<&Permission> {
        self.permission(def.permission_id(name)?)
    }

    /// `def`'s relations in name order.
    pub fn relations_of<'s>(&'s self, def: &'s Definition) -> impl Iterator<Item = &'s Relation> {
        def.relations.values().filter_map(|id| self.relation(*id))
    }

    /// `def`'s permissions in name order.
    pub fn permissions_of<'s>(&'s self, def: &'s Definition) -> impl Iterator<Item = &'s Permission> {
        def.permissions.values().filter_map(|id| self.permission(*id))
    }

    /// Every permission of every definition.
    pub fn permissions(&self) -> impl Iterator<Item = &Permission> {
        self.inner.permissions.iter()
    }

    /// Every relation of every definition.
    pub fn relations(&self) -> impl Iterator<Item = &Relation> {
        self.inner.relations.iter()
    }

    pub fn relation_count(&self) -> usize {
        self.inner.relations.len()
    }

    pub fn permission_count(&self) -> usize {
        self.inner.permissions.len()
    }

    pub fn arrow_count(&self) -> usize {
        self.inner.arrows as usize
    }

    /// Whether `member` is in a recursive group of the schema that passes through the right-hand
    /// side of an exclusion (`permission viewer = direct - restricted` with `restricted` naming
    /// `document#viewer`): its value on data that closes such a cycle has no least fixpoint, so
    /// an evaluation that depends on one is an error.
    pub fn unstratified(&self, member: MemberId) -> bool {
        self.inner.unstratified.get(member.dense(self.relation_count())).copied().unwrap_or(false)
    }

    /// What the compiler warned about (the schema compiled).
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.inner.warnings
    }

    pub fn caveat(&self, name: &str) -> Option<&Caveat> {
        self.inner.caveat_names.get(name).and_then(|id| self.inner.caveats.get(id.index()))
    }

    pub fn caveat_by_id(&self, id: CaveatId) -> Option<&Caveat> {
        self.inner.caveats.get(id.index())
    }

    pub fn caveats(&self) -> impl Iterator<Item = &Caveat> {
        self.inner.caveats.iter()
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
        let relation = match self.member_of(def, &rel.relation) {
            Some(Member::Relation(r)) => r,
            Some(Member::Permission(_)) => {
                return Err(SchemaViolation::WriteToPermission { ty: def.name.clone(), name: rel.relation.clone() });
            }
            None => return Err(SchemaViolation::UnknownRelation { ty: def.name.clone(), name: rel.relation.clone() }),
        };
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
    let mut c = Compiler { diags: Vec::new(), warnings: Vec::new() };
    let result = c.run(ast, conditions);
    if c.diags.is_empty() { Ok(result) } else { Err(c.diags) }
}

struct Compiler {
    diags: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
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

        let mut caveats = Vec::new();
        let mut caveat_names = BTreeMap::new();
        for cv in cav_asts.values() {
            let id = CaveatId(caveats.len() as u32);
            if let Some(c) = self.caveat(id, cv, conditions) {
                caveat_names.insert(c.name.clone(), id);
                caveats.push(c);
            }
        }

        // First pass: every member gets its id, so references resolve in any order. Duplicate
        // names were reported above; the first one declared is kept.
        let mut definitions = Vec::new();
        let mut by_name = BTreeMap::new();
        let mut relation_asts: Vec<(&DefinitionAst, &RelationAst)> = Vec::new();
        let mut permission_asts: Vec<(&DefinitionAst, &PermissionAst)> = Vec::new();
        for d in def_asts.values() {
            let id = DefinitionId(definitions.len() as u32);
            let mut rels: BTreeMap<&str, &RelationAst> = BTreeMap::new();
            let mut perms: BTreeMap<&str, &PermissionAst> = BTreeMap::new();
            let mut attributes = BTreeMap::new();
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
                    super::ast::Member::Relation(r) => {
                        rels.insert(&n.text, r);
                    }
                    super::ast::Member::Permission(p) => {
                        perms.insert(&n.text, p);
                    }
                    super::ast::Member::Attribute(a) => {
                        attributes.insert(a.name.text.clone(), a.ty.ty.clone());
                    }
                }
            }
            let mut relations = BTreeMap::new();
            for (name, r) in rels {
                relations.insert(name.to_string(), RelationId(relation_asts.len() as u32));
                relation_asts.push((d, r));
            }
            let mut permissions = BTreeMap::new();
            for (name, p) in perms {
                permissions.insert(name.to_string(), PermissionId(permission_asts.len() as u32));
                permission_asts.push((d, p));
            }
            by_name.insert(d.name.text.clone(), id);
            definitions.push(Definition { id, name: d.name.text.clone(), relations, permissions, attributes });
        }

        let mut relations = Vec::with_capacity(relation_asts.len());
        for (i, (d, r)) in relation_asts.iter().enumerate() {
            let allowed = self.relation(d, r, &definitions, &by_name, &caveat_names, &features);
            let definition = by_name.get(&d.name.text).copied().unwrap_or(DefinitionId(0));
            relations.push(Relation {
                id: RelationId(i as u32),
                definition,
                name: r.name.text.clone(),
                allowed,
                recursive: false,
            });
        }
        // Permissions need every definition's relations (arrows look at subject types).
        let names = Names { definitions: &definitions, by_name: &by_name, relations: &relations };
        let mut arrows = 0u32;
        let mut permissions = Vec::with_capacity(permission_asts.len());
        let mut exprs = Vec::with_capacity(permission_asts.len());
        for (i, (d, p)) in permission_asts.iter().enumerate() {
            let def = by_name.get(&d.name.text).and_then(|id| definitions.get(id.index()));
            // INVARIANT: a permission's id is its position, so one whose expression fails to
            // compile still takes its place (the diagnostics make the compilation fail).
            let rewrite = def.and_then(|def| self.rewrite(def, &p.expr, &names, &mut arrows)).unwrap_or(Rewrite::Nil);
            permissions.push(Permission {
                id: PermissionId(i as u32),
                definition: def.map_or(DefinitionId(0), |d| d.id),
                name: p.name.text.clone(),
                rewrite,
                recursive: false,
            });
            exprs.push(&p.expr);
        }
        let unstratified = if self.diags.is_empty() {
            self.recursion(&definitions, &mut relations, &mut permissions, &exprs)
        } else {
            Vec::new()
        };
        // The canonical text identifies the schema whatever its layout or comments' places.
        let fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            super::format::format(ast).hash(&mut h);
            h.finish()
        };
        CompiledSchema {
            inner: Arc::new(Inner {
                definitions,
                by_name,
                relations,
                permissions,
                caveats,
                caveat_names,
                arrows,
                unstratified,
                warnings: std::mem::take(&mut self.warnings),
                features,
                ast: ast.clone(),
                fingerprint,
            }),
        }
    }

    fn caveat(&mut self, id: CaveatId, cv: &CaveatAst, conditions: &Conditions) -> Option<Caveat> {
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
            Ok(condition) => Some(Caveat { id, name: cv.name.text.clone(), params, condition }),
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
        definitions: &[Definition],
        by_name: &BTreeMap<String, DefinitionId>,
        caveats: &BTreeMap<String, CaveatId>,
        features: &BTreeSet<String>,
    ) -> Vec<AllowedType> {
        let mut allowed: Vec<AllowedType> = Vec::new();
        for t in &r.types {
            let Some(target) = by_name.get(t.ty.text.as_str()).and_then(|id| definitions.get(id.index())) else {
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
                    if target.member(&rel.text).is_none() {
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

    fn rewrite(&mut self, def: &Definition, e: &Expr, names: &Names<'_>, arrows: &mut u32) -> Option<Rewrite> {
        Some(match &e.kind {
            ExprKind::Nil => Rewrite::Nil,
            ExprKind::Ref(n) => {
                let Some(member) = def.member(&n.text) else {
                    self.err(format!("definition `{}` has no relation or permission `{}`", def.name, n.text), n.span);
                    return None;
                };
                Rewrite::Computed { name: n.text.clone(), member }
            }
            ExprKind::Arrow { left, right, kind } => {
                let tupleset_id = match def.member(&left.text) {
                    None => {
                        self.err(
                            format!(
                                "definition `{}` has no relation `{}` for the left side of an arrow",
                                def.name, left.text
                            ),
                            left.span,
                        );
                        return None;
                    }
                    Some(MemberId::Permission(_)) => {
                        self.err(
                            format!(
                                "the left side of an arrow must be a relation, and `{}` is a permission",
                                left.text
                            ),
                            left.span,
                        );
                        return None;
                    }
                    Some(MemberId::Relation(r)) => r,
                };
                let rel = names.relations.get(tupleset_id.index())?;
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
                    .any(|a| names.definition(&a.ty).is_some_and(|t| t.member(&right.text).is_some()));
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
                let id = ArrowId(*arrows);
                *arrows += 1;
                Rewrite::Arrow {
                    id,
                    tupleset: left.text.clone(),
                    tupleset_id,
                    computed: right.text.clone(),
                    kind: *kind,
                }
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let l = self.rewrite(def, lhs, names, arrows);
                let r = self.rewrite(def, rhs, names, arrows);
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
    /// dependency graph of members, numbered by [`MemberId::dense`]) and warns about recursion
    /// through the right-hand side of an exclusion; returns, by member, whether it is in such a
    /// component. `exprs` are the permissions' expressions, for the spans to blame.
    fn recursion(
        &mut self,
        definitions: &[Definition],
        relations: &mut [Relation],
        permissions: &mut [Permission],
        exprs: &[&Expr],
    ) -> Vec<bool> {
        let n_rel = relations.len();
        let n = n_rel + permissions.len();
        let by_name = |ty: &str| definitions.iter().find(|d| d.name == ty);
        let dense = |ty: &str, m: &str| by_name(ty).and_then(|d| d.member(m)).map(|id| id.dense(n_rel));
        let label = |x: usize| -> (String, String) {
            let (def, name) = match relations.get(x) {
                Some(r) => (r.definition, r.name.clone()),
                None => match permissions.get(x - n_rel) {
                    Some(p) => (p.definition, p.name.clone()),
                    None => return (String::new(), String::new()),
                },
            };
            (definitions.get(def.index()).map(|d| d.name.clone()).unwrap_or_default(), name)
        };
        // Edges: (from, to, through the right side of an exclusion, span to blame).
        let mut edges: Vec<(usize, usize, bool, Span)> = Vec::new();
        for r in relations.iter() {
            let from = MemberId::Relation(r.id).dense(n_rel);
            for a in &r.allowed {
                if let AllowedKind::Relation(sr) = &a.kind
                    && let Some(to) = dense(&a.ty, sr)
                {
                    edges.push((from, to, false, Span::default()));
                }
            }
        }
        for (p, expr) in permissions.iter().zip(exprs) {
            let from = MemberId::Permission(p.id).dense(n_rel);
            // The rewrite and its expression side by side, to blame the span of each reference.
            let mut stack: Vec<(&Rewrite, Option<&Expr>, bool)> = vec![(&p.rewrite, Some(*expr), false)];
            while let Some((node, ast, negated)) = stack.pop() {
                let span = ast.map_or(Span::default(), |e| e.span);
                match node {
                    Rewrite::Nil => {}
                    Rewrite::Computed { member, .. } => edges.push((from, member.dense(n_rel), negated, span)),
                    Rewrite::Arrow { tupleset_id, computed, .. } => {
                        edges.push((from, tupleset_id.index(), negated, span));
                        for a in relations.get(tupleset_id.index()).map_or(&[][..], |r| r.allowed.as_slice()) {
                            if let Some(to) = dense(&a.ty, computed) {
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
        let components = scc::strongly_connected_components(n, &plain);
        let mut component_of = vec![0usize; n];
        let mut recursive = vec![false; n];
        for (ci, comp) in components.iter().enumerate() {
            for &x in comp {
                if let Some(slot) = component_of.get_mut(x) {
                    *slot = ci;
                }
                if comp.len() > 1
                    && let Some(slot) = recursive.get_mut(x)
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
        let mut negative_components = BTreeSet::new();
        for (a, b, negated, span) in &edges {
            if *negated && component_of.get(*a) == component_of.get(*b) && recursive.get(*a) == Some(&true) {
                negative_components.extend(component_of.get(*a).copied());
                if reported.insert((*a, *b)) {
                    let ((t, p), (t2, m)) = (label(*a), label(*b));
                    let through = if a == b {
                        "excludes itself".to_string()
                    } else {
                        format!("excludes `{t2}#{m}`, which depends on `{t}#{p}`")
                    };
                    self.warnings.push(Diagnostic::warning(
                        format!(
                            "permission `{p}` on `{t}` {through}: recursion through the right-hand side of `-`; a Check whose data closes this cycle is an error naming it, and acyclic data answers as SpiceDB does"
                        ),
                        *span,
                    ));
                }
            }
        }
        let unstratified: Vec<bool> =
            (0..n).map(|x| component_of.get(x).is_some_and(|c| negative_components.contains(c))).collect();
        for r in relations.iter_mut() {
            r.recursive = recursive.get(MemberId::Relation(r.id).dense(n_rel)).copied().unwrap_or(false);
        }
        for p in permissions.iter_mut() {
            p.recursive = recursive.get(MemberId::Permission(p.id).dense(n_rel)).copied().unwrap_or(false);
        }
        unstratified
    }
}

/// What a permission's expression may name, while compiling.
struct Names<'a> {
    definitions: &'a [Definition],
    by_name: &'a BTreeMap<String, DefinitionId>,
    relations: &'a [Relation],
}

impl Names<'_> {
    fn definition(&self, name: &str) -> Option<&Definition> {
        self.by_name.get(name).and_then(|id| self.definitions.get(id.index()))
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

//! The schema syntax tree, as written: names with spans, comments kept for `fmt`. Nothing here is
//! validated; the compiler turns a tree into a `CompiledSchema`.

use super::diagnostic::Span;
use crate::model::ParamType;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SchemaAst {
    pub items: Vec<Item>,
    /// Comments after the last item.
    pub trailing_comments: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Definition(DefinitionAst),
    Caveat(CaveatAst),
    Use(UseAst),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub text: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UseAst {
    pub comments: Vec<String>,
    pub feature: Name,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DefinitionAst {
    pub comments: Vec<String>,
    pub name: Name,
    pub members: Vec<Member>,
    /// Comments before the closing brace.
    pub trailing_comments: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Member {
    Relation(RelationAst),
    Permission(PermissionAst),
    Attribute(AttributeAst),
}

impl Member {
    pub fn name(&self) -> &Name {
        match self {
            Member::Relation(r) => &r.name,
            Member::Permission(p) => &p.name,
            Member::Attribute(a) => &a.name,
        }
    }

    pub fn comments(&self) -> &[String] {
        match self {
            Member::Relation(r) => &r.comments,
            Member::Permission(p) => &p.comments,
            Member::Attribute(a) => &a.comments,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RelationAst {
    pub comments: Vec<String>,
    pub name: Name,
    pub types: Vec<AllowedTypeAst>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedKindAst {
    /// `user`
    Direct,
    /// `user:*`
    Wildcard,
    /// `group#member`
    Relation(Name),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AllowedTypeAst {
    pub ty: Name,
    pub kind: AllowedKindAst,
    pub caveat: Option<Name>,
    pub expiration: bool,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PermissionAst {
    pub comments: Vec<String>,
    pub name: Name,
    pub expr: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttributeAst {
    pub comments: Vec<String>,
    pub name: Name,
    pub ty: TypeAst,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TypeAst {
    pub ty: ParamType,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CaveatAst {
    pub comments: Vec<String>,
    pub name: Name,
    pub params: Vec<(Name, TypeAst)>,
    /// The rhai source between the braces, as written.
    pub body: String,
    pub body_span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Union,
    Intersection,
    Exclusion,
}

impl BinOp {
    /// Binding strength: `+` binds tightest, then `&`, then `-`.
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Exclusion => 1,
            BinOp::Intersection => 2,
            BinOp::Union => 3,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Union => "+",
            BinOp::Intersection => "&",
            BinOp::Exclusion => "-",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrowKind {
    /// `a->b` (the same as `a.any(b)`)
    Arrow,
    Any,
    All,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Nil,
    Ref(Name),
    Arrow { left: Name, right: Name, kind: ArrowKind },
    Binary { op: BinOp, lhs: Box<Expr>, rhs: Box<Expr> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

impl SchemaAst {
    /// A copy with every span set to zero and caveat bodies dedented, for comparing trees that came
    /// from different text.
    pub fn without_spans(&self) -> SchemaAst {
        let z = Span::default();
        let name = |n: &Name| Name { text: n.text.clone(), span: z };
        let ty = |t: &TypeAst| TypeAst { ty: t.ty.clone(), span: z };
        fn expr(e: &Expr) -> Expr {
            let z = Span::default();
            let name = |n: &Name| Name { text: n.text.clone(), span: z };
            let kind = match &e.kind {
                ExprKind::Nil => ExprKind::Nil,
                ExprKind::Ref(n) => ExprKind::Ref(name(n)),
                ExprKind::Arrow { left, right, kind } => {
                    ExprKind::Arrow { left: name(left), right: name(right), kind: *kind }
                }
                ExprKind::Binary { op, lhs, rhs } => {
                    ExprKind::Binary { op: *op, lhs: Box::new(expr(lhs)), rhs: Box::new(expr(rhs)) }
                }
            };
            Expr { kind, span: z }
        }
        let items = self
            .items
            .iter()
            .map(|item| match item {
                Item::Use(u) => Item::Use(UseAst { comments: u.comments.clone(), feature: name(&u.feature) }),
                Item::Caveat(c) => Item::Caveat(CaveatAst {
                    comments: c.comments.clone(),
                    name: name(&c.name),
                    params: c.params.iter().map(|(n, t)| (name(n), ty(t))).collect(),
                    body: dedent(&c.body),
                    body_span: z,
                }),
                Item::Definition(d) => Item::Definition(DefinitionAst {
                    comments: d.comments.clone(),
                    name: name(&d.name),
                    trailing_comments: d.trailing_comments.clone(),
                    members: d
                        .members
                        .iter()
                        .map(|m| match m {
                            Member::Relation(r) => Member::Relation(RelationAst {
                                comments: r.comments.clone(),
                                name: name(&r.name),
                                types: r
                                    .types
                                    .iter()
                                    .map(|t| AllowedTypeAst {
                                        ty: name(&t.ty),
                                        kind: match &t.kind {
                                            AllowedKindAst::Relation(r) => AllowedKindAst::Relation(name(r)),
                                            k => k.clone(),
                                        },
                                        caveat: t.caveat.as_ref().map(name),
                                        expiration: t.expiration,
                                        span: z,
                                    })
                                    .collect(),
                            }),
                            Member::Permission(p) => Member::Permission(PermissionAst {
                                comments: p.comments.clone(),
                                name: name(&p.name),
                                expr: expr(&p.expr),
                            }),
                            Member::Attribute(a) => Member::Attribute(AttributeAst {
                                comments: a.comments.clone(),
                                name: name(&a.name),
                                ty: ty(&a.ty),
                            }),
                        })
                        .collect(),
                }),
            })
            .collect();
        SchemaAst { items, trailing_comments: self.trailing_comments.clone() }
    }
}

/// The body without leading and trailing blank lines and without the indentation its lines share.
pub fn dedent(body: &str) -> String {
    let lines: Vec<&str> = body.lines().map(str::trim_end).collect();
    let first = lines.iter().position(|l| !l.is_empty()).unwrap_or(lines.len());
    let last = lines.iter().rposition(|l| !l.is_empty()).map_or(first, |i| i + 1);
    let kept = lines.get(first..last).unwrap_or(&[]);
    let indent = kept.iter().filter(|l| !l.is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    kept.iter().map(|l| l.get(indent..).unwrap_or_else(|| l.trim_start()).to_string()).collect::<Vec<_>>().join("\n")
}

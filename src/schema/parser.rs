//! The schema parser: recursive descent over the lexer's tokens, returning a tree and every
//! diagnostic. It never panics and keeps going after an error by skipping to the next statement.
//!
//! Architecture invariant: the parser checks syntax only; names are resolved by the compiler.

use super::ast::*;
use super::diagnostic::{Diagnostic, Span};
use super::lexer::{Lexer, Tok, Token};
use crate::model::ParamType;

/// Largest schema text accepted, in bytes.
pub const MAX_SCHEMA_BYTES: usize = 4 * 1024 * 1024;
/// Deepest tree a permission expression or a type may form (parentheses and chained operators).
pub const MAX_EXPR_DEPTH: usize = 128;
/// The parser stops after this many diagnostics.
pub const MAX_DIAGNOSTICS: usize = 100;

/// Parses schema text into a tree and the diagnostics found (empty when the text is valid syntax).
pub fn parse(source: &str) -> (SchemaAst, Vec<Diagnostic>) {
    if source.len() > MAX_SCHEMA_BYTES {
        let d = Diagnostic::new(
            format!("schema is {} bytes; the limit is {MAX_SCHEMA_BYTES}", source.len()),
            Span::new(0, 0),
        );
        return (SchemaAst::default(), vec![d]);
    }
    let mut p = Parser::new(source);
    let ast = p.schema();
    (ast, p.diags)
}

/// The depth of an expression tree, measured without recursion.
fn tree_depth(e: &Expr) -> usize {
    let mut max = 0;
    let mut stack = vec![(e, 1usize)];
    while let Some((e, d)) = stack.pop() {
        max = max.max(d);
        if let ExprKind::Binary { lhs, rhs, .. } = &e.kind {
            stack.push((lhs, d + 1));
            stack.push((rhs, d + 1));
        }
    }
    max
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    tok: Token,
    diags: Vec<Diagnostic>,
    /// Set once the diagnostics limit is hit; parsing then stops.
    gave_up: bool,
}

/// An error already reported; the caller recovers.
struct Reported;

type PResult<T> = Result<T, Reported>;

impl<'a> Parser<'a> {
    fn new(source: &'a str) -> Parser<'a> {
        let mut lexer = Lexer::new(source);
        let mut diags = Vec::new();
        let tok = lexer.next_token(&mut diags);
        Parser { lexer, tok, diags, gave_up: false }
    }

    fn bump(&mut self) -> Token {
        let next = self.lexer.next_token(&mut self.diags);
        std::mem::replace(&mut self.tok, next)
    }

    fn error(&mut self, message: impl Into<String>, span: Span) -> Reported {
        if self.diags.len() < MAX_DIAGNOSTICS {
            self.diags.push(Diagnostic::new(message, span));
        } else {
            self.gave_up = true;
        }
        Reported
    }

    fn unexpected(&mut self, expected: &str) -> Reported {
        let msg = format!("expected {expected}, found {}", self.tok.tok.describe());
        let span = self.tok.span;
        self.error(msg, span)
    }

    fn at_ident(&self, word: &str) -> bool {
        matches!(&self.tok.tok, Tok::Ident(s) if s == word)
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if &self.tok.tok == t {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: Tok) -> PResult<Span> {
        if self.tok.tok == t { Ok(self.bump().span) } else { Err(self.unexpected(&t.describe())) }
    }

    fn name(&mut self, what: &str) -> PResult<Name> {
        if let Tok::Ident(s) = &self.tok.tok {
            let text = s.clone();
            let span = self.bump().span;
            Ok(Name { text, span })
        } else {
            Err(self.unexpected(what))
        }
    }

    fn schema(&mut self) -> SchemaAst {
        let mut items = Vec::new();
        loop {
            if self.gave_up {
                break;
            }
            if self.tok.tok == Tok::Eof {
                let trailing = std::mem::take(&mut self.tok.comments);
                return SchemaAst { items, trailing_comments: trailing };
            }
            let comments = std::mem::take(&mut self.tok.comments);
            let result = if self.at_ident("definition") {
                self.definition(comments).map(Item::Definition)
            } else if self.at_ident("caveat") {
                self.caveat(comments).map(Item::Caveat)
            } else if self.at_ident("use") {
                self.use_item(comments).map(Item::Use)
            } else {
                Err(self.unexpected("`definition`, `caveat` or `use`"))
            };
            match result {
                Ok(item) => items.push(item),
                Err(Reported) => self.recover_top_level(),
            }
        }
        SchemaAst { items, trailing_comments: Vec::new() }
    }

    /// Skips to the next `definition`, `caveat` or `use` at the start of a statement.
    fn recover_top_level(&mut self) {
        let mut depth = 0usize;
        loop {
            match &self.tok.tok {
                Tok::Eof => return,
                Tok::LBrace => depth += 1,
                Tok::RBrace => depth = depth.saturating_sub(1),
                Tok::Ident(s) if depth == 0 && matches!(s.as_str(), "definition" | "caveat" | "use") => {
                    return;
                }
                _ => {}
            }
            self.bump();
        }
    }

    fn use_item(&mut self, comments: Vec<String>) -> PResult<UseAst> {
        self.bump();
        let feature = self.name("a feature name after `use`")?;
        Ok(UseAst { comments, feature })
    }

    fn definition(&mut self, comments: Vec<String>) -> PResult<DefinitionAst> {
        self.bump();
        let name = self.name("a definition name")?;
        self.expect(Tok::LBrace)?;
        let mut members = Vec::new();
        loop {
            if self.gave_up {
                return Err(Reported);
            }
            match &self.tok.tok {
                Tok::RBrace => {
                    let trailing_comments = std::mem::take(&mut self.tok.comments);
                    self.bump();
                    return Ok(DefinitionAst { comments, name, members, trailing_comments });
                }
                Tok::Eof => {
                    let span = self.tok.span;
                    return Err(self.error(format!("definition `{}` is not closed: expected `}}`", name.text), span));
                }
                _ => {}
            }
            let comments = std::mem::take(&mut self.tok.comments);
            let result = if self.at_ident("relation") {
                self.relation(comments).map(Member::Relation)
            } else if self.at_ident("permission") {
                self.permission(comments).map(Member::Permission)
            } else if self.at_ident("attribute") {
                self.attribute(comments).map(Member::Attribute)
            } else {
                Err(self.unexpected("`relation`, `permission`, `attribute` or `}`"))
            };
            match result {
                Ok(m) => {
                    self.eat(&Tok::Semicolon);
                    members.push(m);
                }
                Err(Reported) => {
                    if !self.recover_member() {
                        return Err(Reported);
                    }
                }
            }
        }
    }

    /// Skips to the next member or the definition's closing brace. Returns false when a new
    /// top-level item (or the end) comes first, so the definition is abandoned.
    fn recover_member(&mut self) -> bool {
        let mut depth = 0usize;
        loop {
            match &self.tok.tok {
                Tok::Eof => return false,
                Tok::LParen | Tok::LBrace => depth += 1,
                Tok::RParen => depth = depth.saturating_sub(1),
                Tok::RBrace if depth == 0 => return true,
                Tok::RBrace => depth -= 1,
                Tok::Ident(s) if matches!(s.as_str(), "relation" | "permission" | "attribute") => {
                    return true;
                }
                Tok::Ident(s) if matches!(s.as_str(), "definition" | "caveat") => return false,
                _ => {}
            }
            self.bump();
        }
    }

    fn relation(&mut self, comments: Vec<String>) -> PResult<RelationAst> {
        self.bump();
        let name = self.name("a relation name")?;
        self.expect(Tok::Colon)?;
        let mut types = vec![self.allowed_type()?];
        while self.eat(&Tok::Pipe) {
            types.push(self.allowed_type()?);
        }
        Ok(RelationAst { comments, name, types })
    }

    fn allowed_type(&mut self) -> PResult<AllowedTypeAst> {
        let ty = self.name("a subject type")?;
        let mut span = ty.span;
        let kind = match self.tok.tok {
            Tok::Colon => {
                self.bump();
                span = span.to(self.expect(Tok::Star)?);
                AllowedKindAst::Wildcard
            }
            Tok::Hash => {
                self.bump();
                let rel = self.name("a relation name after `#`")?;
                span = span.to(rel.span);
                AllowedKindAst::Relation(rel)
            }
            _ => AllowedKindAst::Direct,
        };
        let mut caveat = None;
        let mut expiration = false;
        if self.at_ident("with") {
            self.bump();
            let first = self.name("a caveat name or `expiration` after `with`")?;
            span = span.to(first.span);
            if first.text == "expiration" {
                expiration = true;
            } else {
                caveat = Some(first);
                if self.at_ident("and") {
                    self.bump();
                    let second = self.name("`expiration` after `and`")?;
                    span = span.to(second.span);
                    if second.text != "expiration" {
                        return Err(self.error(
                            format!("expected `expiration` after `and`, found `{}`", second.text),
                            second.span,
                        ));
                    }
                    expiration = true;
                }
            }
        }
        Ok(AllowedTypeAst { ty, kind, caveat, expiration, span })
    }

    fn permission(&mut self, comments: Vec<String>) -> PResult<PermissionAst> {
        self.bump();
        let name = self.name("a permission name")?;
        self.expect(Tok::Equals)?;
        let expr = self.expr(0)?;
        // Each operator chain is bounded while parsing; the whole tree (chains inside
        // parentheses inside chains) is bounded here, so every later walk is shallow.
        if tree_depth(&expr) > MAX_EXPR_DEPTH {
            return Err(self.too_deep(expr.span));
        }
        Ok(PermissionAst { comments, name, expr })
    }

    fn attribute(&mut self, comments: Vec<String>) -> PResult<AttributeAst> {
        self.bump();
        let name = self.name("an attribute name")?;
        self.expect(Tok::Colon)?;
        let ty = self.type_ref(0)?;
        Ok(AttributeAst { comments, name, ty })
    }

    fn too_deep(&mut self, span: Span) -> Reported {
        self.error(format!("expression is nested deeper than the limit of {MAX_EXPR_DEPTH}"), span)
    }

    /// `expr := inter ('-' inter)*`, left-associative; `depth` counts the levels so far: one per
    /// enclosing parenthesis and per operator before this one in an enclosing chain (the
    /// precedence levels of one expression are not levels of nesting).
    fn expr(&mut self, depth: usize) -> PResult<Expr> {
        self.binary(depth, BinOp::Exclusion)
    }

    fn binary(&mut self, depth: usize, op: BinOp) -> PResult<Expr> {
        if depth > MAX_EXPR_DEPTH {
            let span = self.tok.span;
            return Err(self.too_deep(span));
        }
        let operand = |p: &mut Self, d: usize| match op {
            BinOp::Exclusion => p.binary(d, BinOp::Intersection),
            BinOp::Intersection => p.binary(d, BinOp::Union),
            BinOp::Union => p.term(d),
        };
        let token = match op {
            BinOp::Exclusion => Tok::Minus,
            BinOp::Intersection => Tok::Amp,
            BinOp::Union => Tok::Plus,
        };
        let mut lhs = operand(self, depth)?;
        let mut chain = 0usize;
        while self.tok.tok == token {
            self.bump();
            chain += 1;
            if depth + chain > MAX_EXPR_DEPTH {
                let span = self.tok.span;
                return Err(self.too_deep(span));
            }
            let rhs = operand(self, depth + chain)?;
            let span = lhs.span.to(rhs.span);
            lhs = Expr { kind: ExprKind::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) }, span };
        }
        Ok(lhs)
    }

    fn term(&mut self, depth: usize) -> PResult<Expr> {
        match &self.tok.tok {
            Tok::LParen => {
                let open = self.bump().span;
                let inner = self.expr(depth + 1)?;
                let close = self.expect(Tok::RParen)?;
                Ok(Expr { kind: inner.kind, span: open.to(close) })
            }
            Tok::Ident(s) if s == "nil" => {
                let span = self.bump().span;
                Ok(Expr { kind: ExprKind::Nil, span })
            }
            Tok::Ident(_) => {
                let left = self.name("a relation or permission name")?;
                if self.tok.tok == Tok::Arrow {
                    self.bump();
                    let right = self.name("a relation or permission name after `->`")?;
                    let span = left.span.to(right.span);
                    self.no_chained_arrow()?;
                    return Ok(Expr { kind: ExprKind::Arrow { left, right, kind: ArrowKind::Arrow }, span });
                }
                if self.tok.tok == Tok::Dot {
                    self.bump();
                    let func = self.name("`any` or `all` after `.`")?;
                    let kind = match func.text.as_str() {
                        "any" => ArrowKind::Any,
                        "all" => ArrowKind::All,
                        other => {
                            return Err(self.error(
                                format!("unknown arrow function `{other}`: expected `any` or `all`"),
                                func.span,
                            ));
                        }
                    };
                    self.expect(Tok::LParen)?;
                    let right = self.name("a relation or permission name")?;
                    let close = self.expect(Tok::RParen)?;
                    self.no_chained_arrow()?;
                    return Ok(Expr {
                        kind: ExprKind::Arrow { left: left.clone(), right, kind },
                        span: left.span.to(close),
                    });
                }
                let span = left.span;
                Ok(Expr { kind: ExprKind::Ref(left), span })
            }
            _ => Err(self.unexpected("a relation, permission, `nil` or `(`")),
        }
    }

    fn no_chained_arrow(&mut self) -> PResult<()> {
        if matches!(self.tok.tok, Tok::Arrow | Tok::Dot) {
            let span = self.tok.span;
            return Err(self.error("chained arrows are not supported: an arrow's left side must be a relation", span));
        }
        Ok(())
    }

    /// `int`, `list<T>`, `map<T>`, …
    fn type_ref(&mut self, depth: usize) -> PResult<TypeAst> {
        let name = self.name("a type name")?;
        if depth > MAX_EXPR_DEPTH {
            return Err(self.too_deep(name.span));
        }
        match name.text.as_str() {
            "list" | "map" => {
                if self.tok.tok != Tok::Lt {
                    return Err(self.error(
                        format!("type `{}` needs an element type, as in `{}<string>`", name.text, name.text),
                        name.span,
                    ));
                }
                self.bump();
                let inner = self.type_ref(depth + 1)?;
                let close = self.expect(Tok::Gt)?;
                let ty = if name.text == "list" {
                    ParamType::List(Box::new(inner.ty))
                } else {
                    ParamType::Map(Box::new(inner.ty))
                };
                Ok(TypeAst { ty, span: name.span.to(close) })
            }
            other => match ParamType::from_simple_name(other) {
                Some(ty) => {
                    if self.tok.tok == Tok::Lt {
                        let span = self.tok.span;
                        return Err(self.error(format!("type `{other}` takes no type parameter"), span));
                    }
                    Ok(TypeAst { ty, span: name.span })
                }
                None => Err(self.error(
                    format!("unknown type `{other}`: expected int, uint, double, bool, string, bytes, duration, timestamp, ipaddress, any, list<T> or map<T>"),
                    name.span,
                )),
            },
        }
    }

    fn caveat(&mut self, comments: Vec<String>) -> PResult<CaveatAst> {
        self.bump();
        let name = self.name("a caveat name")?;
        self.expect(Tok::LParen)?;
        let mut params = Vec::new();
        if self.tok.tok != Tok::RParen {
            loop {
                let pname = self.name("a parameter name")?;
                let ty = self.type_ref(0)?;
                params.push((pname, ty));
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
        }
        self.expect(Tok::RParen)?;
        // The body is rhai: take it as raw text, without lexing it as schema language. The
        // current token is the `{`, and the lexer already sits just after it.
        if self.tok.tok != Tok::LBrace {
            return Err(self.unexpected("`{` to open the caveat body"));
        }
        let open = self.tok.span;
        let Some((body, body_span)) = self.lexer.raw_block() else {
            self.tok = Token {
                tok: Tok::Eof,
                span: Span::new(self.lexer.position(), self.lexer.position()),
                comments: Vec::new(),
                blank_line_before: false,
            };
            return Err(self.error(format!("caveat `{}` body is not closed: expected `}}`", name.text), open));
        };
        self.bump();
        if body.trim().is_empty() {
            return Err(self.error(format!("caveat `{}` has an empty body", name.text), body_span));
        }
        Ok(CaveatAst { comments, name, params, body, body_span })
    }
}

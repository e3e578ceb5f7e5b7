//! Schema text out of trees. [`print`] is `pemba schema fmt`: it prints the lossless syntax
//! tree, so every token and comment stays in its order and caveat bodies keep their bytes
//! except indentation. [`format`] is the canonical text of a parsed tree (four-space
//! indentation, the fewest parentheses that keep the tree; comments only where the tree keeps
//! them), which identifies a schema whatever its layout.
//!
//! Architecture invariants: `parse(format(t))` gives `t` again (spans aside); `print` keeps the
//! tree, every comment and every caveat's answer, and is idempotent; all property-tested.

use super::ast::*;

pub fn format(ast: &SchemaAst) -> String {
    let mut out = String::new();
    for (i, item) in ast.items.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match item {
            Item::Use(u) => {
                comments(&mut out, &u.comments, "");
                out.push_str(&format!("use {}\n", u.feature.text));
            }
            Item::Definition(d) => definition(&mut out, d),
            Item::Caveat(c) => caveat(&mut out, c),
        }
    }
    if !ast.trailing_comments.is_empty() {
        if !ast.items.is_empty() {
            out.push('\n');
        }
        comments(&mut out, &ast.trailing_comments, "");
    }
    out
}

fn comments(out: &mut String, list: &[String], indent: &str) {
    for c in list {
        for (i, line) in c.lines().enumerate() {
            let line = if i == 0 { line.trim_end() } else { line.trim() };
            if i > 0 && line.starts_with('*') {
                out.push_str(&format!("{indent} {line}\n"));
            } else {
                out.push_str(&format!("{indent}{line}\n"));
            }
        }
    }
}

fn definition(out: &mut String, d: &DefinitionAst) {
    comments(out, &d.comments, "");
    if d.members.is_empty() && d.trailing_comments.is_empty() {
        out.push_str(&format!("definition {} {{}}\n", d.name.text));
        return;
    }
    out.push_str(&format!("definition {} {{\n", d.name.text));
    let mut previous: Option<std::mem::Discriminant<Member>> = None;
    for m in &d.members {
        let kind = std::mem::discriminant(m);
        if previous.is_some_and(|p| p != kind) || (previous.is_some() && !m.comments().is_empty()) {
            out.push('\n');
        }
        previous = Some(kind);
        comments(out, m.comments(), "    ");
        match m {
            Member::Relation(r) => {
                let types: Vec<String> = r.types.iter().map(allowed_type).collect();
                out.push_str(&format!("    relation {}: {}\n", r.name.text, types.join(" | ")));
            }
            Member::Permission(p) => {
                out.push_str(&format!("    permission {} = {}\n", p.name.text, expr(&p.expr)));
            }
            Member::Attribute(a) => {
                out.push_str(&format!("    attribute {}: {}\n", a.name.text, a.ty.ty));
            }
        }
    }
    if !d.trailing_comments.is_empty() {
        if !d.members.is_empty() {
            out.push('\n');
        }
        comments(out, &d.trailing_comments, "    ");
    }
    out.push_str("}\n");
}

fn allowed_type(t: &AllowedTypeAst) -> String {
    let mut s = t.ty.text.clone();
    match &t.kind {
        AllowedKindAst::Direct => {}
        AllowedKindAst::Wildcard => s.push_str(":*"),
        AllowedKindAst::Relation(r) => {
            s.push('#');
            s.push_str(&r.text);
        }
    }
    match (&t.caveat, t.expiration) {
        (Some(c), true) => s.push_str(&format!(" with {} and expiration", c.text)),
        (Some(c), false) => s.push_str(&format!(" with {}", c.text)),
        (None, true) => s.push_str(" with expiration"),
        (None, false) => {}
    }
    s
}

/// Prints an expression with parentheses only where the tree needs them: a left operand of
/// looser binding, or a right operand that does not bind tighter (the operators are
/// left-associative, so `a - (b - c)` keeps its parentheses).
pub fn expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Nil => "nil".to_string(),
        ExprKind::Ref(n) => n.text.clone(),
        ExprKind::Arrow { left, right, kind } => match kind {
            ArrowKind::Arrow => format!("{}->{}", left.text, right.text),
            ArrowKind::Any => format!("{}.any({})", left.text, right.text),
            ArrowKind::All => format!("{}.all({})", left.text, right.text),
        },
        ExprKind::Binary { op, lhs, rhs } => {
            let p = op.precedence();
            let side = |child: &Expr, needs: &dyn Fn(u8) -> bool| match &child.kind {
                ExprKind::Binary { op: cop, .. } if needs(cop.precedence()) => format!("({})", expr(child)),
                _ => expr(child),
            };
            let l = side(lhs, &|cp| cp < p);
            let r = side(rhs, &|cp| cp <= p);
            format!("{l} {} {r}", op.symbol())
        }
    }
}

fn caveat(out: &mut String, c: &CaveatAst) {
    comments(out, &c.comments, "");
    let params: Vec<String> = c.params.iter().map(|(n, t)| format!("{} {}", n.text, t.ty)).collect();
    out.push_str(&format!("caveat {}({}) {{\n", c.name.text, params.join(", ")));
    for line in super::ast::dedent(&c.body).lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out.push_str("}\n");
}

// ---------------------------------------------------------------------------------------------
// `fmt`: printing from the lossless syntax tree.

use super::lexer::{Tok, scan_rhai};
use super::syntax::{Element, Node, NodeKind, Piece, PieceKind, SyntaxTree};

const INDENT: &str = "    ";

/// The canonical layout of schema text, printed from its lossless tree: every token and comment
/// in its order, white space chosen by the rules below, caveat bodies as written except for the
/// leading indentation of lines that do not start inside a string literal.
///
/// Layout: one blank line between items; members indented by four spaces, a blank line between
/// members where the source had one or the kind of member changes; a comment on its own line
/// stays on its own line, one after a token stays after it; a line comment inside a statement
/// continues the statement on the next line, indented by eight spaces.
pub fn print(tree: &SyntaxTree<'_>) -> String {
    let mut p = Printer { tree, out: String::new() };
    p.list(&tree.root.children, "", true);
    if !p.out.is_empty() && !p.out.ends_with('\n') {
        p.out.push('\n');
    }
    p.out
}

struct Printer<'t, 'a> {
    tree: &'t SyntaxTree<'a>,
    out: String,
}

/// Whether one space separates two tokens on a line.
fn spaced(prev: &Tok, next: &Tok) -> bool {
    use Tok::*;
    !matches!(
        (prev, next),
        (_, RParen | Comma | Hash | Dot | Gt | Lt | Semicolon | Arrow | Colon)
            | (LParen | Hash | Dot | Arrow | Lt, _)
            | (Colon, Star)
            | (Ident(_), LParen)
    )
}

fn newlines(text: &str) -> usize {
    text.bytes().filter(|b| *b == b'\n').count()
}

impl Printer<'_, '_> {
    fn text(&self, p: &Piece) -> &str {
        let t = self.tree.text(p);
        if p.kind == PieceKind::LineComment { t.trim_end() } else { t }
    }

    fn new_line(&mut self, indent: &str) {
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
        self.out.push_str(indent);
    }

    fn blank_line(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with("\n\n") {
            if !self.out.ends_with('\n') {
                self.out.push('\n');
            }
            self.out.push('\n');
        }
    }

    /// A sequence of nodes and the white space and comments between them: the items of a file
    /// (`in_file`) or the members of a definition (whose header line is open: a comment on
    /// it stays there).
    fn list(&mut self, elems: &[Element], indent: &str, in_file: bool) {
        let mut line_open = !in_file;
        let mut lines = 0usize;
        let mut previous: Option<NodeKind> = None;
        // Own-line comments were printed since the previous node (its gap went before them).
        let mut since_node = false;
        // For each element, the kind of the next node at or after it (one backward pass, so a
        // long run of comments costs no more than its length).
        let mut next_node = vec![None; elems.len() + 1];
        for (i, e) in elems.iter().enumerate().rev() {
            let here = match e {
                Element::Node(n) => Some(n.kind),
                Element::Piece(_) => None,
            };
            let after = next_node.get(i + 1).copied().flatten();
            if let Some(slot) = next_node.get_mut(i) {
                *slot = here.or(after);
            }
        }
        let gap = |previous: Option<NodeKind>, next: Option<NodeKind>| match (previous, next) {
            (Some(_), _) if in_file => true,
            (Some(p), Some(n)) => p != n,
            _ => false,
        };
        for (i, e) in elems.iter().enumerate() {
            if let Element::Piece(p) = e
                && p.kind == PieceKind::Space
            {
                lines += newlines(self.tree.text(p));
                continue;
            }
            // A comment right after something on the same line stays there.
            let same_line = matches!(e, Element::Piece(_)) && lines == 0 && line_open;
            if same_line {
                self.out.push(' ');
            } else {
                // `next_node[i]`: this node, or the node an own-line comment belongs with.
                let next = next_node.get(i).copied().flatten();
                let blank =
                    if since_node { lines >= 2 } else { previous.is_some() && (lines >= 2 || gap(previous, next)) };
                if blank {
                    self.blank_line();
                }
                self.new_line(indent);
            }
            match e {
                Element::Piece(p) => {
                    since_node |= !same_line;
                    let text = self.text(p).to_string();
                    self.out.push_str(&text);
                    line_open = p.kind != PieceKind::LineComment;
                    if !line_open {
                        self.out.push('\n');
                    }
                }
                Element::Node(n) => {
                    self.node(n, indent);
                    line_open = !self.out.ends_with('\n');
                    previous = Some(n.kind);
                    since_node = false;
                }
            }
            lines = 0;
        }
    }

    fn node(&mut self, n: &Node, indent: &str) {
        let cont = format!("{indent}{INDENT}{INDENT}");
        match n.kind {
            NodeKind::Definition => {
                let open = n
                    .children
                    .iter()
                    .position(|e| matches!(e, Element::Piece(p) if p.tok == Some(Tok::LBrace)))
                    .unwrap_or(n.children.len());
                let close = n
                    .children
                    .iter()
                    .rposition(|e| matches!(e, Element::Piece(p) if p.tok == Some(Tok::RBrace)))
                    .unwrap_or(n.children.len());
                let (header, inner) =
                    (n.children.get(..=open).unwrap_or(&[]), n.children.get(open + 1..close).unwrap_or(&[]));
                self.inline(header, &cont);
                let empty = inner.iter().all(|e| matches!(e, Element::Piece(p) if p.kind == PieceKind::Space));
                if empty {
                    self.out.push('}');
                } else {
                    self.list(inner, &format!("{indent}{INDENT}"), false);
                    self.new_line(indent);
                    self.out.push('}');
                }
                // Anything after the closing brace inside the node (never, for text that parses).
                self.inline(n.children.get(close + 1..).unwrap_or(&[]), &cont);
            }
            NodeKind::Caveat => {
                let body =
                    n.children.iter().position(|e| matches!(e, Element::Piece(p) if p.kind == PieceKind::CaveatBody));
                match body.and_then(|b| n.children.get(b).map(|e| (b, e))) {
                    Some((b, Element::Piece(piece))) => {
                        self.inline(n.children.get(..b).unwrap_or(&[]), &cont);
                        let text = self.tree.text(piece);
                        self.caveat_body(text, &format!("{indent}{INDENT}"));
                        self.new_line(indent);
                        let rest = n.children.get(b + 1..).unwrap_or(&[]);
                        self.inline(rest, &cont);
                    }
                    _ => self.inline(&n.children, &cont),
                }
            }
            _ => self.inline(&n.children, &cont),
        }
    }

    /// Tokens and comments on one line, one space where [`spaced`] says; a line comment ends the
    /// line and the statement goes on at `cont`.
    fn inline(&mut self, elems: &[Element], cont: &str) {
        let mut previous: Option<Tok> = None;
        let mut after_comment = false;
        let mut line_start = self.out.is_empty() || self.out.ends_with('\n') || self.out.ends_with(' ');
        let mut lines = 0;
        for e in elems {
            let Element::Piece(p) = e else { continue };
            match p.kind {
                PieceKind::Space => {
                    lines += newlines(self.tree.text(p));
                    continue;
                }
                PieceKind::Token => {
                    let tok = p.tok.clone().unwrap_or(Tok::Eof);
                    if !line_start && (after_comment || previous.as_ref().is_none_or(|prev| spaced(prev, &tok))) {
                        self.out.push(' ');
                    }
                    self.out.push_str(self.tree.text(p));
                    previous = Some(tok);
                    after_comment = false;
                    line_start = false;
                }
                PieceKind::LineComment | PieceKind::BlockComment => {
                    let text = self.text(p).to_string();
                    if lines > 0 && !line_start {
                        self.new_line(cont);
                    } else if !line_start {
                        self.out.push(' ');
                    }
                    self.out.push_str(&text);
                    if p.kind == PieceKind::LineComment {
                        self.new_line(cont);
                        line_start = true;
                    } else {
                        line_start = false;
                        after_comment = true;
                    }
                }
                PieceKind::CaveatBody => {}
            }
            lines = 0;
        }
    }

    /// A caveat body: each line that does not begin inside a string literal loses the
    /// indentation the body's lines share (spaces and tabs only) and gets `indent`; ASCII spaces
    /// and tabs at the end of a line outside a string go; blank lines at the ends go; a line
    /// that begins inside a string is kept byte for byte. A line where a `"…"` string continued
    /// with `\` opens keeps its column (rhai's value of the string depends on it; rhai counts
    /// columns from the body's start): kept as is, the body's first line (after `{`) moved to a
    /// line of its own.
    fn caveat_body(&mut self, body: &str, indent: &str) {
        let scan = scan_rhai(body);
        // (keep as written, text)
        let mut lines: Vec<(bool, String)> = Vec::new();
        let mut offset = 0;
        for line in body.split('\n') {
            let starts_in = scan.lines_in_strings.binary_search(&offset).is_ok();
            let pinned = scan.pinned_lines.binary_search(&offset).is_ok();
            offset += line.len() + 1;
            let ends_in = scan.lines_in_strings.binary_search(&offset).is_ok();
            let trimmed = if ends_in { line } else { line.trim_end_matches([' ', '\t', '\r']) };
            lines.push((starts_in || pinned, trimmed.to_string()));
        }
        let blank = |l: &(bool, String)| !l.0 && l.1.trim_start_matches([' ', '\t']).is_empty();
        let first = lines.iter().position(|l| !blank(l)).unwrap_or(lines.len());
        let last = lines.iter().rposition(|l| !blank(l)).map_or(first, |i| i + 1);
        let leading = |l: &str| l.len() - l.trim_start_matches([' ', '\t']).len();
        let shared = lines
            .iter()
            .enumerate()
            .filter(|(i, l)| *i > 0 && !l.0 && !blank(l))
            .map(|(_, l)| leading(&l.1))
            .min()
            .unwrap_or(0);
        for (i, l) in lines.iter().enumerate().take(last).skip(first) {
            self.out.push('\n');
            if l.0 {
                self.out.push_str(&l.1);
            } else if !blank(l) {
                let strip = if i == 0 { leading(&l.1) } else { shared.min(leading(&l.1)) };
                self.out.push_str(indent);
                self.out.push_str(l.1.get(strip..).unwrap_or(""));
            }
        }
    }
}

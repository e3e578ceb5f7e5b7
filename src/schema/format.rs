//! The canonical text of a schema tree (`pemba schema fmt`): four-space indentation, one blank
//! line between items, comments kept in place, the fewest parentheses that keep the tree.
//!
//! Architecture invariant: `parse(format(t))` gives `t` again (spans aside), and formatting is
//! idempotent; both are property-tested.

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

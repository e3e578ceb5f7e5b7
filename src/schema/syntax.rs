//! The lossless syntax tree of schema text: every byte of the source belongs to exactly one
//! piece (a token, white space, a comment, or a caveat's rhai body), and the pieces are grouped
//! into nodes for the items and members the parser found. `fmt` prints from this tree, so
//! nothing the author wrote (comments anywhere, a caveat's strings) can be lost.
//!
//! Architecture invariant: the concatenated pieces are the source, byte for byte
//! ([`SyntaxTree::text`], property-tested).

use super::ast::{Item, Member, SchemaAst};
use super::diagnostic::{Diagnostic, Span};
use super::lexer::{Lexer, Tok};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceKind {
    Token,
    /// White space (which the schema language ignores, except that it ends a line comment).
    Space,
    LineComment,
    BlockComment,
    /// A caveat's rhai source between its braces.
    CaveatBody,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub kind: PieceKind,
    /// The token, for [`PieceKind::Token`].
    pub tok: Option<Tok>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Use,
    Definition,
    Caveat,
    Relation,
    Permission,
    Attribute,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Element {
    Node(Node),
    Piece(Piece),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub children: Vec<Element>,
}

#[derive(Debug, Clone)]
pub struct SyntaxTree<'a> {
    pub source: &'a str,
    pub root: Node,
}

impl<'a> SyntaxTree<'a> {
    /// The tree of `source`, or its syntax errors (the tree is built only for text that parses).
    pub fn parse(source: &'a str) -> Result<(SyntaxTree<'a>, SchemaAst), Vec<Diagnostic>> {
        let (ast, diags) = super::parser::parse(source);
        if !diags.is_empty() {
            return Err(diags);
        }
        let pieces = pieces(source, &ast);
        let root = group(&ast, pieces);
        Ok((SyntaxTree { source, root }, ast))
    }

    /// The text of a piece.
    pub fn text(&self, piece: &Piece) -> &'a str {
        self.source.get(piece.span.start..piece.span.end).unwrap_or("")
    }

    /// Every piece's text in order: the source again.
    pub fn full_text(&self) -> String {
        let mut out = String::new();
        walk(&self.root, &mut |p| out.push_str(self.text(p)));
        out
    }

    /// The comments, in order, as written (line comments without trailing white space).
    pub fn comments(&self) -> Vec<&'a str> {
        let mut out = Vec::new();
        walk(&self.root, &mut |p| match p.kind {
            PieceKind::LineComment => out.push(self.text(p).trim_end()),
            PieceKind::BlockComment => out.push(self.text(p)),
            _ => {}
        });
        out
    }
}

fn walk<'p>(node: &'p Node, f: &mut dyn FnMut(&'p Piece)) {
    for c in &node.children {
        match c {
            Element::Node(n) => walk(n, f),
            Element::Piece(p) => f(p),
        }
    }
}

/// Splits white space and comments between tokens into pieces.
fn trivia(source: &str, from: usize, to: usize, out: &mut Vec<Piece>) {
    let mut i = from;
    while i < to {
        let rest = source.get(i..to).unwrap_or("");
        let (kind, len) = if rest.starts_with("//") {
            (PieceKind::LineComment, rest.find('\n').unwrap_or(rest.len()))
        } else if let Some(body) = rest.strip_prefix("/*") {
            (PieceKind::BlockComment, body.find("*/").map_or(rest.len(), |e| e + 4))
        } else {
            // Only white space lies between tokens besides comments; a stray character (never in
            // text that parses) is taken alone so the loop always moves on.
            let space = rest.char_indices().find(|(_, c)| !c.is_whitespace()).map_or(rest.len(), |(j, _)| j);
            let one = rest.chars().next().map_or(1, char::len_utf8);
            (PieceKind::Space, if space == 0 { one } else { space })
        };
        let len = len.max(1);
        out.push(Piece { kind, tok: None, span: Span::new(i, (i + len).min(to)) });
        i += len;
    }
}

/// Every piece of the source, in order.
fn pieces(source: &str, ast: &SchemaAst) -> Vec<Piece> {
    let bodies: Vec<Span> = ast
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Caveat(c) => Some(c.body_span),
            _ => None,
        })
        .collect();
    let mut lexer = Lexer::new(source);
    let mut diags = Vec::new();
    let mut out = Vec::new();
    let mut end = 0;
    // Bodies come in source order: the next one is the only one that can start here.
    let mut next_body = bodies.iter().peekable();
    loop {
        while next_body.next_if(|b| b.start < end).is_some() {}
        if let Some(body) = next_body.next_if(|b| b.start == end) {
            out.push(Piece { kind: PieceKind::CaveatBody, tok: None, span: *body });
            end = body.end;
            lexer.seek(end);
        }
        let token = lexer.next_token(&mut diags);
        trivia(source, end, token.span.start, &mut out);
        if token.tok == Tok::Eof {
            break;
        }
        end = token.span.end;
        out.push(Piece { kind: PieceKind::Token, tok: Some(token.tok), span: token.span });
    }
    out
}

/// Where a node starts (its keyword's offset) and what it is; members are nested in their
/// definition.
struct Bounds {
    start: usize,
    kind: NodeKind,
    members: Vec<(usize, NodeKind)>,
}

/// Groups pieces into the item and member nodes the parser found: an item runs from its keyword
/// to its last token, a member from its keyword to the token before the next member's keyword
/// or the definition's closing brace. White space and comments between nodes stay in the
/// parent.
fn group(ast: &SchemaAst, pieces: Vec<Piece>) -> Node {
    let tokens: Vec<usize> = pieces.iter().filter(|p| p.kind == PieceKind::Token).map(|p| p.span.start).collect();
    // The keyword of a name: the token just before it.
    let keyword = |name: usize| -> usize {
        let at = tokens.partition_point(|t| *t < name);
        at.checked_sub(1).and_then(|i| tokens.get(i)).copied().unwrap_or(name)
    };
    let items: Vec<Bounds> = ast
        .items
        .iter()
        .map(|item| match item {
            Item::Use(u) => Bounds { start: keyword(u.feature.span.start), kind: NodeKind::Use, members: Vec::new() },
            Item::Caveat(c) => {
                Bounds { start: keyword(c.name.span.start), kind: NodeKind::Caveat, members: Vec::new() }
            }
            Item::Definition(d) => Bounds {
                start: keyword(d.name.span.start),
                kind: NodeKind::Definition,
                members: d
                    .members
                    .iter()
                    .map(|m| {
                        let kind = match m {
                            Member::Relation(_) => NodeKind::Relation,
                            Member::Permission(_) => NodeKind::Permission,
                            Member::Attribute(_) => NodeKind::Attribute,
                        };
                        (keyword(m.name().span.start), kind)
                    })
                    .collect(),
            },
        })
        .collect();
    let mut root = Node { kind: NodeKind::File, children: Vec::new() };
    let mut rest = pieces.into_iter().peekable();
    for (n, item) in items.iter().enumerate() {
        let next_start = items.get(n + 1).map_or(usize::MAX, |b| b.start);
        while let Some(p) = rest.next_if(|p| p.span.start < item.start) {
            root.children.push(Element::Piece(p));
        }
        // The item's pieces: up to the next item's keyword, less the trivia before it.
        let mut own: Vec<Piece> = Vec::new();
        while let Some(p) = rest.next_if(|p| p.span.start < next_start) {
            own.push(p);
        }
        let last_token = own.iter().rposition(|p| p.kind == PieceKind::Token).map_or(0, |i| i + 1);
        let after = own.split_off(last_token);
        let node =
            if item.kind == NodeKind::Definition { definition(own, &item.members) } else { leaf(item.kind, own) };
        root.children.push(Element::Node(node));
        root.children.extend(after.into_iter().map(Element::Piece));
    }
    root.children.extend(rest.map(Element::Piece));
    root
}

fn leaf(kind: NodeKind, pieces: Vec<Piece>) -> Node {
    Node { kind, children: pieces.into_iter().map(Element::Piece).collect() }
}

/// A definition's pieces (keyword to closing brace) with its members grouped.
fn definition(pieces: Vec<Piece>, members: &[(usize, NodeKind)]) -> Node {
    let mut node = Node { kind: NodeKind::Definition, children: Vec::new() };
    let close = pieces.iter().rposition(|p| p.tok == Some(Tok::RBrace)).unwrap_or(pieces.len());
    let mut rest = pieces.into_iter().enumerate().peekable();
    for (n, (start, kind)) in members.iter().enumerate() {
        let next_start = members.get(n + 1).map_or(usize::MAX, |m| m.0);
        while let Some((_, p)) = rest.next_if(|(_, p)| p.span.start < *start) {
            node.children.push(Element::Piece(p));
        }
        let mut own: Vec<Piece> = Vec::new();
        while let Some((_, p)) = rest.next_if(|(i, p)| p.span.start < next_start && *i < close) {
            own.push(p);
        }
        let last_token = own.iter().rposition(|p| p.kind == PieceKind::Token).map_or(0, |i| i + 1);
        let after = own.split_off(last_token);
        node.children.push(Element::Node(leaf(*kind, own)));
        node.children.extend(after.into_iter().map(Element::Piece));
    }
    node.children.extend(rest.map(|(_, p)| Element::Piece(p)));
    node
}

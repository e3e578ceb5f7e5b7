//! The schema language: SpiceDB's, with `attribute` declarations and rhai caveat bodies.
//! Text goes through the [`lexer`], the [`parser`] (a tree plus diagnostics), the [`compiler`]
//! (a [`CompiledSchema`]) and back to text through [`format`].
//!
//! Architecture invariant: nothing here knows rhai; caveat bodies are compiled by `conditions`.

pub mod ast;
pub mod compiler;
pub mod diagnostic;
pub mod format;
pub mod lexer;
pub mod parser;
pub mod syntax;

pub use compiler::{
    AllowedKind, AllowedType, ArrowId, CaveatId, CompiledSchema, Definition, DefinitionId, Member, MemberId,
    MemberKind, Permission, PermissionId, Relation, RelationId, Rewrite, SchemaViolation,
};
pub use diagnostic::{Diagnostic, Span};

use crate::conditions::Conditions;

/// Parses and compiles schema text. On failure, every problem found (syntax first; the compiler
/// runs only on text that parses).
pub fn compile_text(source: &str, conditions: &Conditions) -> Result<CompiledSchema, Vec<Diagnostic>> {
    let (ast, diags) = parser::parse(source);
    if !diags.is_empty() {
        return Err(diags);
    }
    compiler::compile(&ast, conditions)
}

/// The canonical layout of schema source (`pemba schema fmt`), printed from its lossless
/// syntax tree, or its syntax errors. Formatting can lengthen text (indentation): output over
/// [`parser::MAX_SCHEMA_BYTES`] is refused, so `fmt` never turns a schema within the limit into
/// one beyond it.
pub fn format_text(source: &str) -> Result<String, Vec<Diagnostic>> {
    let (tree, _) = syntax::SyntaxTree::parse(source)?;
    let out = format::print(&tree);
    if out.len() > parser::MAX_SCHEMA_BYTES {
        return Err(vec![Diagnostic::new(
            format!(
                "formatted, the schema would be {} bytes, over the limit of {}; it is left as written",
                out.len(),
                parser::MAX_SCHEMA_BYTES
            ),
            Span::new(0, 0),
        )]);
    }
    Ok(out)
}

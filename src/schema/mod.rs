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

/// The canonical text of schema source, or its syntax errors.
pub fn format_text(source: &str) -> Result<String, Vec<Diagnostic>> {
    let (ast, diags) = parser::parse(source);
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(format::format(&ast))
}

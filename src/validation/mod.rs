//! Validation files in SpiceDB's `zed validate` format: a schema (inline or `schemaFile`),
//! relationships one per line, assertions (`assertTrue`, `assertFalse`, `assertCaveated`, each
//! optionally `… with {json context}`) and expected relations (`validation:`). Loading turns a
//! file into checked values; [`run`] decides them with the reference evaluator.
//!
//! Architecture invariant: the only module that knows YAML. It decides nothing itself: every
//! answer comes from `engine`.

pub mod agreement;
pub mod expected;
pub mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::conditions::Conditions;
use crate::engine::{CheckRequest, Decision, Env, Tuples};
use crate::model::{Relationship, Timestamp};
use crate::query::Snapshot;
use crate::schema::{self, CompiledSchema};

pub use report::{Failure, FileReport};

/// Largest validation file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawFile {
    schema: Option<String>,
    schema_file: Option<String>,
    relationships: Option<String>,
    assertions: Option<RawAssertions>,
    validation: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAssertions {
    assert_true: Option<Vec<String>>,
    assert_false: Option<Vec<String>>,
    assert_caveated: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertKind {
    True,
    False,
    Caveated,
}

impl AssertKind {
    pub fn name(self) -> &'static str {
        match self {
            AssertKind::True => "assertTrue",
            AssertKind::False => "assertFalse",
            AssertKind::Caveated => "assertCaveated",
        }
    }

    fn accepts(self, d: &Decision) -> bool {
        matches!(
            (self, d),
            (AssertKind::True, Decision::Has)
                | (AssertKind::False, Decision::No)
                | (AssertKind::Caveated, Decision::Conditional(_))
        )
    }
}

#[derive(Debug, Clone)]
pub struct Assertion {
    pub kind: AssertKind,
    pub text: String,
    pub request: CheckRequest,
}

/// A loaded validation file: the schema compiled, relationships checked against it.
#[derive(Debug, Clone)]
pub struct ValidationFile {
    pub schema: CompiledSchema,
    pub schema_text: String,
    pub tuples: Tuples,
    pub assertions: Vec<Assertion>,
    /// `resource#relation` → expected subject lines, as written.
    pub expected: BTreeMap<String, Vec<String>>,
}

/// Parses `resource#permission@subject` with an optional ` with {json}` context
/// ([`CheckRequest::parse`], its error as text).
pub fn parse_check(text: &str) -> Result<CheckRequest, String> {
    CheckRequest::parse(text).map_err(|e| e.to_string())
}

/// Loads and checks a validation file. Every problem is reported, not only the first.
pub fn load(path: &Path, conditions: &Conditions) -> Result<ValidationFile, Vec<String>> {
    let text = crate::text::read_limited(path, MAX_FILE_BYTES).map_err(|e| vec![e.to_string()])?;
    load_text(&text, path.parent().unwrap_or(Path::new(".")), &path.display().to_string(), conditions)
}

/// The deepest YAML nesting a validation file may have; deeper input is refused before the YAML
/// parser sees it (it took 40 s to reject 100,000 levels).
pub const MAX_YAML_DEPTH: usize = 64;

/// The first line (1-based) where YAML nests deeper than `max`, found by one pass over the text:
/// open flow brackets outside quotes and comments, plus block levels (indentation and `- `
/// entries); block scalars (`|`, `>`: the schema, the relationships) are skipped. An
/// over-estimate at worst, never an under-estimate of what the parser will nest.
fn too_deep(text: &str, max: usize) -> Option<usize> {
    let mut flow = 0usize;
    let mut indents: Vec<usize> = Vec::new();
    // Inside a block scalar: the indentation of the line that opened it.
    let mut scalar: Option<usize> = None;
    for (n, line) in text.lines().enumerate() {
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        if let Some(parent) = scalar {
            if content.trim().is_empty() || indent > parent {
                continue;
            }
            scalar = None;
        }
        if content.trim().is_empty() || content.starts_with('#') {
            continue;
        }
        if flow == 0 {
            while indents.last().is_some_and(|i| *i > indent) {
                indents.pop();
            }
            if indents.last().is_none_or(|i| *i < indent) {
                indents.push(indent);
            }
        }
        // Block entries on the line (`- - x`, `? - x`) each nest one level.
        let mut entries = 0;
        let mut rest = content;
        while let Some(r) = rest
            .strip_prefix("- ")
            .or_else(|| rest.strip_prefix("? "))
            .or_else(|| (rest == "-" || rest == "?").then_some(""))
        {
            entries += 1;
            rest = r.trim_start_matches(' ');
        }
        let mut quote: Option<char> = None;
        let mut last = ' ';
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            match (quote, c) {
                (Some('"'), '\\') => {
                    chars.next();
                }
                (Some('\''), '\'') if chars.peek() == Some(&'\'') => {
                    chars.next();
                }
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                // A quote opens a scalar only where one starts (`a'b` is a plain scalar).
                (None, '"' | '\'') if matches!(last, ' ' | '[' | '{' | ',' | ':') => quote = Some(c),
                (None, '#') if last == ' ' => break,
                (None, '[' | '{') => flow += 1,
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
            if indents.len() + entries + flow > max {
                return Some(n + 1);
            }
            last = c;
        }
        if indents.len() + entries + flow > max {
            return Some(n + 1);
        }
        // A block scalar's header: `|` or `>`, then up to two of an indentation digit and a
        // chomping indicator, then white space or a comment.
        let plain = rest.split(" #").next().unwrap_or("").split("\t#").next().unwrap_or("").trim_end();
        let header = plain.rsplit([' ', '\t']).next().unwrap_or("");
        let is_header = header
            .strip_prefix(['|', '>'])
            .is_some_and(|r| r.len() <= 2 && r.chars().all(|c| matches!(c, '1'..='9' | '+' | '-')));
        if flow == 0 && is_header {
            scalar = Some(indent);
        }
    }
    None
}

/// Loads validation-file text; `base` resolves `schemaFile`, `name` labels diagnostics.
pub fn load_text(text: &str, base: &Path, name: &str, conditions: &Conditions) -> Result<ValidationFile, Vec<String>> {
    if let Some(line) = too_deep(text, MAX_YAML_DEPTH) {
        return Err(vec![format!(
            "{name}:{line}: the YAML is nested deeper than {MAX_YAML_DEPTH} levels (a validation file needs about 4)"
        )]);
    }
    let raw: RawFile = serde_yaml_ng::from_str(text).map_err(|e| vec![format!("invalid validation file: {e}")])?;
    let (schema_text, schema_name) = match (&raw.schema, &raw.schema_file) {
        (Some(s), None) => (s.clone(), format!("{name} (schema)")),
        (None, Some(f)) => {
            let p = base.join(f);
            let s = crate::text::read_limited(&p, schema::parser::MAX_SCHEMA_BYTES)
                .map_err(|e| vec![format!("schemaFile: {e}")])?;
            (s, p.display().to_string())
        }
        (Some(_), Some(_)) => return Err(vec!["give either `schema` or `schemaFile`, not both".into()]),
        (None, None) => return Err(vec!["the file has neither `schema` nor `schemaFile`".into()]),
    };
    let schema = schema::compile_text(&schema_text, conditions).map_err(|diags| {
        vec![schema::diagnostic::render_all(&diags, &schema_name, &schema_text).trim_end().to_string()]
    })?;
    let mut errors = Vec::new();
    let mut tuples = Tuples::new();
    let mut seen = BTreeSet::new();
    for (i, line) in raw.relationships.as_deref().unwrap_or("").lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let at = format!("relationship line {}", i + 1);
        match Relationship::parse(line) {
            Err(e) => errors.push(format!("{at}: {e}")),
            Ok(rel) => {
                if let Err(e) = schema.check_relationship(&rel) {
                    errors.push(format!("{at}: `{line}`: {e}"));
                } else if !seen.insert(rel.key()) {
                    errors.push(format!("{at}: `{line}` is a duplicate of an earlier relationship"));
                } else {
                    tuples.insert(rel);
                }
            }
        }
    }
    let mut assertions = Vec::new();
    let raw_assertions = raw.assertions.unwrap_or_default();
    for (kind, list) in [
        (AssertKind::True, raw_assertions.assert_true),
        (AssertKind::False, raw_assertions.assert_false),
        (AssertKind::Caveated, raw_assertions.assert_caveated),
    ] {
        for text in list.unwrap_or_default() {
            match parse_check(&text) {
                Ok(request) => assertions.push(Assertion { kind, text, request }),
                Err(e) => errors.push(format!("{} `{text}`: {e}", kind.name())),
            }
        }
    }
    let expected = match expected::parse_section(raw.validation.as_ref()) {
        Ok(e) => e,
        Err(e) => {
            errors.push(e);
            BTreeMap::new()
        }
    };
    if errors.is_empty() {
        Ok(ValidationFile { schema, schema_text, tuples, assertions, expected })
    } else {
        Err(errors)
    }
}

/// Runs a loaded file: every assertion by Check, the expected relations, and (when `agreement`
/// is given, within that time) the agreement checks between every evaluation path.
pub fn run_with(
    file: &ValidationFile,
    conditions: &Conditions,
    now: Timestamp,
    agreement: Option<std::time::Duration>,
) -> FileReport {
    let mut report = run(file, conditions, now);
    if let Some(budget) = agreement {
        agreement::check_agreement(file, conditions, Env::new(now), &mut report, budget);
    }
    report
}

/// Runs a loaded file's assertions and expected relations.
pub fn run(file: &ValidationFile, conditions: &Conditions, now: Timestamp) -> FileReport {
    let env = Env::new(now);
    let mut report = FileReport::default();
    // Assertions are decided by the fast path (the index), as the database decides them; the
    // agreement checks compare it with the reference evaluator.
    let index = std::sync::Arc::new(crate::index::IndexGraph::from_tuples(&file.tuples));
    let snapshot = Snapshot::detached(file.schema.clone(), index, conditions, now).with_limits(env.limits);
    for a in &file.assertions {
        report.assertions += 1;
        match snapshot.check(&a.request) {
            Ok(d) if a.kind.accepts(&d) => report.assertions_passed += 1,
            Ok(d) => report
                .failures
                .push(Failure { what: format!("{} `{}`", a.kind.name(), a.text), detail: format!("got {d}") }),
            Err(e) => report
                .failures
                .push(Failure { what: format!("{} `{}`", a.kind.name(), a.text), detail: format!("error: {e}") }),
        }
    }
    expected::check_all(file, conditions, env, &mut report);
    report
}

/// Context values carried by an assertion, for display.
pub fn context_text(ctx: &Map<String, Value>) -> String {
    Value::Object(ctx.clone()).to_string()
}

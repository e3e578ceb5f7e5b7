//! Expected relations (`validation:`): parsing the section and comparing it with the subjects the
//! evaluator finds.

use std::collections::BTreeMap;

use super::{Failure, FileReport, ValidationFile};
use crate::conditions::Conditions;
use crate::engine::expand::{FoundSubject, found_subjects};
use crate::engine::{Ctx, Env, Tri};
use crate::model::{ObjectRef, SubjectRef};

/// Parses the `validation:` section: a map from `type:id#relation` to a list of subject lines.
/// `null` and `{}` mean no expectations.
pub fn parse_section(value: Option<&serde_yaml_ng::Value>) -> Result<BTreeMap<String, Vec<String>>, String> {
    let Some(value) = value else { return Ok(BTreeMap::new()) };
    if value.is_null() {
        return Ok(BTreeMap::new());
    }
    let map = value.as_mapping().ok_or("`validation` must be a map from `type:id#relation` to a list of subjects")?;
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let key = k.as_str().ok_or("`validation` keys must be strings such as `document:1#view`")?;
        let lines = match v {
            serde_yaml_ng::Value::Null => Vec::new(),
            serde_yaml_ng::Value::Sequence(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("`validation` entry `{key}`: every item must be a string"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(format!("`validation` entry `{key}` must be a list of strings")),
        };
        out.insert(key.to_string(), lines);
    }
    Ok(out)
}

/// One expected-subject line, parsed as zed does: the subject between the first `[` and the last
/// `]`, an optional `[...]` caveat mark, optional ` - {…}` exclusions, and every `<type:id#rel>`
/// path anywhere in the line. Lists are kept sorted, as zed compares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedSubject {
    pub subject: SubjectRef,
    pub caveated: bool,
    pub excluded: Vec<String>,
    pub paths: Vec<String>,
}

pub fn parse_line(line: &str) -> Result<ExpectedSubject, String> {
    let (Some(open), Some(close)) = (line.find('['), line.rfind(']')) else {
        return Err(format!("no expected subject specified in `{line}`"));
    };
    let inner = line
        .get(open + 1..close)
        .filter(|_| open < close)
        .ok_or_else(|| format!("no expected subject specified in `{line}`"))?;
    let inner = inner.trim();
    let invalid = || format!("invalid subject: `{inner}`");
    let end = inner.find(|c: char| c.is_whitespace() || c == '[').unwrap_or(inner.len());
    let (subject_text, mut rest) = inner.split_at(end);
    let subject = SubjectRef::parse(subject_text).map_err(|_| invalid())?;
    let caveated = rest.starts_with("[...]");
    if caveated {
        rest = &rest[5..];
    }
    let mut excluded = Vec::new();
    if !rest.is_empty() {
        let body = rest
            .strip_prefix(|c: char| c.is_whitespace())
            .map(str::trim_start)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.strip_prefix(|c: char| c.is_whitespace()))
            .map(str::trim_start)
            .and_then(|r| r.strip_prefix('{'))
            .and_then(|r| r.strip_suffix('}'))
            .filter(|b| !b.trim().is_empty())
            .ok_or_else(invalid)?;
        for item in body.split(',') {
            let (text, mark) = match item.strip_suffix("[...]") {
                Some(t) => (t, true),
                None => (item, false),
            };
            let s = SubjectRef::parse(text.trim()).map_err(|_| invalid())?;
            excluded.push(if mark { format!("{s}[...]") } else { s.to_string() });
        }
        excluded.sort();
    }
    let mut paths = Vec::new();
    let mut tail = line;
    while let Some(i) = tail.find('<') {
        let after = &tail[i + 1..];
        let Some(j) = after.find('>') else { break };
        let text = &after[..j];
        paths.push(parse_path(text).ok_or_else(|| format!("invalid resource and relation: `{text}`"))?);
        tail = &after[j + 1..];
    }
    paths.sort();
    Ok(ExpectedSubject { subject, caveated, excluded, paths })
}

fn parse_path(text: &str) -> Option<String> {
    let (o, r) = text.split_once('#')?;
    let o = ObjectRef::parse(o).ok()?;
    crate::model::valid_relation_name(r).then(|| format!("<{o}#{r}>"))
}

/// Compares every `validation:` entry with the subjects the evaluator finds, as zed does: the
/// same subjects, and for each the same relationship paths, exclusions and caveat mark.
pub fn check_all(file: &ValidationFile, conditions: &Conditions, env: Env, report: &mut FileReport) {
    for (key, lines) in &file.expected {
        report.expected_relations += 1;
        let fail = |report: &mut FileReport, detail: String| {
            report.failures.push(Failure { what: format!("validation `{key}`"), detail })
        };
        let Some((object, relation)) = key.split_once('#').and_then(|(o, r)| Some((ObjectRef::parse(o).ok()?, r)))
        else {
            fail(report, format!("could not parse `{key}`: expected `type:id#relation`"));
            continue;
        };
        let ctx = Ctx { schema: &file.schema, data: &file.tuples, conditions, env };
        let found = match found_subjects(&ctx, &object, relation) {
            Ok(f) => f,
            Err(e) => {
                fail(report, format!("error: {e}"));
                continue;
            }
        };
        let mut unlisted: BTreeMap<&SubjectRef, &FoundSubject> = found.iter().map(|f| (&f.subject, f)).collect();
        let mut problems = Vec::new();
        for line in lines {
            let expected = match parse_line(line) {
                Ok(e) => e,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            let shown = |e: &ExpectedSubject| e.subject.to_string();
            let Some(actual) = found.iter().find(|f| f.subject == expected.subject) else {
                problems.push(format!(
                    "For object and permission/relation `{key}`, missing expected subject `{}`",
                    shown(&expected)
                ));
                continue;
            };
            unlisted.remove(&actual.subject);
            let actual_paths: Vec<String> = actual.paths.iter().map(|(o, r)| format!("<{o}#{r}>")).collect();
            if actual_paths != expected.paths {
                problems.push(format!(
                    "For object and permission/relation `{key}`, found different relationships for subject `{}`: Specified: `{}`, Computed: `{}`",
                    shown(&expected),
                    expected.paths.join("/"),
                    actual_paths.join("/")
                ));
            }
            let mut actual_excluded: Vec<String> =
                actual.excluded.iter().map(|(s, c)| if *c { format!("{s}[...]") } else { s.to_string() }).collect();
            actual_excluded.sort();
            if actual.subject.is_wildcard() {
                if actual_excluded != expected.excluded {
                    problems.push(format!(
                        "For object and permission/relation `{key}`, found different excluded subjects for subject `{}`: Specified: `{}`, Computed: `{}`",
                        shown(&expected),
                        expected.excluded.join(", "),
                        actual_excluded.join(", ")
                    ));
                }
            } else if !expected.excluded.is_empty() {
                problems.push(format!(
                    "For object and permission/relation `{key}`, found unexpected excluded subjects for subject `{}`",
                    shown(&expected)
                ));
            }
            if expected.caveated != matches!(actual.value, Tri::Unknown(_)) {
                problems.push(format!(
                    "For object and permission/relation `{key}`, found caveat mismatch for subject `{}`",
                    shown(&expected)
                ));
            }
        }
        for f in unlisted.values() {
            problems.push(format!(
                "For object and permission/relation `{key}`, subject `{}` found but not listed in expected subjects (computed: `{}`)",
                f.subject,
                f.validation_line()
            ));
        }
        if !problems.is_empty() {
            fail(report, problems.join("\n"));
        }
    }
}

//! Expected relations (`validation:`): parsing the section and comparing it with the subjects the
//! evaluator finds.

use std::collections::BTreeMap;

use super::{FileReport, ValidationFile};
use crate::conditions::Conditions;
use crate::engine::Env;

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
                .map(|i| i.as_str().map(str::to_string).ok_or_else(|| format!("`validation` entry `{key}`: every item must be a string")))
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(format!("`validation` entry `{key}` must be a list of strings")),
        };
        out.insert(key.to_string(), lines);
    }
    Ok(out)
}

pub fn check_all(file: &ValidationFile, _conditions: &Conditions, _env: Env, report: &mut FileReport) {
    for key in file.expected.keys() {
        report.errors.push(format!("validation entry `{key}`: expected relations are not supported yet"));
    }
}

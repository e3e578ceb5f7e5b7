//! The outcome of running one validation file, and its text and JSON renderings.

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Failure {
    /// What was checked, e.g. "assertTrue `document:1#view@user:tom`".
    pub what: String,
    /// Why it failed: the answer obtained, or a diff.
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FileReport {
    pub assertions: usize,
    pub assertions_passed: usize,
    /// Expected-relation keys (`validation:` entries) checked.
    pub expected_relations: usize,
    /// Agreement checks made between the evaluation paths.
    pub agreement_checks: usize,
    /// Problems loading the file (schema, relationships, syntax); the file fails.
    pub errors: Vec<String>,
    pub failures: Vec<Failure>,
}

impl FileReport {
    pub fn passed(&self) -> bool {
        self.errors.is_empty() && self.failures.is_empty()
    }

    /// One summary line and then each problem, indented.
    pub fn render(&self, file: &str) -> String {
        let mut out = if self.passed() {
            format!(
                "{file}: ok ({} assertions, {} expected relations, {} agreement checks)\n",
                self.assertions, self.expected_relations, self.agreement_checks
            )
        } else {
            format!("{file}: FAILED\n")
        };
        for e in &self.errors {
            for (i, line) in e.lines().enumerate() {
                out.push_str(if i == 0 { "  error: " } else { "    " });
                out.push_str(line);
                out.push('\n');
            }
        }
        for f in &self.failures {
            out.push_str(&format!("  {}\n", f.what));
            for line in f.detail.lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
        out
    }
}

//! Input hardening (issue 16): each finding of the hostile probe, as a test that failed before
//! its fix.

use pemba::conditions::Conditions;
use pemba::schema::{compile_text, format_text};

fn verdict(text: &str) -> Result<(), Vec<String>> {
    compile_text(text, &Conditions::new()).map(|_| ()).map_err(|d| d.into_iter().map(|d| d.message).collect())
}

/// `fmt` re-indented the lines of a multi-line string in a caveat body: the string's value
/// changed, and an assertion flipped.
#[test]
fn fmt_keeps_multi_line_strings_in_caveats_byte_for_byte() {
    let text = "caveat banner(text string) {\n        text == `Welcome\n  to the\n        team`\n}\n";
    let out = format_text(text).unwrap();
    assert!(out.contains("`Welcome\n  to the\n        team`"), "{out}");
    // A `"…"` string continued with `\`: rhai skips the next line's white space up to the
    // string's opening column, so the line where it opens keeps its column.
    let text = "caveat c(s string) {\n            s == \"a\\\n               b\"\n}\n";
    let out = format_text(text).unwrap();
    assert!(out.contains("            s == \"a\\\n               b\""), "{out}");
}

/// `fmt` dropped comments inside statements (4 of 5 in a small file).
#[test]
fn fmt_keeps_every_comment_in_place() {
    let text = "definition user {}\ndefinition doc {\n  relation viewer: user /* who reads */ | user:*\n  permission view = viewer // direct\n    + /* or */ viewer\n  permission edit = viewer /* only */\n}\ncaveat c(x int /* count */) {\n  x > 1 // more than one\n}\n";
    let out = format_text(text).unwrap();
    for c in ["/* who reads */", "// direct", "/* or */", "/* only */", "/* count */", "// more than one"] {
        assert!(out.contains(c), "{c} lost:\n{out}");
    }
    assert_eq!(format_text(&out).unwrap(), out, "idempotent");
}

/// A trailing non-breaking space in a caveat body fails `check` (rhai rejects it); `fmt`
/// trimmed it, so a failing schema passed after formatting.
#[test]
fn fmt_keeps_the_check_verdict() {
    let text = "caveat c(x int) {\n  x == 1\u{a0}\n}\n";
    assert!(verdict(text).is_err());
    let out = format_text(text).unwrap();
    assert!(out.contains("x == 1\u{a0}"), "{out:?}");
    assert_eq!(verdict(&out), verdict(text));
}

/// `fmt` adds indentation: input under the 4 MiB limit could come out over it.
#[test]
fn fmt_never_turns_a_schema_within_the_limit_into_one_beyond_it() {
    let limit = pemba::schema::parser::MAX_SCHEMA_BYTES;
    let mut text = String::new();
    let mut i = 0;
    while text.len() + 64 < limit {
        text.push_str(&format!("definition d{i} {{relation r: d{i}}}\n"));
        i += 1;
    }
    assert!(text.len() <= limit);
    let err = format_text(&text).unwrap_err();
    assert!(err[0].message.contains("over the limit"), "{:?}", err[0].message);
    // Text that stays within the limit when formatted is formatted.
    let small = "definition a {relation r: a}";
    assert_eq!(format_text(small).unwrap(), "definition a {\n    relation r: a\n}\n");
}

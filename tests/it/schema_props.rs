//! Properties of the schema toolchain: the parser never panics on arbitrary input, and `fmt`
//! output re-parses to the same tree and is idempotent.

use pemba::schema::{format, parser};
use proptest::prelude::*;

/// Tokens that make up plausible (and implausible) schema text.
fn token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "definition",
        "relation",
        "permission",
        "caveat",
        "attribute",
        "use",
        "expiration",
        "with",
        "and",
        "nil",
        "user",
        "doc",
        "group",
        "member",
        "view",
        "org/team",
        "{",
        "}",
        "(",
        ")",
        ":",
        "|",
        "#",
        "+",
        "&",
        "-",
        "->",
        ".",
        "any",
        "all",
        "=",
        ",",
        "<",
        ">",
        "*",
        "int",
        "list",
        "map",
        "\n",
        " ",
        "//c\n",
        "/*",
        "*/",
        "/** d */",
        "\"",
        "x == 1",
        ";",
        "é",
        "\t",
    ])
}

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "viewer", "parent", "member", "org/x"]).prop_map(String::from)
}

fn expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        name(),
        Just("nil".to_string()),
        (name(), name()).prop_map(|(a, b)| format!("{a}->{b}")),
        (name(), name()).prop_map(|(a, b)| format!("{a}.all({b})")),
        (name(), name()).prop_map(|(a, b)| format!("{a}.any({b})")),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), prop::sample::select(vec!["+", "&", "-"]), inner.clone())
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            inner.prop_map(|e| format!("({e})")),
        ]
    })
}

fn schema_text() -> impl Strategy<Value = String> {
    let member = prop_oneof![
        (name(), prop::collection::vec((name(), 0..3u8), 1..3)).prop_map(|(n, ts)| {
            let types: Vec<String> = ts
                .into_iter()
                .map(|(t, k)| match k {
                    0 => t,
                    1 => format!("{t}:*"),
                    _ => format!("{t}#member with cav"),
                })
                .collect();
            format!("  // about {n}\n  relation {n}: {}", types.join(" | "))
        }),
        (name(), expr()).prop_map(|(n, e)| format!("  permission {n} = {e}")),
        name().prop_map(|n| format!("  attribute {n}: map<list<int>>")),
    ];
    let def = (name(), prop::collection::vec(member, 0..5))
        .prop_map(|(n, ms)| format!("/** doc for {n} */\ndefinition {n} {{\n{}\n}}", ms.join("\n")));
    let caveat = Just("caveat cav(x int, y list<string>) {\n      x == 1 &&\n        y.len() > 0\n}".to_string());
    prop::collection::vec(prop_oneof![def, caveat, Just("use expiration".to_string())], 0..4)
        .prop_map(|items| items.join("\n\n"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parser_never_panics_on_token_soup(tokens in prop::collection::vec(token(), 0..80)) {
        let text = tokens.join(" ");
        let _ = parser::parse(&text);
        let _ = pemba::schema::compile_text(&text, &pemba::conditions::Conditions::new());
    }

    #[test]
    fn parser_never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        let _ = parser::parse(&text);
    }

    #[test]
    fn fmt_round_trips_and_is_idempotent(text in schema_text()) {
        let (ast, diags) = parser::parse(&text);
        prop_assert!(diags.is_empty(), "generated text did not parse: {diags:?}\n{text}");
        let formatted = format::format(&ast);
        let (again, diags) = parser::parse(&formatted);
        prop_assert!(diags.is_empty(), "formatted text did not parse: {diags:?}\n{formatted}");
        prop_assert_eq!(ast.without_spans(), again.without_spans(), "{}", formatted);
        prop_assert_eq!(format::format(&again), formatted);
    }
}

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

// `fmt` on text with comments and white space anywhere and caveats holding multi-line strings:
// the source is generated as tokens with a random gap (white space, a line comment, a block
// comment) between each two.

fn expr_tokens() -> impl Strategy<Value = Vec<String>> {
    let leaf = prop_oneof![
        name().prop_map(|n| vec![n]),
        Just(vec!["nil".to_string()]),
        (name(), name()).prop_map(|(a, b)| vec![a, "->".into(), b]),
        (name(), name(), prop::sample::select(vec!["any", "all"])).prop_map(|(a, b, f)| vec![
            a,
            ".".into(),
            f.into(),
            "(".into(),
            b,
            ")".into()
        ]),
    ];
    leaf.prop_recursive(3, 16, 2, |inner| {
        prop_oneof![
            (inner.clone(), prop::sample::select(vec!["+", "&", "-"]), inner.clone()).prop_map(|(mut a, op, b)| {
                a.push(op.into());
                a.extend(b);
                a
            }),
            inner.prop_map(|e| {
                let mut v = vec!["(".to_string()];
                v.extend(e);
                v.push(")".into());
                v
            }),
        ]
    })
}

/// A string literal of rhai spanning lines, with indentation inside it that must survive.
fn rhai_literal() -> impl Strategy<Value = String> {
    let part = prop::sample::select(vec![
        "a",
        "  b",
        "\tc",
        "",
        "   ",
        " d e ",
        "              f",
        "                                        g",
    ]);
    (prop::collection::vec(part, 1..4), 0..4u8).prop_map(|(parts, kind)| match kind {
        0 => format!("`{}`", parts.join("\n")),
        1 => format!("\"x{}\"", parts.iter().map(|p| format!("\\\n{p}")).collect::<String>()),
        2 => format!("#\"{}\"#", parts.join("\n")),
        _ => format!("`v${{n}}{}`", parts.join("\n")),
    })
}

/// A caveat body `s == LITERAL && n >= 0`, laid out over lines with any indentation.
fn caveat_body() -> impl Strategy<Value = (String, String)> {
    let pad = prop::sample::select(vec!["", " ", "\n", "\n  ", "\n\t", "\n\n      "]);
    (rhai_literal(), pad.clone(), pad.clone(), pad, prop::bool::ANY).prop_map(|(lit, a, b, c, comment)| {
        let note = if comment { " // n is checked\n   " } else { " " };
        (format!("{a}s == {lit}{b}&&{note}n >= 0{c}"), lit)
    })
}

fn schema_tokens() -> impl Strategy<Value = (Vec<String>, Vec<String>)> {
    let allowed = prop_oneof![
        name().prop_map(|t| vec![t]),
        name().prop_map(|t| vec![t, ":".into(), "*".into()]),
        name().prop_map(|t| vec![t, "#".into(), "member".into(), "with".into(), "cav".into()]),
        name().prop_map(|t| vec![t, "with".into(), "expiration".into()]),
    ];
    let member = prop_oneof![
        (name(), prop::collection::vec(allowed, 1..3)).prop_map(|(n, ts)| {
            let mut v = vec!["relation".to_string(), n, ":".into()];
            for (i, t) in ts.into_iter().enumerate() {
                if i > 0 {
                    v.push("|".into());
                }
                v.extend(t);
            }
            v
        }),
        (name(), expr_tokens()).prop_map(|(n, e)| {
            let mut v = vec!["permission".to_string(), n, "=".into()];
            v.extend(e);
            v
        }),
        (name(), prop::bool::ANY).prop_map(|(n, semi)| {
            let mut v: Vec<String> = ["attribute", &n, ":", "map", "<", "list", "<", "int", ">", ">"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            if semi {
                v.push(";".into());
            }
            v
        }),
    ];
    let def = (name(), prop::collection::vec(member, 0..4)).prop_map(|(n, ms)| {
        let mut v = vec!["definition".to_string(), n, "{".into()];
        v.extend(ms.into_iter().flatten());
        v.push("}".into());
        (v, Vec::new())
    });
    let caveat = caveat_body().prop_map(|(body, lit)| {
        let v = ["caveat", "cav", "(", "s", "string", ",", "n", "int", ")", "{"].iter().map(|s| s.to_string());
        let mut v: Vec<String> = v.collect();
        // The body is one raw piece: no gap is put inside it.
        v.push(format!("\u{0}{body}"));
        v.push("}".into());
        (v, vec![lit])
    });
    let item = prop_oneof![def, caveat, Just((vec!["use".to_string(), "expiration".to_string()], Vec::new()))];
    prop::collection::vec(item, 0..4).prop_map(|items| {
        let (mut tokens, mut literals) = (Vec::new(), Vec::new());
        for (t, l) in items {
            tokens.extend(t);
            literals.extend(l);
        }
        (tokens, literals)
    })
}

fn gap() -> impl Strategy<Value = u8> {
    0..12u8
}

/// Joins tokens with the chosen gaps; comments are numbered so their order can be checked.
fn layout(tokens: &[String], gaps: &[u8]) -> String {
    let mut out = String::new();
    for (i, t) in tokens.iter().enumerate() {
        if let Some(body) = t.strip_prefix('\u{0}') {
            out.push_str(body);
            continue;
        }
        if i > 0 && !tokens[i - 1].starts_with('\u{0}') {
            let g = gaps.get(i % gaps.len().max(1)).copied().unwrap_or(0);
            out.push_str(&match g {
                0 | 1 => " ".to_string(),
                2 => "\n".to_string(),
                3 => "\n\n\n".to_string(),
                4 => format!(" // c{i}\n"),
                5 => format!("\n// own {i}\n"),
                6 => format!(" /* b{i} */ "),
                7 => format!("\n   /* m{i}\n      more */\n"),
                8 => "\t".to_string(),
                9 => format!("\n\n// para {i}\n\n"),
                _ => "  ".to_string(),
            });
        }
        out.push_str(t);
    }
    out
}

fn without_bodies(mut ast: pemba::schema::ast::SchemaAst) -> pemba::schema::ast::SchemaAst {
    for item in &mut ast.items {
        if let pemba::schema::ast::Item::Caveat(c) = item {
            c.body = String::new();
        }
    }
    ast.without_spans()
}

/// The answer of each caveat `cav` in the text for `s` = the literal's value, n = 1.
fn caveat_bodies(text: &str) -> Vec<String> {
    let (ast, _) = parser::parse(text);
    ast.items
        .iter()
        .filter_map(|i| match i {
            pemba::schema::ast::Item::Caveat(c) => Some(c.body.clone()),
            _ => None,
        })
        .collect()
}

/// The answer of each caveat `cav` in `text` for n = 1 and `s` = its literal's value as written
/// in `original` (rhai skips white space after a `\` line continuation up to the string's
/// opening column, counted from the body's start).
fn caveat_answers(text: &str, original: &str, literals: &[String]) -> Vec<String> {
    let conditions = pemba::conditions::Conditions::new();
    let engine = rhai::Engine::new();
    let mut out = Vec::new();
    for ((body, written), lit) in caveat_bodies(text).into_iter().zip(caveat_bodies(original)).zip(literals) {
        let mut scope = rhai::Scope::new();
        scope.push("n", 1_i64);
        let at = written.find(lit.as_str()).unwrap();
        let column = written[..at].rsplit('\n').next().unwrap().chars().count();
        let placed = format!("{}{lit}", " ".repeat(column));
        let value: String = engine.eval_expression_with_scope(&mut scope, &placed).unwrap();
        let params =
            [("s".to_string(), pemba::model::ParamType::String), ("n".to_string(), pemba::model::ParamType::Int)];
        let answer = match conditions.compile("cav", &params, &body) {
            Err(e) => format!("compile error: {e}"),
            Ok(c) => {
                let mut context = serde_json::Map::new();
                context.insert("s".into(), value.into());
                context.insert("n".into(), 1.into());
                let empty = serde_json::Map::new();
                let env =
                    pemba::conditions::Env { now: pemba::model::Timestamp::now(), resource: &empty, subject: &empty };
                format!("{:?}", conditions.evaluate(&c, &context, &serde_json::Map::new(), env))
            }
        };
        out.push(answer);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn fmt_keeps_every_comment_and_string_and_is_idempotent(
        (tokens, literals) in schema_tokens(),
        gaps in prop::collection::vec(gap(), 1..40),
    ) {
        use pemba::schema::syntax::SyntaxTree;
        let text = layout(&tokens, &gaps);
        let (tree, ast) = SyntaxTree::parse(&text).map_err(|d| TestCaseError::fail(format!("{d:?}\n{text}")))?;
        prop_assert_eq!(tree.full_text(), text.clone(), "the tree is lossless");
        let formatted = pemba::schema::format_text(&text).unwrap();
        let (again_tree, again) =
            SyntaxTree::parse(&formatted).map_err(|d| TestCaseError::fail(format!("{d:?}\n{formatted}")))?;
        prop_assert_eq!(without_bodies(ast), without_bodies(again), "same tree\n{}\n---\n{}", text, formatted);
        prop_assert_eq!(tree.comments(), again_tree.comments(), "every comment kept, in order\n{}", formatted);
        let before = caveat_answers(&text, &text, &literals);
        prop_assert!(before.iter().all(|a| a == "Ok(True)"), "the generated caveats hold: {:?}\n{}", before, text);
        prop_assert_eq!(caveat_answers(&formatted, &text, &literals), before, "caveat answers\n{}", formatted);
        let conditions = pemba::conditions::Conditions::new();
        let verdict = |t: &str| pemba::schema::compile_text(t, &conditions).map(|_| ()).map_err(|d| {
            d.iter().map(|d| d.message.clone()).collect::<Vec<_>>()
        });
        prop_assert_eq!(verdict(&text), verdict(&formatted), "check gives the same verdict");
        prop_assert_eq!(pemba::schema::format_text(&formatted).unwrap(), formatted.clone(), "idempotent");
    }
}

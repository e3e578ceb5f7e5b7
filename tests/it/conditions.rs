//! A corpus of type-confused caveat bodies: every parameter type against every other type,
//! through every construct that compares (the operators, `in`, `contains`, `index_of`, array and
//! map equality, `switch`, `??`), each in both polarities. Where the types do not compare, no
//! body may allow: each is an error (at compile time or run time), as the README documents.

use pemba::conditions::{ConditionError, Conditions, Env, Outcome};
use pemba::model::{ParamType, Timestamp};
use serde_json::{Map, Value, json};

/// A parameter type, a value of it, and the family it compares within.
fn typed() -> Vec<(ParamType, Value, &'static str)> {
    use ParamType as T;
    vec![
        (T::Int, json!(1), "number"),
        (T::Uint, json!(1), "number"),
        (T::Double, json!(1.0), "number"),
        (T::Any, json!(1), "number"),
        (T::Bool, json!(true), "bool"),
        (T::String, json!("1"), "string"),
        (T::Any, json!("1"), "string"),
        (T::Bytes, json!("1"), "bytes"),
        (T::List(Box::new(T::Int)), json!([1]), "list"),
        (T::Any, json!([1]), "list"),
        (T::Map(Box::new(T::Int)), json!({"k": 1}), "map"),
        (T::Any, json!({"k": 1}), "map"),
        (T::Timestamp, json!("2025-01-01T00:00:00Z"), "timestamp"),
        (T::Duration, json!("1h"), "duration"),
        (T::IpAddress, json!("10.0.0.1"), "ipaddress"),
        (T::Any, Value::Null, "null"),
    ]
}

/// Every construct that compares `a` with `b`, each with its negation.
const CONSTRUCTS: [&str; 22] = [
    "a == b",
    "!(a == b)",
    "a != b",
    "!(a != b)",
    "a < b",
    "!(a < b)",
    "a >= b",
    "!(a >= b)",
    "a in [b]",
    "!(a in [b])",
    "[b].contains(a)",
    "![b].contains(a)",
    "[b].index_of(a) >= 0",
    "[b].index_of(a) < 0",
    "[a] == [b]",
    "[a] != [b]",
    "#{k: a} == #{k: b}",
    "#{k: a} != #{k: b}",
    "switch a { 1 => true, \"1\" => true, _ => false }",
    "switch a { 1 => false, \"1\" => false, _ => true }",
    "(a ?? b) == b",
    "(a ?? b) != b",
];

#[test]
fn type_confused_bodies_never_allow() {
    let conditions = Conditions::new();
    let empty = Map::new();
    let env = Env { now: Timestamp::from_unix_seconds(0), resource: &empty, subject: &empty };
    let mut allowed = Vec::new();
    let mut checked = 0;
    for (ta, va, fa) in typed() {
        for (tb, vb, fb) in typed() {
            if fa == fb {
                continue;
            }
            let params = vec![("a".to_string(), ta.clone()), ("b".to_string(), tb.clone())];
            let ctx = json!({"a": va, "b": vb}).as_object().cloned().unwrap();
            for body in CONSTRUCTS {
                checked += 1;
                let outcome = conditions
                    .compile("c", &params, body)
                    .and_then(|c| conditions.evaluate(&c, &Map::new(), &ctx, env));
                match outcome {
                    Err(ConditionError::Runtime { .. } | ConditionError::Compile { .. }) => {}
                    Ok(Outcome::False) if body.starts_with("switch") || body.contains("??") => {
                        allowed.push(format!("{body} compiled ({ta}, {tb})"))
                    }
                    other => allowed.push(format!("{body} with a: {ta} = {va}, b: {tb} = {vb} gave {other:?}")),
                }
            }
        }
    }
    assert!(checked > 4000, "{checked}");
    assert!(allowed.is_empty(), "{} of {checked} bodies did not fail:\n{}", allowed.len(), allowed.join("\n"));
}

/// The same values of one family compare as documented (the corpus above does not simply fail
/// everything): numbers across int, uint and double, strings, bytes, lists and maps by value.
#[test]
fn values_of_one_family_compare() {
    let conditions = Conditions::new();
    let empty = Map::new();
    let env = Env { now: Timestamp::from_unix_seconds(0), resource: &empty, subject: &empty };
    for (ta, va, fa) in typed() {
        for (tb, vb, fb) in typed() {
            if fa != fb || fa == "null" {
                continue;
            }
            let params = vec![("a".to_string(), ta.clone()), ("b".to_string(), tb.clone())];
            let ctx = json!({"a": va, "b": vb}).as_object().cloned().unwrap();
            for body in ["a == b", "a in [b]", "[a] == [b]", "#{k: a} == #{k: b}", "[b].index_of(a) == 0"] {
                let c = conditions.compile("c", &params, body).unwrap();
                assert_eq!(conditions.evaluate(&c, &Map::new(), &ctx, env), Ok(Outcome::True), "{body}: {ta} {tb}");
            }
        }
    }
}

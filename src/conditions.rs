//! Conditions (caveats) written in rhai: the hardened engine, compilation of caveat bodies, typed
//! conversion of context values and three-valued evaluation.
//!
//! This is the only module that knows rhai. It knows nothing about schemas' other contents,
//! relationships or storage: it is handed a caveat's parameters and body, and later the context
//! values, the endpoints' attributes and `now`.
//!
//! The rules that keep rhai's permissive defaults from turning into an allow:
//! - a caveat's value must be a `bool`; anything else is an error, never a truthy value;
//! - variables must be declared (parameters, `resource`, `subject`, `now`), checked at compile time;
//! - reading a missing map key is an error, not `()`;
//! - comparing values of different types (`"1" == 1`, `() < 3`) is an error, not `false`; only
//!   `int` and `double` mix, numerically. This holds wherever rhai compares: the operators, `in`,
//!   arrays' `contains` and `index_of`, array and map equality (all call the strict `==`); the
//!   constructs that compare silently (`switch`, which skips a case of another type) or turn a
//!   missing value into a default (`??`) are refused when the schema is compiled, with why;
//! - an `int` or `uint` parameter accepts an integral number however JSON spells it (`100.0`, as
//!   a `google.protobuf.Struct` carries every number) and refuses a fractional one;
//! - a context value of the wrong type for its parameter is an error naming the parameter;
//! - the engine has no I/O, no modules, no `eval`, and hard limits on operations, depth and sizes.

use std::net::IpAddr;

use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicBlobPackage, BasicMapPackage, BasicMathPackage, BasicStringPackage,
    LogicPackage, MoreStringPackage, Package,
};
use rhai::{Dynamic, Engine, EvalAltResult, FLOAT, INT, ImmutableString, Position, Scope};
use serde_json::{Map, Value};

use crate::model::{Duration, ParamType, Timestamp};

/// Most rhai operations one caveat evaluation may take.
pub const MAX_OPERATIONS: u64 = 100_000;
/// Deepest expression nesting in a caveat body (and in functions it defines).
pub const MAX_EXPR_DEPTH: usize = 64;
/// Longest string a caveat may build, in bytes.
pub const MAX_STRING_SIZE: usize = 64 * 1024;
/// Largest array or map a caveat may build or receive.
pub const MAX_COLLECTION_SIZE: usize = 10_000;
/// Deepest function-call nesting (closures passed to `all` / `some` count).
pub const MAX_CALL_LEVELS: usize = 16;

/// Longest wall-clock time one caveat evaluation may take.
pub const MAX_EVAL_TIME: std::time::Duration = std::time::Duration::from_millis(100);

/// Constructs a caveat body may not use, and why (the compile error says it).
pub const REFUSED: [(&str, &str); 9] = [
    (
        "switch",
        "it matches a case only when the value has the case's type and otherwise falls through silently (an int `1` skips the case `\"1\"`); compare with `==`, which fails on mixed types",
    ),
    ("??", "it turns a missing value into a default; test for presence explicitly (`\"key\" in map`)"),
    ("eval", "a caveat is one expression"),
    ("while", "loops are not allowed: a caveat is one expression"),
    ("loop", "loops are not allowed: a caveat is one expression"),
    ("for", "loops are not allowed: a caveat is one expression"),
    ("do", "loops are not allowed: a caveat is one expression"),
    ("import", "modules are not allowed"),
    ("export", "modules are not allowed"),
];

/// Names every condition sees besides its parameters.
pub const BUILTIN_VARIABLES: [&str; 3] = ["resource", "subject", "now"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    /// The body does not compile; the position is relative to the start of the body (1-based).
    #[error("{message}")]
    Compile { message: String, line: usize, column: usize },
    #[error("context value for parameter `{param}` of caveat `{caveat}` is not a valid {expected}: {detail}")]
    WrongType { caveat: String, param: String, expected: String, detail: String },
    #[error("caveat `{caveat}` failed: {message}")]
    Runtime { caveat: String, message: String },
    #[error("caveat `{caveat}` returned a value of type `{got}`, not a bool")]
    NotBool { caveat: String, got: String },
}

/// The result of evaluating one caveat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    True,
    False,
    /// Declared parameters for which no context value was supplied, sorted.
    Missing(Vec<String>),
}

/// A caveat body compiled once per schema version.
#[derive(Debug, Clone)]
pub struct CompiledCondition {
    name: String,
    params: Vec<(String, ParamType)>,
    ast: rhai::AST,
}

impl CompiledCondition {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn params(&self) -> &[(String, ParamType)] {
        &self.params
    }
}

/// What a condition sees besides its parameters.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    pub now: Timestamp,
    /// Stored attributes of the relationship's resource (empty until the store exists).
    pub resource: &'a Map<String, Value>,
    /// Stored attributes of the relationship's subject.
    pub subject: &'a Map<String, Value>,
}

/// The hardened rhai engine. Build one and share it: it is `Send + Sync`, and a clone shares the
/// same engine.
#[derive(Clone)]
pub struct Conditions {
    engine: std::sync::Arc<Engine>,
}

impl std::fmt::Debug for Conditions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Conditions")
    }
}

impl Default for Conditions {
    fn default() -> Self {
        Self::new()
    }
}

thread_local! {
    /// Operations counted and the deadline of the evaluation running on this thread.
    static BUDGET: std::cell::Cell<(u64, Option<std::time::Instant>)> = const { std::cell::Cell::new((0, None)) };
}

/// The message of a rhai error: a limit's own words when the progress callback stopped it,
/// otherwise rhai's text (which names the call chain).
fn error_message(e: EvalAltResult) -> String {
    let mut cause = &e;
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _) = cause {
        cause = inner;
    }
    match cause {
        EvalAltResult::ErrorTerminated(reason, _) => reason.to_string(),
        _ => e.to_string(),
    }
}

fn runtime_err(msg: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(Dynamic::from(msg.into()), Position::NONE))
}

fn type_label(v: &Dynamic) -> String {
    if v.is::<Timestamp>() {
        "timestamp".into()
    } else if v.is::<Duration>() {
        "duration".into()
    } else if v.is::<IpAddr>() {
        "ipaddress".into()
    } else {
        v.type_name().rsplit("::").next().unwrap_or("?").to_string()
    }
}

/// Refuses a comparison between values that rhai would otherwise silently call unequal.
fn mismatched(op: &str, a: &Dynamic, b: &Dynamic) -> Box<EvalAltResult> {
    runtime_err(format!("cannot apply `{op}` to a `{}` and a `{}`", type_label(a), type_label(b)))
}

impl Conditions {
    pub fn new() -> Conditions {
        let mut engine = Engine::new_raw();
        // Not `CorePackage`: its language core holds `sleep` (which blocks past every limit) and
        // `exit` (which ends the evaluation with any value, bypassing the bool rule).
        let packages = [
            ArithmeticPackage::new().as_shared_module(),
            LogicPackage::new().as_shared_module(),
            BasicArrayPackage::new().as_shared_module(),
            BasicMapPackage::new().as_shared_module(),
            BasicBlobPackage::new().as_shared_module(),
            BasicStringPackage::new().as_shared_module(),
            MoreStringPackage::new().as_shared_module(),
            BasicMathPackage::new().as_shared_module(),
        ];
        for p in packages {
            engine.register_global_module(p);
        }
        engine
            .set_max_operations(MAX_OPERATIONS)
            .set_max_expr_depths(MAX_EXPR_DEPTH, MAX_EXPR_DEPTH)
            .set_max_string_size(MAX_STRING_SIZE)
            .set_max_array_size(MAX_COLLECTION_SIZE)
            .set_max_map_size(MAX_COLLECTION_SIZE)
            .set_max_call_levels(MAX_CALL_LEVELS)
            .set_strict_variables(true)
            .set_fail_on_invalid_map_property(true)
            // Registered comparison functions must be consulted before rhai's built-in fallback
            // for mixed types (see `register_strict_comparisons`), and constant folding must not
            // apply that fallback at compile time.
            .set_fast_operators(false)
            .set_optimization_level(rhai::OptimizationLevel::None);
        // Loops are statements, and a caveat is one expression; keep them out anyway so that the
        // operation limit is the only thing standing between a body and a long run. `switch`
        // and `??` would let a type mismatch or a missing value decide silently.
        for (symbol, _) in REFUSED {
            engine.disable_symbol(symbol);
        }
        // rhai restarts its own operation count inside closures called from native functions
        // (`list.all(|x| …)`), so a nested map over two lists could run for seconds under
        // `set_max_operations`. The progress callback counts every operation of an evaluation
        // on this thread, and also enforces a wall-clock limit.
        engine.on_progress(|_| {
            BUDGET.with(|b| {
                let (ops, deadline) = b.get();
                let ops = ops + 1;
                b.set((ops, deadline));
                if ops > MAX_OPERATIONS {
                    return Some(Dynamic::from(format!("exceeded the limit of {MAX_OPERATIONS} operations")));
                }
                if ops % 256 == 0 && deadline.is_some_and(|d| std::time::Instant::now() > d) {
                    return Some(Dynamic::from(format!("exceeded the time limit of {MAX_EVAL_TIME:?}")));
                }
                None
            })
        });
        register_types(&mut engine);
        register_strict_comparisons(&mut engine);
        Conditions { engine: std::sync::Arc::new(engine) }
    }

    /// Compiles a caveat body. Parameters must have distinct names; the body may use them and
    /// [`BUILTIN_VARIABLES`].
    pub fn compile(
        &self,
        name: &str,
        params: &[(String, ParamType)],
        body: &str,
    ) -> Result<CompiledCondition, ConditionError> {
        let mut scope = Scope::new();
        for v in BUILTIN_VARIABLES {
            scope.push_dynamic(v, Dynamic::UNIT);
        }
        for (p, _) in params {
            scope.push_dynamic(p.as_str(), Dynamic::UNIT);
        }
        let ast = self.engine.compile_expression_with_scope(&scope, body).map_err(|e| {
            let pos = e.position();
            let message = match e.err_type() {
                rhai::ParseErrorType::Reserved(symbol) | rhai::ParseErrorType::UnknownOperator(symbol) => {
                    match REFUSED.iter().find(|(s, _)| s == symbol) {
                        Some((s, why)) => format!("`{s}` is not allowed in a caveat: {why}"),
                        None => e.err_type().to_string(),
                    }
                }
                rhai::ParseErrorType::BadInput(rhai::LexError::UnexpectedInput(s)) => unexpected_input(s),
                other => other.to_string(),
            };
            ConditionError::Compile { message, line: pos.line().unwrap_or(1), column: pos.position().unwrap_or(1) }
        })?;
        Ok(CompiledCondition { name: name.to_string(), params: params.to_vec(), ast })
    }

    /// Evaluates a caveat: `stored` (context on the relationship) wins over `request` (context
    /// sent with the check). If any parameter is missing from both, the outcome is
    /// [`Outcome::Missing`] listing all of them and the body is not run.
    pub fn evaluate(
        &self,
        cond: &CompiledCondition,
        stored: &Map<String, Value>,
        request: &Map<String, Value>,
        env: Env<'_>,
    ) -> Result<Outcome, ConditionError> {
        let mut missing: Vec<String> = cond
            .params
            .iter()
            .filter(|(p, _)| !stored.contains_key(p) && !request.contains_key(p))
            .map(|(p, _)| p.clone())
            .collect();
        if !missing.is_empty() {
            missing.sort();
            return Ok(Outcome::Missing(missing));
        }
        let mut scope = Scope::new();
        let any = ParamType::Any;
        let attrs = |m: &Map<String, Value>, what: &str| {
            to_dynamic(&Value::Object(m.clone()), &any).map_err(|detail| ConditionError::WrongType {
                caveat: cond.name.clone(),
                param: what.to_string(),
                expected: "attribute map".into(),
                detail,
            })
        };
        scope.push_dynamic("resource", attrs(env.resource, "resource")?);
        scope.push_dynamic("subject", attrs(env.subject, "subject")?);
        scope.push_dynamic("now", Dynamic::from(env.now));
        for (p, ty) in &cond.params {
            let Some(raw) = stored.get(p).or_else(|| request.get(p)) else {
                continue;
            };
            let value = to_dynamic(raw, ty).map_err(|detail| ConditionError::WrongType {
                caveat: cond.name.clone(),
                param: p.clone(),
                expected: ty.to_string(),
                detail,
            })?;
            scope.push_dynamic(p.as_str(), value);
        }
        BUDGET.with(|b| b.set((0, std::time::Instant::now().checked_add(MAX_EVAL_TIME))));
        let result = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut scope, &cond.ast)
            .map_err(|e| ConditionError::Runtime { caveat: cond.name.clone(), message: error_message(*e) })?;
        match result.as_bool() {
            Ok(true) => Ok(Outcome::True),
            Ok(false) => Ok(Outcome::False),
            Err(_) => Err(ConditionError::NotBool { caveat: cond.name.clone(), got: type_label(&result) }),
        }
    }

    /// Checks that a context value fits a declared type (used when writing relationships).
    pub fn check_value(value: &Value, ty: &ParamType) -> Result<(), String> {
        to_dynamic(value, ty).map(|_| ())
    }
}

/// rhai's "Unexpected ' '" for a character it does not take, with the character named: a
/// no-break space or a zero-width one shows as nothing in a message.
fn unexpected_input(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_graphic()) {
        return format!("unexpected `{s}`");
    }
    let named: Vec<String> = s
        .chars()
        .map(|c| match c {
            '\u{a0}' => "U+00A0 (a no-break space)".to_string(),
            '\u{200b}' => "U+200B (a zero-width space)".to_string(),
            '\u{feff}' => "U+FEFF (a byte-order mark)".to_string(),
            c if c.is_ascii_graphic() => format!("`{c}`"),
            c if c.is_whitespace() || c.is_control() => {
                format!("U+{:04X} (a white-space or control character)", c as u32)
            }
            c => format!("`{c}` (U+{:04X})", c as u32),
        })
        .collect();
    let space = s.chars().any(|c| c.is_whitespace() && !c.is_ascii());
    let why = if space { ": rhai takes only ASCII white space between tokens" } else { "" };
    format!("unexpected character {}{why}", named.join(" "))
}

/// Converts a JSON context value to the rhai value of its declared type.
fn to_dynamic(value: &Value, ty: &ParamType) -> Result<Dynamic, String> {
    let wrong = || format!("got `{value}`");
    let s = || value.as_str().ok_or_else(wrong);
    Ok(match ty {
        ParamType::Int => Dynamic::from(integral(value)?),
        ParamType::Uint => {
            let i = integral(value)?;
            if i < 0 {
                return Err(format!("`{value}` is negative"));
            }
            Dynamic::from(i)
        }
        ParamType::Double => Dynamic::from(value.as_f64().ok_or_else(wrong)? as FLOAT),
        ParamType::Bool => Dynamic::from(value.as_bool().ok_or_else(wrong)?),
        ParamType::String => Dynamic::from(ImmutableString::from(s()?)),
        ParamType::Bytes => match value {
            Value::String(st) => Dynamic::from_blob(st.as_bytes().to_vec()),
            Value::Array(items) => {
                let mut blob = Vec::with_capacity(items.len());
                for it in items {
                    let b = it.as_u64().and_then(|b| u8::try_from(b).ok()).ok_or_else(wrong)?;
                    blob.push(b);
                }
                Dynamic::from_blob(blob)
            }
            _ => return Err(wrong()),
        },
        ParamType::Duration => Dynamic::from(Duration::parse(s()?).map_err(|e| e.to_string())?),
        ParamType::Timestamp => Dynamic::from(Timestamp::parse(s()?).map_err(|e| e.to_string())?),
        ParamType::IpAddress => {
            let ip: IpAddr = s()?.parse().map_err(|_| format!("`{value}` is not an IP address"))?;
            Dynamic::from(ip)
        }
        ParamType::List(inner) => {
            let items = value.as_array().ok_or_else(wrong)?;
            if items.len() > MAX_COLLECTION_SIZE {
                return Err(format!("list of {} items exceeds the limit of {MAX_COLLECTION_SIZE}", items.len()));
            }
            let mut out = rhai::Array::with_capacity(items.len());
            for it in items {
                out.push(to_dynamic(it, inner)?);
            }
            Dynamic::from_array(out)
        }
        ParamType::Map(inner) => {
            let obj = value.as_object().ok_or_else(wrong)?;
            if obj.len() > MAX_COLLECTION_SIZE {
                return Err(format!("map of {} entries exceeds the limit of {MAX_COLLECTION_SIZE}", obj.len()));
            }
            let mut out = rhai::Map::new();
            for (k, v) in obj {
                out.insert(k.as_str().into(), to_dynamic(v, inner)?);
            }
            Dynamic::from_map(out)
        }
        ParamType::Any => match value {
            Value::Null => Dynamic::UNIT,
            Value::Bool(b) => Dynamic::from(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Dynamic::from(i as INT),
                None => Dynamic::from(n.as_f64().unwrap_or(f64::NAN) as FLOAT),
            },
            Value::String(st) => Dynamic::from(ImmutableString::from(st.as_str())),
            Value::Array(_) => to_dynamic(value, &ParamType::List(Box::new(ParamType::Any)))?,
            Value::Object(_) => to_dynamic(value, &ParamType::Map(Box::new(ParamType::Any)))?,
        },
    })
}

/// An integer from a JSON number: an integer as written, or a double with no fractional part
/// (JSON-like clients, `google.protobuf.Struct` among them, send every number as a double), within
/// the range of rhai's integers.
fn integral(value: &Value) -> Result<INT, String> {
    if let Some(i) = value.as_i64() {
        return Ok(i as INT);
    }
    if value.as_u64().is_some() {
        return Err(format!("`{value}` is above the largest supported integer ({})", INT::MAX));
    }
    let f = value.as_f64().ok_or_else(|| format!("got `{value}`"))?;
    if f.fract() != 0.0 || !f.is_finite() {
        return Err(format!("`{value}` is not an integer"));
    }
    // `INT::MAX as f64` rounds up to 2^63, which is out of range: compare against it exclusively.
    if f < INT::MIN as FLOAT || f >= INT::MAX as FLOAT {
        return Err(format!("`{value}` is outside the range of a 64-bit integer"));
    }
    Ok(f as INT)
}

fn register_types(engine: &mut Engine) {
    engine.register_type_with_name::<Timestamp>("timestamp");
    engine.register_type_with_name::<Duration>("duration");
    engine.register_type_with_name::<IpAddr>("ipaddress");
    engine.register_fn("timestamp", |s: &str| -> Result<Timestamp, Box<EvalAltResult>> {
        Timestamp::parse(s).map_err(|e| runtime_err(e.to_string()))
    });
    engine.register_fn("duration", |s: &str| -> Result<Duration, Box<EvalAltResult>> {
        Duration::parse(s).map_err(|e| runtime_err(e.to_string()))
    });
    engine.register_fn("ipaddress", |s: &str| -> Result<IpAddr, Box<EvalAltResult>> {
        s.parse::<IpAddr>().map_err(|_| runtime_err(format!("`{s}` is not an IP address")))
    });
    engine.register_fn("in_cidr", in_cidr);
    engine.register_fn("to_string", |t: &mut Timestamp| t.to_string());
    engine.register_fn("to_string", |d: &mut Duration| d.to_string());
    engine.register_fn("to_string", |ip: &mut IpAddr| ip.to_string());
    let over = |e: &str| runtime_err(format!("time arithmetic overflowed in `{e}`"));
    engine.register_fn("+", move |t: Timestamp, d: Duration| -> Result<Timestamp, Box<EvalAltResult>> {
        t.0.checked_add(d.0).map(Timestamp).ok_or_else(|| over("+"))
    });
    engine.register_fn("-", move |t: Timestamp, d: Duration| -> Result<Timestamp, Box<EvalAltResult>> {
        t.0.checked_sub(d.0).map(Timestamp).ok_or_else(|| over("-"))
    });
    engine.register_fn("-", move |a: Timestamp, b: Timestamp| -> Result<Duration, Box<EvalAltResult>> {
        a.0.checked_sub(b.0).map(Duration).ok_or_else(|| over("-"))
    });
    engine.register_fn("+", move |a: Duration, b: Duration| -> Result<Duration, Box<EvalAltResult>> {
        a.0.checked_add(b.0).map(Duration).ok_or_else(|| over("+"))
    });
    engine.register_fn("-", move |a: Duration, b: Duration| -> Result<Duration, Box<EvalAltResult>> {
        a.0.checked_sub(b.0).map(Duration).ok_or_else(|| over("-"))
    });
    macro_rules! ordered {
        ($t:ty) => {
            engine.register_fn("==", |a: $t, b: $t| a == b);
            engine.register_fn("!=", |a: $t, b: $t| a != b);
            engine.register_fn("<", |a: $t, b: $t| a < b);
            engine.register_fn("<=", |a: $t, b: $t| a <= b);
            engine.register_fn(">", |a: $t, b: $t| a > b);
            engine.register_fn(">=", |a: $t, b: $t| a >= b);
        };
    }
    ordered!(Timestamp);
    ordered!(Duration);
    engine.register_fn("==", |a: IpAddr, b: IpAddr| a == b);
    engine.register_fn("!=", |a: IpAddr, b: IpAddr| a != b);
}

/// `ip.in_cidr("10.0.0.0/8")`: whether the address lies in the network.
fn in_cidr(ip: &mut IpAddr, cidr: &str) -> Result<bool, Box<EvalAltResult>> {
    let bad = || runtime_err(format!("`{cidr}` is not a CIDR network such as `10.0.0.0/8`"));
    let (net, len) = cidr.split_once('/').ok_or_else(bad)?;
    let net: IpAddr = net.parse().map_err(|_| bad())?;
    let len: u32 = len.parse().map_err(|_| bad())?;
    match (*ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            Ok(u32::from(a) & mask == u32::from(n) & mask)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            Ok(u128::from(a) & mask == u128::from(n) & mask)
        }
        (_, IpAddr::V4(_)) if len <= 32 => Ok(false),
        (_, IpAddr::V6(_)) if len <= 128 => Ok(false),
        _ => Err(bad()),
    }
}

/// The comparison operators for rhai's primitive types. rhai's own fallback answers `false` (and
/// `true` for `!=`) when the operand types differ; with fast operators turned off, registered
/// functions are tried before that fallback, and these answer a type mismatch with an error.
/// Exact-type registrations (timestamps, arrays, maps) still win over these `Dynamic` ones.
fn register_strict_comparisons(engine: &mut Engine) {
    use std::cmp::Ordering;
    fn compare(op: &str, a: &Dynamic, b: &Dynamic) -> Result<Ordering, Box<EvalAltResult>> {
        let ordering = if let (Ok(x), Ok(y)) = (a.as_int(), b.as_int()) {
            Some(x.cmp(&y))
        } else if let (Some(x), Some(y)) = (number(a), number(b)) {
            x.partial_cmp(&y)
        } else if let (Some(x), Some(y)) = (a.read_lock::<ImmutableString>(), b.read_lock::<ImmutableString>()) {
            Some(x.as_str().cmp(y.as_str()))
        } else if let (Ok(x), Ok(y)) = (a.as_char(), b.as_char()) {
            Some(x.cmp(&y))
        } else if let (Ok(x), Ok(y)) = (a.as_bool(), b.as_bool()) {
            if op == "==" || op == "!=" { Some(x.cmp(&y)) } else { return Err(mismatched(op, a, b)) }
        } else if a.is_unit() && b.is_unit() && (op == "==" || op == "!=") {
            Some(Ordering::Equal)
        } else if let (Some(x), Some(y)) = (a.read_lock::<rhai::Blob>(), b.read_lock::<rhai::Blob>()) {
            // Bytes are equal or not; they have no order.
            if op == "==" || op == "!=" {
                Some(if *x == *y { Ordering::Equal } else { Ordering::Less })
            } else {
                return Err(mismatched(op, a, b));
            }
        } else {
            return Err(mismatched(op, a, b));
        };
        // NaN compares with nothing: every comparison but `!=` is false.
        ordering.ok_or_else(|| runtime_err(format!("cannot apply `{op}` to NaN")))
    }
    fn number(v: &Dynamic) -> Option<FLOAT> {
        v.as_int().map(|i| i as FLOAT).ok().or_else(|| v.as_float().ok())
    }
    macro_rules! strict {
        ($op:literal, $test:expr) => {
            engine.register_fn($op, |a: Dynamic, b: Dynamic| -> Result<bool, Box<EvalAltResult>> {
                compare($op, &a, &b).map($test)
            });
        };
    }
    strict!("==", |o: Ordering| o == Ordering::Equal);
    strict!("!=", |o: Ordering| o != Ordering::Equal);
    strict!("<", |o: Ordering| o == Ordering::Less);
    strict!("<=", |o: Ordering| o != Ordering::Greater);
    strict!(">", |o: Ordering| o == Ordering::Greater);
    strict!(">=", |o: Ordering| o != Ordering::Less);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(params: &[(&str, ParamType)], body: &str, ctx: Value) -> Result<Outcome, ConditionError> {
        let c = Conditions::new();
        let params: Vec<_> = params.iter().map(|(n, t)| (n.to_string(), t.clone())).collect();
        let cond = c.compile("t", &params, body)?;
        let empty = Map::new();
        let ctx = ctx.as_object().cloned().unwrap_or_default();
        let env = Env { now: Timestamp::from_unix_seconds(0), resource: &empty, subject: &empty };
        c.evaluate(&cond, &Map::new(), &ctx, env)
    }

    #[test]
    fn mismatched_types_are_errors_not_false() {
        let p = [("a", ParamType::Any), ("b", ParamType::Any)];
        let r = eval(&p, "a == b", serde_json::json!({"a": "1", "b": 1}));
        assert!(matches!(r, Err(ConditionError::Runtime { .. })), "{r:?}");
        let r = eval(&p, "a != b", serde_json::json!({"a": "1", "b": 1}));
        assert!(matches!(r, Err(ConditionError::Runtime { .. })), "{r:?}");
        let r = eval(&p, "a < b", serde_json::json!({"a": null, "b": 1}));
        assert!(matches!(r, Err(ConditionError::Runtime { .. })), "{r:?}");
        assert_eq!(eval(&p, "a == b", serde_json::json!({"a": 1, "b": 1.0})), Ok(Outcome::True));
        assert_eq!(eval(&p, "a == b", serde_json::json!({"a": "x", "b": "x"})), Ok(Outcome::True));
    }

    #[test]
    fn missing_map_key_is_an_error() {
        let p = [("m", ParamType::Map(Box::new(ParamType::Any)))];
        let r = eval(&p, "m.missing == 1", serde_json::json!({"m": {}}));
        assert!(matches!(r, Err(ConditionError::Runtime { .. })), "{r:?}");
    }

    #[test]
    fn timestamps_and_durations() {
        let p = [("t", ParamType::Timestamp), ("d", ParamType::Duration)];
        let ctx = serde_json::json!({"t": "2025-01-01T01:00:00+01:00", "d": "1h30m"});
        assert_eq!(eval(&p, r#"t == timestamp("2025-01-01T00:00:00Z")"#, ctx.clone()), Ok(Outcome::True));
        assert_eq!(eval(&p, r#"t + d > timestamp("2025-01-01T01:29:00Z")"#, ctx.clone()), Ok(Outcome::True));
        assert_eq!(eval(&p, r#"d == duration("90m")"#, ctx), Ok(Outcome::True));
    }

    #[test]
    fn ip_in_cidr() {
        let p = [("ip", ParamType::IpAddress)];
        assert_eq!(eval(&p, r#"ip.in_cidr("10.0.0.0/8")"#, serde_json::json!({"ip": "10.2.3.4"})), Ok(Outcome::True));
        assert_eq!(eval(&p, r#"ip.in_cidr("10.1.0.0/16")"#, serde_json::json!({"ip": "10.2.3.4"})), Ok(Outcome::False));
        let r = eval(&p, "ip.in_cidr(\"nonsense\")", serde_json::json!({"ip": "10.2.3.4"}));
        assert!(matches!(r, Err(ConditionError::Runtime { .. })));
    }

    #[test]
    fn missing_parameters_are_listed() {
        let p = [("b", ParamType::Int), ("a", ParamType::Int)];
        assert_eq!(eval(&p, "a == b", serde_json::json!({})), Ok(Outcome::Missing(vec!["a".into(), "b".into()])));
    }

    #[test]
    fn non_bool_and_unbounded_bodies_are_errors() {
        let p = [("a", ParamType::Int)];
        assert!(matches!(eval(&p, "a + 1", serde_json::json!({"a": 1})), Err(ConditionError::NotBool { .. })));
        let r = eval(&[], "[1,2,3].all(|x| x > 0) && \"x\".pad(100000, 'x') == \"\"", serde_json::json!({}));
        assert!(matches!(r, Err(ConditionError::Runtime { .. })), "{r:?}");
        assert!(matches!(eval(&[], "undefined_var", serde_json::json!({})), Err(ConditionError::Compile { .. })));
        let wrong = eval(&p, "a == 1", serde_json::json!({"a": "one"}));
        assert!(matches!(wrong, Err(ConditionError::WrongType { .. })));
    }

    #[test]
    fn closures_work_for_all_and_some() {
        let p = [("l", ParamType::List(Box::new(ParamType::Int)))];
        assert_eq!(eval(&p, "l.all(|i| i >= 42)", serde_json::json!({"l": [42, 43]})), Ok(Outcome::True));
        assert_eq!(eval(&p, "l.all(|i| i >= 42)", serde_json::json!({"l": []})), Ok(Outcome::True));
        assert_eq!(eval(&p, "l.some(|i| i >= 42)", serde_json::json!({"l": [1]})), Ok(Outcome::False));
        assert_eq!(eval(&p, "42 in l", serde_json::json!({"l": [1, 42]})), Ok(Outcome::True));
    }

    /// A wrong allow: `switch` matched `1` against the case `"1"` silently, so the default arm
    /// allowed. Refused now, as is `??`, each with why.
    #[test]
    fn switch_and_coalescing_are_refused_saying_why() {
        let p = [("x", ParamType::Int)];
        for (body, word) in [(r#"switch x { "1" => false, _ => true }"#, "switch"), ("x ?? true", "??")] {
            match eval(&p, body, serde_json::json!({"x": 1})) {
                Err(ConditionError::Compile { message, .. }) => {
                    assert!(message.starts_with(&format!("`{word}` is not allowed in a caveat: ")), "{message}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    /// `in`, `contains`, `index_of` and array and map equality compare through the strict `==`:
    /// a mismatch is an error, in either polarity, never a silent `false`.
    #[test]
    fn implicit_comparisons_follow_the_mixed_type_rule() {
        let p = [("x", ParamType::Int)];
        let ctx = serde_json::json!({"x": 1});
        for body in [
            r#"x in ["1"]"#,
            r#"!(x in ["1"])"#,
            r#"["1"].contains(x)"#,
            r#"["1"].index_of(x) < 0"#,
            r#"[x] == ["1"]"#,
            r#"[x] != ["1"]"#,
            r#"#{k: x} != #{k: "1"}"#,
        ] {
            let r = eval(&p, body, ctx.clone());
            assert!(matches!(r, Err(ConditionError::Runtime { .. })), "{body}: {r:?}");
        }
        assert_eq!(eval(&p, "x in [2, 1]", ctx.clone()), Ok(Outcome::True));
        assert_eq!(eval(&p, "[2, 3].index_of(x) < 0", ctx.clone()), Ok(Outcome::True));
        assert_eq!(eval(&p, "#{k: x} == #{k: 1}", ctx), Ok(Outcome::True));
    }

    /// JSON-like clients send `100` as `100.0`: an integral value is an int (or a uint when not
    /// negative); a fractional one is an error naming the parameter.
    #[test]
    fn integral_numbers_are_ints() {
        let p = [("x", ParamType::Int), ("u", ParamType::Uint), ("l", ParamType::List(Box::new(ParamType::Int)))];
        let ok =
            eval(&p, "x == 100 && u == 7 && l == [1, -2]", serde_json::json!({"x": 100.0, "u": 7.0, "l": [1.0, -2.0]}));
        assert_eq!(ok, Ok(Outcome::True));
        for (ctx, param, detail) in [
            (serde_json::json!({"x": 1.5, "u": 1, "l": []}), "x", "`1.5` is not an integer"),
            (serde_json::json!({"x": 1, "u": -1.0, "l": []}), "u", "`-1.0` is negative"),
            (
                serde_json::json!({"x": 1e300, "u": 1, "l": []}),
                "x",
                "`1e+300` is outside the range of a 64-bit integer",
            ),
            (serde_json::json!({"x": 1, "u": 1, "l": [0.5]}), "l", "`0.5` is not an integer"),
        ] {
            match eval(&p, "true", ctx) {
                Err(ConditionError::WrongType { param: got, detail: d, .. }) => {
                    assert_eq!((got.as_str(), d.as_str()), (param, detail))
                }
                other => panic!("{param}: {other:?}"),
            }
        }
    }

    #[test]
    fn bytes_compare_for_equality_only() {
        let p = [("a", ParamType::Bytes), ("b", ParamType::Bytes)];
        assert_eq!(eval(&p, "a == b", serde_json::json!({"a": "xy", "b": [120, 121]})), Ok(Outcome::True));
        assert_eq!(eval(&p, "a != b", serde_json::json!({"a": "xy", "b": "xz"})), Ok(Outcome::True));
        assert!(matches!(
            eval(&p, "a < b", serde_json::json!({"a": "x", "b": "y"})),
            Err(ConditionError::Runtime { .. })
        ));
    }
}

//! Logic scripts (seed 001, "(beta) 特殊逻辑脚本"): JavaScript run once per record before its
//! operation is applied, in an embedded QuickJS (rquickjs).
//!
//! Why QuickJS rather than boa: QuickJS has what the sandbox needs built in, a memory limit per
//! runtime and an interrupt handler polled while the script runs (so an endless loop is stopped at
//! a deadline, uncatchably), while boa only bounds loop iterations and recursion depth; and
//! QuickJS starts a context in microseconds, so each record gets a fresh one.
//!
//! The script is the body of `function (context, repo) { ... }`:
//! - `context = {data: <the record>, operationType: "CREATE"|"UPDATE"|"DELETE"|"DISABLE"}`; the
//!   script must `return context` (it may change `context.data`: that is what is applied).
//! - `repo.executeCreate()`, `executeUpdate()`, `executeDelete()`, `executeDisable()`: the
//!   operations to apply instead of the proposed one (in call order); without any, the proposed
//!   operation is applied.
//! - `repo.abort(op)` skips that operation, `repo.abort()` every operation of the record.
//! - `repo.getObjectByID(id)`: another record of the same source (a department or member), or null.
//! - `today()`: the Unix time in seconds of today's start (UTC), to compare with `hiredate`
//!   (seconds too): `context.data.hiredate - today() <= 0` is "hired today or before".
//! - `String.prototype.contain(s)`: whether the string contains `s`.
//!
//! Sandboxed: the context has no `Date`, no `Promise`, no modules, no I/O of any kind; the only
//! clock is `today()`. Each record runs in a fresh context of one runtime with a memory limit and
//! a deadline; a record that throws or overruns fails alone, with the script's message and line.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rquickjs::context::EvalOptions;
use rquickjs::context::intrinsic::{Eval, Json, MapSet, RegExp, RegExpCompiler};
use rquickjs::{CatchResultExt, CaughtError, Context, Ctx, Function, Runtime};
use serde_json::Value;

/// The four operations of the seed's `operationType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    /// The record is new to the target.
    Create,
    /// The record changed since the target got it.
    Update,
    /// The record left the source (`on_missing = "delete"`).
    Delete,
    /// The record left the source (`on_missing = "disable"`), or a script asked for it.
    Disable,
}

impl Operation {
    /// Every operation, in the order the seed lists them.
    pub const ALL: [Operation; 4] = [Operation::Create, Operation::Update, Operation::Delete, Operation::Disable];

    /// `CREATE`, `UPDATE`, `DELETE` or `DISABLE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Disable => "DISABLE",
        }
    }

    fn parse(text: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.as_str() == text)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-record bounds of a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long one record's script may run.
    pub time: Duration,
    /// How much memory the script's runtime may hold (QuickJS's allocation limit).
    pub memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { time: Duration::from_millis(500), memory: 32 * 1024 * 1024 }
    }
}

/// A script that cannot be used: unreadable, or not valid JavaScript.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ScriptError {
    /// The script file.
    pub path: String,
    /// The read error, or the parser's message with its line.
    pub reason: String,
}

/// What the script decided for one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The record as the script returned it (`context.data`).
    pub data: Value,
    /// The operations to apply, in order; empty when the script aborted them.
    pub operations: Vec<Operation>,
    /// The operations the script aborted (`abort()` lists all four).
    pub aborted: Vec<Operation>,
}

/// A loaded, syntax-checked script.
#[derive(Debug, Clone)]
pub struct Script {
    path: String,
    source: Arc<str>,
    limits: Limits,
}

/// Compiled around the script's text: its line 1 is the script's line 1.
const WRAP_START: &str = "(function (context, repo) {";
const WRAP_END: &str = "\n})";

/// Defined in every context before the script: the seed's helpers and the `repo` object, which
/// records the script's calls in `state`. `__lookup` (Rust) answers `getObjectByID` with JSON text.
const PRELUDE: &str = r#"
Object.defineProperty(String.prototype, "contain", {
  value: function (s) { return String(this).indexOf(s) !== -1; }, writable: true, configurable: true
});
var __ops = ["CREATE", "UPDATE", "DELETE", "DISABLE"];
function __repo(state) {
  function exec(op) { return function () { state.executed.push(op); }; }
  return {
    executeCreate: exec("CREATE"),
    executeUpdate: exec("UPDATE"),
    executeDelete: exec("DELETE"),
    executeDisable: exec("DISABLE"),
    getObjectByID: function (id) {
      var found = __lookup(String(id));
      return found === undefined ? null : JSON.parse(found);
    },
    abort: function (op) {
      if (op === undefined) { state.abortAll = true; return; }
      if (__ops.indexOf(op) === -1) {
        throw new TypeError("abort: " + op + " is not one of CREATE, UPDATE, DELETE, DISABLE");
      }
      state.aborted.push(op);
    }
  };
}
function __run(main, record, operationType) {
  var state = { executed: [], aborted: [], abortAll: false };
  var context = { data: JSON.parse(record), operationType: operationType };
  var returned = main(context, __repo(state));
  if (returned === null || typeof returned !== "object" || !("data" in returned)) {
    throw new TypeError("the script must end with `return context`");
  }
  return JSON.stringify({
    data: returned.data === undefined ? null : returned.data,
    executed: state.executed, aborted: state.aborted, abortAll: state.abortAll
  });
}
"#;

impl Script {
    /// Reads and compiles the script at `path`; a syntax error is refused here, with its line.
    pub fn load(path: &Path, limits: Limits) -> Result<Script, ScriptError> {
        let error = |reason: String| ScriptError { path: path.display().to_string(), reason };
        let source = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
        Script::from_source(&path.display().to_string(), &source, limits)
    }

    /// Compiles `source` as the script named `path` (for errors and stack lines).
    pub fn from_source(path: &str, source: &str, limits: Limits) -> Result<Script, ScriptError> {
        let script = Script { path: path.to_string(), source: Arc::from(source), limits };
        let runtime = Runtime::new().map_err(|e| script.error(format!("cannot start QuickJS: {e}")))?;
        let context = sandboxed(&runtime).map_err(|e| script.error(format!("cannot start QuickJS: {e}")))?;
        context.with(|ctx| script.compile(&ctx).map(|_| ())).map_err(|reason| {
            // `path:LINE: SyntaxError: …` → `path: line LINE: SyntaxError: …`
            let located = reason.strip_prefix(&format!("{path}:")).map(|rest| format!("line {rest}"));
            script.error(located.unwrap_or(reason))
        })?;
        Ok(script)
    }

    /// The script file's path, as configured.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The per-record limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn error(&self, reason: String) -> ScriptError {
        ScriptError { path: self.path.clone(), reason }
    }

    fn compile<'js>(&self, ctx: &Ctx<'js>) -> Result<Function<'js>, String> {
        let mut options = EvalOptions::default();
        options.global = true;
        options.strict = false;
        options.filename = Some(self.path.clone());
        let text = format!("{WRAP_START}{}{WRAP_END}", self.source);
        ctx.eval_with_options::<Function<'js>, _>(text, options).catch(ctx).map_err(|e| describe(e, &self.path))
    }

    /// A runner for one run: `today` is what `today()` answers, `objects` what `getObjectByID`
    /// finds (by id, as JSON values). Not `Send`: use it on one thread (a blocking task).
    pub fn runner(&self, today: i64, objects: HashMap<String, Value>) -> Result<Runner, ScriptError> {
        let runtime = Runtime::new().map_err(|e| self.error(format!("cannot start QuickJS: {e}")))?;
        runtime.set_memory_limit(self.limits.memory);
        let deadline: Arc<Mutex<Option<Instant>>> = Arc::default();
        let watched = deadline.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || {
            watched.lock().map(|d| d.is_some_and(|d| Instant::now() >= d)).unwrap_or(true)
        })));
        let objects: Rc<HashMap<String, String>> =
            Rc::new(objects.into_iter().map(|(id, value)| (id, value.to_string())).collect());
        Ok(Runner { script: self.clone(), runtime, deadline, today, objects })
    }
}

/// The context every record runs in: the language, JSON and regular expressions; no `Date`, no
/// `Promise`, no I/O.
fn sandboxed(runtime: &Runtime) -> rquickjs::Result<Context> {
    Context::custom::<(Eval, Json, RegExpCompiler, RegExp, MapSet)>(runtime)
}

/// Runs the script record by record.
pub struct Runner {
    script: Script,
    runtime: Runtime,
    deadline: Arc<Mutex<Option<Instant>>>,
    today: i64,
    objects: Rc<HashMap<String, String>>,
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner").field("script", &self.script.path).finish_non_exhaustive()
    }
}

impl Runner {
    /// Runs the script for `record` and its proposed `operation`. `Err` is the reason the record
    /// failed: the script's exception with its line, or the limit it ran into.
    pub fn decide(&self, record: &Value, operation: Operation) -> Result<Decision, String> {
        let context = sandboxed(&self.runtime).map_err(|e| format!("cannot start QuickJS: {e}"))?;
        let limits = self.script.limits;
        if let Ok(mut deadline) = self.deadline.lock() {
            *deadline = Some(Instant::now() + limits.time);
        }
        let started = Instant::now();
        let outcome = context.with(|ctx| self.run(&ctx, record, operation));
        if let Ok(mut deadline) = self.deadline.lock() {
            *deadline = None;
        }
        drop(context);
        self.runtime.run_gc();
        let text = outcome.map_err(|reason| {
            if started.elapsed() >= limits.time && reason.contains("interrupted") {
                format!("{}: exceeded the time limit of {:?} per record", self.script.path, limits.time)
            } else if reason.contains("out of memory") {
                format!("{}: exceeded the memory limit of {} bytes ({reason})", self.script.path, limits.memory)
            } else if reason.ends_with("uncaught a null") {
                // QuickJS throws `null` when it cannot even allocate its "out of memory" error.
                format!(
                    "{}: threw null: out of memory (limit {} bytes), or a `throw null`",
                    self.script.path, limits.memory
                )
            } else {
                reason
            }
        })?;
        let answer: Value = serde_json::from_str(&text).map_err(|e| format!("unreadable script answer: {e}"))?;
        let list = |field: &str| -> Vec<Operation> {
            let mut ops: Vec<Operation> = answer[field]
                .as_array()
                .map(|items| items.iter().filter_map(|v| v.as_str().and_then(Operation::parse)).collect())
                .unwrap_or_default();
            let mut seen = Vec::new();
            ops.retain(|op| {
                let first = !seen.contains(op);
                seen.push(*op);
                first
            });
            ops
        };
        let executed = list("executed");
        let mut aborted = list("aborted");
        if answer["abortAll"].as_bool() == Some(true) {
            aborted = Operation::ALL.to_vec();
        }
        let chosen = if executed.is_empty() { vec![operation] } else { executed };
        let operations = chosen.into_iter().filter(|op| !aborted.contains(op)).collect();
        Ok(Decision { data: answer["data"].clone(), operations, aborted })
    }

    fn run(&self, ctx: &Ctx<'_>, record: &Value, operation: Operation) -> Result<String, String> {
        let path = &self.script.path;
        let fail = |e: rquickjs::Error| format!("{path}: {e}");
        let globals = ctx.globals();
        let objects = self.objects.clone();
        let lookup = Function::new(ctx.clone(), move |id: String| objects.get(&id).cloned()).map_err(fail)?;
        globals.set("__lookup", lookup).map_err(fail)?;
        let today = self.today;
        globals.set("today", Function::new(ctx.clone(), move || today as f64).map_err(fail)?).map_err(fail)?;
        ctx.eval::<(), _>(PRELUDE).catch(ctx).map_err(|e| describe(e, "prelude"))?;
        let main = self.script.compile(ctx)?;
        let run: Function<'_> = globals.get("__run").map_err(fail)?;
        run.call::<_, String>((main, record.to_string(), operation.as_str())).catch(ctx).map_err(|e| describe(e, path))
    }
}

/// The exception as `path:line: Name: message`; the line is the script's own (the wrapper adds no
/// line before it).
fn describe(error: CaughtError<'_>, path: &str) -> String {
    match error {
        CaughtError::Exception(exception) => {
            let message = exception.message().unwrap_or_default();
            let name = exception.get::<_, Option<String>>("name").ok().flatten().unwrap_or_else(|| "Error".into());
            let stack = exception.stack().unwrap_or_default();
            let line = script_line(&stack, path)
                .or_else(|| exception.get::<_, Option<i64>>("lineNumber").ok().flatten().map(|n| n.to_string()));
            match line {
                Some(line) => format!("{path}:{line}: {name}: {message}"),
                None => format!("{path}: {name}: {message}"),
            }
        }
        CaughtError::Value(value) => {
            let text = value
                .as_string()
                .and_then(|s| s.to_string().ok())
                .or_else(|| value.as_number().map(|n| n.to_string()))
                .unwrap_or_else(|| format!("a {}", value.type_name()));
            format!("{path}: uncaught {text}")
        }
        CaughtError::Error(error) => format!("{path}: {error}"),
    }
}

/// The line of the first stack frame in the script (`at … (path:LINE:COL)` or `at path:LINE:COL`).
fn script_line(stack: &str, path: &str) -> Option<String> {
    stack.lines().find_map(|frame| {
        let start = frame.find(path)? + path.len();
        let rest = frame[start..].strip_prefix(':')?;
        let line: String = rest.chars().take_while(char::is_ascii_digit).collect();
        (!line.is_empty()).then_some(line)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The seed's example, completed (examples/hr.js, as the README shows it):
    /// departments pass as proposed; members are created once hired, with their department's
    /// name; "tencent" addresses are never updated.
    pub(crate) const SEED_EXAMPLE: &str = include_str!("../../../../examples/hr.js");

    const TODAY: i64 = 1_750_000_000;

    fn start(source: &str, limits: Limits) -> Runner {
        let objects = HashMap::from([("2".to_string(), json!({"type": "department", "id": "2", "name": "R&D"}))]);
        Script::from_source("hr.js", source, limits).unwrap().runner(TODAY, objects).unwrap()
    }

    fn member(email: &str, hiredate: i64) -> Value {
        json!({"type": "member", "id": "u1", "name": "张三", "email": email, "DeptID": "2", "hiredate": hiredate})
    }

    #[test]
    fn the_seed_example_creates_hired_members_and_never_updates_tencent_addresses() {
        let runner = start(SEED_EXAMPLE, Limits::default());
        let hired = runner.decide(&member("a@example.com", TODAY - 86_400), Operation::Create).unwrap();
        assert_eq!(hired.operations, [Operation::Create]);
        assert_eq!(hired.data["departmentName"], "R&D", "getObjectByID found the department");
        let today = runner.decide(&member("a@example.com", TODAY), Operation::Create).unwrap();
        assert_eq!(today.operations, [Operation::Create], "hired today counts");
        let future = runner.decide(&member("a@example.com", TODAY + 86_400), Operation::Create).unwrap();
        assert!(future.operations.is_empty());
        assert_eq!(future.aborted, Operation::ALL);
        let update = runner.decide(&member("a@example.com", TODAY - 86_400), Operation::Update).unwrap();
        assert_eq!(update.operations, [Operation::Update], "no execute: the proposed operation");
        let tencent = runner.decide(&member("b@tencent.com", TODAY - 86_400), Operation::Update).unwrap();
        assert!(tencent.operations.is_empty());
        let gone = runner.decide(&member("b@tencent.com", TODAY - 86_400), Operation::Delete).unwrap();
        assert_eq!(gone.operations, [Operation::Delete], "only UPDATE was aborted");
        let department = json!({"type": "department", "id": "3", "name": "Ops", "parentId": "1"});
        assert_eq!(runner.decide(&department, Operation::Create).unwrap().operations, [Operation::Create]);
    }

    #[test]
    fn execute_replaces_the_proposed_operation_and_data_changes_are_kept() {
        let runner = start(
            "context.data.name = context.data.name + '!';\nrepo.executeDisable();\nrepo.executeDisable();\nreturn context;",
            Limits::default(),
        );
        let decision = runner.decide(&member("a@example.com", 0), Operation::Update).unwrap();
        assert_eq!(decision.operations, [Operation::Disable]);
        assert_eq!(decision.data["name"], "张三!");
    }

    #[test]
    fn a_syntax_error_is_refused_with_the_path_and_line() {
        let source = "var a = 1;\nvar b = ;\nreturn context;\n";
        let error = Script::from_source("/etc/yizhan/hr.js", source, Limits::default()).unwrap_err();
        assert_eq!(error.path, "/etc/yizhan/hr.js");
        assert!(error.to_string().starts_with("/etc/yizhan/hr.js: line 2: SyntaxError: "), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.js");
        let error = Script::load(&missing, Limits::default()).unwrap_err();
        assert!(error.to_string().starts_with(&format!("{}: cannot read", missing.display())), "{error}");
    }

    #[test]
    fn a_throwing_script_fails_its_record_with_message_and_line() {
        let runner = start("var x = 1;\nthrow new Error('no manager for ' + context.data.id);\n", Limits::default());
        let reason = runner.decide(&member("a@example.com", 0), Operation::Create).unwrap_err();
        assert_eq!(reason, "hr.js:2: Error: no manager for u1");
        let runner = start("return context.data.missing.field;", Limits::default());
        let reason = runner.decide(&member("a@example.com", 0), Operation::Create).unwrap_err();
        assert!(reason.starts_with("hr.js:1: TypeError"), "{reason}");
        let runner = start("repo.executeCreate();", Limits::default());
        let reason = runner.decide(&member("a@example.com", 0), Operation::Create).unwrap_err();
        assert!(reason.contains("must end with `return context`"), "{reason}");
        let runner = start("repo.abort('LATER'); return context;", Limits::default());
        assert!(runner.decide(&member("a@example.com", 0), Operation::Create).unwrap_err().contains("LATER"));
    }

    #[test]
    fn an_endless_loop_fails_within_the_time_limit_and_the_next_record_runs() {
        let limits = Limits { time: Duration::from_millis(100), ..Limits::default() };
        let runner =
            start("if (context.data.id === 'u1') { try { while (true) {} } catch (e) {} }\nreturn context;", limits);
        let started = Instant::now();
        let reason = runner.decide(&member("a@example.com", 0), Operation::Create).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert!(reason.contains("time limit"), "{reason}");
        let mut other = member("a@example.com", 0);
        other["id"] = json!("u2");
        assert_eq!(runner.decide(&other, Operation::Create).unwrap().operations, [Operation::Create]);
    }

    #[test]
    fn memory_is_bounded_and_there_is_no_clock_or_io() {
        let limits = Limits { memory: 8 * 1024 * 1024, ..Limits::default() };
        let runner = start("var a = []; while (true) { a.push('x'.repeat(1000) + a.length); }", limits);
        let reason = runner.decide(&member("a@example.com", 0), Operation::Create).unwrap_err();
        assert!(reason.contains("memory"), "{reason}");
        let runner = start(
            "context.data.seen = [typeof Date, typeof Promise, typeof require, typeof fetch, typeof std, typeof os];\nreturn context;",
            Limits::default(),
        );
        let decision = runner.decide(&member("a@example.com", 0), Operation::Create).unwrap();
        assert_eq!(decision.data["seen"], json!(vec!["undefined"; 6]));
        let unknown = runner.decide(&member("a@example.com", 0), Operation::Create).unwrap();
        assert_eq!(unknown.operations, [Operation::Create], "the runtime works after an overrun");
    }

    #[test]
    fn get_object_by_id_of_an_unknown_id_is_null() {
        let runner = start("context.data.found = repo.getObjectByID('nope');\nreturn context;", Limits::default());
        assert_eq!(runner.decide(&member("a@example.com", 0), Operation::Create).unwrap().data["found"], Value::Null);
    }
}

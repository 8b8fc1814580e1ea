//! The conventions every command's output follows (see ARCHITECTURE.md, "CLI
//! conventions"): the [`Outcome`] and its documented exit code, the one error
//! printer ([`fail`]: cargo-style `error:` + `Caused by:` on stderr, or one
//! JSON document on stdout under `--json`), the colour decision
//! (`--color`, `NO_COLOR`, terminal), and writes that survive a closed pipe
//! (`outln!`/`errln!`: `kiln records | head -1` ends quietly, never a panic).

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use kiln::diagnostic::Diagnostic;
use serde_json::{Value, json};

/// What a command ended with; each has its own exit code (README, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Success: exit 0.
    Ok,
    /// Any failure without a more specific code (a build step failed, the
    /// record chain is broken, a run was cancelled, …): exit 1.
    Failed,
    /// Bad usage (as clap reports it): exit 2.
    Usage,
    /// A project file is invalid (validation failed): exit 3.
    Invalid,
    /// The registries no longer match `kiln.lock` (drift found): exit 4.
    Drift,
    /// The image was tested and checks failed: exit 5.
    TestsFailed,
    /// A push, or the infrastructure (Docker engine, registry, ECR, S3, the
    /// kiln daemon), failed: exit 6.
    Infrastructure,
}

impl Outcome {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Ok => 0,
            Outcome::Failed => 1,
            Outcome::Usage => 2,
            Outcome::Invalid => 3,
            Outcome::Drift => 4,
            Outcome::TestsFailed => 5,
            Outcome::Infrastructure => 6,
        }
    }

    /// The `kind` of a JSON error document.
    pub fn kind(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Usage => "usage",
            Outcome::Invalid => "invalid",
            Outcome::Drift => "drift",
            Outcome::TestsFailed => "testsFailed",
            Outcome::Infrastructure => "infrastructure",
        }
    }
}

impl From<Outcome> for std::process::ExitCode {
    fn from(o: Outcome) -> Self {
        std::process::ExitCode::from(o.code())
    }
}

/// The `--help` footer: the exit codes, as the README's table lists them.
pub const EXIT_CODES_HELP: &str = "Exit codes:
  0  success
  1  failed (a build step, a broken record chain, a cancelled run, …)
  2  usage error
  3  validation failed (a project file is invalid)
  4  drift found (parents moved since kiln.lock: `resolve --check`)
  5  tests failed
  6  push or infrastructure failed (Docker, registry, ECR, S3, daemon)";

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when the stream is a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

impl ColorChoice {
    /// Whether a stream that `is_terminal` gets colour.
    pub fn enabled(self, is_terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

/// How this process writes; set once by [`init`] from the global flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mode {
    /// The command was given `--json`: results and errors are JSON on stdout.
    pub json: bool,
    /// ANSI colour on stderr.
    pub color: bool,
    /// Progress bars on stderr (a terminal, no `--json`).
    pub progress: bool,
}

static MODE: OnceLock<Mode> = OnceLock::new();
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);

/// Fixes the mode for the process (first call wins).
pub fn init(json: bool, color: ColorChoice) {
    let tty = std::io::stderr().is_terminal();
    let _ = MODE.set(Mode {
        json,
        color: color.enabled(tty),
        progress: tty && !json,
    });
}

/// The process's mode (plain human output before [`init`]).
pub fn mode() -> Mode {
    MODE.get().copied().unwrap_or_default()
}

/// Writes to stdout. A closed pipe is not an error: later writes are
/// skipped and the command finishes. Other errors (disk full) fail the
/// command in [`finish`].
pub fn out(args: fmt::Arguments<'_>) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe
            && !STDOUT_FAILED.swap(true, Ordering::Relaxed)
        {
            err(format_args!("error: cannot write to stdout: {e}\n"));
        }
    }
}

/// Whether stdout was closed (a follower stops then).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Writes to stderr, ignoring errors: nobody is left to tell.
pub fn err(args: fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// `println!` through [`out`].
macro_rules! outln {
    () => { $crate::cli::output::out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::output::out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` through [`out`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::output::out(format_args!($($arg)*)) };
}

/// `eprintln!` through [`err`].
macro_rules! errln {
    () => { $crate::cli::output::err(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::output::err(format_args!("{}\n", format_args!($($arg)*))) };
}

/// The exit outcome after flushing stdout: a write error other than a
/// closed pipe turns success into failure.
pub fn finish(outcome: Outcome) -> Outcome {
    if !STDOUT_CLOSED.load(Ordering::Relaxed) {
        let _ = std::io::stdout().flush();
    }
    if STDOUT_FAILED.load(Ordering::Relaxed) && outcome == Outcome::Ok {
        Outcome::Failed
    } else {
        outcome
    }
}

/// A panic from a `println!` into a closed pipe (a command that does not use
/// `outln!` yet) ends the process quietly instead of with a panic message.
pub fn quiet_broken_pipe_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.starts_with("failed printing to std") && text.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Prints a command's result as one pretty JSON document on stdout.
pub fn json_result(value: &impl serde::Serialize) -> Outcome {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            outln!("{text}");
            Outcome::Ok
        }
        Err(e) => fail(Outcome::Failed, &e),
    }
}

/// A failure to print: message, causes, and the positions of project files.
#[derive(Debug, Default)]
pub struct Failure {
    /// The top line.
    pub message: String,
    /// Each cause, outermost first.
    pub causes: Vec<String>,
    /// Positioned problems in project files (validation).
    pub diagnostics: Vec<Diagnostic>,
    /// More context for JSON readers (`lastLines` of a failed build step),
    /// merged into the `error` object.
    pub extra: serde_json::Map<String, Value>,
}

impl Failure {
    /// The message and the de-duplicated cause chain of `e`: a cause whose
    /// text the previous line already holds is left out.
    pub fn of(e: &dyn std::error::Error) -> Failure {
        let message = e.to_string();
        let mut causes: Vec<String> = Vec::new();
        let mut cur = e.source();
        while let Some(c) = cur {
            let text = c.to_string();
            let last = causes.last().unwrap_or(&message);
            if !last.contains(&text) {
                causes.push(text);
            }
            cur = c.source();
        }
        Failure {
            message,
            causes,
            ..Failure::default()
        }
    }

    /// Just a message.
    pub fn message(message: impl fmt::Display) -> Failure {
        Failure {
            message: message.to_string(),
            ..Failure::default()
        }
    }

    /// The human form: `error: …`, then one `Caused by:` block per cause.
    pub fn human(&self, color: bool) -> String {
        let (red, bold, reset) = if color {
            ("\x1b[1;31m", "\x1b[1m", "\x1b[0m")
        } else {
            ("", "", "")
        };
        let mut s = String::new();
        for d in &self.diagnostics {
            s.push_str(&format!("{d}\n"));
        }
        s.push_str(&format!(
            "{red}error{reset}{bold}:{reset} {}\n",
            self.message
        ));
        for c in &self.causes {
            s.push_str("\nCaused by:\n");
            for line in c.lines() {
                s.push_str(&format!("  {line}\n"));
            }
        }
        s
    }

    /// The JSON form: `{"error": {message, causes, kind, exitCode, …}}`,
    /// with `file`/`line`/`column`/`field` of the first positioned problem
    /// and every problem under `diagnostics`.
    pub fn json(&self, outcome: Outcome) -> Value {
        let mut error = json!({
            "message": self.message,
            "causes": self.causes,
            "kind": outcome.kind(),
            "exitCode": outcome.code(),
        });
        if let Some(first) = self.diagnostics.first() {
            if let (Value::Object(e), Value::Object(pos)) = (&mut error, diagnostic_json(first)) {
                for key in ["file", "line", "column", "field"] {
                    if let Some(v) = pos.get(key) {
                        e.insert(key.into(), v.clone());
                    }
                }
            }
            error["diagnostics"] = self.diagnostics.iter().map(diagnostic_json).collect();
        }
        if let Value::Object(e) = &mut error {
            e.extend(self.extra.clone());
        }
        json!({ "error": error })
    }
}

/// One diagnostic as JSON; `field` is the YAML key on the reported line.
fn diagnostic_json(d: &Diagnostic) -> Value {
    let mut v = json!({ "file": d.path, "message": d.message });
    if d.line > 0 {
        v["line"] = d.line.into();
        v["column"] = d.column.max(1).into();
    }
    if let Some(field) = d.snippet.as_deref().and_then(kiln::yaml::key_of_line) {
        v["field"] = field.into();
    }
    if let Some(h) = &d.hint {
        v["hint"] = h.as_str().into();
    }
    v
}

/// Prints `failure` once — JSON on stdout under `--json`, else on stderr —
/// and returns `outcome`, so a command ends with `return fail_with(…)`.
pub fn print_failure(outcome: Outcome, failure: &Failure) -> Outcome {
    let mode = mode();
    if mode.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&failure.json(outcome)).unwrap_or_default()
        );
    } else {
        err(format_args!("{}", failure.human(mode.color)));
    }
    outcome
}

/// The one error printer: `e` and its causes, ending the command with `outcome`.
pub fn fail(outcome: Outcome, e: &dyn std::error::Error) -> Outcome {
    print_failure(outcome, &Failure::of(e))
}

/// [`fail`] for a failure kiln states itself (no error value).
pub fn fail_msg(outcome: Outcome, message: impl fmt::Display) -> Outcome {
    print_failure(outcome, &Failure::message(message))
}

/// Validation problems: every diagnostic, then `summary` as the error line.
pub fn fail_invalid(diagnostics: Vec<Diagnostic>, summary: impl fmt::Display) -> Outcome {
    let failure = Failure {
        diagnostics,
        ..Failure::message(summary)
    };
    print_failure(Outcome::Invalid, &failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot push `web`")]
    struct Outer(#[source] Middle);
    #[derive(Debug, thiserror::Error)]
    #[error("registry 127.0.0.1:5000 refused the upload")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn the_cause_chain_is_printed_in_cargo_style() {
        let e = Outer(Middle(std::io::Error::other("connection reset")));
        let f = Failure::of(&e);
        assert_eq!(
            f.human(false),
            "error: cannot push `web`\n\nCaused by:\n  registry 127.0.0.1:5000 refused the upload\n\nCaused by:\n  connection reset\n"
        );
        let j = f.json(Outcome::Infrastructure);
        assert_eq!(j["error"]["exitCode"], 6);
        assert_eq!(j["error"]["kind"], "infrastructure");
        assert_eq!(j["error"]["causes"][1], "connection reset");
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        #[derive(Debug, thiserror::Error)]
        #[error("load failed: {0}")]
        struct Wrap(#[source] std::io::Error);
        let f = Failure::of(&Wrap(std::io::Error::other("disk full")));
        assert!(f.causes.is_empty(), "{f:?}");
    }

    #[test]
    fn exit_codes_are_distinct_and_in_the_help_footer() {
        let all = [
            Outcome::Ok,
            Outcome::Failed,
            Outcome::Usage,
            Outcome::Invalid,
            Outcome::Drift,
            Outcome::TestsFailed,
            Outcome::Infrastructure,
        ];
        let codes: std::collections::BTreeSet<u8> = all.iter().map(|o| o.code()).collect();
        assert_eq!(codes.len(), all.len());
        for o in all {
            assert!(
                EXIT_CODES_HELP.contains(&format!("  {}  ", o.code())),
                "{o:?}"
            );
        }
    }

    #[test]
    fn the_field_is_the_yaml_key_of_the_line() {
        let key = kiln::yaml::key_of_line;
        assert_eq!(key("  - port: [1]"), Some("port"));
        assert_eq!(key("parentImage: x"), Some("parentImage"));
        assert_eq!(key("  echo hi: there"), None);
    }

    #[test]
    fn colour_follows_the_choice_and_the_terminal() {
        assert!(ColorChoice::Always.enabled(false));
        assert!(!ColorChoice::Never.enabled(true));
        assert!(!ColorChoice::Auto.enabled(false));
    }
}

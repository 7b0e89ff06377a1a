//! How the command line answers: JSON results on standard output, errors as
//! one line on standard error (and, with `--json`, as one JSON object on
//! standard output), and progress bars.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use chancery::error::{Error, Result};

/// Set once a command has written its JSON result: a failure after it (a
/// `verify` that found a problem) is then told by that result, not by a
/// second JSON document after it.
static JSON_WRITTEN: AtomicBool = AtomicBool::new(false);

/// Whether a command has written its JSON result.
pub(crate) fn json_written() -> bool {
    JSON_WRITTEN.load(Ordering::Relaxed)
}

/// A result as pretty JSON on standard output.
pub(crate) fn print_json(v: &impl serde::Serialize) -> Result<()> {
    JSON_WRITTEN.store(true, Ordering::Relaxed);
    // Buffered: stdout flushes at every line, and a batch's JSON is a million
    // lines (a write call each).
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, v)
        .map_err(|e| Error::Io { context: "writing JSON".into(), source: e.into() })?;
    writeln!(out).and_then(|()| out.flush()).map_err(Error::io("writing output"))
}

/// Writes one line of a command's text output.
pub(crate) fn line(out: &mut dyn Write, line: String) -> Result<()> {
    writeln!(out, "{line}").map_err(Error::io("writing output"))
}

/// A warning (one line on standard error), such as a database on a
/// memory-backed filesystem.
pub(crate) fn warn(warning: Option<String>) {
    if let Some(w) = warning {
        let _ = writeln!(std::io::stderr(), "{w}");
    }
}

/// The `kind` of an error in its JSON form.
pub(crate) fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::Protocol(_) => "protocol",
        Error::Input(_) => "input",
        Error::Refused(_) => "refused",
        Error::Integrity(_) => "integrity",
        Error::Key(_) => "key",
        Error::Sqlite { .. } => "database",
        Error::Io { .. } => "file",
        _ => "error",
    }
}

/// An error as one JSON object on standard output, for scripts run with
/// `--json`: `error` is the message's first line, `where` the command (or the
/// file and line the message begins with), `kind` what sort of refusal it is,
/// and `problems` each line of a file's report, with its own `where`.
pub(crate) fn print_error_json(kind: &str, message: &str, command: &str) {
    let mut lines = message.lines();
    let first = lines.next().unwrap_or_default();
    let located = |line: &str| -> (Option<String>, String) {
        // `file.csv:12: message`: a file and line number, as every file report begins.
        let mut parts = line.splitn(3, ": ");
        if let (Some(place), Some(rest)) = (parts.next(), parts.next()) {
            let rest = parts.next().map_or_else(|| rest.to_string(), |more| format!("{rest}: {more}"));
            if place.rsplit_once(':').is_some_and(|(f, n)| !f.is_empty() && n.parse::<u64>().is_ok()) {
                return (Some(place.to_string()), rest);
            }
        }
        (None, line.to_string())
    };
    let (place, error) = located(first);
    let problems: Vec<serde_json::Value> = lines
        .map(|l| {
            let (place, error) = located(l.trim_start());
            serde_json::json!({ "error": error, "where": place })
        })
        .collect();
    let mut object = serde_json::json!({
        "error": error,
        "where": place.unwrap_or_else(|| command.to_string()),
        "command": command,
        "kind": kind,
    });
    if !problems.is_empty() {
        object["problems"] = serde_json::Value::Array(problems);
    }
    let _ = writeln!(std::io::stdout(), "{object}");
}

/// A progress bar on standard error, hidden when it is not a terminal.
pub(crate) fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

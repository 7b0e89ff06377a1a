//! The `chancery` command: a thin wrapper over the library's operations
//! ([`chancery::operations`]).
//!
//! It parses arguments, resolves the clock and the acting user, calls one
//! operation and formats what comes back ([`cli`]). It holds no SQL and no
//! statistics. Exit codes: 0 success (an ineligible or declined referral is a
//! success), 1 a refused operation or failed check, 2 a usage error.

/// mimalloc: the workloads make millions of small short-lived strings and maps
/// (CSV cells, canonical values, dataset rows), where glibc's allocator spent
/// a quarter of a batch's time; the benches use the binary's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

use std::io::Write;
use std::process::ExitCode;

use chancery::error::Error;

use cli::args::Cli;
use cli::output::{error_kind, json_written, print_error_json};

fn main() -> ExitCode {
    chancery::allocator::keep_freed_memory();
    let parsed = <Cli as clap::CommandFactory>::command()
        .try_get_matches()
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() && std::env::args_os().any(|a| a == "--json") {
                // clap's own first line, which names the argument ("unexpected
                // argument '--bogus' found"), without its "error: " prefix.
                let rendered = e.render().to_string();
                let first = rendered.lines().next().unwrap_or_default();
                let message = first.strip_prefix("error: ").unwrap_or(first).trim().to_string();
                print_error_json("usage", &message, "arguments");
            }
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let (command, json) = command_of(&matches);
    match cli::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Error::Io { source, .. } = &e
                && source.kind() == std::io::ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(std::io::stderr(), "error: {e}");
            if json && !json_written() {
                print_error_json(error_kind(&e), &e.to_string(), &command);
            }
            ExitCode::from(1)
        }
    }
}

/// The subcommand path (`outcome import`) and whether it was given `--json`.
fn command_of(matches: &clap::ArgMatches) -> (String, bool) {
    let mut path = Vec::new();
    let mut m = matches;
    while let Some((name, sub)) = m.subcommand() {
        path.push(name);
        m = sub;
    }
    let json = matches!(m.try_get_one::<bool>("json"), Ok(Some(true)));
    (path.join(" "), json)
}

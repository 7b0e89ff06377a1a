//! The `chancery` command: a thin wrapper over the library.
//!
//! It parses arguments, resolves the clock and the acting user, calls the
//! library and formats what comes back. It holds no SQL and no statistics.
//! Exit codes: 0 success (an ineligible or declined referral is a success),
//! 1 a refused operation or failed check, 2 a usage error.

/// mimalloc: the workloads make millions of small short-lived strings and maps
/// (CSV cells, canonical values, dataset rows), where glibc's allocator spent
/// a quarter of a batch's time; the benches use the binary's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use chancery::bounded::{self, Limits};
use chancery::clock::Timestamp;
use chancery::error::{Error, Result};
use chancery::export::{self, Format};
use chancery::keys::{self, TrialKey};
use chancery::ledger::{self, Confirmation, InitOptions, Trial};
use chancery::outcome::StatusKind;
use chancery::outfile::{self, OutFile, Overwrite};
use chancery::referral;

#[derive(Parser)]
#[command(
    name = "chancery",
    version,
    about = "Randomised controlled trials: concealed seeded allocation, a tamper-evident log, outcomes and the ITT analysis"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The time: `--now`, or the system clock (read by a write once it holds
/// the write lock). Every command with a notion of "today" takes it.
#[derive(clap::Args, Clone)]
struct Now {
    /// The time to use (RFC 3339, UTC) instead of the system clock.
    #[arg(long, env = "CHANCERY_NOW", value_name = "TIMESTAMP")]
    now: Option<String>,
    /// Accept a --now more than 5 minutes ahead of the system clock (simulations, demonstrations).
    #[arg(
        long,
        env = "CHANCERY_ALLOW_FUTURE_TIME",
        action = clap::ArgAction::SetTrue,
        // Set but empty is off, like unset (FalseyValueParser: "", 0, no,
        // false, off are off).
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    allow_future_time: bool,
}

impl Now {
    fn resolve(&self) -> Result<chancery::clock::Clock> {
        // CHANCERY_NOW set but empty is unset: the system clock.
        match self.now.as_deref().filter(|t| !t.trim().is_empty()) {
            Some(t) => chancery::clock::Clock::given(Timestamp::parse(t)?, Timestamp::system(), self.allow_future_time),
            None => Ok(chancery::clock::Clock::System),
        }
    }
}

#[derive(clap::Args, Clone)]
struct Clock {
    #[command(flatten)]
    time: Now,
    /// The acting user recorded in the log (default: the OS user).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
}

impl Clock {
    fn now(&self) -> Result<chancery::clock::Clock> {
        self.time.resolve()
    }
    /// `--user`, else `$USER`; empty if neither gives one, which every
    /// writer refuses (`text::user`) rather than record an unknown user.
    fn user(&self) -> String {
        self.user.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_default()
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum OutFormat {
    Csv,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum What {
    Allocations,
    Log,
    Participants,
    Outcomes,
    History,
    Codebook,
}

#[derive(Subcommand)]
enum PowerDesign {
    /// Two proportions (R's power.prop.test).
    Proportions {
        /// Expected proportion in the intervention arm, e.g. 0.29.
        #[arg(long, allow_negative_numbers = true)]
        p1: f64,
        /// Expected proportion in the control arm, e.g. 0.25.
        #[arg(long, allow_negative_numbers = true)]
        p2: f64,
        #[command(flatten)]
        common: PowerArgs,
    },
    /// Two means (R's power.t.test, strict = TRUE).
    Means {
        /// Difference in means to detect (a negative difference is a fall).
        #[arg(long, allow_negative_numbers = true)]
        delta: f64,
        /// Common standard deviation.
        #[arg(long, allow_negative_numbers = true)]
        sd: f64,
        #[command(flatten)]
        common: PowerArgs,
    },
}

#[derive(clap::Args)]
struct PowerArgs {
    /// Target power: solve for the sample size.
    #[arg(long, conflicts_with = "n", allow_negative_numbers = true)]
    power: Option<f64>,
    /// Participants analysed in the intervention arm: solve for the power.
    #[arg(long, allow_negative_numbers = true)]
    n: Option<f64>,
    /// Two-sided significance level.
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    alpha: f64,
    /// Control participants per intervention participant (allocation ratio).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    ratio: f64,
    /// Expected share without an outcome (lost, withdrawn), 0 ≤ a < 1.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    attrition: f64,
}

#[derive(Subcommand)]
enum FollowupCommand {
    /// Who is due, in window or overdue, at which timepoint: the day's work list.
    Due {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The date to plan for (default: today in the trial's time zone).
        #[arg(long, value_name = "DATE")]
        on: Option<String>,
        #[command(flatten)]
        time: Now,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum OutcomeCommand {
    /// Record follow-up values for one participant at one timepoint.
    Record {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// Participant id.
        #[arg(long, value_name = "ID")]
        participant: String,
        /// Timepoint id (e.g. m4, m12).
        #[arg(long, value_name = "T", value_parser = protocol_name)]
        timepoint: String,
        /// An outcome value, FIELD=VALUE (repeat).
        #[arg(long = "set", value_name = "FIELD=VALUE", required = true)]
        set: Vec<String>,
        /// The date the values were collected (default: today in the trial's time zone).
        #[arg(long, value_name = "DATE")]
        on: Option<String>,
        /// Why the values were collected outside the timepoint's window
        /// (required then; recorded and flagged in exports).
        #[arg(long, value_name = "TEXT")]
        window_reason: Option<String>,
        #[command(flatten)]
        clock: Clock,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import outcomes from CSV (participant,timepoint[,collected_on][,window_reason],<outcome>…): all or nothing.
    Import {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The CSV file.
        #[arg(long, value_name = "FILE")]
        csv: PathBuf,
        /// The CSV file's separator, if not a comma: ';' (Excel in many locales) or tab.
        #[arg(long, value_name = "CHAR", value_parser = parse_delimiter)]
        delimiter: Option<u8>,
        #[command(flatten)]
        clock: Clock,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Correct a recorded value; the original stays in the log and the history.
    Correct {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// Participant id.
        #[arg(long, value_name = "ID")]
        participant: String,
        /// Timepoint id.
        #[arg(long, value_name = "T", value_parser = protocol_name)]
        timepoint: String,
        /// The corrected value, FIELD=VALUE.
        #[arg(long = "set", value_name = "FIELD=VALUE", required_unless_present = "clear", conflicts_with = "clear")]
        set: Option<String>,
        /// Correct the value of FIELD to missing.
        #[arg(long, value_name = "FIELD")]
        clear: Option<String>,
        /// Why the value is corrected.
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[command(flatten)]
        clock: Clock,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct StatusArgs {
    /// The trial database.
    #[arg(long, value_name = "FILE")]
    db: PathBuf,
    /// Participant id.
    #[arg(long, value_name = "ID")]
    participant: String,
    /// Why.
    #[arg(long, value_name = "TEXT")]
    reason: String,
    /// The date of the change (default: today in the trial's time zone).
    #[arg(long, value_name = "DATE")]
    on: Option<String>,
    #[command(flatten)]
    clock: Clock,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create a trial: the database, its key file (0600) and the commitments to publish.
    Init {
        /// The protocol file.
        #[arg(long, value_name = "FILE")]
        protocol: PathBuf,
        /// The database to create.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The key file to create (default: <db>.key).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// A fixed 64-hex-digit seed, for tests and demonstrations only.
        #[arg(long, value_name = "HEX")]
        seed: Option<String>,
        #[command(flatten)]
        clock: Clock,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Screen and randomise one referral, or a batch from CSV.
    Randomise {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The trial key file (default: <db>.key).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Participant id.
        #[arg(long, value_name = "ID", required_unless_present = "batch", conflicts_with = "batch")]
        participant: Option<String>,
        /// Site id.
        #[arg(long, value_name = "SITE", required_unless_present = "batch", conflicts_with = "batch")]
        site: Option<String>,
        /// A field value, FIELD=VALUE (repeat for each field).
        #[arg(long = "set", value_name = "FIELD=VALUE", conflicts_with = "batch")]
        set: Vec<String>,
        /// A CSV file of referrals: participant,site,<field>… processed in file order in one transaction.
        #[arg(long, value_name = "FILE")]
        batch: Option<PathBuf>,
        /// The batch file's separator, if not a comma: ';' (Excel in many locales) or tab.
        #[arg(long, value_name = "CHAR", value_parser = parse_delimiter, requires = "batch")]
        delimiter: Option<u8>,
        #[command(flatten)]
        clock: Clock,
        /// Print JSON: one object, or an array for a batch.
        #[arg(long)]
        json: bool,
    },
    /// Counts of screened, ineligible, declined and randomised referrals, and the log head.
    Status {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a whole trial on simulated referrals in a new folder and print the summary.
    Demo {
        /// The folder to create (default: chancery-demo).
        #[arg(long, value_name = "DIR", default_value = "chancery-demo")]
        dir: PathBuf,
        /// Number of simulated referrals to screen.
        #[arg(long, value_name = "N", default_value_t = 6000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        participants: u32,
        /// Seed for the trial and the simulation (64 hex digits).
        #[arg(
            long,
            value_name = "HEX",
            default_value = "c4a2ce2ec4a2ce2ec4a2ce2ec4a2ce2ec4a2ce2ec4a2ce2ec4a2ce2ec4a2ce2e"
        )]
        seed: String,
        /// Protocol file (default: the bundled work-health-ips protocol).
        #[arg(long, value_name = "FILE")]
        protocol: Option<PathBuf>,
        /// The true effect of IPS on the primary outcome, in percentage points.
        #[arg(long, value_name = "PP", default_value_t = 4.0, allow_negative_numbers = true)]
        effect: f64,
    },
    /// Follow-up planning.
    #[command(subcommand)]
    Followup(FollowupCommand),
    /// Record, import or correct follow-up outcomes.
    #[command(subcommand)]
    Outcome(OutcomeCommand),
    /// Record that a participant withdrew (they stay in their arm for intention to treat).
    Withdraw {
        #[command(flatten)]
        args: StatusArgs,
        /// The participant asked for no further contact: no more data may be recorded.
        #[arg(long)]
        no_further_contact: bool,
    },
    /// Record that a participant who asked for no further contact consented
    /// again: the only way to lift the request (later status changes keep it).
    Reconsent {
        #[command(flatten)]
        args: StatusArgs,
    },
    /// Record that a participant was lost to follow-up.
    Lost {
        #[command(flatten)]
        args: StatusArgs,
    },
    /// Record that a participant died.
    Died {
        #[command(flatten)]
        args: StatusArgs,
    },
    /// The intention-to-treat analysis: CONSORT flow, baseline table, primary and
    /// secondary outcomes, time to first job, subgroups, missing data, CACE.
    Analyse {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// Also write analysis.json, estimates.csv, consort.csv, baseline.csv and survival.csv here
        /// (all or none; existing tables are refused unless --force).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Permissions of the files written, octal (default 0600: owner only, as they hold trial data; e.g. 0640 to share with a group).
        #[arg(long, value_name = "OCTAL", default_value = "0600", value_parser = keys::parse_mode)]
        mode: u32,
        /// Replace existing tables in --out.
        #[arg(long, requires = "out")]
        force: bool,
        /// Print the analysis as JSON instead of the Markdown summary.
        #[arg(long)]
        json: bool,
        /// Analyse the data as they stood on this date (default: the date of the log's last entry).
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
    },
    /// Write the report: one self-contained HTML file with the CONSORT diagram,
    /// tables, charts and the audit status.
    Report {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// Folder for report.html (created if needed; an existing report.html is refused unless --force).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Permissions of the files written, octal (default 0600: owner only, as they hold trial data; e.g. 0640 to share with a group).
        #[arg(long, value_name = "OCTAL", default_value = "0600", value_parser = keys::parse_mode)]
        mode: u32,
        /// Replace an existing report.html.
        #[arg(long)]
        force: bool,
        /// A signed checkpoint to check and show (repeat).
        #[arg(long, value_name = "FILE")]
        checkpoint: Vec<PathBuf>,
        /// Report the data as they stood on this date (default: the date of the log's last entry).
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
    },
    /// Sample size or power for two proportions or two means; with no design
    /// given, the number to recruit under the protocol's [design] assumptions.
    Power {
        /// Protocol whose [design] table to use (default: the built-in work-health-ips protocol).
        #[arg(long, value_name = "FILE")]
        protocol: Option<PathBuf>,
        /// With the protocol's [design]: participants analysed in the intervention arm; solve for the power.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        n: Option<f64>,
        /// With the protocol's [design]: expected attrition instead of the protocol's.
        #[arg(long, value_name = "A", allow_negative_numbers = true)]
        attrition: Option<f64>,
        /// Print JSON.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        design: Option<PowerDesign>,
    },
    /// Properties of the protocol's allocation method by simulation: imbalance
    /// overall and per stratum, and predictability, compared with simple
    /// randomisation, fixed blocks and minimisation on the same referrals.
    /// With --analysis: how the primary analysis behaves over whole simulated
    /// trials (bias, standard errors, CI coverage, power or type I error).
    Simulate {
        /// Protocol file (default: the bundled work-health-ips protocol).
        #[arg(long, value_name = "FILE")]
        protocol: Option<PathBuf>,
        /// Number of simulated trials (default 100; with --analysis 200).
        #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=100_000))]
        trials: Option<u32>,
        /// Participants randomised per trial (default: the number to recruit for
        /// the protocol's [design], else 1000).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        participants: Option<u32>,
        /// Seed of the simulation (64 hex digits); not a trial's seed.
        #[arg(
            long,
            value_name = "HEX",
            default_value = "5e1a7e5e1a7e5e1a7e5e1a7e5e1a7e5e1a7e5e1a7e5e1a7e5e1a7e5e1a7e5e1a"
        )]
        seed: String,
        /// Run whole simulated trials (the demonstration's recruitment,
        /// attrition and outcomes) through the primary analysis and report its
        /// operating characteristics, instead of the allocation method's.
        #[arg(long)]
        analysis: bool,
        /// With --analysis: the true effect on the primary outcome, in
        /// percentage points (default: the protocol's [design] effect, else 4).
        #[arg(long, value_name = "PP", requires = "analysis", allow_negative_numbers = true)]
        effect: Option<f64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bring a database written by an older chancery to this build's schema:
    /// one transaction that rebuilds the tables derived from the log and
    /// leaves the log itself, and so every hash, untouched. Back up first.
    Migrate {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
    },
    /// Copy a live trial database safely (SQLite's online backup), verify the
    /// copy, and keep it only if it verifies. Never overwrites.
    Backup {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The new copy (an existing file is refused unless --force).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// Replace an existing copy at --to.
        #[arg(long)]
        force: bool,
    },
    /// Check the trial's records: the log's chain, the tables against a replay of
    /// the log, unique participants, checkpoints, the seed commitment and (with
    /// the seed, or after the reveal) every allocation; then SQLite's own check.
    Verify {
        /// The trial database (opened read-only).
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The trial key file: re-derive every allocation from its seed.
        #[arg(long, value_name = "FILE", conflicts_with = "seed")]
        key: Option<PathBuf>,
        /// The allocation seed (64 hex digits), if you hold it instead of the key file.
        #[arg(long, value_name = "HEX")]
        seed: Option<String>,
        /// A signed checkpoint the log must extend (repeat).
        #[arg(long, value_name = "FILE")]
        checkpoint: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a signed statement of the log's length and head, to hand to the data
    /// monitoring committee, the registry or a site.
    Checkpoint {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The trial key file (default: <db>.key); its signing key is <key>.signing.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Write the checkpoint here instead of to standard output (an existing file is refused unless --force).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Replace an existing --out file.
        #[arg(long, requires = "out")]
        force: bool,
        #[command(flatten)]
        clock: Clock,
    },
    /// Publish the allocation seed in the log when recruitment closes: from then on
    /// anyone can re-derive every allocation, and randomisation is refused.
    Reveal {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The trial key file (default: <db>.key).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Why the seed is revealed now.
        #[arg(long, value_name = "TEXT", default_value = "recruitment closed")]
        reason: String,
        #[command(flatten)]
        clock: Clock,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export a table.
    Export {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// Which table.
        #[arg(long, value_enum)]
        what: What,
        /// Output format.
        #[arg(long, value_enum, default_value = "csv")]
        format: OutFormat,
        /// Output file (default: standard output); an existing file is refused unless --force.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Permissions of the files written, octal (default 0600: owner only, as they hold trial data; e.g. 0640 to share with a group).
        #[arg(long, value_name = "OCTAL", default_value = "0600", value_parser = keys::parse_mode)]
        mode: u32,
        /// Replace an existing --out file.
        #[arg(long, requires = "out")]
        force: bool,
    },
}

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
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Error::Io { source, .. } = &e
                && source.kind() == std::io::ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(std::io::stderr(), "error: {e}");
            if json && !JSON_WRITTEN.load(std::sync::atomic::Ordering::Relaxed) {
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

fn error_kind(e: &Error) -> &'static str {
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
fn print_error_json(kind: &str, message: &str, command: &str) {
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

/// A name as the protocol spells it (trimmed, lowercase), for clap.
fn protocol_name(s: &str) -> std::result::Result<String, String> {
    Ok(chancery::values::canonical_name(s))
}

/// A `--delimiter` value, for clap.
fn parse_delimiter(s: &str) -> std::result::Result<u8, String> {
    chancery::table_input::parse_delimiter(s)
}

fn key_path(db: &Path, key: &Option<PathBuf>) -> PathBuf {
    key.clone().unwrap_or_else(|| keys::default_key_path(db))
}

/// Set once a command has written its JSON result: a failure after it (a
/// `verify` that found a problem) is then told by that result, not by a
/// second JSON document after it.
static JSON_WRITTEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    JSON_WRITTEN.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)
        .map_err(|e| Error::Io { context: "writing JSON".into(), source: e.into() })?;
    writeln!(out).map_err(Error::io("writing output"))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init { protocol, db, key, seed, clock, json } => {
            warn_if_volatile(&db);
            let seed = seed.as_deref().map(keys::parse_seed).transpose()?;
            let report = ledger::init(&InitOptions {
                protocol,
                key: key_path(&db, &key),
                db,
                seed,
                user: clock.user(),
                now: clock.now()?,
            })?;
            if json {
                return print_json(&report);
            }
            println!("created trial {}", report.trial);
            println!("  key file          {} (mode 0600: keep it secret and backed up)", report.key_file);
            println!("  signing key file  {}", report.signing_key_file);
            if report.key_origin == "given" {
                println!(
                    "  WARNING: the seed was given on the command line; use this trial for tests and demonstrations only"
                );
            }
            println!("Publish these before the first allocation (e.g. in the trial registration):");
            println!("  protocol SHA-256  {}", report.protocol_sha256);
            println!("  seed commitment   {}", report.seed_commitment);
            println!("  signing key       {}", report.signing_public_key);
            Ok(())
        }
        Command::Randomise { db, key, participant, site, set, batch, delimiter, clock, json } => {
            let now = clock.now()?; // read inside the write transaction
            let user = clock.user();
            let referrals = match &batch {
                Some(path) => {
                    let bytes = bounded::read(path, Limits::CSV)?;
                    let options = chancery::table_input::CsvOptions { delimiter };
                    referral::read_batch_csv(&path.display().to_string(), &bytes[..], &options).map_err(Error::Input)?
                }
                None => {
                    let r = referral::from_assignments(
                        participant.as_deref().unwrap_or_default(),
                        site.as_deref().unwrap_or_default(),
                        &set,
                    )
                    .map_err(Error::Input)?;
                    vec![("referral".to_string(), r)]
                }
            };
            let mut trial = open_writer(&db)?;
            let key = TrialKey::read(&key_path(&db, &key))?;
            let confirmations = trial.randomise(&key, &referrals, &user, now)?;
            if json {
                return if batch.is_some() { print_json(&confirmations) } else { print_json(&confirmations[0]) };
            }
            let mut out = std::io::stdout().lock();
            for c in &confirmations {
                print_confirmation(&mut out, c).map_err(Error::io("writing output"))?;
            }
            if let Some(last) = confirmations.last() {
                if batch.is_some() {
                    let n = |s: &str| confirmations.iter().filter(|c| c.status == s).count();
                    writeln!(
                        out,
                        "{} referrals: {} randomised, {} ineligible, {} declined",
                        confirmations.len(),
                        n("randomised"),
                        n("ineligible"),
                        n("declined")
                    )
                    .map_err(Error::io("writing output"))?;
                }
                writeln!(out, "receipt: log length {}, head {}", last.log_length, last.head)
                    .map_err(Error::io("writing output"))?;
            }
            Ok(())
        }
        Command::Status { db, json } => {
            let trial = Trial::open_read_only(&db)?;
            let s = trial.status()?;
            if json {
                return print_json(&s);
            }
            let mut out = std::io::stdout().lock();
            let w = |out: &mut dyn Write, line: String| writeln!(out, "{line}").map_err(Error::io("writing output"));
            w(&mut out, format!("trial {} ({}, allocation by {})", s.trial, trial.protocol().title, s.method))?;
            if s.key_origin == "given" {
                w(&mut out, "WARNING: created with a given seed: for tests and demonstrations only".into())?;
            }
            w(
                &mut out,
                format!(
                    "screened {}  ineligible {}  declined {}  randomised {}",
                    s.screened, s.ineligible, s.declined, s.randomised
                ),
            )?;
            for (reason, n) in &s.ineligible_by_reason {
                w(&mut out, format!("  ineligible: {reason} {n}"))?;
            }
            let arms: Vec<&String> = s.by_arm.keys().collect();
            w(
                &mut out,
                format!("by arm: {}", s.by_arm.iter().map(|(a, n)| format!("{a} {n}")).collect::<Vec<_>>().join(", ")),
            )?;
            let table = |out: &mut dyn Write,
                         title: &str,
                         rows: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>|
             -> Result<()> {
                w(out, format!("by {title}:"))?;
                for (k, counts) in rows {
                    let cells: Vec<String> =
                        arms.iter().map(|a| format!("{a} {}", counts.get(*a).copied().unwrap_or(0))).collect();
                    w(out, format!("  {k}: {}", cells.join(", ")))?;
                }
                Ok(())
            };
            table(&mut out, "site", &s.by_site)?;
            table(&mut out, "stratum", &s.by_stratum)?;
            w(&mut out, follow_up_line(&s))?;
            w(&mut out, format!("log: {} entries, head {}", s.log_entries, s.head))
        }
        Command::Demo { dir, participants, seed, protocol, effect } => {
            if !(-50.0..=50.0).contains(&effect) {
                return Err(Error::Input(format!("--effect {effect} must be between -50 and 50 percentage points")));
            }
            let seed = keys::parse_seed(&seed)?;
            chancery::demo::prepare_dir(&dir)?;
            let protocol_path = match protocol {
                Some(p) => p,
                None => {
                    let p = dir.join("work-health-ips.toml");
                    std::fs::write(&p, DEFAULT_PROTOCOL).map_err(Error::io(format!("writing {}", p.display())))?;
                    p
                }
            };
            println!("chancery demonstration: every referral and outcome below is SIMULATED, not real data");
            let bar = progress_bar(u64::from(participants), "randomising referrals");
            let report = chancery::demo::run(
                &chancery::demo::DemoOptions {
                    dir: dir.clone(),
                    protocol: protocol_path,
                    referrals: participants,
                    seed,
                    effect_pp: effect,
                },
                |_, done, _| bar.set_position(done),
            )?;
            bar.finish_and_clear();
            let s = &report.status;
            println!("trial {} created in {} ({} working days of referrals)", s.trial, dir.display(), report.days);
            println!(
                "screened {}  ineligible {}  declined {}  randomised {}",
                s.screened, s.ineligible, s.declined, s.randomised
            );
            for (reason, n) in &s.ineligible_by_reason {
                println!("  ineligible: {reason} {n}");
            }
            println!("by arm: {}", s.by_arm.iter().map(|(a, n)| format!("{a} {n}")).collect::<Vec<_>>().join(", "));
            for (site, counts) in &s.by_site {
                println!(
                    "  {site:<14} {}",
                    counts.iter().map(|(a, n)| format!("{a} {n}")).collect::<Vec<_>>().join(", ")
                );
            }
            let worst = s
                .by_stratum
                .values()
                .map(|c| {
                    let v: Vec<i64> = c.values().map(|&n| n as i64).collect();
                    v.iter().max().unwrap_or(&0) - v.iter().min().unwrap_or(&0)
                })
                .max()
                .unwrap_or(0);
            println!("{} strata; largest difference between arms within a stratum: {worst}", s.by_stratum.len());
            println!("{} (simulated through {})", follow_up_line(s), report.last_day);
            println!("log: {} entries, head {}", s.log_entries, s.head);
            let published = chancery::demo::publish(&report)?;
            let v = &published.built.verification;
            println!(
                "verify (against the checkpoint): {}",
                if v.ok { "every check that could run passed" } else { "FAILED" }
            );
            if let Some(p) = &published.built.analysis.primary {
                println!("primary outcome ({}): {}  [true simulated effect {effect:+} pp]", p.outcome, p.headline);
            }
            println!("database   {}", report.db.display());
            println!("key        {}", report.key.display());
            println!("checkpoint {}", published.checkpoint.display());
            println!("analysis   {}", published.tables.display());
            println!("report     {}", published.report.display());
            println!("next: chancery status --db {}", report.db.display());
            Ok(())
        }
        Command::Followup(FollowupCommand::Due { db, on, time, json }) => {
            let today = time.resolve()?;
            let trial = Trial::open_read_only(&db)?;
            let on = match on {
                Some(d) => chancery::clock::parse_date(&d)?,
                None => today.today(trial.protocol().timezone),
            };
            let due = trial.due(on)?;
            if json {
                return print_json(&due);
            }
            let mut out = std::io::stdout().lock();
            let w = |out: &mut dyn Write, line: String| writeln!(out, "{line}").map_err(Error::io("writing output"));
            w(&mut out, format!("follow-up due on {on}: {} (the arm is not shown)", due.len()))?;
            for d in &due {
                let extra =
                    if d.state == "overdue" { format!(", {} days overdue", d.days_overdue) } else { String::new() };
                w(
                    &mut out,
                    format!(
                        "  {:<12} {:<14} {:<4} {:<9} window {} to {}{extra}",
                        d.participant, d.site, d.timepoint, d.state, d.window_opens, d.window_closes
                    ),
                )?;
            }
            Ok(())
        }
        Command::Outcome(OutcomeCommand::Record {
            db,
            participant,
            timepoint,
            set,
            on,
            window_reason,
            clock,
            json,
        }) => {
            let now = clock.now()?;
            let mut trial = open_writer(&db)?;
            let collected_on = match on {
                Some(d) => chancery::clock::parse_date(&d)?,
                // The trial's date now; the write checks it against its own
                // reading of the clock, which can only be the same or later.
                None => now.today(trial.protocol().timezone),
            };
            let values = set
                .iter()
                .map(|s| {
                    s.split_once('=')
                        .map(|(k, v)| (chancery::values::canonical_name(k), v.to_string()))
                        .ok_or_else(|| Error::Input(format!("--set {s:?} is not FIELD=VALUE")))
                })
                .collect::<Result<Vec<_>>>()?;
            let entry =
                chancery::followup::OutcomeEntry { participant, timepoint, collected_on, values, window_reason };
            let written = trial.record_outcomes(&[("outcome".to_string(), entry)], &clock.user(), now)?;
            report_written(&written[0], "recorded", json)
        }
        Command::Outcome(OutcomeCommand::Import { db, csv, delimiter, clock, json }) => {
            let now = clock.now()?;
            let bytes = bounded::read(&csv, Limits::CSV)?;
            let mut trial = open_writer(&db)?;
            let today = now.today(trial.protocol().timezone);
            let options = chancery::table_input::CsvOptions { delimiter };
            let entries = chancery::followup::read_outcome_csv(&csv.display().to_string(), &bytes[..], today, &options)
                .map_err(Error::Input)?;
            let written = trial.record_outcomes(&entries, &clock.user(), now)?;
            if json {
                return print_json(&written);
            }
            println!("imported {} follow-up records from {}", written.len(), csv.display());
            Ok(())
        }
        Command::Outcome(OutcomeCommand::Correct { db, participant, timepoint, set, clear, reason, clock, json }) => {
            // An empty value is a correction to missing: asked for by --clear
            // alone, so a slip of `--set FIELD=` is not taken for one.
            let (field, value) = match (&set, &clear) {
                (Some(set), _) => {
                    let (field, value) =
                        set.split_once('=').ok_or_else(|| Error::Input(format!("--set {set:?} is not FIELD=VALUE")))?;
                    if value.trim().is_empty() {
                        return Err(Error::Input(format!(
                            "--set {set:?} gives no value; to correct {} to missing use --clear {}",
                            field.trim(),
                            field.trim()
                        )));
                    }
                    (field, value)
                }
                (None, Some(field)) => (field.as_str(), ""),
                (None, None) => return Err(Error::Input("give --set FIELD=VALUE or --clear FIELD".into())),
            };
            let mut trial = open_writer(&db)?;
            let correction = chancery::followup::Correction {
                participant,
                timepoint,
                field: chancery::values::canonical_name(field),
                value: value.to_string(),
                reason,
            };
            let w = trial.correct_outcome(&correction, &clock.user(), clock.now()?)?;
            report_written(&w, "corrected", json)
        }
        Command::Withdraw { args, no_further_contact } => {
            status_change(args, StatusKind::Withdrawn, no_further_contact)
        }
        Command::Reconsent { args } => {
            let on = args.on.as_deref().map(chancery::clock::parse_date).transpose()?;
            let mut trial = Trial::open(&args.db)?;
            let w = trial.renew_consent(&args.participant, &args.reason, on, &args.clock.user(), args.clock.now()?)?;
            report_written(&w, "consent renewed: contact and data collection permitted again", args.json)
        }
        Command::Lost { args } => status_change(args, StatusKind::Lost, false),
        Command::Died { args } => status_change(args, StatusKind::Died, false),
        Command::Analyse { db, out, force, json, as_of, mode } => {
            let trial = Trial::open_read_only(&db)?;
            let as_of = match as_of {
                Some(d) => chancery::clock::parse_date(&d)?,
                None => trial.last_entry_date()?,
            };
            let analysis = chancery::analysis::analyse(&trial.dataset(as_of)?)?;
            if let Some(dir) = &out {
                let tables = chancery::analysis::tables(&analysis)?;
                for path in outfile::write_set(dir, &tables, Overwrite::forced(force), mode)? {
                    eprintln!("wrote {}", path.display());
                }
            }
            if json {
                return print_json(&analysis);
            }
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(chancery::analysis::markdown(&analysis).as_bytes()).map_err(Error::io("writing output"))
        }
        Command::Report { db, out, force, checkpoint, as_of, mode } => {
            let as_of = as_of.as_deref().map(chancery::clock::parse_date).transpose()?;
            let built = chancery::report::for_trial(&db, read_checkpoints(checkpoint)?, as_of)?;
            let written =
                outfile::write_set(&out, &[("report.html", built.html.into_bytes())], Overwrite::forced(force), mode)?;
            let path = &written[0];
            println!("report written to {}", path.display());
            if !built.verification.ok {
                println!(
                    "WARNING: verification FAILED; the report says so. Run `chancery verify --db {}`",
                    db.display()
                );
            }
            if let Some(p) = &built.analysis.primary {
                println!("{} at {}: {}", p.label, p.timepoint, p.headline);
            }
            Ok(())
        }
        Command::Simulate { protocol, trials, participants, seed, analysis: true, effect, json } => {
            simulate_analysis(protocol, trials.unwrap_or(200), participants, effect, &seed, json)
        }
        Command::Simulate { protocol, trials, participants, seed, analysis: false, effect: _, json } => {
            simulate(protocol, trials.unwrap_or(100), participants, &seed, json)
        }
        Command::Migrate { db } => {
            let (from, to) = chancery::ledger::migrate(&db)?;
            println!(
                "migrated {} from schema {from} to {to}; the log is unchanged (check with `chancery verify`)",
                db.display()
            );
            Ok(())
        }
        Command::Backup { db, to, force } => {
            let b = chancery::verify::backup(&db, &to, Overwrite::forced(force))?;
            println!("backed up {} entries (head {}) to {}; the copy verifies", b.entries, b.head, b.path.display());
            Ok(())
        }
        Command::Power { protocol, n, attrition, json, design } => {
            if design.is_some() && (n.is_some() || attrition.is_some() || protocol.is_some()) {
                return Err(Error::Input(
                    "--protocol, --n and --attrition before `proportions` or `means` apply to the protocol's [design]; give the design's own options after the subcommand".into(),
                ));
            }
            let overrides = chancery::design::DesignOverrides { n_intervention: n, attrition, ..Default::default() };
            power(protocol, overrides, design, json)
        }
        Command::Verify { db, key, seed, checkpoint, json } => verify(db, key, seed, checkpoint, json),
        Command::Checkpoint { db, key, out, force, clock } => {
            let trial = Trial::open_read_only(&db)?;
            let key = key.unwrap_or_else(|| keys::default_key_path(&db));
            let signing = keys::read_signing_key(&keys::signing_key_path(&key))?;
            let c = trial.checkpoint(&signing, clock.now()?.read())?;
            match out {
                None => {
                    print!("{}", c.to_text());
                    Ok(())
                }
                Some(path) => {
                    // Owner-only like every output; share it as a file, by hand.
                    outfile::write(&path, c.to_text().as_bytes(), Overwrite::forced(force), outfile::OUTPUT_MODE)?;
                    println!("checkpoint of {} entries, head {}, written to {}", c.length, c.head, path.display());
                    Ok(())
                }
            }
        }
        Command::Reveal { db, key, reason, clock, json } => {
            let mut trial = open_writer(&db)?;
            let key = TrialKey::read(&key.unwrap_or_else(|| keys::default_key_path(&db)))?;
            let r = trial.reveal(&key, &reason, &clock.user(), clock.now()?)?;
            if json {
                return print_json(&r);
            }
            println!(
                "seed revealed in log entry {} ({}); randomisation is now closed. log: {} entries, head {}",
                r.seq, r.entry_hash, r.log_length, r.head
            );
            println!("anyone can now re-derive every allocation: chancery verify --db {}", db.display());
            Ok(())
        }
        Command::Export { db, what, format, out, force, mode } => {
            // Refused before the work if the file exists.
            let file = out.as_deref().map(|p| OutFile::create(p, Overwrite::forced(force), mode)).transpose()?;
            let trial = Trial::open_read_only(&db)?;
            let table = match what {
                What::Allocations => export::allocations(&trial)?,
                What::Log => export::log(&trial)?,
                What::Participants => export::participants(&trial, trial.last_entry_date()?)?,
                What::Outcomes => export::outcomes(&trial)?,
                What::History => export::history(&trial)?,
                What::Codebook => export::codebook(&trial)?,
            };
            let format = match format {
                OutFormat::Csv => Format::Csv,
                OutFormat::Json => Format::Json,
            };
            match file {
                Some(mut f) => {
                    table.write(format, &mut f)?;
                    f.commit()
                }
                None => {
                    let mut w = std::io::stdout().lock();
                    table.write(format, &mut w)?;
                    w.flush().map_err(Error::io("writing the export"))
                }
            }
        }
    }
}

fn report_written(w: &chancery::outcome::Written, what: &str, json: bool) -> Result<()> {
    if json {
        return print_json(w);
    }
    println!("{}: {what}; log entry {} ({})", w.participant, w.seq, w.entry_hash);
    Ok(())
}

fn status_change(args: StatusArgs, kind: StatusKind, no_further_contact: bool) -> Result<()> {
    let on = args.on.as_deref().map(chancery::clock::parse_date).transpose()?;
    let mut trial = open_writer(&args.db)?;
    let w = trial.change_status(
        &args.participant,
        kind,
        &args.reason,
        no_further_contact,
        on,
        &args.clock.user(),
        args.clock.now()?,
    )?;
    report_written(&w, &format!("recorded as {}", kind.as_str()), args.json)
}

/// The default protocol, bundled so that `chancery demo` works from any folder.
const DEFAULT_PROTOCOL: &str = include_str!("../protocol/work-health-ips.toml");

/// A progress bar on standard error, hidden when it is not a terminal.
fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

fn print_confirmation(out: &mut dyn Write, c: &Confirmation) -> std::io::Result<()> {
    match c.status.as_str() {
        "randomised" => writeln!(
            out,
            "{}: randomised to {} ({}) at {}; stratum {}; log entry {} ({})",
            c.participant,
            c.arm.as_deref().unwrap_or(""),
            c.arm_label.as_deref().unwrap_or(""),
            c.site,
            c.stratum.as_deref().unwrap_or(""),
            c.seq,
            c.entry_hash
        ),
        "ineligible" => writeln!(
            out,
            "{}: not eligible ({}); recorded as screened out, log entry {}",
            c.participant,
            c.reasons.join("; "),
            c.seq
        ),
        _ => writeln!(out, "{}: declined consent; recorded, log entry {}", c.participant, c.seq),
    }
}

/// `follow-up: m4 3901, m12 3529; withdrawn 96, lost 180, died 5`
fn follow_up_line(s: &chancery::ledger::Status) -> String {
    let tps: Vec<String> = s.followed_up.iter().map(|(t, n)| format!("{t} {n}")).collect();
    let mut line = format!("follow-up: {}", if tps.is_empty() { "none declared".to_string() } else { tps.join(", ") });
    if !s.not_active.is_empty() {
        let st: Vec<String> = s.not_active.iter().map(|(k, n)| format!("{k} {n}")).collect();
        line.push_str(&format!("; {}", st.join(", ")));
    }
    if s.no_further_contact > 0 {
        line.push_str(&format!("; no further contact {}", s.no_further_contact));
    }
    line
}

fn verify(
    db: PathBuf,
    key: Option<PathBuf>,
    seed: Option<String>,
    checkpoints: Vec<PathBuf>,
    json: bool,
) -> Result<()> {
    use chancery::verify::{Status, VerifyOptions};
    let seed = match (key, seed) {
        (Some(k), _) => Some(TrialKey::read(&k)?.seed),
        (None, Some(s)) => Some(keys::parse_seed(&s)?),
        (None, None) => None,
    };
    let mut given = Vec::new();
    for path in checkpoints {
        let text = bounded::read_to_string(&path, Limits::CHECKPOINT)?;
        let c = chancery::checkpoint::Checkpoint::parse(&text)
            .map_err(|m| Error::Input(format!("checkpoint {}: {m}", path.display())))?;
        given.push((path.display().to_string(), c));
    }
    let report = chancery::verify::verify(&VerifyOptions {
        db: db.clone(),
        seed,
        checkpoints: given,
        scratch_dir: std::env::temp_dir(),
    })?;
    if json {
        print_json(&report)?;
    } else {
        let mut out = std::io::stdout().lock();
        let w = |out: &mut dyn Write, line: String| writeln!(out, "{line}").map_err(Error::io("writing output"));
        w(&mut out, format!("verifying {}: {} entries, head {}", db.display(), report.entries, report.head))?;
        for c in &report.checks {
            let mark = match c.status {
                Status::Passed => "ok  ",
                Status::Failed => "FAIL",
                Status::Skipped => "skip",
            };
            w(&mut out, format!("  {mark} {:<20} {}", c.name, c.message))?;
        }
    }
    match report.first_failure() {
        None => {
            if !json {
                println!(
                    "{}",
                    if report.complete {
                        "verified: every check passed"
                    } else {
                        "verified: every check that could run passed"
                    }
                );
            }
            Ok(())
        }
        Some(c) => Err(Error::Integrity(match c.seq {
            Some(seq) => format!("verification failed at log entry {seq}: {} check: {}", c.name, c.message),
            // A check of the file rather than of an entry (the schema).
            None => format!("verification failed: {} check: {}", c.name, c.message),
        })),
    }
}

/// Opens a trial for a command that writes, warning first (one line on
/// standard error) if the database is on a memory-backed filesystem.
fn open_writer(db: &Path) -> Result<Trial> {
    warn_if_volatile(db);
    Trial::open(db)
}

fn warn_if_volatile(db: &Path) {
    if let Some(w) = chancery::store::volatile_warning(db) {
        let _ = writeln!(std::io::stderr(), "{w}");
    }
}

/// Reads and parses checkpoint files, each named by its path for messages.
fn read_checkpoints(paths: Vec<PathBuf>) -> Result<Vec<(String, chancery::checkpoint::Checkpoint)>> {
    let mut given = Vec::new();
    for path in paths {
        let text = bounded::read_to_string(&path, Limits::CHECKPOINT)?;
        let c = chancery::checkpoint::Checkpoint::parse(&text)
            .map_err(|m| Error::Input(format!("checkpoint {}: {m}", path.display())))?;
        given.push((path.display().to_string(), c));
    }
    Ok(given)
}

fn power(
    protocol: Option<PathBuf>,
    overrides: chancery::design::DesignOverrides,
    design: Option<PowerDesign>,
    json: bool,
) -> Result<()> {
    use chancery::stats::power::{Solve, TwoMeans, TwoProportions, two_means, two_proportions};
    let stats = |e: chancery::stats::StatsError| Error::Input(format!("{e}"));
    let solve = |c: &PowerArgs| match (c.power, c.n) {
        (_, Some(n1)) => Solve::Power { n1 },
        (Some(power), None) => Solve::SampleSize { power },
        (None, None) => Solve::SampleSize { power: 0.9 },
    };
    let (what, calc) = match design {
        Some(PowerDesign::Proportions { p1, p2, common }) => (
            format!("two proportions: {p1} vs {p2}"),
            two_proportions(
                &TwoProportions {
                    p1,
                    p2,
                    sig_level: common.alpha,
                    allocation_ratio: common.ratio,
                    attrition: common.attrition,
                },
                solve(&common),
            )
            .map_err(stats)?,
        ),
        Some(PowerDesign::Means { delta, sd, common }) => (
            format!("two means: difference {delta}, SD {sd}"),
            two_means(
                &TwoMeans {
                    delta,
                    sd,
                    sig_level: common.alpha,
                    allocation_ratio: common.ratio,
                    attrition: common.attrition,
                },
                solve(&common),
            )
            .map_err(stats)?,
        ),
        None => {
            let (p, name) = match &protocol {
                Some(path) => (chancery::protocol::Protocol::load(path)?, path.display().to_string()),
                None => (
                    chancery::protocol::Protocol::parse("the default protocol", DEFAULT_PROTOCOL)?,
                    "the default protocol".to_string(),
                ),
            };
            if p.design.is_none() {
                return Err(Error::Input(format!(
                    "{name} has no [design] table; add one or give `proportions` or `means`"
                )));
            }
            let s = chancery::design::sample_size(&p, &overrides)?;
            let outcome =
                p.outcomes.iter().find(|o| o.primary).map_or("primary outcome".to_string(), |o| o.label.clone());
            (
                format!(
                    "{}: {outcome}, {:.1}% under {} vs {:.1}% under {} ({:+} pp)",
                    p.id,
                    s.control_rate * 100.0,
                    s.control,
                    s.intervention_rate * 100.0,
                    s.intervention,
                    p.design.as_ref().map_or(0.0, |d| d.effect_pp)
                ),
                s.calculation,
            )
        }
    };
    if json {
        return print_json(&calc);
    }
    println!("{what}");
    println!("method: {}", calc.method);
    println!(
        "analysed: {:.2} intervention + {:.2} control; power {:.4} at two-sided alpha {}",
        calc.n1, calc.n2, calc.power, calc.sig_level
    );
    println!(
        "recruit: {} intervention + {} control = {} in total",
        calc.recruit1,
        calc.recruit2,
        calc.recruit1 + calc.recruit2
    );
    Ok(())
}

/// Reads a protocol file, or the bundled default.
fn load_protocol(path: &Option<PathBuf>) -> Result<chancery::protocol::Protocol> {
    match path {
        Some(p) => chancery::protocol::Protocol::load(p),
        None => chancery::protocol::Protocol::parse("work-health-ips.toml (bundled)", DEFAULT_PROTOCOL),
    }
}

/// Participants per simulated trial: as given, else the number to recruit
/// for the protocol's [design], else 1000.
fn simulated_participants(p: &chancery::protocol::Protocol, participants: Option<u32>) -> Result<u32> {
    Ok(match participants {
        Some(n) => n,
        None => match &p.design {
            Some(_) => {
                let s = chancery::design::sample_size(p, &Default::default())?;
                u32::try_from(s.recruit_total).unwrap_or(u32::MAX).min(1_000_000)
            }
            None => 1000,
        },
    })
}

fn simulate_analysis(
    protocol: Option<PathBuf>,
    trials: u32,
    participants: Option<u32>,
    effect: Option<f64>,
    seed: &str,
    json: bool,
) -> Result<()> {
    let seed = keys::parse_seed(seed)?;
    let p = load_protocol(&protocol)?;
    let participants = simulated_participants(&p, participants)?;
    let effect_pp = effect.unwrap_or_else(|| p.design.as_ref().map_or(4.0, |d| d.effect_pp));
    let bar = progress_bar(u64::from(trials), "simulating trials");
    let o = chancery::operating::simulate_analysis(
        &p,
        &chancery::operating::OperatingOptions { trials, participants, effect_pp, seed },
        |done, _| bar.set_position(done),
    )?;
    bar.finish_and_clear();
    if json {
        return print_json(&o);
    }
    let mut out = std::io::stdout().lock();
    let w = |out: &mut dyn Write, line: String| writeln!(out, "{line}").map_err(Error::io("writing output"));
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    w(
        &mut out,
        format!(
            "trial {}: {} simulated trials of {} participants (the demonstration's referrals, attrition and outcomes), effect {:+} pp",
            o.trial, o.trials, o.participants, o.effect_pp
        ),
    )?;
    w(&mut out, format!("primary outcome: {}; headline: {}", o.outcome, o.method))?;
    w(&mut out, format!("true effect: {:+.2} pp ({})", o.true_effect, o.estimand))?;
    w(
        &mut out,
        format!("mean estimate: {:+.2} pp (Monte Carlo SE {:.2}); bias {:+.2} pp", o.mean_estimate, o.mc_se, o.bias),
    )?;
    w(
        &mut out,
        format!("standard error: empirical {:.2} pp, mean reported {:.2} pp", o.empirical_se, o.mean_reported_se),
    )?;
    w(
        &mut out,
        format!("{:.0}% CI coverage: {} (Monte Carlo SE {})", o.level * 100.0, pct(o.coverage), pct(o.coverage_mc_se)),
    )?;
    let what = if o.true_effect == 0.0 { "type I error" } else { "power" };
    w(
        &mut out,
        format!(
            "rejection rate ({what}, two-sided {}): {} (Monte Carlo SE {})",
            ((1.0 - o.level) * 1000.0).round() / 1000.0,
            pct(o.rejection_rate),
            pct(o.rejection_mc_se)
        ),
    )?;
    w(
        &mut out,
        format!(
            "analysed: {:.0} of {} per trial on average (the rest without the primary outcome); estimable in {} of {} trials",
            o.mean_analysed, o.participants, o.estimated, o.trials
        ),
    )
}

fn simulate(protocol: Option<PathBuf>, trials: u32, participants: Option<u32>, seed: &str, json: bool) -> Result<()> {
    let seed = keys::parse_seed(seed)?;
    let p = load_protocol(&protocol)?;
    let participants = simulated_participants(&p, participants)?;
    let bar = progress_bar(u64::from(trials), "simulating trials");
    let a = chancery::design::simulate(
        &p,
        &chancery::design::SimulationOptions { trials, participants, seed },
        |done, _| bar.set_position(done),
    )?;
    bar.finish_and_clear();
    if json {
        return print_json(&a);
    }
    let mut out = std::io::stdout().lock();
    let w = |out: &mut dyn Write, line: String| writeln!(out, "{line}").map_err(Error::io("writing output"));
    w(
        &mut out,
        format!(
            "trial {}: {} simulated trials of {} participants; arms {}",
            a.trial,
            a.trials,
            a.participants,
            a.arms.iter().map(|(id, r)| format!("{id} ({r})")).collect::<Vec<_>>().join(", ")
        ),
    )?;
    w(&mut out, format!("referrals: {}; {} strata", a.referral_mix, a.strata.len()))?;
    w(&mut out, format!("imbalance: {}", a.imbalance_measure))?;
    w(&mut out, "predictability: share of allocations guessed right by a recruiter who knows past allocations in the stratum and guesses the arm that is behind".into())?;
    w(&mut out, String::new())?;
    w(
        &mut out,
        format!(
            "{:<20} {:>14} {:>22} {:>22} {:>14}  method",
            "", "predictability", "final imbalance", "max running imbalance", "worst stratum"
        ),
    )?;
    w(&mut out, format!("{:<20} {:>14} {:>22} {:>22} {:>14}", "", "", "mean / p95 / max", "mean / p95 / max", "max"))?;
    let sp = |s: &chancery::design::Spread| format!("{:.1} / {:.0} / {:.0}", s.mean, s.p95, s.max);
    for m in &a.methods {
        w(
            &mut out,
            format!(
                "{:<20} {:>13.1}% {:>22} {:>22} {:>14}  {}",
                m.name,
                m.predictability * 100.0,
                sp(&m.final_imbalance),
                sp(&m.max_imbalance),
                format!("{:.0}", m.worst_stratum_imbalance),
                m.description
            ),
        )?;
    }
    w(&mut out, String::new())?;
    w(
        &mut out,
        "by stratum: mean participants, then mean final imbalance / worst running imbalance per method".into(),
    )?;
    let header: Vec<String> = a.methods.iter().map(|m| format!("{:>20}", m.name)).collect();
    let width = a.strata.iter().map(|s| s.stratum.chars().count()).max().unwrap_or(0).max(7);
    w(&mut out, format!("{:<width$} {:>8} {}", "stratum", "n", header.join(" ")))?;
    for (i, st) in a.strata.iter().enumerate() {
        let cells: Vec<String> = a
            .methods
            .iter()
            .map(|m| {
                let s = &m.strata[i];
                format!("{:>20}", format!("{:.1} / {:.0}", s.final_imbalance.mean, s.max_imbalance.max))
            })
            .collect();
        let n = a.methods.first().map_or(0.0, |m| m.strata[i].participants);
        w(&mut out, format!("{:<width$} {:>8.1} {}", st.stratum, n, cells.join(" ")))?;
    }
    Ok(())
}

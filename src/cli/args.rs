//! The command line's arguments: the clap types of every subcommand, and the
//! clock and acting user they resolve to.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use chancery::clock::Timestamp;
use chancery::error::Result;
use chancery::keys;

#[derive(Parser)]
#[command(
    name = "chancery",
    version,
    about = "Randomised controlled trials: concealed seeded allocation, a tamper-evident log, outcomes and the ITT analysis"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The time: `--now`, or the system clock (read by a write once it holds
/// the write lock). Every command with a notion of "today" takes it.
#[derive(clap::Args, Clone)]
pub(crate) struct Now {
    /// The time to use (RFC 3339, UTC) instead of the system clock.
    #[arg(long, env = "CHANCERY_NOW", value_name = "TIMESTAMP")]
    pub(crate) now: Option<String>,
    /// Accept a --now more than 5 minutes ahead of the system clock (simulations, demonstrations).
    #[arg(
        long,
        env = "CHANCERY_ALLOW_FUTURE_TIME",
        action = clap::ArgAction::SetTrue,
        // Set but empty is off, like unset (FalseyValueParser: "", 0, no,
        // false, off are off).
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub(crate) allow_future_time: bool,
}

impl Now {
    pub(crate) fn resolve(&self) -> Result<chancery::clock::Clock> {
        // CHANCERY_NOW set but empty is unset: the system clock.
        match self.now.as_deref().filter(|t| !t.trim().is_empty()) {
            Some(t) => chancery::clock::Clock::given(Timestamp::parse(t)?, Timestamp::system(), self.allow_future_time),
            None => Ok(chancery::clock::Clock::System),
        }
    }
}

#[derive(clap::Args, Clone)]
pub(crate) struct Clock {
    #[command(flatten)]
    pub(crate) time: Now,
    /// The acting user recorded in the log (default: the OS user).
    #[arg(long, value_name = "NAME")]
    pub(crate) user: Option<String>,
}

impl Clock {
    pub(crate) fn now(&self) -> Result<chancery::clock::Clock> {
        self.time.resolve()
    }
    /// `--user`, else `$USER`; empty if neither gives one, which every
    /// writer refuses (`text::user`) rather than record an unknown user.
    pub(crate) fn user(&self) -> String {
        self.user.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_default()
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum OutFormat {
    Csv,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum What {
    Allocations,
    Log,
    Participants,
    Outcomes,
    History,
    Codebook,
}

#[derive(Subcommand)]
pub(crate) enum PowerDesign {
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
pub(crate) struct PowerArgs {
    /// Target power: solve for the sample size.
    #[arg(long, conflicts_with = "n", allow_negative_numbers = true)]
    pub(crate) power: Option<f64>,
    /// Participants analysed in the intervention arm: solve for the power.
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) n: Option<f64>,
    /// Two-sided significance level.
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    pub(crate) alpha: f64,
    /// Control participants per intervention participant (allocation ratio).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub(crate) ratio: f64,
    /// Expected share without an outcome (lost, withdrawn), 0 ≤ a < 1.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub(crate) attrition: f64,
}

#[derive(Subcommand)]
pub(crate) enum FollowupCommand {
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
pub(crate) enum OutcomeCommand {
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

#[derive(Subcommand)]
pub(crate) enum UserCommand {
    /// Add an account (the first administrator is made this way). The
    /// password is read from standard input with --password-stdin, else asked
    /// for twice at the terminal; it is never an argument.
    Add {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The account's name (letters, digits, '.', '_', '-', '@').
        #[arg(long, value_name = "NAME")]
        name: String,
        /// A role: admin, coordinator, data_manager, evaluator or auditor (repeat for several).
        #[arg(long = "role", value_name = "ROLE", required = true)]
        roles: Vec<String>,
        /// A site a coordinator works at (repeat for several).
        #[arg(long = "site", value_name = "SITE")]
        sites: Vec<String>,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// Why (recorded in the log).
        #[arg(long, value_name = "TEXT", default_value = "new account")]
        reason: String,
        #[command(flatten)]
        clock: Clock,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Disable an account: it can no longer log in, and its tokens stop working.
    Disable {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The account.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// Why.
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[command(flatten)]
        clock: Clock,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set an account's password anew (and lift a lockout).
    ResetPassword {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The account.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// Why.
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[command(flatten)]
        clock: Clock,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replace an account's roles and sites (give the full new set).
    Change {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The account.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// A role from now on (repeat for several).
        #[arg(long = "role", value_name = "ROLE", required = true)]
        roles: Vec<String>,
        /// A site from now on (repeat for several; coordinators only).
        #[arg(long = "site", value_name = "SITE")]
        sites: Vec<String>,
        /// Why.
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[command(flatten)]
        clock: Clock,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The accounts: roles, sites, whether disabled or locked, live tokens.
    List {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        #[command(flatten)]
        time: Now,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Create an API token for an account; prints the token alone (shown once: only its hash is kept).
    Create {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The account the token acts as.
        #[arg(long = "user", value_name = "NAME")]
        account: String,
        /// Days until it expires (1 to 365).
        #[arg(long, value_name = "N", default_value_t = chancery::ledger::TOKEN_DAYS_DEFAULT)]
        expires_days: u32,
        /// The acting user recorded in the log (default: the OS user).
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
        #[command(flatten)]
        time: Now,
    },
    /// Revoke an API token.
    Revoke {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The token's id (as `token list` shows it).
        #[arg(long, value_name = "ID")]
        id: String,
        /// Why.
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[command(flatten)]
        clock: Clock,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The API tokens: id, account, expiry, whether revoked (never the token).
    List {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub(crate) struct StatusArgs {
    /// The trial database.
    #[arg(long, value_name = "FILE")]
    pub(crate) db: PathBuf,
    /// Participant id.
    #[arg(long, value_name = "ID")]
    pub(crate) participant: String,
    /// Why.
    #[arg(long, value_name = "TEXT")]
    pub(crate) reason: String,
    /// The date of the change (default: today in the trial's time zone).
    #[arg(long, value_name = "DATE")]
    pub(crate) on: Option<String>,
    #[command(flatten)]
    pub(crate) clock: Clock,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
    /// Run the trial as an HTTP service (pages and the JSON API) until SIGTERM
    /// or ctrl-c; prints `listening on http://ADDR` first.
    Serve {
        /// The trial database.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The trial key file (default: <db>.key); refused if others can read it.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// The address to listen on (port 0: any free port).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// TLS certificate chain (PEM).
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Serve plain HTTP on an address other than loopback (only on a network protected otherwise).
        #[arg(long)]
        insecure_http: bool,
        /// Minutes a session may stay unused before it ends.
        #[arg(long, value_name = "MINUTES", default_value_t = 30.0)]
        idle_minutes: f64,
        /// Hours after login a session ends, used or not.
        #[arg(long, value_name = "HOURS", default_value_t = 12.0)]
        session_hours: f64,
    },
    /// Accounts: add, disable, reset a password, change roles and sites, list.
    #[command(subcommand)]
    User(UserCommand),
    /// API tokens for machines: create, revoke, list.
    #[command(subcommand)]
    Token(TokenCommand),
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

/// A name as the protocol spells it (trimmed, lowercase), for clap.
fn protocol_name(s: &str) -> std::result::Result<String, String> {
    Ok(chancery::values::canonical_name(s))
}

/// A `--delimiter` value, for clap.
fn parse_delimiter(s: &str) -> std::result::Result<u8, String> {
    chancery::table_input::parse_delimiter(s)
}

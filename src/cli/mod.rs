//! The `chancery` command line: each subcommand parses its arguments into one
//! operation's request ([`chancery::operations`]), resolves the clock and the
//! user, calls the operation and prints its result. The work, and every rule
//! about it, is in the operations; what is here is about arguments and output.
//!
//! - [`args`]: the clap types.
//! - [`output`]: JSON results, errors (and their JSON form), progress bars.
//! - [`text`]: the text form of each result.

pub(crate) mod args;
pub(crate) mod output;
pub(crate) mod text;

use std::io::Write;
use std::path::PathBuf;

use chancery::bounded::{self, Limits};
use chancery::error::{Error, Result};
use chancery::export::Format;
use chancery::keys;
use chancery::operations::{self as op, CorrectTo, ExportTable, PowerOptions, Referrals, StatusChange};
use chancery::outfile::{self, OutFile, Overwrite};
use chancery::referral::truncate;

use args::{
    Command, FollowupCommand, OutFormat, OutcomeCommand, PowerArgs, PowerDesign, StatusArgs, TokenCommand, UserCommand,
    What,
};
use output::{print_json, progress_bar, warn};

/// A `--set FIELD=VALUE` argument as a (field, value) pair. The message is
/// about the option, so it is made here; `long` keeps an over-long argument
/// whole in the message (outcome values), else it is cut at 40 characters.
fn assignment(s: &str, long: bool) -> Result<(String, String)> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| {
        Error::Input(if long {
            format!("--set {s:?} is not FIELD=VALUE")
        } else {
            format!("--set {:?} is not FIELD=VALUE", truncate(s, 40))
        })
    })
}

fn date(text: &Option<String>) -> Result<Option<chrono::NaiveDate>> {
    text.as_deref().map(chancery::clock::parse_date).transpose()
}

/// Reads and parses checkpoint files, each named by its path for messages.
fn read_checkpoints(paths: &[PathBuf]) -> Result<Vec<(String, chancery::checkpoint::Checkpoint)>> {
    paths
        .iter()
        .map(|path| {
            op::checkpoint_from_text(&path.display().to_string(), &bounded::read_to_string(path, Limits::CHECKPOINT)?)
        })
        .collect()
}

/// Runs one parsed command.
pub(crate) fn run(command: Command) -> Result<()> {
    match command {
        Command::Init { protocol, db, key, seed, clock, json } => {
            warn(op::volatile_warning(&db));
            let seed = seed.as_deref().map(keys::parse_seed).transpose()?;
            let user = clock.user();
            let report = op::init(&op::InitRequest { protocol, db, key, seed, user, clock: clock.now()? })?;
            if json {
                return print_json(&report);
            }
            text::init(&report);
            Ok(())
        }
        Command::Randomise { db, key, participant, site, set, batch, delimiter, clock, json } => {
            let now = clock.now()?; // read inside the write transaction
            let user = clock.user();
            let referrals = match &batch {
                Some(path) => {
                    let bytes = bounded::read(path, Limits::CSV)?;
                    Referrals::from_csv(&path.display().to_string(), &bytes, delimiter)?
                }
                None => {
                    let values = set.iter().map(|s| assignment(s, false)).collect::<Result<Vec<_>>>()?;
                    Referrals::single(
                        participant.as_deref().unwrap_or_default(),
                        site.as_deref().unwrap_or_default(),
                        &values,
                    )
                }
            };
            warn(op::volatile_warning(&db));
            let mut trial = op::open(&db)?;
            let key = op::read_trial_key(&op::key_path(&db, key.as_deref()))?;
            let r = op::randomise(&mut trial, &key, &op::RandomiseRequest { referrals, user, clock: now })?;
            if json {
                return match r.confirmations.first() {
                    Some(single) if !r.batch => print_json(single),
                    _ => print_json(&r.confirmations),
                };
            }
            text::randomisation(&r)
        }
        Command::Status { db, json } => {
            let trial = op::open_read_only(&db)?;
            let s = op::status(&trial)?;
            if json {
                return print_json(&s.status);
            }
            text::status(&s)
        }
        Command::Demo { dir, participants, seed, protocol, effect } => {
            let plan = op::prepare_demo(&op::DemoRequest { dir, participants, seed, protocol, effect_pp: effect })?;
            println!("chancery demonstration: every referral and outcome below is SIMULATED, not real data");
            let bar = progress_bar(u64::from(participants), "randomising referrals");
            let run = op::run_demo(&plan, |_, done, _| bar.set_position(done))?;
            bar.finish_and_clear();
            text::demo_run(&run);
            let published = op::publish_demo(&run)?;
            text::demo_published(&run, &published);
            Ok(())
        }
        Command::Followup(FollowupCommand::Due { db, on, time, json }) => {
            let clock = time.resolve()?;
            let trial = op::open_read_only(&db)?;
            let on = date(&on)?;
            let d = op::due(&trial, &op::DueRequest { on, clock })?;
            if json {
                return print_json(&d.due);
            }
            text::due(&d)
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
            warn(op::volatile_warning(&db));
            let mut trial = op::open(&db)?;
            let on = date(&on)?;
            let values = set.iter().map(|s| assignment(s, true)).collect::<Result<Vec<_>>>()?;
            let request =
                op::RecordRequest { participant, timepoint, values, on, window_reason, user: clock.user(), clock: now };
            let written = op::record_outcome(&mut trial, &request)?;
            report_written(&written, "recorded", json)
        }
        Command::Outcome(OutcomeCommand::Import { db, csv, delimiter, clock, json }) => {
            let now = clock.now()?;
            let bytes = bounded::read(&csv, Limits::CSV)?;
            warn(op::volatile_warning(&db));
            let mut trial = op::open(&db)?;
            let request = op::ImportRequest {
                name: csv.display().to_string(),
                csv: bytes,
                delimiter,
                user: clock.user(),
                clock: now,
            };
            let imported = op::import_outcomes(&mut trial, &request)?;
            if json {
                return print_json(&imported.written);
            }
            text::imported(&imported);
            Ok(())
        }
        Command::Outcome(OutcomeCommand::Correct { db, participant, timepoint, set, clear, reason, clock, json }) => {
            let set = set.as_deref().map(|s| assignment(s, true)).transpose()?;
            let to = CorrectTo::new(set, clear)?;
            warn(op::volatile_warning(&db));
            let mut trial = op::open(&db)?;
            let user = clock.user();
            let request = op::CorrectRequest { participant, timepoint, to, reason, user, clock: clock.now()? };
            let written = op::correct_outcome(&mut trial, &request)?;
            report_written(&written, "corrected", json)
        }
        Command::Withdraw { args, no_further_contact } => {
            status_change(args, StatusChange::Withdrawn { no_further_contact })
        }
        Command::Reconsent { args } => status_change(args, StatusChange::ConsentRenewed),
        Command::Lost { args } => status_change(args, StatusChange::Lost),
        Command::Died { args } => status_change(args, StatusChange::Died),
        Command::Analyse { db, out, force, json, as_of, mode } => {
            let trial = op::open_read_only(&db)?;
            let as_of = date(&as_of)?;
            let a = op::analyse(&trial, &op::AnalyseRequest { as_of, tables: out.is_some() })?;
            if let Some(dir) = &out {
                for path in outfile::write_set(dir, &a.tables, Overwrite::forced(force), mode)? {
                    eprintln!("wrote {}", path.display());
                }
            }
            if json {
                return print_json(&a.analysis);
            }
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(chancery::analysis::markdown(&a.analysis).as_bytes()).map_err(Error::io("writing output"))
        }
        Command::Report { db, out, force, checkpoint, as_of, mode } => {
            let as_of = date(&as_of)?;
            let checkpoints = read_checkpoints(&checkpoint)?;
            let r = op::report(&db, &op::ReportRequest { checkpoints, as_of })?;
            let written =
                outfile::write_set(&out, &[("report.html", r.html.into_bytes())], Overwrite::forced(force), mode)?;
            println!("report written to {}", written[0].display());
            if !r.verification.ok {
                println!(
                    "WARNING: verification FAILED; the report says so. Run `chancery verify --db {}`",
                    db.display()
                );
            }
            if let Some(p) = &r.analysis.primary {
                println!("{} at {}: {}", p.label, p.timepoint, p.headline);
            }
            Ok(())
        }
        Command::Simulate { protocol, trials, participants, seed, analysis, effect, json } => {
            let request = op::SimulateRequest { protocol, trials, participants, seed, effect_pp: effect };
            // The bar is made at the first trial's report, which gives the
            // number of trials the operation settled on.
            let bar = std::sync::OnceLock::new();
            let progress =
                |done, total| bar.get_or_init(|| progress_bar(total, "simulating trials")).set_position(done);
            let finish = || {
                if let Some(b) = bar.get() {
                    b.finish_and_clear();
                }
            };
            if analysis {
                let o = op::simulate_analysis(&request, progress)?;
                finish();
                if json {
                    return print_json(&o);
                }
                text::operating(&o)
            } else {
                let a = op::simulate_allocation(&request, progress)?;
                finish();
                if json {
                    return print_json(&a);
                }
                text::assessment(&a)
            }
        }
        Command::Migrate { db } => {
            let m = op::migrate(&db)?;
            println!(
                "migrated {} from schema {} to {}; the log is unchanged (check with `chancery verify`)",
                db.display(),
                m.from,
                m.to
            );
            Ok(())
        }
        Command::Backup { db, to, force } => {
            let b = op::backup(&db, &op::BackupRequest { to, force })?;
            println!("backed up {} entries (head {}) to {}; the copy verifies", b.entries, b.head, b.path.display());
            Ok(())
        }
        Command::Power { protocol, n, attrition, json, design } => {
            if design.is_some() && (n.is_some() || attrition.is_some() || protocol.is_some()) {
                return Err(Error::Input(
                    "--protocol, --n and --attrition before `proportions` or `means` apply to the protocol's [design]; give the design's own options after the subcommand".into(),
                ));
            }
            let options = |c: PowerArgs| PowerOptions {
                power: c.power,
                n: c.n,
                alpha: c.alpha,
                ratio: c.ratio,
                attrition: c.attrition,
            };
            let design = match design {
                Some(PowerDesign::Proportions { p1, p2, common }) => {
                    op::PowerDesign::Proportions { p1, p2, options: options(common) }
                }
                Some(PowerDesign::Means { delta, sd, common }) => {
                    op::PowerDesign::Means { delta, sd, options: options(common) }
                }
                None => op::PowerDesign::Protocol {
                    protocol,
                    overrides: chancery::design::DesignOverrides { n_intervention: n, attrition, ..Default::default() },
                },
            };
            let p = op::power(&op::PowerRequest { design })?;
            if json {
                return print_json(&p.calculation);
            }
            text::power(&p);
            Ok(())
        }
        Command::Verify { db, key, seed, checkpoint, json } => {
            let seed = match (key, seed) {
                (Some(k), _) => Some(op::seed_from_key_file(&k)?),
                (None, Some(s)) => Some(keys::parse_seed(&s)?),
                (None, None) => None,
            };
            let checkpoints = read_checkpoints(&checkpoint)?;
            let v = op::verify(&db, &op::VerifyRequest { seed, checkpoints })?;
            if json {
                print_json(&v.report)?;
            } else {
                text::verification(&db, &v)?;
            }
            match v.failure {
                None => {
                    if !json {
                        text::verified(&v);
                    }
                    Ok(())
                }
                Some(message) => Err(Error::Integrity(message)),
            }
        }
        Command::Checkpoint { db, key, out, force, clock } => {
            let trial = op::open_read_only(&db)?;
            let signing = op::read_signing_key(&op::key_path(&db, key.as_deref()))?;
            let c = op::checkpoint(&trial, &signing, &op::CheckpointRequest { clock: clock.now()? })?;
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
            warn(op::volatile_warning(&db));
            let mut trial = op::open(&db)?;
            let key = op::read_trial_key(&op::key_path(&db, key.as_deref()))?;
            let user = clock.user();
            let r = op::reveal(&mut trial, &key, &op::RevealRequest { reason, user, clock: clock.now()? })?;
            if json {
                return print_json(&r);
            }
            text::revealed(&db, &r);
            Ok(())
        }
        Command::Serve { db, key, listen, tls_cert, tls_key, insecure_http, idle_minutes, session_hours } => {
            let duration = |n: f64, unit: f64, what: &str| {
                std::time::Duration::try_from_secs_f64(n * unit)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| Error::Input(format!("--{what} {n} is not a positive number")))
            };
            let mut options = chancery::service::ServeOptions::new(db);
            options.key = key;
            options.listen = listen;
            options.tls = tls_cert.zip(tls_key);
            options.insecure_http = insecure_http;
            options.idle = duration(idle_minutes, 60.0, "idle-minutes")?;
            options.absolute = duration(session_hours, 3600.0, "session-hours")?;
            chancery::service::serve(options, |address| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "listening on {address}").and_then(|()| out.flush());
            })
        }
        Command::User(c) => user_command(c),
        Command::Token(c) => token_command(c),
        Command::Export { db, what, format, out, force, mode } => {
            // Refused before the work if the file exists.
            let file = out.as_deref().map(|p| OutFile::create(p, Overwrite::forced(force), mode)).transpose()?;
            let trial = op::open_read_only(&db)?;
            let table = op::export(
                &trial,
                match what {
                    What::Allocations => ExportTable::Allocations,
                    What::Log => ExportTable::Log,
                    What::Participants => ExportTable::Participants,
                    What::Outcomes => ExportTable::Outcomes,
                    What::History => ExportTable::History,
                    What::Codebook => ExportTable::Codebook,
                },
            )?;
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
    text::written(w, what);
    Ok(())
}

fn status_change(args: StatusArgs, change: StatusChange) -> Result<()> {
    let on = date(&args.on)?;
    // Renewing consent has never warned of a memory-backed database.
    if change != StatusChange::ConsentRenewed {
        warn(op::volatile_warning(&args.db));
    }
    let mut trial = op::open(&args.db)?;
    let user = args.clock.user();
    let request = op::StatusChangeRequest {
        participant: args.participant,
        change,
        reason: args.reason,
        on,
        user,
        clock: args.clock.now()?,
    };
    let w = op::change_status(&mut trial, &request)?;
    let what = match change {
        StatusChange::Withdrawn { .. } => "recorded as withdrawn",
        StatusChange::Lost => "recorded as lost",
        StatusChange::Died => "recorded as died",
        StatusChange::ConsentRenewed => "consent renewed: contact and data collection permitted again",
    };
    report_written(&w, what, args.json)
}

/// Roles named on the command line.
fn roles(names: &[String]) -> Result<Vec<chancery::accounts::Role>> {
    names.iter().map(|r| chancery::accounts::Role::parse(r.trim()).map_err(Error::Input)).collect()
}

/// A new password: one line of standard input with `--password-stdin`, else
/// typed twice at the terminal without echo. Never an argument (arguments
/// are visible to every user of the machine).
fn new_password(stdin: bool) -> Result<String> {
    use std::io::Read;
    if stdin {
        let mut bytes = Vec::new();
        // A password is a line, not a file: a bounded read.
        std::io::stdin()
            .lock()
            .take(8192)
            .read_to_end(&mut bytes)
            .map_err(Error::io("reading the password from standard input"))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::Input("the password on standard input is not UTF-8 text".into()))?;
        // Only the line's end is taken off: spaces are part of a password.
        let line = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
        if line.contains(['\n', '\r']) {
            return Err(Error::Input(
                "standard input holds more than one line; give the password alone on one line".into(),
            ));
        }
        return Ok(line.to_string());
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt).map_err(|e| {
            Error::Input(format!("cannot read a password from the terminal ({e}); pipe it in with --password-stdin"))
        })
    };
    let first = ask("new password: ")?;
    if ask("the same again: ")? != first {
        return Err(Error::Input("the two passwords differ; nothing was written".into()));
    }
    Ok(first)
}

fn print_account(a: &op::accounts::AccountSummary, what: &str, json: bool) -> Result<()> {
    if json {
        return print_json(a);
    }
    text::account(a, what);
    Ok(())
}

fn user_command(c: UserCommand) -> Result<()> {
    use op::accounts as acc;
    match c {
        UserCommand::Add { db, name, roles: r, sites, password_stdin, reason, clock, json } => {
            let roles = roles(&r)?;
            let now = clock.now()?;
            let mut trial = op::open(&db)?;
            // The rules the password cannot break are checked before it is asked for.
            chancery::ledger::check_account_name(&name).map_err(Error::Input)?;
            chancery::ledger::grant(trial.protocol(), &roles, &sites).map_err(Error::Input)?;
            let password = new_password(password_stdin)?;
            let request =
                acc::AddAccountRequest { name, roles, sites, password, reason, user: clock.user(), clock: now };
            print_account(&acc::add_account(&mut trial, &request)?, "added", json)
        }
        UserCommand::Disable { db, name, reason, clock, json } => {
            let now = clock.now()?;
            let mut trial = op::open(&db)?;
            let request = acc::AccountRequest { name, password: String::new(), reason, user: clock.user(), clock: now };
            print_account(&acc::disable_account(&mut trial, &request)?, "disabled", json)
        }
        UserCommand::ResetPassword { db, name, password_stdin, reason, clock, json } => {
            let now = clock.now()?;
            let mut trial = op::open(&db)?;
            if acc::account(&trial, &name)?.is_none() {
                return Err(Error::Input(format!(
                    "there is no account {:?}; check the name (see `chancery user list`)",
                    truncate(&name, 40)
                )));
            }
            let password = new_password(password_stdin)?;
            let request = acc::AccountRequest { name, password, reason, user: clock.user(), clock: now };
            print_account(&acc::set_password(&mut trial, &request)?, "password set for", json)
        }
        UserCommand::Change { db, name, roles: r, sites, reason, clock, json } => {
            let roles = roles(&r)?;
            let now = clock.now()?;
            let mut trial = op::open(&db)?;
            let request = acc::ChangeAccountRequest { name, roles, sites, reason, user: clock.user(), clock: now };
            print_account(&acc::change_account(&mut trial, &request)?, "changed", json)
        }
        UserCommand::List { db, time, json } => {
            let now = time.resolve()?.read();
            let trial = op::open_read_only(&db)?;
            let accounts = acc::list_accounts_at(&trial, now)?;
            if json {
                return print_json(&accounts);
            }
            text::accounts(&accounts);
            Ok(())
        }
    }
}

fn token_command(c: TokenCommand) -> Result<()> {
    use op::accounts as acc;
    match c {
        TokenCommand::Create { db, account, expires_days, by, time } => {
            let clock = time.resolve()?;
            let user = by.or_else(|| std::env::var("USER").ok()).unwrap_or_default();
            let mut trial = op::open(&db)?;
            let t = acc::create_token(&mut trial, &acc::TokenRequest { account, expires_days, user, clock })?;
            // The token alone on standard output, for a script to take; the rest on standard error.
            println!("{}", t.token);
            eprintln!("token {} expires at {}; it is shown only this once", t.id, t.expires_at);
            Ok(())
        }
        TokenCommand::Revoke { db, id, reason, clock, json } => {
            let now = clock.now()?;
            let mut trial = op::open(&db)?;
            let t = acc::revoke_token(&mut trial, &acc::RevokeRequest { id, reason, user: clock.user(), clock: now })?;
            if json {
                return print_json(&t);
            }
            println!("revoked token {} of account {}", t.id, t.account);
            Ok(())
        }
        TokenCommand::List { db, json } => {
            let trial = op::open_read_only(&db)?;
            let tokens = acc::list_tokens(&trial)?;
            if json {
                return print_json(&tokens);
            }
            text::tokens(&tokens);
            Ok(())
        }
    }
}

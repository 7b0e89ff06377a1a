//! The text form of each operation's result, as the command line prints it
//! (the `--json` form is the result itself, see [`super::output::print_json`]).

use std::io::Write;
use std::path::Path;

use chancery::error::{Error, Result};
use chancery::ledger::{Confirmation, InitReport, Revealed, Status};
use chancery::operations::{
    DemoPublished, DemoRun, DueList, Imported, Power, Randomisation, TrialStatus, Verification,
};
use chancery::outcome::Written;

use super::output::line as w;

pub(crate) fn init(report: &InitReport) {
    println!("created trial {}", report.trial);
    println!("  key file          {} (mode 0600: keep it secret and backed up)", report.key_file);
    println!("  signing key file  {}", report.signing_key_file);
    if report.key_origin == "given" {
        println!("  WARNING: the seed was given on the command line; use this trial for tests and demonstrations only");
    }
    println!("Publish these before the first allocation (e.g. in the trial registration):");
    println!("  protocol SHA-256  {}", report.protocol_sha256);
    println!("  seed commitment   {}", report.seed_commitment);
    println!("  signing key       {}", report.signing_public_key);
}

pub(crate) fn randomisation(r: &Randomisation) -> Result<()> {
    // Buffered: stdout flushes at every line, one a referral of a batch.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for c in &r.confirmations {
        confirmation(&mut out, c).map_err(Error::io("writing output"))?;
    }
    if let Some(last) = r.confirmations.last() {
        if r.batch {
            writeln!(
                out,
                "{} referrals: {} randomised, {} ineligible, {} declined",
                r.confirmations.len(),
                r.randomised,
                r.ineligible,
                r.declined
            )
            .map_err(Error::io("writing output"))?;
        }
        writeln!(out, "receipt: log length {}, head {}", last.log_length, last.head)
            .map_err(Error::io("writing output"))?;
    }
    out.flush().map_err(Error::io("writing output"))
}

fn confirmation(out: &mut dyn Write, c: &Confirmation) -> std::io::Result<()> {
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

pub(crate) fn status(t: &TrialStatus) -> Result<()> {
    let s = &t.status;
    let mut out = std::io::stdout().lock();
    w(&mut out, format!("trial {} ({}, allocation by {})", s.trial, t.title, s.method))?;
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
    w(&mut out, follow_up_line(s))?;
    w(&mut out, format!("log: {} entries, head {}", s.log_entries, s.head))
}

/// `follow-up: m4 3901, m12 3529; withdrawn 96, lost 180, died 5`
fn follow_up_line(s: &Status) -> String {
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

pub(crate) fn demo_run(run: &DemoRun) {
    let s = &run.status;
    println!("trial {} created in {} ({} working days of referrals)", s.trial, run.dir.display(), run.days);
    println!(
        "screened {}  ineligible {}  declined {}  randomised {}",
        s.screened, s.ineligible, s.declined, s.randomised
    );
    for (reason, n) in &s.ineligible_by_reason {
        println!("  ineligible: {reason} {n}");
    }
    println!("by arm: {}", s.by_arm.iter().map(|(a, n)| format!("{a} {n}")).collect::<Vec<_>>().join(", "));
    for (site, counts) in &s.by_site {
        println!("  {site:<14} {}", counts.iter().map(|(a, n)| format!("{a} {n}")).collect::<Vec<_>>().join(", "));
    }
    println!(
        "{} strata; largest difference between arms within a stratum: {}",
        s.by_stratum.len(),
        run.largest_stratum_difference
    );
    println!("{} (simulated through {})", follow_up_line(s), run.last_day);
    println!("log: {} entries, head {}", s.log_entries, s.head);
}

pub(crate) fn demo_published(run: &DemoRun, published: &DemoPublished) {
    let v = &published.verification;
    println!("verify (against the checkpoint): {}", if v.ok { "every check that could run passed" } else { "FAILED" });
    if let Some(p) = &published.analysis.primary {
        println!("primary outcome ({}): {}  [true simulated effect {:+} pp]", p.outcome, p.headline, run.effect_pp);
    }
    println!("database   {}", run.db.display());
    println!("key        {}", run.key.display());
    println!("checkpoint {}", published.checkpoint.display());
    println!("analysis   {}", published.tables.display());
    println!("report     {}", published.report.display());
    println!("next: chancery status --db {}", run.db.display());
}

pub(crate) fn due(d: &DueList) -> Result<()> {
    let mut out = std::io::stdout().lock();
    w(&mut out, format!("follow-up due on {}: {} (the arm is not shown)", d.on, d.due.len()))?;
    for d in &d.due {
        let extra = if d.state == "overdue" { format!(", {} days overdue", d.days_overdue) } else { String::new() };
        w(
            &mut out,
            format!(
                "  {:<12} {:<14} {:<4} {:<9} ({} to {}{extra})",
                d.participant, d.site, d.timepoint, d.state, d.window_opens, d.window_closes
            ),
        )?;
    }
    Ok(())
}

/// A follow-up write: `P1: recorded; log entry 7 (…)`.
pub(crate) fn written(w: &Written, what: &str) {
    println!("{}: {what}; log entry {} ({})", w.participant, w.seq, w.entry_hash);
}

pub(crate) fn imported(i: &Imported) {
    println!("imported {} follow-up records from {}", i.written.len(), i.name);
}

pub(crate) fn verification(db: &Path, v: &Verification) -> Result<()> {
    use chancery::verify::Status;
    let report = &v.report;
    let mut out = std::io::stdout().lock();
    w(&mut out, format!("verifying {}: {} entries, head {}", db.display(), report.entries, report.head))?;
    for c in &report.checks {
        let mark = match c.status {
            Status::Passed => "ok  ",
            Status::Failed => "FAIL",
            Status::Skipped => "skip",
        };
        w(&mut out, format!("  {mark} {:<20} {}", c.name, c.message))?;
    }
    Ok(())
}

/// The last line of a verification that passed.
pub(crate) fn verified(v: &Verification) {
    println!(
        "{}",
        if v.report.complete { "verified: every check passed" } else { "verified: every check that could run passed" }
    );
}

pub(crate) fn revealed(db: &Path, r: &Revealed) {
    println!(
        "seed revealed in log entry {} ({}); randomisation is now closed. log: {} entries, head {}",
        r.seq, r.entry_hash, r.log_length, r.head
    );
    println!("anyone can now re-derive every allocation: chancery verify --db {}", db.display());
}

pub(crate) fn power(p: &Power) {
    let calc = &p.calculation;
    println!("{}", p.description);
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
}

pub(crate) fn operating(o: &chancery::operating::OperatingCharacteristics) -> Result<()> {
    let mut out = std::io::stdout().lock();
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

pub(crate) fn assessment(a: &chancery::design::Assessment) -> Result<()> {
    let mut out = std::io::stdout().lock();
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

fn listed(items: &[String]) -> String {
    if items.is_empty() { "-".to_string() } else { items.join(",") }
}

pub(crate) fn account(a: &chancery::operations::accounts::AccountSummary, what: &str) {
    let roles: Vec<String> = a.account.roles.iter().map(|r| r.name().to_string()).collect();
    println!("{what} account {}: roles {}; sites {}", a.account.name, listed(&roles), listed(&a.account.sites));
}

pub(crate) fn accounts(list: &[chancery::operations::accounts::AccountSummary]) {
    if list.is_empty() {
        println!("no accounts yet: add the first administrator with `chancery user add --role admin`");
        return;
    }
    for a in list {
        let roles: Vec<String> = a.account.roles.iter().map(|r| r.name().to_string()).collect();
        let mut state = if a.account.disabled { "disabled".to_string() } else { "active".to_string() };
        if let Some(until) = &a.locked_until {
            state.push_str(&format!(", locked until {until}"));
        }
        println!(
            "{}  roles {}  sites {}  {state}  created {}  tokens {}",
            a.account.name,
            listed(&roles),
            listed(&a.account.sites),
            a.created_at,
            a.tokens.len()
        );
    }
}

pub(crate) fn tokens(list: &[chancery::operations::accounts::TokenSummary]) {
    if list.is_empty() {
        println!("no API tokens");
        return;
    }
    for t in list {
        println!(
            "{}  account {}  expires {}{}",
            t.id,
            t.account,
            t.expires_at,
            if t.revoked { "  revoked" } else { "" }
        );
    }
}

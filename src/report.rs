//! The report: one self-contained HTML file (no scripts, no external assets)
//! with the analysis' tables, SVG charts drawn by [`crate::svg`], and the
//! audit status. Deterministic: the same inputs give the same bytes.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::NaiveDate;

use crate::analysis::{Analysis, BaselineArm, BaselineCell, digits_for, fmt_ci, fmt_p, opt};
use crate::stats::Estimable;
use crate::svg::{self, FlowBox, ForestRow, Series, esc};

/// What the report says about the log's integrity.
#[derive(Debug, Clone)]
pub struct AuditStatus {
    /// Log length.
    pub entries: u64,
    /// Head hash.
    pub head: String,
    /// Each verification check: name, result (`ok`, `FAILED`, `skipped`), message.
    pub checks: Vec<(String, String, String)>,
    /// Whether every check that ran passed.
    pub ok: bool,
    /// Checkpoints checked: (file, log length, head, time).
    pub checkpoints: Vec<(String, u64, String, String)>,
}

/// The inputs beyond the analysis: randomisation dates by arm, and arm counts by stratum.
#[derive(Debug, Clone)]
pub struct Recruitment {
    /// (date, arm id) of each randomisation, in order.
    pub randomised: Vec<(NaiveDate, String)>,
    /// Counts per stratum and arm.
    pub by_stratum: BTreeMap<String, BTreeMap<String, u64>>,
}

const STYLE: &str = "body{font-family:Helvetica,Arial,sans-serif;max-width:980px;margin:2em auto;color:#111;line-height:1.4}\
h1{font-size:1.6em}h2{border-bottom:1px solid #999;margin-top:2em}table{border-collapse:collapse;margin:1em 0;font-size:.9em}\
td,th{border:1px solid #bbb;padding:3px 8px;text-align:left;vertical-align:top}th{background:#eee}\
.headline{font-size:1.3em;font-weight:bold;margin:1em 0}.note{color:#444;font-size:.9em}.ok{color:#060}.bad{color:#a00;font-weight:bold}\
figure{margin:1em 0;page-break-inside:avoid}@media print{h2{page-break-after:avoid}}";

/// Renders the report.
pub fn html(a: &Analysis, recruitment: &Recruitment, audit: &AuditStatus) -> String {
    let mut s = String::new();
    let arms = &a.arms;
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(&a.title)
    );
    let _ = writeln!(s, "<h1>{}</h1>", esc(&a.title));
    let _ = writeln!(
        s,
        "<p>Trial <code>{}</code>. Intention-to-treat analysis of the data as of {}: {} versus {}; differences are {} minus {}. \
         Adjusted models include {}. {:.0}% confidence intervals.</p>",
        esc(&a.trial),
        a.as_of,
        esc(&arms.intervention_label),
        esc(&arms.control_label),
        esc(&arms.intervention),
        esc(&arms.control),
        esc(&if a.adjusted_for.is_empty() { "no covariates".to_string() } else { a.adjusted_for.join(", ") }),
        a.level * 100.0
    );
    if let Some(p) = &a.primary {
        let _ = writeln!(
            s,
            "<p class=\"headline\" id=\"headline\">{} at {}: {}</p>",
            esc(&p.label),
            esc(&p.timepoint),
            esc(&p.headline)
        );
    }

    // CONSORT.
    let c = &a.consort;
    s.push_str("<h2>CONSORT flow</h2>\n<figure>");
    let mut excluded = vec![format!("Ineligible (n = {})", c.ineligible)];
    excluded.extend(c.ineligible_by_reason.iter().map(|(r, n)| format!("  {r}: {n}")));
    excluded.push(format!("Declined consent (n = {})", c.declined));
    let flow = svg::Flow {
        assessed: FlowBox { heading: format!("Assessed for eligibility (n = {})", c.screened), lines: vec![] },
        excluded: FlowBox { heading: format!("Excluded (n = {})", c.ineligible + c.declined), lines: excluded },
        randomised: FlowBox { heading: format!("Randomised (n = {})", c.randomised), lines: vec![] },
        arms: c
            .arms
            .iter()
            .map(|arm| {
                let mut alloc = vec![];
                if let Some(n) = arm.received_intervention {
                    alloc.push(format!("Received the intervention: {n}"));
                }
                let mut follow = vec![
                    format!("Withdrawn: {}", arm.withdrawn),
                    format!("Lost to follow-up: {}", arm.lost),
                    format!("Died: {}", arm.died),
                ];
                follow.extend(arm.followed_up.iter().map(|f| format!("Followed up at {}: {}", f.timepoint, f.n)));
                let analysed = arm.analysed.iter().take(1).map(|o| format!("{}: {}", o.outcome, o.n)).collect();
                vec![
                    FlowBox { heading: format!("Allocated to {} (n = {})", arm.arm, arm.allocated), lines: alloc },
                    FlowBox { heading: "Follow-up".into(), lines: follow },
                    FlowBox { heading: "Analysed (primary outcome)".into(), lines: analysed },
                ]
            })
            .collect(),
    };
    s.push_str(&svg::consort(&flow));
    s.push_str("</figure>\n");

    // Recruitment and balance.
    s.push_str("<h2>Recruitment and balance</h2>\n<figure>");
    let origin = recruitment.randomised.first().map(|(d, _)| *d);
    let mut series = Vec::new();
    for arm in &c.arms {
        let mut n = 0u64;
        let mut points = Vec::new();
        for (d, a_id) in &recruitment.randomised {
            if *a_id == arm.arm {
                n += 1;
                points.push(((*d - origin.unwrap_or(*d)).num_days() as f64, n as f64));
            }
        }
        series.push(Series { label: arm.arm.clone(), points });
    }
    let last_day = recruitment.randomised.last().map(|(d, _)| *d);
    let x_labels = match (origin, last_day) {
        (Some(o), Some(l)) => vec![(0.0, o.to_string()), ((l - o).num_days() as f64, l.to_string())],
        _ => Vec::new(),
    };
    s.push_str(&svg::lines("Cumulative randomisations by arm", &series, &x_labels, "participants"));
    let bal: Vec<svg::BalanceRow> = recruitment
        .by_stratum
        .iter()
        .map(|(k, counts)| {
            let n = |id: &str| counts.get(id).copied().unwrap_or(0);
            svg::BalanceRow { stratum: k.clone(), counts: vec![n(&arms.intervention), n(&arms.control)] }
        })
        .collect();
    s.push_str(&svg::balance(
        &format!(
            "Balance by stratum: {} minus {} (counts {} vs {})",
            arms.intervention, arms.control, arms.intervention, arms.control
        ),
        &bal,
        "difference in participants",
    ));
    s.push_str("</figure>\n");

    // Baseline table.
    s.push_str("<h2>Baseline characteristics</h2>\n<table><tr><th></th>");
    for arm in &c.arms {
        let _ = write!(s, "<th>{} (n = {})</th>", esc(&arm.arm), arm.allocated);
    }
    s.push_str("</tr>\n");
    for r in &a.baseline {
        match r.arms.first().map(|x| &x.cell) {
            Some(BaselineCell::Continuous { mean, .. }) => {
                let d = digits_for(mean.unwrap_or(0.0), 1);
                let _ = write!(s, "<tr><td>{}, mean (SD); median [IQR]</td>", esc(&r.label));
                for BaselineArm { cell, .. } in &r.arms {
                    if let BaselineCell::Continuous { mean, sd, median, q1, q3, missing, .. } = cell {
                        let _ = write!(
                            s,
                            "<td>{} ({}); {} [{}–{}]{}</td>",
                            opt(*mean, d),
                            opt(*sd, d),
                            opt(*median, d),
                            opt(*q1, d),
                            opt(*q3, d),
                            if *missing > 0 { format!("; missing {missing}") } else { String::new() }
                        );
                    }
                }
                s.push_str("</tr>\n");
            }
            Some(BaselineCell::Categorical { levels, .. }) => {
                let _ = writeln!(s, "<tr><th colspan=\"{}\">{}</th></tr>", r.arms.len() + 1, esc(&r.label));
                for (li, (l, _)) in levels.iter().enumerate() {
                    let _ = write!(s, "<tr><td>&nbsp;&nbsp;{}</td>", esc(l));
                    for BaselineArm { cell, .. } in &r.arms {
                        if let BaselineCell::Categorical { levels, n, .. } = cell {
                            let k = levels[li].1;
                            let pct =
                                if *n > 0 { format!(" ({:.1}%)", 100.0 * k as f64 / *n as f64) } else { String::new() };
                            let _ = write!(s, "<td>{k}{pct}</td>");
                        }
                    }
                    s.push_str("</tr>\n");
                }
            }
            None => {}
        }
    }
    s.push_str("</table>\n");

    // Primary outcome.
    s.push_str("<h2>Primary outcome</h2>\n");
    match &a.primary {
        None => s.push_str("<p>The protocol names no primary outcome.</p>\n"),
        Some(p) => {
            let u = &p.unadjusted;
            let prop = |e: &Estimable<crate::stats::binary::ArmProportion>| match e {
                Estimable::Value(x) => format!("{}/{} ({:.1}%)", x.events, x.n, x.percent),
                Estimable::NotEstimable(r) => r.clone(),
            };
            let _ = writeln!(
                s,
                "<table id=\"primary\"><tr><th>{}</th><th>{}</th><th>{}</th></tr><tr><td>{} at {}</td><td>{}</td><td>{}</td></tr></table>",
                esc(&p.outcome),
                esc(&arms.intervention),
                esc(&arms.control),
                esc(&p.label),
                esc(&p.timepoint),
                prop(&u.treated),
                prop(&u.control)
            );
            s.push_str("<table><tr><th>measure</th><th>estimate</th></tr>\n");
            let rows = [
                ("Standardised risk difference, adjusted (headline)", fmt_ci(&p.adjusted.risk_difference, 1, " pp")),
                ("Odds ratio, adjusted", fmt_ci(&p.adjusted.odds_ratio, 2, "")),
                ("Risk difference, Newcombe", fmt_ci(&u.risk_difference, 1, " pp")),
                ("Risk difference, Wald", fmt_ci(&u.risk_difference_wald, 1, " pp")),
                ("Risk ratio", fmt_ci(&u.risk_ratio, 2, "")),
                ("Odds ratio", fmt_ci(&u.odds_ratio, 2, "")),
            ];
            for (m, v) in rows {
                let _ = writeln!(s, "<tr><td>{}</td><td>{}</td></tr>", esc(m), esc(&v));
            }
            let test = |t: &Estimable<crate::stats::TestResult>| match t {
                Estimable::Value(t) => fmt_p(t.p_value),
                Estimable::NotEstimable(r) => r.clone(),
            };
            let _ = writeln!(s, "<tr><td>Chi-square</td><td>{}</td></tr>", esc(&test(&u.chi_square)));
            let _ = writeln!(s, "<tr><td>Fisher's exact test</td><td>{}</td></tr>", esc(&test(&u.fisher_exact)));
            s.push_str("</table>\n");
        }
    }

    // Secondary outcomes.
    s.push_str("<h2>Secondary outcomes</h2>\n<table><tr><th>outcome</th><th>");
    let _ = writeln!(
        s,
        "{} mean (SD)</th><th>{} mean (SD)</th><th>difference (Welch)</th><th>adjusted (ANCOVA)</th></tr>",
        esc(&arms.intervention),
        esc(&arms.control)
    );
    for o in &a.continuous {
        let d = o.summary.control.value().map_or(2, |x| digits_for(x.mean, 2));
        let unit = o.unit.as_ref().map_or(String::new(), |u| format!(" {u}"));
        let ms = |e: &Estimable<crate::stats::continuous::ArmSummary>| match e {
            Estimable::Value(x) => format!("{:.d$} ({}) n {}", x.mean, opt(x.sd, d), x.n),
            Estimable::NotEstimable(r) => r.clone(),
        };
        let _ = writeln!(
            s,
            "<tr><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&o.label),
            esc(&o.timepoint),
            esc(&ms(&o.summary.treated)),
            esc(&ms(&o.summary.control)),
            esc(&fmt_ci(&o.welch, d, &unit)),
            esc(&fmt_ci(&o.adjusted.mean_difference, d, &unit))
        );
    }
    s.push_str("</table>\n");

    // Time to first job.
    s.push_str("<h2>Time to first job</h2>\n");
    match &a.time_to_event {
        None => s.push_str("<p>The protocol names no time-to-event outcome.</p>\n"),
        Some(t) => {
            let km = [&t.kaplan_meier.treated, &t.kaplan_meier.control];
            let risk_times = [0.0, 91.0, 182.0, 273.0, 365.0];
            let mut series = Vec::new();
            let mut at_risk = Vec::new();
            for (k, label) in km.iter().zip([&arms.intervention, &arms.control]) {
                match k.value() {
                    Some(k) => {
                        series.push(Series {
                            label: label.clone(),
                            points: k
                                .steps
                                .iter()
                                .filter(|st| st.n_event > 0)
                                .map(|st| (st.time, st.survival))
                                .collect(),
                        });
                        at_risk.push(
                            risk_times
                                .iter()
                                .map(|&rt| k.steps.iter().find(|st| st.time >= rt).map_or(0, |st| st.n_risk))
                                .collect(),
                        );
                    }
                    None => {
                        series.push(Series { label: label.clone(), points: vec![] });
                        at_risk.push(vec![0; risk_times.len()]);
                    }
                }
            }
            s.push_str("<figure>");
            s.push_str(&svg::kaplan_meier(
                "Kaplan–Meier: proportion not yet in paid work",
                &series,
                365.0,
                &risk_times,
                &at_risk,
                "days since randomisation",
                "proportion without a job",
            ));
            s.push_str("</figure>\n");
            let hr = t.cox.as_ref().and_then(|c| c.hazard_ratio.clone());
            let lr = |x: &Estimable<crate::stats::survival::LogRank>| match x {
                Estimable::Value(x) => fmt_p(x.test.p_value),
                Estimable::NotEstimable(r) => r.clone(),
            };
            let _ = writeln!(
                s,
                "<p>Hazard ratio for a first job (Cox, Efron ties): {}. Log-rank {}; stratified {}. <span class=\"note\">{}</span></p>",
                esc(&fmt_ci(&hr, 2, "")),
                esc(&lr(&t.log_rank)),
                esc(&lr(&t.log_rank_stratified)),
                esc(&t.definition)
            );
        }
    }

    // Subgroups.
    s.push_str("<h2>Subgroups (secondary)</h2>\n<figure>");
    let mut rows = Vec::new();
    for g in &a.subgroups {
        let p = match &g.interaction_lr {
            Estimable::Value(t) => format!("interaction {}", fmt_p(t.p_value)),
            Estimable::NotEstimable(r) => r.clone(),
        };
        rows.push(ForestRow { label: format!("{} ({p})", g.factor), estimate: None, note: String::new() });
        for lv in &g.levels {
            let (estimate, note) = match &lv.risk_difference {
                Estimable::Value(e) => (
                    Some((e.estimate, e.ci_low, e.ci_high)),
                    format!("{:+.1} ({:.1} to {:.1})", e.estimate, e.ci_low, e.ci_high),
                ),
                Estimable::NotEstimable(r) => (None, r.clone()),
            };
            rows.push(ForestRow { label: format!("  {}", lv.level), estimate, note });
        }
    }
    s.push_str(&svg::forest(
        "Risk difference of the primary outcome by subgroup",
        &rows,
        0.0,
        "risk difference (percentage points)",
    ));
    s.push_str("</figure>\n");

    // Missing data and CACE.
    s.push_str("<h2>Missing data and the complier average causal effect</h2>\n");
    if let Some(m) = &a.missing_data {
        let pooled = match &m.imputation.risk_difference {
            Estimable::Value(p) => {
                format!("{:+.1} pp ({:.0}% CI {:.1} to {:.1})", p.estimate, p.level * 100.0, p.ci_low, p.ci_high)
            }
            Estimable::NotEstimable(r) => r.clone(),
        };
        let _ = writeln!(
            s,
            "<p>Primary analysis assumption: {}. Observed: {} {}, {} {}; missing: {} {}, {} {}. \
             Multiple imputation (m = {}, Rubin's rules): {}.</p>",
            esc(&m.assumption),
            esc(&arms.intervention),
            m.observed.treated,
            esc(&arms.control),
            m.observed.control,
            esc(&arms.intervention),
            m.missing.treated,
            esc(&arms.control),
            m.missing.control,
            m.imputations,
            esc(&pooled)
        );
    }
    if let Some(cace) = &a.cace {
        let text = match &cace.effect {
            Estimable::Value(e) => format!(
                "receipt of the intervention ({} > 0): {:.1}% and {:.1}%; CACE {}",
                cace.take_up,
                e.take_up_treated * 100.0,
                e.take_up_control * 100.0,
                fmt_ci(&Estimable::Value(e.cace.clone()), 1, " pp")
            ),
            Estimable::NotEstimable(r) => r.clone(),
        };
        let _ = writeln!(s, "<p>Complier average causal effect: {}.</p>", esc(&text));
    }

    // Audit.
    s.push_str("<h2>Audit status</h2>\n");
    let _ = writeln!(
        s,
        "<p id=\"audit\">Log: {} entries, head <code>{}</code>. Verification: <span class=\"{}\">{}</span>.</p>",
        audit.entries,
        esc(&audit.head),
        if audit.ok { "ok" } else { "bad" },
        if audit.ok { "every check that ran passed" } else { "FAILED" }
    );
    s.push_str("<table><tr><th>check</th><th>result</th><th>detail</th></tr>\n");
    for (name, result, msg) in &audit.checks {
        let _ = writeln!(s, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", esc(name), esc(result), esc(msg));
    }
    s.push_str("</table>\n");
    if audit.checkpoints.is_empty() {
        s.push_str("<p class=\"note\">No checkpoint was given; give `--checkpoint FILE` to show the log extends the statements handed out.</p>\n");
    } else {
        s.push_str("<table><tr><th>checkpoint</th><th>log length</th><th>head</th><th>time</th></tr>\n");
        for (f, n, h, t) in &audit.checkpoints {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{n}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(f),
                esc(h),
                esc(t)
            );
        }
        s.push_str("</table>\n");
    }
    s.push_str("<p class=\"note\">Generated by chancery from the trial database; every chart is drawn from the numbers in the tables above.</p>\n</body></html>\n");
    s
}

/// A rendered report with what went into it.
pub struct Built {
    /// The HTML.
    pub html: String,
    /// The analysis it shows.
    pub analysis: Analysis,
    /// The verification it shows.
    pub verification: crate::verify::Report,
}

/// Builds the report for the trial in `db`: verifies the log (with any
/// checkpoints given), analyses the data as of `as_of` (default: the date of
/// the log's last entry), and renders the HTML.
pub fn for_trial(
    db: &std::path::Path,
    checkpoints: Vec<(String, crate::checkpoint::Checkpoint)>,
    as_of: Option<NaiveDate>,
) -> crate::error::Result<Built> {
    let given: Vec<(String, u64, String, String)> =
        checkpoints.iter().map(|(f, c)| (f.clone(), c.length, c.head.clone(), c.time.clone())).collect();
    let v = crate::verify::verify(&crate::verify::VerifyOptions {
        db: db.to_path_buf(),
        seed: None,
        checkpoints,
        scratch_dir: std::env::temp_dir(),
    })?;
    let audit = AuditStatus {
        entries: v.entries,
        head: v.head.clone(),
        ok: v.ok,
        checks: v
            .checks
            .iter()
            .map(|c| {
                let result = match c.status {
                    crate::verify::Status::Passed => "ok",
                    crate::verify::Status::Failed => "FAILED",
                    crate::verify::Status::Skipped => "skipped",
                };
                (c.name.to_string(), result.to_string(), c.message.clone())
            })
            .collect(),
        checkpoints: given,
    };
    let trial = crate::ledger::Trial::open_read_only(db)?;
    let as_of = match as_of {
        Some(d) => d,
        None => trial.last_entry_date()?,
    };
    let data = trial.dataset(as_of)?;
    let analysis = crate::analysis::analyse(&data)?;
    let recruitment = Recruitment {
        randomised: data.participants.iter().map(|p| (p.randomised_on, p.arm.clone())).collect(),
        by_stratum: trial.status()?.by_stratum,
    };
    Ok(Built { html: html(&analysis, &recruitment, &audit), analysis, verification: v })
}

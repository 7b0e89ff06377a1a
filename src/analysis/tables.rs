//! The analysis as files ([`write_tables`]): `analysis.json` and the
//! estimates, CONSORT, baseline and survival CSVs, numbers written as the
//! shortest decimal that reads back to the same value.

use std::path::Path;

use super::estimates::estimates;
use super::{Analysis, BaselineArm, BaselineCell};
use crate::error::{Error, Result};

/// Writes into `dir`: `analysis.json` (the whole [`Analysis`]), `estimates.csv`
/// (every estimate and test, flat: [`estimates`]), `consort.csv` (the flow),
/// `baseline.csv` (one statistic per row) and `survival.csv` (the
/// Kaplan–Meier curves, one step per row). Numbers are written as the shortest
/// decimal that reads back to the same value, so the files are byte-identical
/// for the same dataset.
/// Existing files are replaced; each file appears whole, and the set at once
/// (see [`crate::outfile::write_set`], which the command line uses with the
/// user's `--force` or not).
pub fn write_tables(a: &Analysis, dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    crate::outfile::write_set(dir, &tables(a)?, crate::outfile::Overwrite::Force, crate::outfile::OUTPUT_MODE)
}

/// The files [`write_tables`] writes, by name, in order.
pub fn tables(a: &Analysis) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let mut written = Vec::new();
    let mut put = |name: &'static str, bytes: Vec<u8>| -> Result<()> {
        written.push((name, bytes));
        Ok(())
    };
    let mut json = serde_json::to_vec_pretty(a).map_err(|e| Error::Integrity(format!("encoding the analysis: {e}")))?;
    json.push(b'\n');
    put("analysis.json", json)?;

    let mut t = table(&[
        "section",
        "outcome",
        "measure",
        "method",
        "estimate",
        "ci_low",
        "ci_high",
        "level",
        "p_value",
        "n_intervention",
        "n_control",
        "status",
    ]);
    for r in estimates(a) {
        t.rows.push(vec![
            Some(r.section),
            Some(r.outcome),
            Some(r.measure),
            Some(r.method),
            r.estimate.map(num),
            r.ci_low.map(num),
            r.ci_high.map(num),
            Some(num(r.level)),
            r.p_value.map(num),
            r.n_intervention.map(|n| n.to_string()),
            r.n_control.map(|n| n.to_string()),
            Some(r.status),
        ]);
    }
    put("estimates.csv", csv_bytes(&t)?)?;

    let mut t = table(&["stage", "arm", "detail", "n"]);
    let row = |stage: &str, arm: &str, detail: &str, n: usize| {
        vec![Some(stage.to_string()), Some(arm.to_string()), Some(detail.to_string()), Some(n.to_string())]
    };
    t.rows.push(row("screened", "", "", a.consort.screened));
    t.rows.push(row("ineligible", "", "", a.consort.ineligible));
    for (reason, n) in &a.consort.ineligible_by_reason {
        t.rows.push(row("ineligible", "", reason, *n));
    }
    t.rows.push(row("declined", "", "", a.consort.declined));
    t.rows.push(row("randomised", "", "", a.consort.randomised));
    for arm in &a.consort.arms {
        t.rows.push(row("allocated", &arm.arm, "", arm.allocated));
        if let Some(n) = arm.received_intervention {
            t.rows.push(row("received intervention", &arm.arm, "", n));
        }
        t.rows.push(row("withdrawn", &arm.arm, "", arm.withdrawn));
        t.rows.push(row("lost to follow-up", &arm.arm, "", arm.lost));
        t.rows.push(row("died", &arm.arm, "", arm.died));
        for (reason, n) in &arm.reasons {
            t.rows.push(row("reason", &arm.arm, reason, *n));
        }
        for f in &arm.followed_up {
            t.rows.push(row("followed up", &arm.arm, &f.timepoint, f.n));
        }
        for o in &arm.analysed {
            t.rows.push(row("analysed", &arm.arm, &o.outcome, o.n));
        }
    }
    put("consort.csv", csv_bytes(&t)?)?;

    let mut t = table(&["field", "arm", "statistic", "value"]);
    for r in &a.baseline {
        for BaselineArm { arm, cell } in &r.arms {
            let mut push = |stat: &str, v: Option<String>| {
                t.rows.push(vec![Some(r.field.clone()), Some(arm.clone()), Some(stat.to_string()), v]);
            };
            match cell {
                BaselineCell::Continuous { n, missing, mean, sd, median, q1, q3 } => {
                    push("n", Some(n.to_string()));
                    push("mean", mean.map(num));
                    push("sd", sd.map(num));
                    push("median", median.map(num));
                    push("q1", q1.map(num));
                    push("q3", q3.map(num));
                    push("missing", Some(missing.to_string()));
                }
                BaselineCell::Categorical { levels, n, missing } => {
                    for (l, k) in levels {
                        push(&format!("n {l}"), Some(k.to_string()));
                        push(&format!("% {l}"), (*n > 0).then(|| format!("{:.1}", 100.0 * *k as f64 / *n as f64)));
                    }
                    push("missing", Some(missing.to_string()));
                }
            }
        }
    }
    put("baseline.csv", csv_bytes(&t)?)?;

    let mut t = table(&["arm", "day", "n_risk", "n_event", "n_censor", "survival", "se"]);
    if let Some(tte) = &a.time_to_event {
        for (arm, km) in
            [(&a.arms.intervention, &tte.kaplan_meier.treated), (&a.arms.control, &tte.kaplan_meier.control)]
        {
            for st in km.value().map(|k| k.steps.as_slice()).unwrap_or_default() {
                t.rows.push(vec![
                    Some(arm.clone()),
                    Some(num(st.time)),
                    Some(st.n_risk.to_string()),
                    Some(st.n_event.to_string()),
                    Some(st.n_censor.to_string()),
                    Some(num(st.survival)),
                    Some(num(st.se)),
                ]);
            }
        }
    }
    put("survival.csv", csv_bytes(&t)?)?;
    Ok(written)
}

fn table(columns: &[&str]) -> crate::export::Table {
    crate::export::Table {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows: Vec::new(),
        json: Vec::new(),
    }
}

fn csv_bytes(t: &crate::export::Table) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    t.write(crate::export::Format::Csv, &mut out)?;
    Ok(out)
}

/// A number as the tables print it: shortest round-trip decimal.
pub(super) fn num(x: f64) -> String {
    if x.is_finite() { format!("{x}") } else { String::new() }
}

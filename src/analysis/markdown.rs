//! The Markdown summary `chancery analyse` prints ([`markdown()`]), and the
//! number formats (intervals, p-values, decimals) the HTML report shares
//! with it.

use super::{Analysis, BaselineCell, ConsortArm};
use crate::stats::survival::{LogRank, SurvivalAt};
use crate::stats::{Estimable, Estimate};

/// "6.8 pp (95% CI 3.9 to 9.7), p < 0.001"; `unit` follows the estimate.
pub(crate) fn fmt_ci(e: &Estimable<Estimate>, digits: usize, unit: &str) -> String {
    match e {
        Estimable::Value(e) => format!(
            "{:.d$}{unit} ({:.0}% CI {:.d$} to {:.d$}){}",
            e.estimate,
            e.level * 100.0,
            e.ci_low,
            e.ci_high,
            e.p_value.map(|p| format!(", {}", fmt_p(p))).unwrap_or_default(),
            d = digits
        ),
        Estimable::NotEstimable(r) => r.clone(),
    }
}

/// "p = 0.123" or "p < 0.001".
pub(crate) fn fmt_p(p: f64) -> String {
    if p < 0.001 { "p < 0.001".into() } else { format!("p = {p:.3}") }
}

/// Decimals for a measure of this size: three for indices within ±2, else `default`.
pub(crate) fn digits_for(x: f64, default: usize) -> usize {
    if x.abs() < 2.0 { 3 } else { default }
}

/// The Markdown summary printed by `chancery analyse`.
pub fn markdown(a: &Analysis) -> String {
    let mut s = String::new();
    let arms = &a.arms;
    s += &format!("# Intention-to-treat analysis: {}\n\n", a.title);
    s += &format!(
        "Trial `{}`, data as of {}. {} vs {}; differences are {} minus {}. Adjusted models include {}. {:.0}% confidence intervals.\n\n",
        a.trial,
        a.as_of,
        arms.intervention_label,
        arms.control_label,
        arms.intervention,
        arms.control,
        if a.adjusted_for.is_empty() { "no covariates".to_string() } else { a.adjusted_for.join(", ") },
        a.level * 100.0
    );
    let c = &a.consort;
    s += "## 1. CONSORT flow\n\n";
    s += &format!(
        "Screened {}; ineligible {}; declined {}; randomised {}.\n\n",
        c.screened, c.ineligible, c.declined, c.randomised
    );
    s += "| | ";
    s += &c.arms.iter().map(|x| x.arm.as_str()).collect::<Vec<_>>().join(" | ");
    s += " |\n|---|";
    s += &"---|".repeat(c.arms.len());
    s += "\n";
    let line = |label: &str, f: &dyn Fn(&ConsortArm) -> String| {
        format!("| {label} | {} |\n", c.arms.iter().map(f).collect::<Vec<_>>().join(" | "))
    };
    s += &line("allocated", &|x| x.allocated.to_string());
    s += &line("received the intervention", &|x| x.received_intervention.map_or("—".into(), |n| n.to_string()));
    s += &line("withdrawn", &|x| x.withdrawn.to_string());
    s += &line("lost to follow-up", &|x| x.lost.to_string());
    s += &line("died", &|x| x.died.to_string());
    if let Some(first) = c.arms.first() {
        for (i, f) in first.followed_up.iter().enumerate() {
            s += &line(&format!("followed up at {}", f.timepoint), &|x| x.followed_up[i].n.to_string());
        }
        for (i, o) in first.analysed.iter().enumerate() {
            s += &line(&format!("analysed: {}", o.outcome), &|x| x.analysed[i].n.to_string());
        }
    }
    s += "\n## 2. Baseline characteristics\n\n";
    s += &format!(
        "| | {} |\n|---|{}\n",
        c.arms.iter().map(|x| x.arm.as_str()).collect::<Vec<_>>().join(" | "),
        "---|".repeat(c.arms.len())
    );
    for r in &a.baseline {
        match r.arms.first().map(|x| &x.cell) {
            Some(BaselineCell::Continuous { mean, .. }) => {
                let d = digits_for(mean.unwrap_or(0.0), 1);
                let cells: Vec<String> = r
                    .arms
                    .iter()
                    .map(|x| match &x.cell {
                        BaselineCell::Continuous { n, missing, mean, sd, median, q1, q3 } => format!(
                            "{} ({}); {} [{}–{}]; n {n}{}",
                            opt(*mean, d),
                            opt(*sd, d),
                            opt(*median, d),
                            opt(*q1, d),
                            opt(*q3, d),
                            if *missing > 0 { format!(", missing {missing}") } else { String::new() }
                        ),
                        _ => String::new(),
                    })
                    .collect();
                s += &format!("| {}, mean (SD); median [IQR] | {} |\n", r.label, cells.join(" | "));
            }
            Some(BaselineCell::Categorical { levels, .. }) => {
                s += &format!("| {} | {} |\n", r.label, vec![""; r.arms.len()].join(" | "));
                for (li, (l, _)) in levels.iter().enumerate() {
                    let cells: Vec<String> = r
                        .arms
                        .iter()
                        .map(|x| match &x.cell {
                            BaselineCell::Categorical { levels, n, .. } => {
                                let k = levels[li].1;
                                if *n > 0 { format!("{k} ({:.1}%)", 100.0 * k as f64 / *n as f64) } else { "0".into() }
                            }
                            _ => String::new(),
                        })
                        .collect();
                    s += &format!("| &nbsp;&nbsp;{l} | {} |\n", cells.join(" | "));
                }
            }
            None => {}
        }
    }
    s += "\n## 3. Primary outcome\n\n";
    match &a.primary {
        None => s += "The protocol names no primary outcome.\n",
        Some(p) => {
            s += &format!("**{}** at {}.\n\n", p.label, p.timepoint);
            let prop = |e: &Estimable<crate::stats::binary::ArmProportion>| match e {
                Estimable::Value(x) => format!("{}/{} ({:.1}%)", x.events, x.n, x.percent),
                Estimable::NotEstimable(r) => r.clone(),
            };
            s += &format!(
                "- {}: {}; {}: {}\n",
                arms.intervention,
                prop(&p.unadjusted.treated),
                arms.control,
                prop(&p.unadjusted.control)
            );
            s += &format!("- **Adjusted risk difference (headline): {}**\n", p.headline);
            s += &format!("- Adjusted odds ratio: {}\n", fmt_ci(&p.adjusted.odds_ratio, 2, ""));
            s += &format!(
                "- Unadjusted risk difference, Newcombe: {}\n",
                fmt_ci(&p.unadjusted.risk_difference, 1, " pp")
            );
            s += &format!(
                "- Unadjusted risk difference, Wald: {}\n",
                fmt_ci(&p.unadjusted.risk_difference_wald, 1, " pp")
            );
            s += &format!("- Risk ratio: {}\n", fmt_ci(&p.unadjusted.risk_ratio, 2, ""));
            s += &format!("- Odds ratio: {}\n", fmt_ci(&p.unadjusted.odds_ratio, 2, ""));
            let test = |t: &Estimable<crate::stats::TestResult>| match t {
                Estimable::Value(t) => fmt_p(t.p_value),
                Estimable::NotEstimable(r) => r.clone(),
            };
            s += &format!(
                "- Chi-square: {}; Fisher's exact: {}\n",
                test(&p.unadjusted.chi_square),
                test(&p.unadjusted.fisher_exact)
            );
        }
    }
    s += "\n## 4. Continuous outcomes\n\n| outcome | mean difference (Welch) | adjusted (ANCOVA) |\n|---|---|---|\n";
    for c in &a.continuous {
        let d = c.summary.control.value().map_or(2, |x| digits_for(x.mean, 2));
        let unit = c.unit.as_ref().map_or(String::new(), |u| format!(" {u}"));
        s += &format!(
            "| {} ({}) | {} | {} |\n",
            c.label,
            c.timepoint,
            fmt_ci(&c.welch, d, &unit),
            fmt_ci(&c.adjusted.mean_difference, d, &unit)
        );
    }
    s += "\n## 5. Time to first job\n\n";
    match &a.time_to_event {
        None => s += "The protocol names no time-to-event outcome.\n",
        Some(t) => {
            s += &format!("{} ({} participants with follow-up).\n\n", t.definition, t.n);
            let median = |k: &Estimable<crate::stats::survival::KaplanMeier>| match k {
                Estimable::Value(k) => match k.median.time {
                    Some(m) => format!(
                        "median {m} days (CI {} to {})",
                        k.median.ci_low.map_or("—".into(), |x| x.to_string()),
                        k.median.ci_high.map_or("not reached".into(), |x| x.to_string())
                    ),
                    None => "median not reached".into(),
                },
                Estimable::NotEstimable(r) => r.clone(),
            };
            s += &format!("- {}: {}\n", arms.intervention, median(&t.kaplan_meier.treated));
            s += &format!("- {}: {}\n", arms.control, median(&t.kaplan_meier.control));
            for at in &t.survival_at {
                let f = |x: &Option<SurvivalAt>| {
                    x.as_ref().map_or("—".into(), |x| format!("{:.3} (SE {:.3})", x.survival, x.se))
                };
                s += &format!(
                    "- S(t) without a job at {} (day {}): {} {}, {} {}\n",
                    at.timepoint,
                    at.day,
                    arms.intervention,
                    f(&at.intervention),
                    arms.control,
                    f(&at.control)
                );
            }
            let lr = |x: &Estimable<LogRank>| match x {
                Estimable::Value(x) => fmt_p(x.test.p_value),
                Estimable::NotEstimable(r) => r.clone(),
            };
            s += &format!("- Log-rank: {}; stratified: {}\n", lr(&t.log_rank), lr(&t.log_rank_stratified));
            let hr = t.cox.as_ref().and_then(|c| c.hazard_ratio.clone());
            s += &format!("- Hazard ratio (Cox, Efron ties): {}\n", fmt_ci(&hr, 2, ""));
            let hr = t.cox_stratified.as_ref().and_then(|c| c.hazard_ratio.clone());
            s += &format!("- Hazard ratio, stratified by the randomisation strata: {}\n", fmt_ci(&hr, 2, ""));
        }
    }
    s += "\n## 6. Subgroups (secondary)\n\n";
    for g in &a.subgroups {
        let p = match &g.interaction_lr {
            Estimable::Value(t) => format!("interaction {}", fmt_p(t.p_value)),
            Estimable::NotEstimable(r) => r.clone(),
        };
        s += &format!("- **{}** ({p})\n", g.factor);
        for lv in &g.levels {
            s += &format!("  - {}: {}\n", lv.level, fmt_ci(&lv.risk_difference, 1, " pp"));
        }
    }
    s += "\n## 7. Missing outcome data\n\n";
    if let Some(m) = &a.missing_data {
        s += &format!("Primary analysis assumption: {}.\n\n", m.assumption);
        s += &format!(
            "Primary outcome observed: {} {}, {} {}; missing: {} {}, {} {}.\n\n",
            arms.intervention,
            m.observed.treated,
            arms.control,
            m.observed.control,
            arms.intervention,
            m.missing.treated,
            arms.control,
            m.missing.control
        );
        let pooled = match &m.imputation.risk_difference {
            Estimable::Value(p) => {
                format!("{:+.1} pp ({:.0}% CI {:.1} to {:.1})", p.estimate, p.level * 100.0, p.ci_low, p.ci_high)
            }
            Estimable::NotEstimable(r) => r.clone(),
        };
        s += &format!(
            "Sensitivity (multiple imputation, m = {}, Rubin's rules; {} analysed per arm: {} and {}): standardised risk difference {pooled}.\n",
            m.imputations, "all randomised", m.imputation.n.treated, m.imputation.n.control
        );
    }
    s += "\n## 8. Complier average causal effect\n\n";
    match &a.cace {
        None => s += "The protocol names no take-up measure.\n",
        Some(c) => match &c.effect {
            Estimable::Value(e) => {
                s += &format!(
                    "Receipt ({} > 0): {:.1}% of {} and {:.1}% of {}. CACE on {}: {}.\n",
                    c.take_up,
                    e.take_up_treated * 100.0,
                    arms.intervention,
                    e.take_up_control * 100.0,
                    arms.control,
                    c.outcome,
                    fmt_ci(&Estimable::Value(e.cace.clone()), 1, " pp")
                );
            }
            Estimable::NotEstimable(r) => s += &format!("{r}\n"),
        },
    }
    s
}

pub(crate) fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or("—".into(), |v| format!("{v:.digits$}"))
}

//! The sample-size assumptions ([`Design`]) for the primary outcome, read
//! from the optional `[design]` table (two-arm protocols only).

use serde::Deserialize;

use super::Arm;
use super::outcomes::Outcome;
use super::parse::{Raw, Where};
use crate::error::Result;

/// The assumptions the sample size rests on: the primary (binary) outcome's
/// rate under the control arm, the effect to detect, power, significance and
/// expected attrition. Two-arm protocols only.
#[derive(Debug, Clone, PartialEq)]
pub struct Design {
    /// Index into `arms` of the control arm (`control_arm`, default the last arm).
    pub control_arm: usize,
    /// Expected proportion with the primary outcome under the control arm, in (0, 1).
    pub control_rate: f64,
    /// Effect to detect, in percentage points (intervention minus control); not 0.
    pub effect_pp: f64,
    /// Target power, e.g. 0.9.
    pub power: f64,
    /// Two-sided significance level, e.g. 0.05.
    pub alpha: f64,
    /// Expected proportion without a primary outcome (lost or withdrawn), in [0, 1).
    pub attrition: f64,
}

impl Design {
    /// The expected proportion under the intervention arm: control rate + effect.
    pub fn intervention_rate(&self) -> f64 {
        self.control_rate + self.effect_pp / 100.0
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDesign {
    control_arm: Option<String>,
    control_rate: f64,
    effect_pp: f64,
    power: f64,
    alpha: Option<f64>,
    attrition: Option<f64>,
}

/// The `[design]` table, if the protocol has one.
pub(super) fn design(raw: &Raw, arms: &[Arm], outcomes: &[Outcome], w: &Where) -> Result<Option<Design>> {
    let design = match &raw.design {
        None => None,
        Some(d) => {
            let r = d.get_ref();
            if arms.len() != 2 {
                return Err(w.at(d, "[design] describes a two-arm comparison; this protocol has more arms"));
            }
            if outcomes.iter().all(|o| !o.primary) {
                return Err(w.at(d, "[design] needs a primary outcome; mark one outcome primary = true"));
            }
            let control_arm = match &r.control_arm {
                None => arms.len() - 1,
                Some(id) => arms
                    .iter()
                    .position(|a| &a.id == id)
                    .ok_or_else(|| w.at(d, format!("control_arm {id:?} is not a declared arm")))?,
            };
            let alpha = r.alpha.unwrap_or(0.05);
            let attrition = r.attrition.unwrap_or(0.0);
            let design = Design {
                control_arm,
                control_rate: r.control_rate,
                effect_pp: r.effect_pp,
                power: r.power,
                alpha,
                attrition,
            };
            if !(design.control_rate > 0.0 && design.control_rate < 1.0) {
                return Err(w.at(
                    d,
                    format!("control_rate = {}; give a proportion between 0 and 1, e.g. 0.25", r.control_rate),
                ));
            }
            let p2 = design.intervention_rate();
            if !(design.effect_pp.is_finite() && design.effect_pp != 0.0 && p2 > 0.0 && p2 < 1.0) {
                return Err(w.at(
                    d,
                    format!(
                        "effect_pp = {}; give a non-zero effect in percentage points that keeps control_rate + effect between 0 and 1",
                        r.effect_pp
                    ),
                ));
            }
            if !(alpha > 0.0 && alpha <= 0.5) {
                return Err(w.at(
                    d,
                    format!("alpha = {alpha}; give a two-sided significance level between 0 and 0.5, e.g. 0.05"),
                ));
            }
            if !(design.power > alpha / 2.0 && design.power < 1.0) {
                return Err(w.at(d, format!("power = {}; give a power between alpha/2 and 1, e.g. 0.9", r.power)));
            }
            if !(0.0..1.0).contains(&attrition) {
                return Err(w.at(
                    d,
                    format!(
                        "attrition = {attrition}; give the expected proportion lost, from 0 up to (not including) 1"
                    ),
                ));
            }
            Some(design)
        }
    };
    Ok(design)
}

#[cfg(test)]
mod tests {
    use crate::protocol::Protocol;
    use std::path::Path;

    #[test]
    fn the_default_protocol_states_its_sample_size_assumptions() {
        let p = Protocol::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/work-health-ips.toml")).unwrap();
        let d = p.design.expect("[design]");
        assert_eq!(p.arms[d.control_arm].id, "usual_care");
        assert_eq!((d.control_rate, d.effect_pp, d.power, d.alpha, d.attrition), (0.25, 4.0, 0.9, 0.05, 0.2));
        assert!((d.intervention_rate() - 0.29).abs() < 1e-12);
    }

    #[test]
    fn a_bad_design_table_is_refused_with_its_line() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/work-health-ips.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let (head, _) = text.split_once("[design]").expect("default protocol has [design]");
        for (table, needle) in [
            ("control_rate = 1.2\neffect_pp = 4\npower = 0.9", "control_rate = 1.2"),
            ("control_rate = 0.25\neffect_pp = 0\npower = 0.9", "effect_pp = 0"),
            ("control_rate = 0.25\neffect_pp = 80\npower = 0.9", "effect_pp = 80"),
            ("control_rate = 0.25\neffect_pp = 4\npower = 1", "power = 1"),
            ("control_rate = 0.25\neffect_pp = 4\npower = 0.9\nattrition = 1", "attrition = 1"),
            ("control_rate = 0.25\neffect_pp = 4\npower = 0.9\nalpha = 0", "alpha = 0"),
            ("control_rate = 0.25\neffect_pp = 4\npower = 0.9\ncontrol_arm = \"x\"", "control_arm \"x\""),
            ("control_rate = 0.25\neffect_pp = 4", "power"),
        ] {
            let bad = format!("{head}[design]\n{table}\n");
            let e = Protocol::parse("p.toml", &bad).unwrap_err().to_string();
            assert!(e.contains(needle) && e.starts_with("p.toml:"), "{e}");
        }
    }
}

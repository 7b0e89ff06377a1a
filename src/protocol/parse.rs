//! Reading a protocol file: the TOML read into its raw shapes (unknown keys
//! refused by name), the format version, the trial table, arms and sites, then
//! each section (`fields`, `method`, `eligibility`, `outcomes`,
//! `analysis_plan`, `design`) validated in turn against what came before it.
//! Every error names the file and, where it can, the line ([`Where`]).

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::analysis_plan::{self, RawAnalysis};
use super::design::{self, RawDesign};
use super::eligibility::{self, RawRule};
use super::fields::{self, Declared, RawField, RawNamed};
use super::method::{self, RawAllocation};
use super::outcomes::{self, RawOutcome, RawTimepoint};
use super::{Arm, PROTOCOL_FORMAT, Protocol, Site};
use crate::error::{Error, Result};

// ---------------------------------------------------------------------------
// Raw TOML shapes: the file's top level and its trial, arm and site tables
// (each section's own tables are beside the section).

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    format: Spanned<i64>,
    trial: RawTrial,
    arms: Option<Vec<Spanned<RawArm>>>,
    pub(super) allocation: Spanned<RawAllocation>,
    #[serde(default)]
    sites: Vec<Spanned<RawSite>>,
    pub(super) identity: Spanned<RawNamed>,
    pub(super) consent: Spanned<RawNamed>,
    #[serde(default)]
    pub(super) fields: Vec<Spanned<RawField>>,
    #[serde(default)]
    pub(super) eligibility: Vec<Spanned<RawRule>>,
    #[serde(default)]
    pub(super) timepoints: Vec<Spanned<RawTimepoint>>,
    #[serde(default)]
    pub(super) outcomes: Vec<Spanned<RawOutcome>>,
    pub(super) analysis: Option<Spanned<RawAnalysis>>,
    pub(super) design: Option<Spanned<RawDesign>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrial {
    id: Spanned<String>,
    title: String,
    registration: Option<String>,
    timezone: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArm {
    id: String,
    label: Option<String>,
    ratio: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    id: String,
    label: Option<String>,
    region: Option<String>,
}

// ---------------------------------------------------------------------------

/// Builds located error messages: `FILE:LINE: problem`.
pub(super) struct Where<'a> {
    pub(super) file: &'a str,
    text: &'a str,
}

impl Where<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].matches('\n').count() + 1
    }
    pub(super) fn at<T>(&self, spanned: &Spanned<T>, msg: impl std::fmt::Display) -> Error {
        Error::Protocol(format!(
            "{}:{}: {msg}; correct the protocol file and run init again",
            self.file,
            self.line(spanned.span().start)
        ))
    }
}

pub(super) fn check_id(what: &str, id: &str) -> std::result::Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && id.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {id:?} is not a valid identifier (use 1–64 lowercase letters, digits, '_' or '-', starting with a letter)"
        ))
    }
}

/// Which rules a protocol is parsed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rules {
    /// Every rule: a protocol for a trial about to be created.
    NewTrial,
    /// A protocol a log already holds: the rules of the format it was
    /// accepted under (see [`Protocol::parse_recorded`]).
    Recorded,
}

impl Protocol {
    /// Reads and validates a protocol file.
    pub fn load(path: &Path) -> Result<Protocol> {
        let bytes = crate::bounded::read(path, crate::bounded::Limits::PROTOCOL)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            Error::Protocol(format!(
                "{}: the file is not UTF-8 text (invalid byte at offset {}); save it as UTF-8",
                path.display(),
                e.utf8_error().valid_up_to()
            ))
        })?;
        Protocol::parse(&path.display().to_string(), &text)
    }

    /// Parses and validates protocol text for a new trial; `file` names it in
    /// messages.
    pub fn parse(file: &str, text: &str) -> Result<Protocol> {
        Protocol::parse_as(file, text, Rules::NewTrial)
    }

    /// Parses the protocol a trial's log entry 0 committed to. The rules added
    /// for new trials since a log may have been written (minimisation's p above
    /// 0.5, a bound on the number of strata) are not applied: that trial
    /// allocated under its protocol as it was accepted, and must still verify
    /// and go on by it.
    pub fn parse_recorded(file: &str, text: &str) -> Result<Protocol> {
        Protocol::parse_as(file, text, Rules::Recorded)
    }

    fn parse_as(file: &str, text: &str, rules: Rules) -> Result<Protocol> {
        let w = Where { file, text };
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| w.line(s.start));
            let msg = e.message().trim().replace('\n', "; ");
            Error::Protocol(match line {
                Some(l) => format!("{file}:{l}: {msg}; correct the protocol file and run init again"),
                None => format!("{file}: {msg}; correct the protocol file and run init again"),
            })
        })?;
        if *raw.format.get_ref() != PROTOCOL_FORMAT {
            return Err(w.at(
                &raw.format,
                format!(
                    "protocol format {} is not supported (this chancery reads format {PROTOCOL_FORMAT})",
                    raw.format.get_ref()
                ),
            ));
        }
        check_id("trial id", raw.trial.id.get_ref()).map_err(|m| w.at(&raw.trial.id, m))?;
        let timezone = match &raw.trial.timezone {
            None => chrono_tz::Tz::UTC,
            Some(z) => z.get_ref().parse::<chrono_tz::Tz>().map_err(|_| {
                w.at(
                    z,
                    format!(
                        "timezone {:?} is not an IANA time zone name; write it like \"Europe/London\"",
                        crate::referral::truncate(z.get_ref(), 40)
                    ),
                )
            })?,
        };

        // Arms.
        let raw_arms = raw.arms.as_deref().unwrap_or_default();
        if raw_arms.is_empty() {
            return Err(Error::Protocol(format!(
                "{file}: the protocol declares no arms; add at least two [[arms]] tables"
            )));
        }
        let mut arms = Vec::new();
        for a in raw_arms {
            let r = a.get_ref();
            check_id("arm id", &r.id).map_err(|m| w.at(a, m))?;
            if arms.iter().any(|x: &Arm| x.id == r.id) {
                return Err(w.at(a, format!("arm {:?} is declared twice", r.id)));
            }
            let ratio = r.ratio.unwrap_or(1);
            if !(1..=100).contains(&ratio) {
                return Err(
                    w.at(a, format!("arm {:?} has ratio {ratio}; a ratio must be a whole number from 1 to 100", r.id))
                );
            }
            arms.push(Arm {
                id: r.id.clone(),
                label: r.label.clone().unwrap_or_else(|| r.id.clone()),
                ratio: ratio as u32,
            });
        }
        if arms.len() < 2 {
            return Err(w.at(&raw_arms[0], "a trial needs at least two arms"));
        }

        // Sites.
        if raw.sites.is_empty() {
            return Err(Error::Protocol(format!(
                "{file}: the protocol declares no sites; add at least one [[sites]] table"
            )));
        }
        let mut sites: Vec<Site> = Vec::new();
        for s in &raw.sites {
            let r = s.get_ref();
            check_id("site id", &r.id).map_err(|m| w.at(s, m))?;
            if sites.iter().any(|x| x.id == r.id) {
                return Err(w.at(s, format!("site {:?} is declared twice", r.id)));
            }
            if let Some(region) = &r.region {
                check_id("region", region).map_err(|m| w.at(s, m))?;
            }
            sites.push(Site {
                id: r.id.clone(),
                label: r.label.clone().unwrap_or_else(|| r.id.clone()),
                region: r.region.clone(),
            });
        }
        let has_regions = sites.iter().any(|s| s.region.is_some());
        if has_regions && sites.iter().any(|s| s.region.is_none()) {
            let s = raw.sites.iter().find(|s| s.get_ref().region.is_none()).unwrap_or(&raw.sites[0]);
            return Err(w.at(s, "some sites have a region and this one has none; give every site a region or none"));
        }
        let mut regions: Vec<String> = Vec::new();
        for s in &sites {
            if let Some(r) = &s.region
                && !regions.contains(r)
            {
                regions.push(r.clone());
            }
        }

        let fields = fields::fields(&raw, &w)?;
        let d = Declared::new(&fields, &sites, &regions);
        let (identity, consent) = fields::identity_and_consent(&raw, &d, &w)?;
        let (method, factors) = method::method_and_factors(&raw, &arms, &d, identity, rules, &w)?;
        let eligibility = eligibility::eligibility(&raw, &d, &w)?;
        let (timepoints, outcomes) = outcomes::timepoints_and_outcomes(&raw, &d, &w)?;
        let analysis = analysis_plan::analysis_plan(&raw, &d, identity, &outcomes, &w)?;
        let design = design::design(&raw, &arms, &outcomes, &w)?;

        let mut by_name: Vec<usize> = (0..fields.len()).collect();
        by_name.sort_by(|&a, &b| fields[a].name.cmp(&fields[b].name));
        Ok(Protocol {
            by_name,
            text: text.to_string(),
            id: raw.trial.id.into_inner(),
            title: raw.trial.title,
            registration: raw.trial.registration,
            timezone,
            arms,
            method,
            factors,
            sites,
            fields,
            identity,
            consent,
            eligibility,
            timepoints,
            outcomes,
            analysis,
            design,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Imbalance, Method};
    use super::*;

    #[test]
    fn every_protocol_in_the_protocol_folder_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Protocol::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 3, "expected the default protocol and two examples, found {n}");
    }

    #[test]
    fn a_time_zone_is_optional_and_read_as_an_iana_name() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/work-health-ips.toml");
        let shipped = std::fs::read_to_string(&path).unwrap();
        assert_eq!(Protocol::parse("p.toml", &shipped).unwrap().timezone, chrono_tz::Tz::Europe__London);
        let text: String =
            shipped.lines().filter(|l| !l.starts_with("timezone = ")).map(|l| format!("{l}\n")).collect();
        assert_eq!(
            Protocol::parse("p.toml", &text).unwrap().timezone,
            chrono_tz::Tz::UTC,
            "none named: UTC, as before"
        );
        let zoned = text.replacen("[trial]\n", "[trial]\ntimezone = \"Europe/London\"\n", 1);
        assert_eq!(Protocol::parse("p.toml", &zoned).unwrap().timezone, chrono_tz::Tz::Europe__London);
        let wrong = text.replacen("[trial]\n", "[trial]\ntimezone = \"BST\"\n", 1);
        let line = wrong.lines().position(|l| l.starts_with("timezone")).unwrap() + 1;
        let e = Protocol::parse("p.toml", &wrong).unwrap_err().to_string();
        assert!(e.contains(&format!("p.toml:{line}: timezone \"BST\" is not an IANA time zone name")), "{e}");
    }

    #[test]
    fn the_default_protocol_has_the_documented_names() {
        let p = Protocol::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/work-health-ips.toml")).unwrap();
        assert_eq!(p.arms.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), ["ips", "usual_care"]);
        assert_eq!(p.sites.len(), 9);
        assert_eq!(p.fields[p.identity].name, "nhs_number");
        assert_eq!(
            p.factors.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["site", "employment_status", "condition"]
        );
        assert_eq!(p.method, Method::PermutedBlocks { block_sizes: vec![2, 4, 6] });
    }

    /// The rules added for new trials do not stop a trial already in a log from
    /// being verified or going on: its protocol is read as it was accepted.
    #[test]
    fn a_recorded_protocol_is_read_as_it_was_accepted() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/example-minimisation.toml");
        let text = std::fs::read_to_string(path).unwrap().replace("p = 0.8\n", "p = 0.5\n");
        assert!(Protocol::parse("p.toml", &text).unwrap_err().to_string().contains("use p above 0.5"));
        let recorded = Protocol::parse_recorded("p.toml", &text).unwrap();
        assert_eq!(recorded.method, Method::Minimisation { imbalance: Imbalance::Range, p_millionths: 500_000 });
    }
}

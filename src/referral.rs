//! Referrals: the values a coordinator enters, their validation against the
//! protocol, and the screening decision (eligibility → consent → baseline).
//!
//! Screening is pure: it takes a referral and the protocol and returns either
//! a decision or one message saying what is wrong. Nothing here writes.

use std::collections::BTreeMap;

use crate::identity::normalise_nhs_number;
use crate::protocol::{Condition, FieldRef, Kind, Op, Operand, Protocol, Stage};
use crate::table_input::{CsvFile, CsvOptions};

/// A referral as entered: participant id, site and `FIELD=VALUE` pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct Referral {
    /// The participant (referral) identifier.
    pub participant: String,
    /// The recruiting site id.
    pub site: String,
    /// Field values as entered, in entry order.
    pub values: Vec<(String, String)>,
}

/// The outcome of screening a referral.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Fails one or more eligibility rules; the rule ids, in protocol order.
    Ineligible(Vec<String>),
    /// Eligible but did not consent.
    Declined,
    /// Eligible, consented, complete baseline: to be allocated.
    Randomise,
}

impl Decision {
    /// `ineligible`, `declined` or `randomised`, as reported.
    pub fn status(&self) -> &'static str {
        match self {
            Decision::Ineligible(_) => "ineligible",
            Decision::Declined => "declined",
            Decision::Randomise => "randomised",
        }
    }
}

/// A validated, screened referral.
#[derive(Debug, Clone, PartialEq)]
pub struct Screened {
    /// The participant identifier.
    pub participant: String,
    /// The site id.
    pub site: String,
    /// The normalised identity value (never stored; hashed before writing).
    pub identity: String,
    /// Canonical text of every other value to be recorded, by field name. For an
    /// ineligible referral only screening fields; for a declined one also consent.
    pub values: BTreeMap<String, String>,
    /// The decision.
    pub decision: Decision,
}

/// Checks a participant identifier: 1–64 characters from letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit.
pub fn check_participant_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "participant id {:?} is not valid; use 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            truncate(id, 70)
        ))
    }
}

/// Shortens a user-supplied string for quoting in a message.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// Parses a value of `kind` and returns its canonical text, or why it is invalid.
/// Canonical text: integers without sign or leading zeros beyond `-`, decimals as
/// plain decimal strings (no exponent), levels exactly as declared, dates YYYY-MM-DD.
/// The rules for what is accepted are [`crate::values`]'s.
pub fn canonical_value(kind: &Kind, raw: &str) -> Result<String, String> {
    let v = raw.trim();
    let expected = || format!("expected {}", kind.describe());
    // A leading `+` is read as people mean it and not recorded (see `values`).
    let unsigned = |v: &'_ str| -> bool { v.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'.') };
    let v = match v.strip_prefix('+') {
        Some(rest) if matches!(kind, Kind::Integer { .. } | Kind::Number { .. }) && unsigned(rest) => rest,
        _ => v,
    };
    match kind {
        Kind::Integer { min, max } => {
            let plain = v.strip_prefix('-').unwrap_or(v);
            if plain.is_empty() || !plain.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{:?} is not a whole number; {}", truncate(v, 40), expected()));
            }
            let n: i64 = v
                .parse()
                .map_err(|_| format!("{:?} is too large; {}", truncate(v, 40), expected()))?;
            if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                return Err(format!("{n} is out of range; {}", expected()));
            }
            // Digits with no leading zero (and not "-0") are already how `n`
            // prints: copy them rather than format `n` again.
            let canonical = !plain.starts_with('0') || (plain == "0" && plain.len() == v.len());
            Ok(if canonical { v.to_string() } else { n.to_string() })
        }
        Kind::Number { min, max } => {
            let body = v.strip_prefix('-').unwrap_or(v);
            let mut parts = body.splitn(2, '.');
            let int = parts.next().unwrap_or("");
            let frac = parts.next();
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if !digits(int) || frac.is_some_and(|f| !digits(f)) || body.len() > 40 {
                return Err(format!(
                    "{:?} is not a plain decimal number (write it like 0.731); {}",
                    truncate(v, 40),
                    expected()
                ));
            }
            let x: f64 = v.parse().map_err(|_| format!("{:?} is not a number", truncate(v, 40)))?;
            if !x.is_finite() {
                return Err(format!("{:?} is not a finite number", truncate(v, 40)));
            }
            if min.is_some_and(|m| x < m) || max.is_some_and(|m| x > m) {
                return Err(format!("{v} is out of range; {}", expected()));
            }
            // Canonical: strip leading zeros of the integer part, keep the fraction as entered.
            let int = int.trim_start_matches('0');
            let int = if int.is_empty() { "0" } else { int };
            let mut out = String::new();
            if v.starts_with('-') && x != 0.0 {
                out.push('-');
            }
            out.push_str(int);
            if let Some(f) = frac {
                out.push('.');
                out.push_str(f);
            }
            Ok(out)
        }
        Kind::Category { levels } => levels
            .iter()
            .find(|l| l.eq_ignore_ascii_case(v))
            .cloned()
            .ok_or_else(|| format!("{:?} is not a valid level; {}", truncate(v, 40), expected())),
        Kind::Date => crate::values::parse_date(v).map(|d| d.format("%Y-%m-%d").to_string()),
        // The value itself is never echoed: it is a direct identifier.
        Kind::NhsNumber => normalise_nhs_number(v).ok_or_else(|| {
            if crate::identity::is_never_issued(v) {
                "the value is not an NHS number that is ever issued (every digit the same, though the check digit holds); check it against the referral form".to_string()
            } else {
                "the value is not a valid NHS number (10 digits with a valid modulus-11 check digit); check it against the referral form".to_string()
            }
        }),
    }
}

/// Screens a referral: validates every value, then decides eligibility, consent
/// and baseline completeness in the protocol's order. `Err` is one message
/// saying what is wrong and what to do; it never quotes the identity value.
pub fn screen(protocol: &Protocol, referral: &Referral) -> Result<Screened, String> {
    check_participant_id(&referral.participant)?;
    let p = &referral.participant;
    let site = protocol.sites.iter().find(|s| s.id.eq_ignore_ascii_case(referral.site.trim())).ok_or_else(|| {
        format!(
            "participant {p}: unknown site {:?}; sites are {}",
            truncate(&referral.site, 40),
            protocol.sites.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(", ")
        )
    })?;

    // Parse every given value; an empty value means missing. Indexed by
    // field: a protocol has tens of fields, and screening runs per referral.
    let mut given: Vec<Option<String>> = vec![None; protocol.fields.len()];
    // Values usually come in the protocol's order (a batch file's columns
    // in the order the protocol declares them): try the field after the
    // previous value's first, and search only when that is not it.
    let mut next = 0;
    for (name, raw) in &referral.values {
        let i = match protocol.fields.get(next) {
            Some(f) if f.name == *name => next,
            _ => protocol.fields.iter().position(|f| f.name.eq_ignore_ascii_case(name.trim())).ok_or_else(|| {
                format!(
                    "participant {p}: unknown field {:?}; the protocol's fields are {}",
                    truncate(name, 40),
                    protocol.field_names()
                )
            })?,
        };
        next = i + 1;
        if given[i].is_some() {
            return Err(format!("participant {p}: field {name} is given twice; give it once"));
        }
        if raw.trim().is_empty() {
            continue;
        }
        let value = canonical_value(&protocol.fields[i].kind, raw)
            .map_err(|m| format!("participant {p}: field {name}: {m}"))?;
        given[i] = Some(value);
    }
    for (i, f) in protocol.fields.iter().enumerate() {
        if f.stage == Stage::Screening && f.required && given[i].is_none() {
            return Err(format!(
                "participant {p}: screening field {} is missing; every referral needs it to decide eligibility",
                f.name
            ));
        }
    }

    // Eligibility.
    let read = |r: FieldRef| -> Option<&str> {
        match r {
            FieldRef::Site => Some(site.id.as_str()),
            FieldRef::Region => site.region.as_deref(),
            FieldRef::Field(i) => given[i].as_deref(),
        }
    };
    let name_of = |r: FieldRef| -> &str {
        match r {
            FieldRef::Site => "site",
            FieldRef::Region => "region",
            FieldRef::Field(i) => &protocol.fields[i].name,
        }
    };
    let holds = |c: &Condition, rule: &str| -> Result<bool, String> {
        let v = read(c.field).ok_or_else(|| {
            format!(
                "participant {p}: field {} is missing but rule {rule} needs it to decide eligibility",
                name_of(c.field)
            )
        })?;
        Ok(evaluate(c, v))
    };
    let mut failed = Vec::new();
    for rule in &protocol.eligibility {
        let mut applies = true;
        for c in &rule.when {
            if !holds(c, &rule.id)? {
                applies = false;
                break;
            }
        }
        if applies && !holds(&rule.require, &rule.id)? {
            failed.push(rule.id.clone());
        }
    }

    // The values to record move out of `given`; the identity is never among them.
    let identity = given[protocol.identity].clone().unwrap_or_default();
    let record = |mut given: Vec<Option<String>>, stages: &[Stage]| -> BTreeMap<String, String> {
        // In key order already, so the map is built without sorting.
        protocol
            .by_name
            .iter()
            .filter(|&&i| i != protocol.identity && stages.contains(&protocol.fields[i].stage))
            .filter_map(|&i| Some((protocol.fields[i].name.clone(), given[i].take()?)))
            .collect()
    };
    let screened =
        |values, decision| Screened { participant: p.clone(), site: site.id.clone(), identity, values, decision };
    if !failed.is_empty() {
        return Ok(screened(record(given, &[Stage::Screening]), Decision::Ineligible(failed)));
    }
    let Some(consent) = given[protocol.consent].as_deref() else {
        return Err(format!(
            "participant {p}: the referral is eligible but {} is missing; record yes or no",
            protocol.fields[protocol.consent].name
        ));
    };
    if consent == "no" {
        return Ok(screened(record(given, &[Stage::Screening, Stage::Consent]), Decision::Declined));
    }
    for (i, f) in protocol.fields.iter().enumerate() {
        if f.stage == Stage::Baseline && f.required && given[i].is_none() {
            return Err(format!(
                "participant {p}: baseline field {} is missing; complete the baseline questionnaire before randomising ({})",
                f.name,
                f.kind.describe()
            ));
        }
    }
    Ok(screened(record(given, &[Stage::Screening, Stage::Consent, Stage::Baseline]), Decision::Randomise))
}

/// Evaluates a condition on a canonical value.
fn evaluate(c: &Condition, v: &str) -> bool {
    match (&c.value, c.op) {
        (Operand::Level(l), Op::Eq) => v == l,
        (Operand::Level(l), Op::Ne) => v != l,
        (Operand::Levels(ls), Op::In) => ls.iter().any(|l| l == v),
        (Operand::Levels(ls), Op::NotIn) => !ls.iter().any(|l| l == v),
        (Operand::Number(n), op) => {
            let Ok(x) = v.parse::<f64>() else { return false };
            match op {
                Op::Eq => x == *n,
                Op::Ne => x != *n,
                Op::Ge => x >= *n,
                Op::Gt => x > *n,
                Op::Le => x <= *n,
                Op::Lt => x < *n,
                Op::In | Op::NotIn => false,
            }
        }
        // The protocol validator admits no other combination.
        _ => false,
    }
}

/// The level of each stratification factor for a screened referral, by index
/// into the factor's levels.
pub fn factor_levels(protocol: &Protocol, s: &Screened) -> Vec<usize> {
    protocol
        .factors
        .iter()
        .map(|f| {
            let v = match f.source {
                FieldRef::Site => Some(s.site.as_str()),
                FieldRef::Region => protocol.site(&s.site).and_then(|x| x.region.as_deref()),
                FieldRef::Field(i) => s.values.get(&protocol.fields[i].name).map(String::as_str),
            };
            v.and_then(|v| f.levels.iter().position(|l| l == v))
                .expect("factors are required category fields validated by screen")
        })
        .collect()
}

/// Reads a batch of referrals from CSV bytes with the header
/// `participant,site,<field>…`. `name` names the file in messages. Every
/// malformed row is reported (with its line), and none is returned if any is bad.
pub fn parse_batch_csv(name: &str, bytes: &[u8]) -> Result<Vec<(String, Referral)>, String> {
    read_batch_csv(name, bytes, &CsvOptions::default())
}

/// [`parse_batch_csv`] from any reader, read as `options` say (see [`crate::table_input`]).
pub fn read_batch_csv(
    name: &str,
    input: impl std::io::Read,
    options: &CsvOptions,
) -> Result<Vec<(String, Referral)>, String> {
    let file = CsvFile::read(name, input, options)?;
    file.expect_header(&["participant", "site"], 2, "the field names")?;
    let headers = file.headers();
    file.collect("referrals", |record| {
        let values = headers[2..]
            .iter()
            .cloned()
            .zip(record.iter().skip(2).take(headers.len() - 2).map(str::to_string))
            .collect();
        Ok(Referral { participant: record[0].trim().to_string(), site: record[1].trim().to_string(), values })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn protocol() -> Protocol {
        Protocol::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/work-health-ips.toml")).unwrap()
    }

    fn referral(site: &str, extra: &[(&str, &str)]) -> Referral {
        let mut values: Vec<(String, String)> = [
            ("nhs_number", "9434765919"),
            ("age", "34"),
            ("sex", "female"),
            ("employment_status", "out_of_work"),
            ("condition", "mental_health"),
            ("referral_source", "gp"),
            ("weeks_out_of_work", "10"),
            ("gp_in_area", "yes"),
            ("wants_work", "yes"),
            ("receiving_ips", "no"),
            ("consent", "yes"),
            ("phq9", "12"),
            ("gad7", "9"),
            ("swemwbs", "21"),
            ("eq5d", "0.731"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        for (k, v) in extra {
            if let Some(slot) = values.iter_mut().find(|(n, _)| n == k) {
                slot.1 = v.to_string();
            } else {
                values.push((k.to_string(), v.to_string()));
            }
        }
        Referral { participant: "P1".into(), site: site.into(), values }
    }

    #[test]
    fn a_complete_eligible_consenting_referral_is_randomised() {
        let s = screen(&protocol(), &referral("sheffield", &[])).unwrap();
        assert_eq!(s.decision, Decision::Randomise);
        assert!(!s.values.contains_key("nhs_number"));
        assert_eq!(s.values["eq5d"], "0.731");
    }

    #[test]
    fn every_failing_rule_is_reported() {
        let s = screen(&protocol(), &referral("sheffield", &[("age", "17"), ("wants_work", "no")])).unwrap();
        assert_eq!(s.decision, Decision::Ineligible(vec!["adult".into(), "wants_work".into()]));
        assert!(!s.values.contains_key("phq9"), "baseline is not recorded for the ineligible");
    }

    #[test]
    fn in_work_is_eligible_only_in_sheffield_city_region() {
        let r = [("employment_status", "in_work"), ("weeks_out_of_work", "")];
        assert_eq!(screen(&protocol(), &referral("rotherham", &r)).unwrap().decision, Decision::Randomise);
        assert_eq!(
            screen(&protocol(), &referral("dudley", &r)).unwrap().decision,
            Decision::Ineligible(vec!["in_work_region".into()])
        );
    }

    #[test]
    fn out_of_work_needs_four_weeks_and_the_weeks_field() {
        let s = screen(&protocol(), &referral("dudley", &[("weeks_out_of_work", "3")])).unwrap();
        assert_eq!(s.decision, Decision::Ineligible(vec!["out_of_work_4_weeks".into()]));
        let e = screen(&protocol(), &referral("dudley", &[("weeks_out_of_work", "")])).unwrap_err();
        assert!(e.contains("weeks_out_of_work is missing but rule out_of_work_4_weeks needs it"), "{e}");
    }

    #[test]
    fn declining_consent_gets_no_baseline_check() {
        let s = screen(&protocol(), &referral("sheffield", &[("consent", "no"), ("phq9", "")])).unwrap();
        assert_eq!(s.decision, Decision::Declined);
    }

    #[test]
    fn missing_or_out_of_range_baseline_is_an_error() {
        let e = screen(&protocol(), &referral("sheffield", &[("phq9", "")])).unwrap_err();
        assert!(e.contains("baseline field phq9 is missing"), "{e}");
        let e = screen(&protocol(), &referral("sheffield", &[("phq9", "28")])).unwrap_err();
        assert!(e.contains("phq9: 28 is out of range"), "{e}");
        let e = screen(&protocol(), &referral("sheffield", &[("eq5d", "-0.3")])).unwrap_err();
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn bad_values_are_named_and_identity_is_never_echoed() {
        let e = screen(&protocol(), &referral("sheffield", &[("nhs_number", "9434765918")])).unwrap_err();
        assert!(e.contains("nhs_number") && !e.contains("9434765918"), "{e}");
        let e = screen(&protocol(), &referral("leeds", &[])).unwrap_err();
        assert!(e.contains("unknown site \"leeds\""), "{e}");
        let e = screen(&protocol(), &referral("sheffield", &[("colour", "red")])).unwrap_err();
        assert!(e.contains("unknown field \"colour\""), "{e}");
        for bad in ["NaN", "inf", "1e3", "0x10", "", " "] {
            assert!(canonical_value(&Kind::Number { min: None, max: None }, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_canonicalised() {
        let int = Kind::Integer { min: None, max: None };
        assert_eq!(canonical_value(&int, " 007 ").unwrap(), "7");
        assert_eq!(canonical_value(&int, "-0").unwrap(), "0");
        assert_eq!(canonical_value(&int, "-00").unwrap(), "0");
        assert_eq!(canonical_value(&int, "-012").unwrap(), "-12");
        let num = Kind::Number { min: None, max: None };
        assert_eq!(canonical_value(&num, "00.50").unwrap(), "0.50");
        assert_eq!(canonical_value(&num, "-0").unwrap(), "0");
        let cat = Kind::Category { levels: vec!["yes".into(), "no".into()] };
        assert_eq!(canonical_value(&cat, "YES").unwrap(), "yes");
        assert_eq!(canonical_value(&Kind::Date, "2026-02-29").ok(), None);
    }

    proptest::proptest! {
        /// The canonical text of a whole number is how the number prints,
        /// whichever way it was written (leading zeros, a minus on zero).
        #[test]
        fn a_whole_number_is_recorded_as_it_prints(minus in proptest::bool::ANY, zeros in 0usize..3, n in 0u64..1_000_000_000_000) {
            let text = format!("{}{}{n}", if minus { "-" } else { "" }, "0".repeat(zeros));
            let value: i64 = text.parse().unwrap();
            let int = Kind::Integer { min: None, max: None };
            proptest::prop_assert_eq!(canonical_value(&int, &text).unwrap(), value.to_string());
        }
    }
}

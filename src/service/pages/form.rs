//! The randomise form, generated from the protocol: one section per stage in
//! the order a referral is screened (eligibility → consent → baseline), a
//! select for levels, bounded number inputs for ranges, date inputs for
//! dates, the protocol's help text beside each field, and the site select
//! limited to the caller's sites.
//!
//! A submitted form parses back into exactly the referral the command line
//! builds ([`Entered::referrals`] is `Referrals::single`), so screening and
//! its messages are the library's. A message is shown next to the field it
//! names ([`Problems::from_message`]); one that names none, at the top.

use std::collections::BTreeMap;

use maud::{Markup, html};

use crate::operations::Referrals;
use crate::protocol::{Field, Kind, Protocol, Site, Stage};

/// Ids the page itself uses; a protocol field with one of these names gets
/// `field-NAME` as its element id instead, so ids stay unique.
const PAGE_IDS: &[&str] = &[
    "main",
    "skip",
    "trial-title",
    "user",
    "roles",
    "sites",
    "logout",
    "nav",
    "error",
    "randomise",
    "randomise-form",
    "allocation",
    "receipt",
    "participants",
    "due",
    "status",
    "status-counts",
    "written",
    "accounts",
    "verification",
    "practice",
    "csrf",
];

/// The element id of a field's input (its name, unless the page uses that id).
pub fn input_id(name: &str) -> String {
    if PAGE_IDS.contains(&name) { format!("field-{name}") } else { name.to_string() }
}

/// What was typed into the form, to refill it and to build the referral.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entered {
    /// The participant id typed.
    pub participant: String,
    /// The site chosen.
    pub site: String,
    /// Every other (name, value) pair, in the order submitted.
    pub values: Vec<(String, String)>,
}

impl Entered {
    /// The referral the command line would build from the same values
    /// (`randomise --participant P --site S --set FIELD=VALUE …`).
    pub fn referrals(&self) -> Referrals {
        Referrals::single(&self.participant, &self.site, &self.values)
    }

    /// The value typed for `name`, if any.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The problems to show on a refilled form: messages by the field they
/// concern, and those that concern none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Problems {
    /// Messages for the form as a whole.
    pub top: Vec<String>,
    /// One message per field name (`participant`, `site` or a protocol field).
    pub fields: BTreeMap<String, String>,
}

impl Problems {
    /// Whether there is nothing to show.
    pub fn is_empty(&self) -> bool {
        self.top.is_empty() && self.fields.is_empty()
    }

    /// One message, placed next to the field it names, else at the top.
    pub fn from_message(protocol: &Protocol, message: &str) -> Problems {
        let mut p = Problems::default();
        p.add(protocol, message);
        p
    }

    /// Adds a message, placed next to the field it names, else at the top.
    pub fn add(&mut self, protocol: &Protocol, message: &str) {
        match field_of(protocol, message) {
            Some(f) if !self.fields.contains_key(&f) => {
                self.fields.insert(f, message.to_string());
            }
            _ => self.top.push(message.to_string()),
        }
    }

    /// The message for `name`, if any.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// The form field a library message is about, from the names its messages
/// use (`field NAME`, `unknown site`, `participant id`, the consent question,
/// the identity), or `None`.
pub fn field_of(protocol: &Protocol, message: &str) -> Option<String> {
    let word =
        |s: &str| -> String { s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect() };
    for (i, _) in message.match_indices("field ") {
        let name = word(&message[i + "field ".len()..]);
        match name.as_str() {
            "site" | "region" => return Some("site".into()),
            n if protocol.field(n).is_some() => return Some(name),
            _ => {}
        }
    }
    if message.contains("unknown site") {
        return Some("site".into());
    }
    let consent = &protocol.fields[protocol.consent].name;
    if message.contains(&format!("but {consent} is missing")) {
        return Some(consent.clone());
    }
    if message.contains("NHS number") {
        return Some(protocol.fields[protocol.identity].name.clone());
    }
    if message.contains("participant id")
        || message.contains("is already recorded")
        || message.contains("differs only in case")
    {
        return Some("participant".into());
    }
    None
}

/// Reads a submitted form's (name, value) pairs: the participant, the site
/// and every other pair as a field value, in the order submitted (the
/// hidden `csrf` field aside). Names the protocol does not declare are kept,
/// so that screening refuses them as it refuses them from the command line.
pub fn parse(pairs: &[(String, String)]) -> Result<Entered, Problems> {
    let mut entered = Entered::default();
    let mut problems = Problems::default();
    let (mut participant, mut site) = (false, false);
    for (name, value) in pairs {
        match name.as_str() {
            "csrf" => {}
            "participant" | "site" => {
                let (seen, slot) = if name == "participant" {
                    (&mut participant, &mut entered.participant)
                } else {
                    (&mut site, &mut entered.site)
                };
                if *seen {
                    problems.fields.insert(name.clone(), format!("{name} is given twice; give it once"));
                }
                *seen = true;
                *slot = value.trim().to_string();
            }
            _ => entered.values.push((name.clone(), value.clone())),
        }
    }
    if !participant {
        problems.fields.insert("participant".into(), "give the participant id".into());
    }
    if !site {
        problems.fields.insert("site".into(), "choose the site".into());
    }
    if problems.is_empty() { Ok(entered) } else { Err(problems) }
}

/// The stages in the order a referral is screened, with their headings.
pub const SECTIONS: [(Stage, &str, &str); 3] = [
    (Stage::Screening, "Eligibility", "Collected for every referral; eligibility is decided from these."),
    (Stage::Consent, "Consent", "Asked of eligible referrals only."),
    (
        Stage::Baseline,
        "Baseline",
        "Collected after consent and before allocation; required of every consenting eligible referral.",
    ),
];

/// The randomise form, refilled with `entered` and showing `problems`.
/// `sites`: the caller's sites (the only ones offered).
pub fn render(protocol: &Protocol, sites: &[&Site], entered: &Entered, problems: &Problems, csrf: &str) -> Markup {
    let one_site = sites.len() == 1;
    html! {
        form method="post" action="/randomise" id="randomise-form" {
            input type="hidden" name="csrf" value=(csrf);
            @if !problems.top.is_empty() {
                div.problems id="error" role="alert" {
                    p { "Nothing was written:" }
                    ul { @for m in &problems.top { li { (m) } } }
                }
            }
            fieldset {
                legend { "Referral" }
                (text_input("participant", "Participant id", "text", &entered.participant,
                    "1–64 letters, digits, '.', '_' or '-', starting with a letter or digit; used once.",
                    problems.field("participant"), true))
                div.field.has-error[problems.field("site").is_some()] {
                    label for="site" { "Site" }
                    (error("site", problems.field("site")))
                    select id="site" name="site" required aria-describedby=(described("site", problems.field("site"))) {
                        @if !one_site { option value="" { "Choose the site…" } }
                        @for s in sites {
                            option value=(s.id) selected[one_site || s.id.eq_ignore_ascii_case(&entered.site)] {
                                (s.label) @if s.label != s.id { " (" (s.id) ")" }
                            }
                        }
                    }
                    p.help id="help-site" { "Only your sites are listed." }
                }
            }
            @for (stage, heading, note) in SECTIONS {
                @let fields: Vec<&Field> = protocol.fields.iter().filter(|f| f.stage == stage).collect();
                @if !fields.is_empty() {
                    fieldset id=(format!("section-{}", stage_name(stage))) {
                        legend { (heading) }
                        p.note { (note) }
                        @for f in fields {
                            (field(f, entered.value(&f.name).unwrap_or(""), problems.field(&f.name)))
                        }
                    }
                }
            }
            button type="submit" id="randomise" { "Screen and randomise" }
        }
    }
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Screening => "eligibility",
        Stage::Consent => "consent",
        Stage::Baseline => "baseline",
    }
}

/// The help text shown beside a field: the protocol's description, then
/// what values it takes and its unit.
pub fn help_text(f: &Field) -> String {
    let mut text = value_help(f.description.as_deref(), &f.kind, f.unit.as_deref());
    if f.stage == Stage::Screening && !f.required {
        text.push_str(" May be left empty.");
    }
    text
}

/// A description (if any), then the values a `kind` takes and its unit.
pub fn value_help(description: Option<&str>, kind: &Kind, unit: Option<&str>) -> String {
    let mut parts = Vec::new();
    if let Some(d) = description {
        parts.push(ensure_stop(d));
    }
    let mut valid = kind.describe();
    if let Some(u) = unit {
        valid.push_str(&format!(" ({u})"));
    }
    parts.push(ensure_stop(&capitalise(&valid)));
    parts.join(" ")
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

fn ensure_stop(s: &str) -> String {
    if s.ends_with('.') { s.to_string() } else { format!("{s}.") }
}

fn described(id: &str, problem: Option<&str>) -> String {
    if problem.is_some() { format!("help-{id} error-{id}") } else { format!("help-{id}") }
}

fn error(id: &str, problem: Option<&str>) -> Markup {
    html! {
        @if let Some(m) = problem {
            p.error id=(format!("error-{id}")) { (m) }
        }
    }
}

fn text_input(
    name: &str,
    label: &str,
    kind: &str,
    value: &str,
    help: &str,
    problem: Option<&str>,
    required: bool,
) -> Markup {
    let id = input_id(name);
    html! {
        div.field.has-error[problem.is_some()] {
            label for=(id) { (label) }
            (error(name, problem))
            input type=(kind) id=(id) name=(name) value=(value) required[required] autocomplete="off"
                aria-invalid=[problem.map(|_| "true")] aria-describedby=(described(name, problem));
            p.help id=(format!("help-{name}")) { (help) }
        }
    }
}

/// The input for a value of `kind`: a select of the levels (with "not
/// answered" first), a bounded number input (step 1 for whole numbers), a
/// date input, or a text input for an NHS number.
pub fn control(
    kind: &Kind,
    id: &str,
    name: &str,
    value: &str,
    required: bool,
    invalid: Option<&str>,
    described: &str,
) -> Markup {
    html! {
        @match kind {
            Kind::Category { levels } => {
                select id=(id) name=(name) required[required] aria-invalid=[invalid] aria-describedby=(described) {
                    option value="" { "Not answered" }
                    @for l in levels {
                        option value=(l) selected[l.eq_ignore_ascii_case(value.trim())] { (l) }
                    }
                }
            }
            Kind::Integer { min, max } => {
                input type="number" id=(id) name=(name) value=(value) min=[min] max=[max] step="1"
                    inputmode="numeric" required[required] aria-invalid=[invalid] aria-describedby=(described);
            }
            Kind::Number { min, max } => {
                input type="number" id=(id) name=(name) value=(value) min=[min] max=[max] step="any"
                    inputmode="decimal" required[required] aria-invalid=[invalid] aria-describedby=(described);
            }
            Kind::Date => {
                input type="date" id=(id) name=(name) value=(value)
                    required[required] aria-invalid=[invalid] aria-describedby=(described);
            }
            Kind::NhsNumber => {
                input type="text" id=(id) name=(name) value=(value) inputmode="numeric" autocomplete="off"
                    spellcheck="false" required[required] aria-invalid=[invalid] aria-describedby=(described);
            }
        }
    }
}

/// One protocol field: label, its error if any, the input, its help text.
pub fn field(f: &Field, value: &str, problem: Option<&str>) -> Markup {
    let id = input_id(&f.name);
    let required = f.required && f.stage == Stage::Screening;
    let described = described(&f.name, problem);
    let invalid = problem.map(|_| "true");
    html! {
        div.field.has-error[problem.is_some()] {
            label for=(id) {
                (f.label)
                @if let Some(u) = &f.unit { " " span.unit { "(" (u) ")" } }
                @if required { " " span.required { "(required)" } }
            }
            (error(&f.name, problem))
            (control(&f.kind, &id, &f.name, value, required, invalid, &described))
            p.help id=(format!("help-{}", f.name)) { (help_text(f)) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::referral::screen;
    use std::path::Path;

    const PROTOCOLS: [&str; 3] = ["work-health-ips.toml", "example-minimisation.toml", "example-simple-2to1.toml"];

    fn load(name: &str) -> Protocol {
        Protocol::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol").join(name)).unwrap()
    }

    fn render_blank(p: &Protocol) -> String {
        let sites: Vec<&Site> = p.sites.iter().collect();
        render(p, &sites, &Entered::default(), &Problems::default(), "tok").into_string()
    }

    /// A value every field accepts, for a complete eligible consenting referral.
    fn good_value(f: &Field) -> String {
        match &f.kind {
            Kind::NhsNumber => "9434765919".into(),
            Kind::Category { levels } if levels.iter().any(|l| l == "yes") => {
                let no = ["receiving_ips"];
                if no.contains(&f.name.as_str()) { "no".into() } else { "yes".into() }
            }
            Kind::Category { levels } => levels[0].clone(),
            Kind::Integer { min, max } => {
                let lo = min.unwrap_or(0).max(18);
                max.map_or(lo, |m| lo.min(m)).max(min.unwrap_or(i64::MIN)).to_string()
            }
            Kind::Number { min, max } => {
                let x = 0.5f64.max(min.unwrap_or(0.5)).min(max.unwrap_or(0.5));
                format!("{x}")
            }
            Kind::Date => "2026-01-05".into(),
        }
    }

    fn good_pairs(p: &Protocol) -> Vec<(String, String)> {
        let mut pairs = vec![
            ("csrf".to_string(), "tok".to_string()),
            ("participant".into(), "P-1".into()),
            ("site".into(), p.sites[0].id.clone()),
        ];
        pairs.extend(p.fields.iter().map(|f| (f.name.clone(), good_value(f))));
        pairs
    }

    #[test]
    fn the_form_has_every_field_in_stage_order_with_levels_bounds_and_help() {
        for name in PROTOCOLS {
            let p = load(name);
            let html = render_blank(&p);
            // Sections in screening order, each field inside its own section.
            let at = |needle: &str| html.find(needle).unwrap_or_else(|| panic!("{name}: {needle} missing"));
            let elig = at("id=\"section-eligibility\"");
            let consent = at("id=\"section-consent\"");
            let baseline = html.find("id=\"section-baseline\"").unwrap_or(usize::MAX);
            assert!(elig < consent && consent < baseline, "{name}: sections out of order");
            let mut last = 0;
            for stage in [Stage::Screening, Stage::Consent, Stage::Baseline] {
                for f in p.fields.iter().filter(|f| f.stage == stage) {
                    let pos = at(&format!("name=\"{}\"", f.name));
                    assert!(pos > last, "{name}: field {} out of order", f.name);
                    last = pos;
                    let (from, to) = match stage {
                        Stage::Screening => (elig, consent),
                        Stage::Consent => (consent, baseline),
                        Stage::Baseline => (baseline, usize::MAX),
                    };
                    assert!(pos > from && pos < to, "{name}: field {} outside its section", f.name);
                    assert!(html.contains(&format!("<label for=\"{}\">", input_id(&f.name))), "{}", f.name);
                    let help = maud::html! { (help_text(f)) }.into_string();
                    assert!(html.contains(&help), "{name}: help for {} missing", f.name);
                    if let Some(d) = &f.description {
                        assert!(help.contains(&maud::html! { (d) }.into_string()));
                    }
                    match &f.kind {
                        Kind::Category { levels } => {
                            let select = &html[pos..];
                            let end = select.find("</select>").unwrap();
                            for l in levels {
                                assert!(select[..end].contains(&format!("<option value=\"{l}\">")), "{l}");
                            }
                        }
                        Kind::Integer { min, max } => {
                            let tag = &html[html[..pos].rfind('<').unwrap()..];
                            let tag = &tag[..tag.find('>').unwrap()];
                            assert!(tag.contains("type=\"number\"") && tag.contains("step=\"1\""), "{tag}");
                            if let Some(m) = min {
                                assert!(tag.contains(&format!("min=\"{m}\"")), "{tag}");
                            }
                            if let Some(m) = max {
                                assert!(tag.contains(&format!("max=\"{m}\"")), "{tag}");
                            }
                        }
                        Kind::Number { min, max } => {
                            let tag = &html[html[..pos].rfind('<').unwrap()..];
                            let tag = &tag[..tag.find('>').unwrap()];
                            assert!(tag.contains("step=\"any\""), "{tag}");
                            assert!(tag.contains(&format!("min=\"{}\"", min.unwrap())), "{tag}");
                            assert!(tag.contains(&format!("max=\"{}\"", max.unwrap())), "{tag}");
                        }
                        Kind::Date => {
                            let tag = &html[html[..pos].rfind('<').unwrap()..];
                            assert!(tag[..tag.find('>').unwrap()].contains("type=\"date\""));
                        }
                        Kind::NhsNumber => {}
                    }
                }
            }
            assert!(html.contains("name=\"csrf\" value=\"tok\""));
            assert!(html.contains("id=\"randomise\""));
        }
    }

    #[test]
    fn the_site_select_offers_only_the_callers_sites() {
        let p = load("work-health-ips.toml");
        let mine = [p.site("dudley").unwrap(), p.site("sandwell").unwrap()];
        let html = render(&p, &mine, &Entered::default(), &Problems::default(), "t").into_string();
        assert!(html.contains("<option value=\"dudley\">") && html.contains("<option value=\"sandwell\">"));
        assert!(!html.contains("value=\"sheffield\""));
        let one = render(&p, &mine[..1], &Entered::default(), &Problems::default(), "t").into_string();
        assert!(one.contains("<option value=\"dudley\" selected>"), "{one}");
    }

    #[test]
    fn a_submitted_form_is_the_referral_the_command_line_builds() {
        for name in PROTOCOLS {
            let p = load(name);
            let pairs = good_pairs(&p);
            let entered = parse(&pairs).unwrap();
            let values: Vec<(String, String)> = pairs[3..].to_vec();
            let cli = Referrals::single("P-1", &p.sites[0].id, &values);
            assert_eq!(entered.referrals().list(), cli.list(), "{name}");
            let s = screen(&p, &entered.referrals().list()[0].1).unwrap();
            assert_eq!(s.decision, crate::referral::Decision::Randomise, "{name}");
        }
    }

    #[test]
    fn a_repeated_or_missing_participant_or_site_is_refused_at_its_field() {
        let pairs = vec![("participant".to_string(), "a".to_string()), ("participant".into(), "b".into())];
        let e = parse(&pairs).unwrap_err();
        assert_eq!(e.field("participant"), Some("participant is given twice; give it once"));
        assert_eq!(e.field("site"), Some("choose the site"));
    }

    #[test]
    fn screening_messages_go_next_to_the_field_they_name() {
        for name in PROTOCOLS {
            let p = load(name);
            let base = good_pairs(&p);
            let with = |field: &str, value: &str| -> Vec<(String, String)> {
                base.iter().map(|(n, v)| (n.clone(), if n == field { value.to_string() } else { v.clone() })).collect()
            };
            let problem_for = |pairs: Vec<(String, String)>| {
                let e = parse(&pairs).unwrap();
                let m = screen(&p, &e.referrals().list()[0].1).unwrap_err();
                (Problems::from_message(&p, &m), m)
            };
            // Out of range, missing, not a level, bad identity, unknown site, bad id.
            let cases: Vec<(String, String, &str)> = vec![
                ("age".into(), "200".into(), "age"),
                ("age".into(), "".into(), "age"),
                ("consent".into(), "maybe".into(), "consent"),
                ("consent".into(), "".into(), "consent"),
                ("nhs_number".into(), "9434765918".into(), "nhs_number"),
                ("site".into(), "atlantis".into(), "site"),
                ("participant".into(), "-bad id".into(), "participant"),
            ];
            for (field, value, at) in cases {
                let (problems, m) = problem_for(with(&field, &value));
                assert_eq!(problems.field(at), Some(m.as_str()), "{name}: {field}={value:?}: {problems:?}");
                assert!(problems.top.is_empty());
                let html =
                    render(&p, &[&p.sites[0]], &parse(&with(&field, &value)).unwrap(), &problems, "t").into_string();
                let shown = format!("<p class=\"error\" id=\"error-{at}\">{}</p>", maud::html! { (m) }.into_string());
                assert!(html.contains(&shown), "{name}: {shown} not in page");
            }
            for f in p.fields.iter().filter(|f| f.stage == Stage::Baseline) {
                let (problems, m) = problem_for(with(&f.name, ""));
                assert!(m.contains("baseline field"), "{m}");
                assert_eq!(problems.field(&f.name), Some(m.as_str()));
            }
            // A name the protocol does not declare: the library's message, at the top.
            let mut unknown = base.clone();
            unknown.push(("colour".into(), "red".into()));
            let (problems, m) = problem_for(unknown);
            assert!(m.contains("unknown field \"colour\""), "{m}");
            assert_eq!(problems.top, vec![m]);
        }
    }

    #[test]
    fn what_was_typed_is_refilled() {
        let p = load("work-health-ips.toml");
        let mut pairs = good_pairs(&p);
        pairs.retain(|(n, _)| n != "phq9");
        pairs.push(("phq9".into(), "31".into()));
        let e = parse(&pairs).unwrap();
        let html = render(&p, &[&p.sites[0]], &e, &Problems::default(), "t").into_string();
        assert!(html.contains("name=\"phq9\" value=\"31\""));
        assert!(html.contains("name=\"participant\" value=\"P-1\""));
        assert!(html.contains("<option value=\"out_of_work\" selected>"));
    }

    #[test]
    fn a_field_named_like_a_page_element_gets_its_own_id() {
        assert_eq!(input_id("status"), "field-status");
        assert_eq!(input_id("age"), "age");
    }
}

//! The coordinators' pages: randomise, the participants of their sites, a
//! participant (an outcome form per timepoint, a status-change form), the
//! follow-up due list, and the trial's status. No arm is shown on any of
//! them unless the account may see counts by arm (the status page).

use axum::Form;
use axum::extract::Path;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use crate::accounts::{Action, Scope};
use crate::error::Error;
use crate::export::Table;
use crate::operations::{self as op, ExportTable, StatusChange};
use crate::protocol::{Outcome, Protocol, Site, Timepoint};

use super::form::{self, Entered, Problems};
use super::{PageResult, Viewer, csrf_field, field, status_of};

type Pairs = Result<Form<Vec<(String, String)>>, FormRejection>;

fn pairs(form: Pairs) -> Vec<(String, String)> {
    form.map(|Form(p)| p).unwrap_or_default()
}

/// The protocol's sites the scope covers, in protocol order.
fn sites_in<'p>(protocol: &'p Protocol, scope: &Scope) -> Vec<&'p Site> {
    protocol.sites.iter().filter(|s| scope.covers(&s.id)).collect()
}

fn randomise_page(
    viewer: &Viewer,
    status: StatusCode,
    scope: &Scope,
    entered: &Entered,
    problems: &Problems,
) -> Response {
    let protocol = viewer.state.protocol();
    let sites = sites_in(protocol, scope);
    viewer.page(
        status,
        "Randomise",
        html! {
            p.note { "Screen the referral in order: eligibility, then consent (eligible referrals only), then the baseline questionnaire (consenting referrals only). The allocation is shown once it is recorded in the log." }
            (form::render(protocol, &sites, entered, problems, viewer.csrf()))
        },
    )
}

/// GET /randomise: the form generated from the protocol.
pub async fn randomise_form(viewer: Viewer) -> PageResult {
    let scope = viewer.may(Action::Randomise)?;
    Ok(randomise_page(&viewer, StatusCode::OK, &scope, &Entered::default(), &Problems::default()))
}

/// POST /randomise: screens and randomises through the writer; the
/// allocation is shown only once its transaction has committed, with the
/// receipt. A refusal refills the form with the library's message next to
/// the field it names.
pub async fn randomise(viewer: Viewer, form: Pairs) -> PageResult {
    let scope = viewer.may(Action::Randomise)?;
    let protocol = viewer.state.protocol();
    let mut entered = match form::parse(&pairs(form)) {
        Ok(e) => e,
        Err(problems) => {
            return Ok(randomise_page(
                &viewer,
                StatusCode::UNPROCESSABLE_ENTITY,
                &scope,
                &Entered::default(),
                &problems,
            ));
        }
    };
    // A site of the protocol the account is not bound to is refused here;
    // one the protocol does not know, by screening, in its own words.
    if let Some(site) = protocol.sites.iter().find(|s| s.id.eq_ignore_ascii_case(entered.site.trim())) {
        if !scope.covers(&site.id) {
            let mine: Vec<&str> = sites_in(protocol, &scope).iter().map(|s| s.id.as_str()).collect();
            let mut problems = Problems::default();
            problems.fields.insert(
                "site".into(),
                format!("{} is not one of your sites ({}); choose one of them", site.id, mine.join(", ")),
            );
            return Ok(randomise_page(&viewer, StatusCode::FORBIDDEN, &scope, &entered, &problems));
        }
        entered.site = site.id.clone();
    }
    let request =
        op::RandomiseRequest { referrals: entered.referrals(), user: viewer.user(), clock: viewer.state.trial_clock() };
    let key = viewer.state.key();
    match viewer.state.write(move |t| op::randomise(t, &key, &request)).await {
        Ok(r) => match r.confirmations.into_iter().next() {
            Some(c) => {
                // The heading says what happened: a referral screened out or
                // declining consent was recorded, not randomised.
                let title = match c.status.as_str() {
                    "randomised" => "Randomised",
                    "ineligible" => "Screened out",
                    _ => "Declined consent",
                };
                Ok(viewer.page(StatusCode::OK, title, confirmation(&c)))
            }
            None => Err(viewer.failed("Randomise", &Error::Integrity("randomising wrote nothing".into()))),
        },
        Err(e) => {
            let problems = Problems::from_message(protocol, &e.to_string());
            Ok(randomise_page(&viewer, status_of(&e), &scope, &entered, &problems))
        }
    }
}

fn confirmation(c: &crate::ledger::Confirmation) -> Markup {
    html! {
        div.done {
            @match c.status.as_str() {
                "randomised" => {
                    p id="allocation" {
                        "Participant " strong { (c.participant) } " at " (c.site) " is allocated to "
                        span.arm { (c.arm_label.as_deref().unwrap_or_default()) }
                        " (" code { (c.arm.as_deref().unwrap_or_default()) } ")."
                    }
                }
                "ineligible" => {
                    p id="decision" { "Participant " strong { (c.participant) } " is not eligible, and is recorded as screened out:" }
                    ul { @for r in &c.reasons { li { (r) } } }
                }
                _ => {
                    p id="decision" { "Participant " strong { (c.participant) } " declined consent, and is recorded as declined." }
                }
            }
            p id="receipt" {
                "Receipt: log entry " strong { (c.seq) } " (entry hash " code.hash { (c.entry_hash) } "); "
                "the log now has " (c.log_length) " entries, head " code.hash { (c.head) } "."
            }
        }
        p { a href="/randomise" { "Randomise another referral" } }
    }
}

/// A participant as the pages show them: never the arm or the stratum.
#[derive(Debug, Clone)]
struct Row {
    participant: String,
    site: String,
    randomised_on: String,
    status: String,
    status_reason: String,
    status_on: String,
    no_further_contact: bool,
    /// Per timepoint, the current value of each outcome collected there.
    outcomes: Vec<(String, Vec<(String, String)>)>,
}

/// The participants table's rows, projected to what the pages may show.
fn rows(protocol: &Protocol, table: &Table) -> Vec<Row> {
    let col = |name: &str| table.columns.iter().position(|c| c == name);
    let cell = |row: &[Option<String>], name: &str| -> String {
        col(name).and_then(|i| row.get(i).cloned().flatten()).unwrap_or_default()
    };
    table
        .rows
        .iter()
        .map(|r| Row {
            participant: cell(r, "participant"),
            site: cell(r, "site"),
            randomised_on: cell(r, "randomised_on"),
            status: cell(r, "status"),
            status_reason: cell(r, "status_reason"),
            status_on: cell(r, "status_on"),
            no_further_contact: cell(r, "no_further_contact") == "yes",
            outcomes: protocol
                .timepoints
                .iter()
                .map(|t| {
                    let values = protocol
                        .outcomes
                        .iter()
                        .filter(|o| o.timepoints.contains(&t.id))
                        .map(|o| (o.name.clone(), cell(r, &format!("{}_{}", o.name, t.id))))
                        .collect();
                    (t.id.clone(), values)
                })
                .collect(),
        })
        .collect()
}

async fn participant_rows(viewer: &Viewer) -> Result<Vec<Row>, Error> {
    let protocol = viewer.state.protocol().clone();
    viewer.state.read(move |t| Ok(rows(&protocol, &op::export(t, ExportTable::Participants)?))).await
}

/// GET /participants: the participants of the caller's sites (no arm).
pub async fn participants(viewer: Viewer) -> PageResult {
    let scope = viewer.may(Action::ViewParticipants)?;
    let rows = participant_rows(&viewer).await.map_err(|e| viewer.failed("Participants", &e))?;
    let rows: Vec<&Row> = rows.iter().filter(|r| scope.covers(&r.site)).collect();
    let timepoints = &viewer.state.protocol().timepoints;
    Ok(viewer.page(
        StatusCode::OK,
        "Participants",
        html! {
            p { (rows.len()) " randomised participants at your sites." }
            div.table {
                table id="participants" {
                    thead { tr {
                        th scope="col" { "Participant" } th scope="col" { "Site" } th scope="col" { "Randomised on" }
                        th scope="col" { "Status" }
                        @for t in timepoints { th scope="col" { (t.label) } }
                    } }
                    tbody {
                        @for r in &rows {
                            tr id=(format!("p-{}", r.participant)) {
                                td { a href=(format!("/participants/{}", r.participant)) { (r.participant) } }
                                td { (r.site) } td { (r.randomised_on) }
                                td { (r.status) @if r.no_further_contact { " (no further contact)" } }
                                @for (_, values) in &r.outcomes {
                                    td { @if values.iter().any(|(_, v)| !v.is_empty()) { "recorded" } @else { "—" } }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// One participant, if the caller may see them (else `None`, whether the
/// participant is at another site or does not exist).
async fn visible(viewer: &Viewer, scope: &Scope, id: &str) -> Result<Option<Row>, Response> {
    let rows = participant_rows(viewer).await.map_err(|e| viewer.failed("Participant", &e))?;
    Ok(rows.into_iter().find(|r| r.participant == id && scope.covers(&r.site)))
}

/// A refused form: its id, what was typed, the problems.
type Failed = (String, Vec<(String, String)>, Problems);
/// What was typed into one form and its problems, if it was the refused one.
type Refilled<'a> = (Option<&'a [(String, String)]>, Option<&'a Problems>);
/// A refused write: the error and where its message goes.
type Refusal = Box<(Error, Problems)>;

/// What a participant page shows besides the participant: a confirmation,
/// or a form's problems.
#[derive(Default)]
struct Shown {
    written: Option<(String, crate::outcome::Written)>,
    /// The form (`outcome-TP` or `status`), what was typed, the problems.
    failed: Option<Failed>,
}

fn participant_page(viewer: &Viewer, status: StatusCode, row: &Row, shown: &Shown) -> Response {
    let protocol = viewer.state.protocol();
    let account = &viewer.caller.account;
    let may_record = account.scope(Action::RecordOutcome).covers(&row.site);
    let may_change = account.scope(Action::ChangeStatus).covers(&row.site);
    let may_correct = account.scope(Action::CorrectOutcome).covers(&row.site);
    let typed = |form_id: &str| -> Refilled<'_> {
        match &shown.failed {
            Some((f, typed, problems)) if f == form_id => (Some(typed.as_slice()), Some(problems)),
            _ => (None, None),
        }
    };
    viewer.page(
        status,
        &format!("Participant {}", row.participant),
        html! {
            @if let Some((what, w)) = &shown.written {
                div.done id="written" role="status" {
                    p { (what) ": log entry " strong { (w.seq) } " (entry hash " code.hash { (w.entry_hash) } ")." }
                }
            }
            dl {
                dt { "Site" } dd { (row.site) }
                dt { "Randomised on" } dd { (row.randomised_on) }
                dt { "Status" } dd {
                    (row.status)
                    @if !row.status_on.is_empty() { " on " (row.status_on) }
                    @if !row.status_reason.is_empty() { ": " (row.status_reason) }
                    @if row.no_further_contact { " (asked for no further contact)" }
                }
            }
            @for t in &protocol.timepoints {
                @let outcomes: Vec<&Outcome> = protocol.outcomes.iter().filter(|o| o.timepoints.contains(&t.id)).collect();
                @let values = row.outcomes.iter().find(|(id, _)| id == &t.id).map(|(_, v)| v.as_slice()).unwrap_or(&[]);
                h2 { (t.label) " (" (t.id) ")" }
                @if values.iter().any(|(_, v)| !v.is_empty()) {
                    div.table { table {
                        thead { tr { th scope="col" { "Outcome" } th scope="col" { "Recorded value" } } }
                        tbody { @for (name, v) in values { @if !v.is_empty() {
                            tr { td { (protocol.outcome(name).map_or(name.as_str(), |o| o.label.as_str())) } td { (v) } }
                        } } }
                    } }
                }
                @if may_record {
                    @let (typed, problems) = typed(&format!("outcome-{}", t.id));
                    (outcome_form(viewer, &row.participant, t, &outcomes, typed, problems))
                }
            }
            @if may_change {
                @let (typed, problems) = typed("status");
                h2 { "Change of status" }
                (status_form(viewer, &row.participant, typed, problems))
            }
            @if may_correct {
                @let (typed, problems) = typed("correct");
                h2 { "Correct a recorded value" }
                (correct_form(viewer, &row.participant, typed, problems))
            }
        },
    )
}

/// A data manager's correction of one recorded value (the original stays
/// in the log and the history).
fn correct_form(
    viewer: &Viewer,
    participant: &str,
    typed: Option<&[(String, String)]>,
    problems: Option<&Problems>,
) -> Markup {
    let protocol = viewer.state.protocol();
    let value = |name: &str| typed.and_then(|p| field(p, name)).unwrap_or("").to_string();
    let problem = |name: &str| problems.and_then(|p| p.field(name));
    html! {
        form method="post" action=(format!("/participants/{participant}/corrections")) id="correct" {
            (csrf_field(viewer.csrf()))
            @if let Some(p) = problems { @if !p.top.is_empty() {
                div.problems id="error-correct" role="alert" { ul { @for m in &p.top { li { (m) } } } }
            } }
            div.field {
                label for="correct-timepoint" { "Timepoint" }
                select id="correct-timepoint" name="timepoint" required {
                    @for t in &protocol.timepoints { option value=(t.id) selected[value("timepoint") == t.id] { (t.label) } }
                }
            }
            div.field {
                label for="correct-field" { "Outcome" }
                select id="correct-field" name="field" required {
                    @for o in &protocol.outcomes { option value=(o.name) selected[value("field") == o.name] { (o.label) } }
                }
            }
            div.field.has-error[problem("value").is_some()] {
                label for="correct-value" { "Corrected value" }
                @if let Some(m) = problem("value") { p.error id="error-correct-value" { (m) } }
                input type="text" id="correct-value" name="value" value=(value("value")) autocomplete="off";
            }
            div.field {
                input type="checkbox" id="correct-clear" name="clear" value="yes" checked[value("clear") == "yes"];
                " " label.check for="correct-clear" { "Correct to missing instead" }
            }
            div.field.has-error[problem("reason").is_some()] {
                label for="correct-reason" { "Reason for the correction" }
                @if let Some(m) = problem("reason") { p.error id="error-correct-reason" { (m) } }
                input type="text" id="correct-reason" name="reason" value=(value("reason")) required maxlength="500";
            }
            button type="submit" id="correct-submit" { "Correct the value" }
        }
    }
}

/// POST /participants/{id}/corrections: corrects one recorded value, as
/// `outcome correct` does.
pub async fn correct_outcome(viewer: Viewer, Path(id): Path<String>, form: Pairs) -> PageResult {
    let scope = scope_for(&viewer, Action::CorrectOutcome, &id).await?;
    let typed = pairs(form);
    let name = field(&typed, "field").unwrap_or("").to_string();
    let value = field(&typed, "value").unwrap_or("").to_string();
    let to = if field(&typed, "clear") == Some("yes") {
        Some(op::CorrectTo::Missing { field: name })
    } else if value.trim().is_empty() {
        None
    } else {
        Some(op::CorrectTo::Value { field: name, value })
    };
    let result = match to {
        None => {
            let e = Error::Input("give the corrected value, or tick \"correct to missing\"".into());
            let mut p = Problems::default();
            p.fields.insert("value".into(), e.to_string());
            Err(Box::new((e, p)))
        }
        Some(to) => {
            let request = op::CorrectRequest {
                participant: id.clone(),
                timepoint: field(&typed, "timepoint").unwrap_or("").to_string(),
                to,
                reason: field(&typed, "reason").unwrap_or("").to_string(),
                user: viewer.user(),
                clock: viewer.state.trial_clock(),
            };
            viewer
                .state
                .write(move |t| op::correct_outcome(t, &request))
                .await
                .map(|w| ("Corrected".to_string(), w))
                .map_err(|e| {
                    let m = e.to_string();
                    let at = m.contains("reason").then(|| "reason".to_string());
                    let p = problems_with(|_| at.clone(), &m);
                    Box::new((e, p))
                })
        }
    };
    after_write(&viewer, &scope, &id, "correct".into(), typed, result).await
}

fn outcome_form(
    viewer: &Viewer,
    participant: &str,
    t: &Timepoint,
    outcomes: &[&Outcome],
    typed: Option<&[(String, String)]>,
    problems: Option<&Problems>,
) -> Markup {
    let value = |name: &str| typed.and_then(|p| field(p, name)).unwrap_or("").to_string();
    let problem = |name: &str| problems.and_then(|p| p.field(name));
    let id = |name: &str| format!("{}-{name}", t.id);
    let described = |name: &str| {
        if problem(name).is_some() {
            format!("help-{} error-{}", id(name), id(name))
        } else {
            format!("help-{}", id(name))
        }
    };
    html! {
        form method="post" action=(format!("/participants/{participant}/outcomes/{}", t.id)) id=(format!("outcome-{}", t.id)) {
            (csrf_field(viewer.csrf()))
            fieldset {
                legend { "Record the " (t.label) " follow-up" }
                p.note { "Day " (t.day) " after randomisation, ± " (t.window) " days. Leave empty what was not collected; a recorded value is changed only by a correction." }
                @if let Some(p) = problems { @if !p.top.is_empty() {
                    div.problems id=(format!("error-{}", t.id)) role="alert" { ul { @for m in &p.top { li { (m) } } } }
                } }
                @for o in outcomes {
                    div.field.has-error[problem(&o.name).is_some()] {
                        label for=(id(&o.name)) { (o.label) @if let Some(u) = &o.unit { " " span.unit { "(" (u) ")" } } }
                        @if let Some(m) = problem(&o.name) { p.error id=(format!("error-{}", id(&o.name))) { (m) } }
                        (form::control(&o.kind, &id(&o.name), &o.name, &value(&o.name), false,
                            problem(&o.name).map(|_| "true"), &described(&o.name)))
                        p.help id=(format!("help-{}", id(&o.name))) {
                            (form::value_help(o.description.as_deref(), &o.kind, o.unit.as_deref()))
                        }
                    }
                }
                div.field.has-error[problem("collected_on").is_some()] {
                    label for=(id("collected_on")) { "Collected on" }
                    @if let Some(m) = problem("collected_on") { p.error id=(format!("error-{}", id("collected_on"))) { (m) } }
                    // A text input: a date as YYYY-MM-DD types the same in every
                    // browser and locale (and from a keyboard or a test driver).
                    input type="text" id=(id("collected_on")) name="collected_on" value=(value("collected_on"))
                        inputmode="numeric" placeholder="YYYY-MM-DD" autocomplete="off" aria-describedby=(described("collected_on"));
                    p.help id=(format!("help-{}", id("collected_on"))) { "The date the values were collected, YYYY-MM-DD; empty for today." }
                }
                div.field.has-error[problem("window_reason").is_some()] {
                    label for=(id("window_reason")) { "Reason for collecting outside the window" }
                    @if let Some(m) = problem("window_reason") { p.error id=(format!("error-{}", id("window_reason"))) { (m) } }
                    input type="text" id=(id("window_reason")) name="window_reason" value=(value("window_reason"))
                        maxlength="500" aria-describedby=(described("window_reason"));
                    p.help id=(format!("help-{}", id("window_reason"))) { "Only for a collection outside the window; leave empty otherwise." }
                }
                button type="submit" id=(format!("record-{}", t.id)) { "Record " (t.label) }
            }
        }
    }
}

/// The status changes a page offers, as (value, label).
const CHANGES: [(&str, &str); 5] = [
    ("withdrawn", "Withdrawn (stays in their arm; follow-up may continue)"),
    ("withdrawn_no_contact", "Withdrawn and asked for no further contact"),
    ("reconsent", "Consented again (lifts no further contact)"),
    ("lost", "Lost to follow-up"),
    ("died", "Died"),
];

fn status_form(
    viewer: &Viewer,
    participant: &str,
    typed: Option<&[(String, String)]>,
    problems: Option<&Problems>,
) -> Markup {
    let value = |name: &str| typed.and_then(|p| field(p, name)).unwrap_or("").to_string();
    let problem = |name: &str| problems.and_then(|p| p.field(name));
    html! {
        form method="post" action=(format!("/participants/{participant}/status")) id="status" {
            (csrf_field(viewer.csrf()))
            @if let Some(p) = problems { @if !p.top.is_empty() {
                div.problems id="error-status" role="alert" { ul { @for m in &p.top { li { (m) } } } }
            } }
            div.field.has-error[problem("change").is_some()] {
                label for="change" { "Change" }
                @if let Some(m) = problem("change") { p.error id="error-change" { (m) } }
                select id="change" name="change" required {
                    option value="" { "Choose…" }
                    @for (v, l) in CHANGES { option value=(v) selected[value("change") == v] { (l) } }
                }
            }
            div.field.has-error[problem("reason").is_some()] {
                label for="reason" { "Reason" }
                @if let Some(m) = problem("reason") { p.error id="error-reason" { (m) } }
                input type="text" id="reason" name="reason" value=(value("reason")) required maxlength="500";
            }
            div.field.has-error[problem("on").is_some()] {
                label for="on" { "Date of the change" }
                @if let Some(m) = problem("on") { p.error id="error-on" { (m) } }
                input type="text" id="on" name="on" value=(value("on")) inputmode="numeric" placeholder="YYYY-MM-DD"
                    autocomplete="off" aria-describedby="help-on";
                p.help id="help-on" { "YYYY-MM-DD; empty for today." }
            }
            button type="submit" id="change-status" { "Record the change" }
        }
    }
}

/// GET /participants/{id}: one participant of the caller's sites.
pub async fn participant(viewer: Viewer, Path(id): Path<String>) -> PageResult {
    let scope = viewer.may(Action::ViewParticipants)?;
    match visible(&viewer, &scope, &id).await? {
        Some(row) => Ok(participant_page(&viewer, StatusCode::OK, &row, &Shown::default())),
        None => Err(viewer.no_participant(&id)),
    }
}

/// The field of an outcome form a message is about: an outcome collected at
/// the timepoint it names, the date, the window reason, or none.
fn outcome_field(protocol: &Protocol, timepoint: &str, message: &str) -> Option<String> {
    let words = message.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    for w in words {
        if protocol.outcome(w).is_some_and(|o| o.timepoints.iter().any(|t| t == timepoint)) {
            return Some(w.to_string());
        }
    }
    if message.contains("window reason") || message.contains("--window-reason") {
        return Some("window_reason".into());
    }
    if message.contains("collected on") || message.contains("follow-up date") || message.contains("collected_on") {
        return Some("collected_on".into());
    }
    None
}

fn problems_with(place: impl Fn(&str) -> Option<String>, message: &str) -> Problems {
    let mut p = Problems::default();
    match place(message) {
        Some(f) => {
            p.fields.insert(f, message.to_string());
        }
        None => p.top.push(message.to_string()),
    }
    p
}

/// The participant's page after a write: with the confirmation, or with the
/// form refilled and its problems.
async fn after_write(
    viewer: &Viewer,
    scope: &Scope,
    id: &str,
    form_id: String,
    typed: Vec<(String, String)>,
    result: Result<(String, crate::outcome::Written), Refusal>,
) -> PageResult {
    let Some(row) = visible(viewer, scope, id).await? else { return Err(viewer.no_participant(id)) };
    Ok(match result {
        Ok(written) => participant_page(viewer, StatusCode::OK, &row, &Shown { written: Some(written), failed: None }),
        Err(refusal) => {
            let (e, problems) = *refusal;
            participant_page(
                viewer,
                status_of(&e),
                &row,
                &Shown { written: None, failed: Some((form_id, typed, problems)) },
            )
        }
    })
}

/// The caller's scope for `action` on the participant `id`'s site; the
/// not-found page if they may not see the participant.
async fn scope_for(viewer: &Viewer, action: Action, id: &str) -> Result<Scope, Response> {
    let scope = viewer.may(action)?;
    let who = id.to_string();
    let site = viewer
        .state
        .read(move |t| op::participant_site(t, &who))
        .await
        .map_err(|e| viewer.failed("Participant", &e))?;
    match site {
        Some(s) if scope.covers(&s) => Ok(scope),
        _ => Err(viewer.no_participant(id)),
    }
}

fn date(text: Option<&str>) -> Result<Option<chrono::NaiveDate>, Error> {
    text.map(str::trim).filter(|t| !t.is_empty()).map(crate::clock::parse_date).transpose()
}

/// POST /participants/{id}/outcomes/{timepoint}: records the values given
/// (empty inputs are not given), as `outcome record` does.
pub async fn record_outcome(viewer: Viewer, Path((id, timepoint)): Path<(String, String)>, form: Pairs) -> PageResult {
    let scope = scope_for(&viewer, Action::RecordOutcome, &id).await?;
    let typed = pairs(form);
    let protocol = viewer.state.protocol().clone();
    let form_id = format!("outcome-{timepoint}");
    let on = match date(field(&typed, "collected_on")) {
        Ok(on) => on,
        Err(e) => {
            let mut p = Problems::default();
            p.fields.insert("collected_on".into(), format!("collected_on {e}"));
            return after_write(&viewer, &scope, &id, form_id, typed, Err(Box::new((e, p)))).await;
        }
    };
    let window_reason = field(&typed, "window_reason").map(str::trim).filter(|r| !r.is_empty()).map(str::to_string);
    let values: Vec<(String, String)> = typed
        .iter()
        .filter(|(n, v)| !matches!(n.as_str(), "csrf" | "collected_on" | "window_reason") && !v.trim().is_empty())
        .cloned()
        .collect();
    let request = op::RecordRequest {
        participant: id.clone(),
        timepoint: timepoint.clone(),
        values,
        on,
        window_reason,
        user: viewer.user(),
        clock: viewer.state.trial_clock(),
    };
    let result = viewer.state.write(move |t| op::record_outcome(t, &request)).await;
    let result = result.map(|w| ("Recorded".to_string(), w)).map_err(|e| {
        let p = problems_with(|m| outcome_field(&protocol, &timepoint, m), &e.to_string());
        Box::new((e, p))
    });
    after_write(&viewer, &scope, &id, form_id, typed, result).await
}

/// POST /participants/{id}/status: withdrawn, consent renewed, lost, died.
pub async fn change_status(viewer: Viewer, Path(id): Path<String>, form: Pairs) -> PageResult {
    let scope = scope_for(&viewer, Action::ChangeStatus, &id).await?;
    let typed = pairs(form);
    let refuse = |field_name: &str, e: Error| {
        let mut p = Problems::default();
        p.fields.insert(field_name.to_string(), e.to_string());
        Err(Box::new((e, p)))
    };
    let change = match field(&typed, "change").unwrap_or("") {
        "withdrawn" => Some(StatusChange::Withdrawn { no_further_contact: false }),
        "withdrawn_no_contact" => Some(StatusChange::Withdrawn { no_further_contact: true }),
        "reconsent" => Some(StatusChange::ConsentRenewed),
        "lost" => Some(StatusChange::Lost),
        "died" => Some(StatusChange::Died),
        _ => None,
    };
    let result = match (change, date(field(&typed, "on"))) {
        (None, _) => refuse("change", Error::Input("choose the change of status".into())),
        (_, Err(e)) => refuse("on", e),
        (Some(change), Ok(on)) => {
            let request = op::StatusChangeRequest {
                participant: id.clone(),
                change,
                reason: field(&typed, "reason").unwrap_or("").to_string(),
                on,
                user: viewer.user(),
                clock: viewer.state.trial_clock(),
            };
            let what = match change {
                StatusChange::Withdrawn { .. } => "Recorded as withdrawn",
                StatusChange::ConsentRenewed => "Consent renewed",
                StatusChange::Lost => "Recorded as lost",
                StatusChange::Died => "Recorded as died",
            };
            viewer.state.write(move |t| op::change_status(t, &request)).await.map(|w| (what.to_string(), w)).map_err(
                |e| {
                    let m = e.to_string();
                    let at = if m.contains("reason") {
                        Some("reason".to_string())
                    } else if m.contains(" date ") || m.contains("--on") {
                        Some("on".to_string())
                    } else {
                        None
                    };
                    let p = problems_with(|_| at.clone(), &m);
                    Box::new((e, p))
                },
            )
        }
    };
    after_write(&viewer, &scope, &id, "status".into(), typed, result).await
}

/// GET /due: the follow-up work list of the caller's sites (no arms).
pub async fn due(viewer: Viewer) -> PageResult {
    let scope = viewer.may(Action::FollowUpDue)?;
    let clock = viewer.state.trial_clock();
    let list = viewer
        .state
        .read(move |t| op::due(t, &op::DueRequest { on: None, clock }))
        .await
        .map_err(|e| viewer.failed("Follow-up due", &e))?;
    let rows: Vec<_> = list.due.iter().filter(|d| scope.covers(&d.site)).collect();
    Ok(viewer.page(
        StatusCode::OK,
        "Follow-up due",
        html! {
            p { "As of " (list.on) ": " (rows.len()) " follow-ups due soon, in window or overdue at your sites." }
            div.table { table id="due" {
                thead { tr {
                    th scope="col" { "Participant" } th scope="col" { "Site" } th scope="col" { "Timepoint" }
                    th scope="col" { "Target" } th scope="col" { "Window" } th scope="col" { "State" }
                } }
                tbody { @for d in rows {
                    tr {
                        td { a href=(format!("/participants/{}", d.participant)) { (d.participant) } }
                        td { (d.site) } td { (d.timepoint) } td { (d.target) }
                        td { (d.window_opens) " to " (d.window_closes) }
                        td { (d.state) @if d.days_overdue > 0 { " (" (d.days_overdue) " days)" } }
                    }
                } }
            } }
        },
    ))
}

/// GET /status: the trial's counts; by arm only for the roles that may see them.
pub async fn status(viewer: Viewer) -> PageResult {
    viewer.may(Action::ViewStatus)?;
    let by_arm = viewer.caller.account.scope(Action::ViewStatusByArm).allowed();
    let s = viewer.state.read(op::status).await.map_err(|e| viewer.failed("Status", &e))?;
    let st = &s.status;
    let arms: Vec<&String> = st.by_arm.keys().collect();
    Ok(viewer.page(
        StatusCode::OK,
        "Status",
        html! {
            div.table { table id="status-counts" {
                tbody {
                    tr { th scope="row" { "Screened" } td { (st.screened) } }
                    tr { th scope="row" { "Ineligible" } td { (st.ineligible) } }
                    tr { th scope="row" { "Declined consent" } td { (st.declined) } }
                    tr { th scope="row" { "Randomised" } td { (st.randomised) } }
                    @for (t, n) in &st.followed_up { tr { th scope="row" { "Followed up at " (t) } td { (n) } } }
                    @for (k, n) in &st.not_active { tr { th scope="row" { (k) } td { (n) } } }
                    tr { th scope="row" { "No further contact" } td { (st.no_further_contact) } }
                }
            } }
            h2 { "Randomised by site" }
            div.table { table id="by-site" {
                thead { tr { th scope="col" { "Site" } @if by_arm { @for a in &arms { th scope="col" { (a) } } } th scope="col" { "Total" } } }
                tbody { @for (site, counts) in &st.by_site {
                    tr { th scope="row" { (site) }
                        @if by_arm { @for a in &arms { td { (counts.get(*a).copied().unwrap_or(0)) } } }
                        td { (counts.values().sum::<u64>()) } }
                } }
            } }
            @if by_arm {
                h2 { "Randomised by arm" }
                div.table { table id="by-arm" {
                    tbody { @for (a, n) in &st.by_arm { tr { th scope="row" { (a) } td { (n) } } } }
                } }
                h2 { "Randomised by stratum" }
                p { "Largest difference between arms within a stratum: " (s.largest_stratum_difference) "." }
                div.table { table id="by-stratum" {
                    thead { tr { th scope="col" { "Stratum" } @for a in &arms { th scope="col" { (a) } } } }
                    tbody { @for (stratum, counts) in &st.by_stratum {
                        tr { th scope="row" { (stratum) } @for a in &arms { td { (counts.get(*a).copied().unwrap_or(0)) } } }
                    } }
                } }
            }
            h2 { "Ineligible by reason" }
            ul { @for (r, n) in &st.ineligible_by_reason { li { (r) ": " (n) } } }
            p { "Log: " (st.log_entries) " entries, head " code.hash { (st.head) } "." }
        },
    ))
}

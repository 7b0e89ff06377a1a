//! The evaluators' and auditors' pages: the exports as downloads, the
//! analysis, the report, the verification result and checkpoints.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;

use crate::accounts::Action;
use crate::error::Error;
use crate::export::Format;
use crate::operations::{self as op, ExportTable};

use super::{PageResult, Viewer, csrf_field, markdown};

/// The tables a page offers: (name, table, the action that may download it).
const TABLES: [(&str, ExportTable, Action, &str); 6] = [
    (
        "allocations",
        ExportTable::Allocations,
        Action::Export,
        "one row per randomised participant: site, stratum, arm, when",
    ),
    (
        "participants",
        ExportTable::Participants,
        Action::Export,
        "one row per participant with baseline, status and every outcome",
    ),
    ("outcomes", ExportTable::Outcomes, Action::Export, "current outcome values, one row per value"),
    ("history", ExportTable::History, Action::Export, "every outcome value as first recorded and every correction"),
    ("codebook", ExportTable::Codebook, Action::Export, "what each exported column means"),
    ("log", ExportTable::Log, Action::ExportLog, "the hash-chained log, entry by entry"),
];

/// A download: the bytes, their type, and a file name made only of the
/// trial's id (a protocol identifier: lowercase letters, digits, `_`, `-`)
/// and fixed words, so the header cannot be broken out of.
fn download_response(trial_id: &str, what: &str, ext: &str, content_type: &'static str, bytes: Vec<u8>) -> Response {
    let safe: String =
        format!("{trial_id}-{what}").chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')).collect();
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{safe}.{ext}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        bytes,
    )
        .into_response()
}

/// GET /exports: the tables the account may download.
pub async fn exports(viewer: Viewer) -> PageResult {
    let account = &viewer.caller.account;
    if !account.scope(Action::Export).allowed() && !account.scope(Action::ExportLog).allowed() {
        viewer.may(Action::Export)?;
    }
    let tables: Vec<_> = TABLES.iter().filter(|(_, _, a, _)| account.scope(*a).allowed()).collect();
    Ok(viewer.page(
        StatusCode::OK,
        "Exports",
        html! {
            div.table { table id="exports" {
                thead { tr { th scope="col" { "Table" } th scope="col" { "What it holds" } th scope="col" { "Download" } } }
                tbody { @for (name, _, _, about) in tables {
                    tr { td { (name) } td { (about) }
                        td { a href=(format!("/exports/{name}.csv")) download { (name) ".csv" } " · "
                             a href=(format!("/exports/{name}.json")) download { (name) ".json" } } }
                } }
            } }
        },
    ))
}

/// GET /exports/{what}.{csv|json}: one table as a download.
pub async fn download(viewer: Viewer, Path(file): Path<String>) -> PageResult {
    let not_found = || {
        viewer.page(
            StatusCode::NOT_FOUND,
            "Not found",
            html! { p.error id="error" { "there is no such export; see " a href="/exports" { "the exports" } } },
        )
    };
    let Some((name, ext)) = file.rsplit_once('.') else { return Err(not_found()) };
    let Some(&(name, table, action, _)) = TABLES.iter().find(|(n, ..)| *n == name) else { return Err(not_found()) };
    let (format, content_type) = match ext {
        "csv" => (Format::Csv, "text/csv; charset=utf-8"),
        "json" => (Format::Json, "application/json"),
        _ => return Err(not_found()),
    };
    viewer.may(action)?;
    let bytes = viewer
        .state
        .read(move |t| {
            let mut out = Vec::new();
            op::export(t, table)?.write(format, &mut out)?;
            Ok(out)
        })
        .await
        .map_err(|e| viewer.failed("Exports", &e))?;
    let trial_id = viewer.state.protocol().id.clone();
    Ok(download_response(&trial_id, name, ext, content_type, bytes))
}

/// GET /analysis: the intention-to-treat analysis as `chancery analyse`
/// prints it, its Markdown rendered.
pub async fn analysis(viewer: Viewer) -> PageResult {
    viewer.may(Action::Analyse)?;
    let a = viewer
        .state
        .read(|t| op::analyse(t, &op::AnalyseRequest::default()))
        .await
        .map_err(|e| viewer.failed("Analysis", &e))?;
    let text = crate::analysis::markdown(&a.analysis);
    Ok(viewer.page(StatusCode::OK, "Analysis", html! { div.analysis id="analysis" { (markdown::render(&text)) } }))
}

/// GET /report: the report's headline and audit status, and the report to
/// download.
pub async fn report(viewer: Viewer) -> PageResult {
    viewer.may(Action::Report)?;
    let r = viewer
        .state
        .with_db(|db| op::report(db, &op::ReportRequest::default()))
        .await
        .map_err(|e| viewer.failed("Report", &e))?;
    Ok(viewer.page(
        StatusCode::OK,
        "Report",
        html! {
            @if let Some(p) = &r.analysis.primary {
                p.headline id="headline" { (p.label) " at " (p.timepoint) ": " (p.headline) }
            }
            @if r.verification.ok {
                p.ok { "The log verified: " (r.verification.entries) " entries, head " code.hash { (r.verification.head) } "." }
            } @else {
                p.bad { "Verification FAILED; the report says so." }
            }
            p { a href="/report.html" download id="report-file" { "Download the report (HTML, self-contained)" } }
        },
    ))
}

/// GET /report.html: the existing HTML report, as a file.
pub async fn report_file(viewer: Viewer) -> PageResult {
    viewer.may(Action::Report)?;
    let r = viewer
        .state
        .with_db(|db| op::report(db, &op::ReportRequest::default()))
        .await
        .map_err(|e| viewer.failed("Report", &e))?;
    let trial_id = viewer.state.protocol().id.clone();
    Ok(download_response(&trial_id, "report", "html", "text/html; charset=utf-8", r.html.into_bytes()))
}

/// GET /verify: the verification result, check by check.
pub async fn verification(viewer: Viewer) -> PageResult {
    viewer.may(Action::Verify)?;
    let v = viewer
        .state
        .with_db(|db| op::verify(db, &op::VerifyRequest::default()))
        .await
        .map_err(|e| viewer.failed("Verification", &e))?;
    let r = &v.report;
    Ok(viewer.page(
        StatusCode::OK,
        "Verification",
        html! {
            @match &v.failure {
                None => p.ok id="verification" {
                    "Verification passed: " (r.entries) " entries, head " code.hash { (r.head) } "."
                    @if !r.complete { " Some checks were skipped (see below)." }
                },
                Some(m) => p.bad id="verification" { "Verification FAILED: " (m) },
            }
            div.table { table id="checks" {
                thead { tr { th scope="col" { "Check" } th scope="col" { "Result" } th scope="col" { "Entry" } th scope="col" { "Message" } } }
                tbody { @for c in &r.checks {
                    tr { td { (c.name) }
                        td { (match c.status { crate::verify::Status::Passed => "passed", crate::verify::Status::Failed => "FAILED", crate::verify::Status::Skipped => "skipped" }) }
                        td { @if let Some(s) = c.seq { (s) } } td { (c.message) } }
                } }
            } }
            @if viewer.caller.account.scope(Action::Checkpoint).allowed() {
                (checkpoint_form(&viewer))
            }
        },
    ))
}

fn checkpoint_form(viewer: &Viewer) -> maud::Markup {
    html! {
        form method="post" action="/checkpoint" id="checkpoint-form" {
            (csrf_field(viewer.csrf()))
            p { "A checkpoint is a signed statement of the log's length and head now, to hand to the data monitoring committee, the registry or a site." }
            button type="submit" id="checkpoint" { "Download a signed checkpoint" }
        }
    }
}

/// GET /checkpoint: the form that downloads one.
pub async fn checkpoint_page(viewer: Viewer) -> PageResult {
    viewer.may(Action::Checkpoint)?;
    Ok(viewer.page(StatusCode::OK, "Checkpoint", checkpoint_form(&viewer)))
}

/// POST /checkpoint: a signed checkpoint of the log now, as a file.
pub async fn checkpoint(viewer: Viewer) -> PageResult {
    viewer.may(Action::Checkpoint)?;
    let Some(signing) = viewer.state.signing_key() else {
        return Err(viewer.failed(
            "Checkpoint",
            &Error::Refused(
                "the service was started without the trial's signing key, so it cannot sign checkpoints".into(),
            ),
        ));
    };
    let clock = viewer.state.trial_clock();
    let c = viewer
        .state
        .read(move |t| op::checkpoint(t, &signing, &op::CheckpointRequest { clock }))
        .await
        .map_err(|e| viewer.failed("Checkpoint", &e))?;
    let trial_id = viewer.state.protocol().id.clone();
    let what = format!("checkpoint-{}", c.length);
    Ok(download_response(&trial_id, &what, "txt", "text/plain; charset=utf-8", c.to_text().into_bytes()))
}

//! The administrators' accounts page: every account with its roles, sites,
//! state and tokens; adding one (roles and sites as checkboxes); changing
//! roles and sites, disabling, resetting the password; creating an API token
//! (shown once) and revoking one. Each change is an operation of
//! [`crate::operations::accounts`] run through the writer, so it is a log
//! event with the administrator as its user and the reason given.

use axum::Form;
use axum::extract::Path;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use maud::{Markup, html};

use crate::accounts::{Action, Role};
use crate::error::Error;
use crate::operations::accounts as op;

use super::form::Problems;
use super::{PageResult, Viewer, csrf_field, field, status_of};

type Pairs = Result<Form<Vec<(String, String)>>, FormRejection>;

fn pairs(form: Pairs) -> Vec<(String, String)> {
    form.map(|Form(p)| p).unwrap_or_default()
}

fn all<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
}

/// What the page shows besides the list.
#[derive(Default)]
struct Shown {
    /// A confirmation of what was done.
    done: Option<String>,
    /// A token just created: shown this once.
    token: Option<(String, op::NewToken)>,
    /// A refusal of one account's form (the account, the message).
    refused: Option<(String, String)>,
    /// The add form as typed (never the password) and its problems.
    add: Vec<(String, String)>,
    add_problems: Problems,
}

/// The add form's field a message is about.
fn add_field(message: &str) -> Option<String> {
    let m = message.to_ascii_lowercase();
    ["password", "role", "site", "reason", "name"].iter().find(|w| m.contains(**w)).map(|w| w.to_string())
}

async fn accounts_page(viewer: &Viewer, status: StatusCode, shown: Shown) -> PageResult {
    let list = viewer.state.read(op::list_accounts).await.map_err(|e| viewer.failed("Accounts", &e))?;
    let sites = &viewer.state.protocol().sites;
    let typed = |name: &str| field(&shown.add, name).unwrap_or("").to_string();
    let problem = |name: &str| shown.add_problems.field(name);
    let body = html! {
        @if let Some(m) = &shown.done {
            p.done id="written" role="status" { (m) }
        }
        @if let Some((account, t)) = &shown.token {
            div.done id="new-token" role="status" {
                p { "API token for " strong { (account) } " (id " code { (t.id) } ", expires " (t.expires_at) "). "
                    "Copy it now: it is shown this once and only its hash is kept." }
                p.secret id="token" { (t.token) }
            }
        }
        @if let Some((account, m)) = &shown.refused {
            p.error id="error" role="alert" { (account) ": " (m) }
        }
        div.table { table id="accounts" {
            thead { tr {
                th scope="col" { "Account" } th scope="col" { "Roles" } th scope="col" { "Sites" }
                th scope="col" { "State" } th scope="col" { "Created" } th scope="col" { "Tokens" }
            } }
            tbody { @for a in &list {
                tr id=(format!("account-{}", a.account.name)) {
                    td { (a.account.name) }
                    td { (a.account.roles.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")) }
                    td { (a.account.sites.join(", ")) }
                    td { @if a.account.disabled { "disabled" } @else if let Some(l) = &a.locked_until { "locked until " (l) } @else { "active" } }
                    td { (a.created_at) }
                    td { @for t in a.tokens.iter().filter(|t| !t.revoked) {
                        code { (t.id) } " (expires " (t.expires_at) ")"
                        form.inline method="post" action=(format!("/tokens/{}/revoke", t.id)) {
                            (csrf_field(viewer.csrf()))
                            input type="hidden" name="reason" value="revoked from the accounts page";
                            " " button type="submit" aria-label=(format!("Revoke token {}", t.id)) { "Revoke" }
                        }
                        br;
                    } }
                }
            } }
        } }
        @for (i, a) in list.iter().enumerate() {
            @if !a.account.disabled {
                (account_forms(viewer, i, &a.account))
            }
        }
        h2 id="add" { "Add an account" }
        form method="post" action="/accounts" id="add-form" {
            (csrf_field(viewer.csrf()))
            @if !shown.add_problems.top.is_empty() {
                div.problems id="error-add" role="alert" { ul { @for m in &shown.add_problems.top { li { (m) } } } }
            }
            (text_field("name", "name", "Account name", "text", &typed("name"), problem("name"), "username"))
            (text_field("password", "password", "Password", "password", "", problem("password"), "new-password"))
            fieldset.has-error[problem("role").is_some()] {
                legend { "Roles" }
                @if let Some(m) = problem("role") { p.error id="error-role" { (m) } }
                @for r in Role::ALL {
                    div { input type="checkbox" name="role" value=(r.name()) id=(format!("add-role-{}", r.name()))
                            checked[all(&shown.add, "role").contains(&r.name())];
                          " " label.check for=(format!("add-role-{}", r.name())) { (r.name()) } }
                }
            }
            fieldset.has-error[problem("site").is_some()] {
                legend { "Sites (for a coordinator)" }
                @if let Some(m) = problem("site") { p.error id="error-site" { (m) } }
                @for s in sites {
                    div { input type="checkbox" name="site" value=(s.id) id=(format!("add-site-{}", s.id))
                            checked[all(&shown.add, "site").contains(&s.id.as_str())];
                          " " label.check for=(format!("add-site-{}", s.id)) { (s.label) } }
                }
            }
            (text_field("reason", "reason", "Reason (recorded in the log)", "text", &typed("reason"), problem("reason"), "off"))
            button type="submit" id="add-account" { "Add the account" }
        }
    };
    Ok(viewer.page(status, "Accounts", body))
}

fn text_field(id: &str, name: &str, label: &str, kind: &str, value: &str, problem: Option<&str>, auto: &str) -> Markup {
    html! {
        div.field.has-error[problem.is_some()] {
            label for=(id) { (label) }
            @if let Some(m) = problem { p.error id=(format!("error-{id}")) { (m) } }
            input type=(kind) id=(id) name=(name) value=(value) autocomplete=(auto)
                aria-invalid=[problem.map(|_| "true")] aria-describedby=[problem.map(|_| format!("error-{id}"))];
        }
    }
}

/// The forms that change one account (ids made unique by its row number).
fn account_forms(viewer: &Viewer, i: usize, a: &crate::accounts::Account) -> Markup {
    let sites = &viewer.state.protocol().sites;
    let id = |what: &str| format!("a{i}-{what}");
    let base = format!("/accounts/{}", a.name);
    html! {
        details id=(id("forms")) {
            summary { "Change " (a.name) }
            form method="post" action=(format!("{base}/roles")) id=(id("roles-form")) {
                (csrf_field(viewer.csrf()))
                fieldset { legend { "Roles of " (a.name) }
                    @for r in Role::ALL {
                        div { input type="checkbox" name="role" value=(r.name()) id=(id(&format!("role-{}", r.name()))) checked[a.has(r)];
                              " " label.check for=(id(&format!("role-{}", r.name()))) { (r.name()) } }
                    }
                }
                fieldset { legend { "Sites of " (a.name) }
                    @for s in sites {
                        div { input type="checkbox" name="site" value=(s.id) id=(id(&format!("site-{}", s.id))) checked[a.sites.contains(&s.id)];
                              " " label.check for=(id(&format!("site-{}", s.id))) { (s.label) } }
                    }
                }
                div.field { label for=(id("roles-reason")) { "Reason" } input type="text" id=(id("roles-reason")) name="reason" required; }
                button type="submit" { "Change roles and sites" }
            }
            form method="post" action=(format!("{base}/password")) id=(id("password-form")) {
                (csrf_field(viewer.csrf()))
                div.field { label for=(id("password")) { "New password for " (a.name) }
                    input type="password" id=(id("password")) name="password" autocomplete="new-password" required; }
                div.field { label for=(id("password-reason")) { "Reason" } input type="text" id=(id("password-reason")) name="reason" required; }
                button type="submit" { "Reset the password" }
            }
            form method="post" action=(format!("{base}/tokens")) id=(id("token-form")) {
                (csrf_field(viewer.csrf()))
                div.field { label for=(id("expires")) { "Days until the token expires" }
                    input type="number" id=(id("expires")) name="expires_days" min="1" max="3650" step="1" value="90"; }
                button type="submit" { "Create an API token" }
            }
            form method="post" action=(format!("{base}/disable")) id=(id("disable-form")) {
                (csrf_field(viewer.csrf()))
                div.field { label for=(id("disable-reason")) { "Reason for disabling " (a.name) }
                    input type="text" id=(id("disable-reason")) name="reason" required; }
                button type="submit" { "Disable the account" }
            }
        }
    }
}

/// GET /accounts.
pub async fn accounts(viewer: Viewer) -> PageResult {
    viewer.may(Action::ManageAccounts)?;
    accounts_page(&viewer, StatusCode::OK, Shown::default()).await
}

fn roles_of(pairs: &[(String, String)]) -> Result<Vec<Role>, Error> {
    all(pairs, "role").into_iter().map(|r| Role::parse(r).map_err(Error::Input)).collect()
}

fn sites_of(pairs: &[(String, String)]) -> Vec<String> {
    all(pairs, "site").into_iter().map(str::to_string).collect()
}

/// POST /accounts: adds an account.
pub async fn add(viewer: Viewer, form: Pairs) -> PageResult {
    viewer.may(Action::ManageAccounts)?;
    let typed = pairs(form);
    let result = match roles_of(&typed) {
        Err(e) => Err(e),
        Ok(roles) => {
            let request = op::AddAccountRequest {
                name: field(&typed, "name").unwrap_or("").trim().to_string(),
                roles,
                sites: sites_of(&typed),
                password: field(&typed, "password").unwrap_or("").to_string(),
                reason: field(&typed, "reason").unwrap_or("").to_string(),
                user: viewer.user(),
                clock: viewer.state.trial_clock(),
            };
            viewer.state.write(move |t| op::add_account(t, &request)).await
        }
    };
    match result {
        Ok(a) => {
            let done = format!("Added account {}.", a.account.name);
            accounts_page(&viewer, StatusCode::OK, Shown { done: Some(done), ..Shown::default() }).await
        }
        Err(e) => {
            let m = e.to_string();
            let mut problems = Problems::default();
            match add_field(&m) {
                Some(f) => {
                    problems.fields.insert(f, m);
                }
                None => problems.top.push(m),
            }
            // What was typed, without the password.
            let add = typed.into_iter().filter(|(n, _)| n != "password").collect();
            accounts_page(&viewer, status_of(&e), Shown { add, add_problems: problems, ..Shown::default() }).await
        }
    }
}

async fn after(viewer: &Viewer, account: &str, result: Result<String, Error>) -> PageResult {
    match result {
        Ok(done) => accounts_page(viewer, StatusCode::OK, Shown { done: Some(done), ..Shown::default() }).await,
        Err(e) => {
            let shown = Shown { refused: Some((account.to_string(), e.to_string())), ..Shown::default() };
            accounts_page(viewer, status_of(&e), shown).await
        }
    }
}

/// POST /accounts/{name}/disable.
pub async fn disable(viewer: Viewer, Path(name): Path<String>, form: Pairs) -> PageResult {
    viewer.may(Action::ManageAccounts)?;
    let typed = pairs(form);
    let request = op::AccountRequest {
        name: name.clone(),
        password: String::new(),
        reason: field(&typed, "reason").unwrap_or("").to_string(),
        user: viewer.user(),
        clock: viewer.state.trial_clock(),
    };
    let result = viewer.state.write(move |t| op::disable_account(t, &request)).await;
    if result.is_ok() {
        // Its sessions end at once (its next request would be refused anyway).
        viewer.state.sessions().end_account(&name);
    }
    after(&viewer, &name, result.map(|a| format!("Disabled account {}.", a.account.name))).await
}

/// POST /accounts/{name}/password.
pub async fn password(viewer: Viewer, Path(name): Path<String>, form: Pairs) -> PageResult {
    viewer.may(Action::ManageAccounts)?;
    let typed = pairs(form);
    let request = op::AccountRequest {
        name: name.clone(),
        password: field(&typed, "password").unwrap_or("").to_string(),
        reason: field(&typed, "reason").unwrap_or("").to_string(),
        user: viewer.user(),
        clock: viewer.state.trial_clock(),
    };
    let result = viewer.state.write(move |t| op::set_password(t, &request)).await;
    after(&viewer, &name, result.map(|a| format!("Set a new password for {}.", a.account.name))).await
}

/// POST /accounts/{name}/roles.
pub async fn roles(viewer: Viewer, Path(name): Path<String>, form: Pairs) -> PageResult {
    viewer.may(Action::ManageAccounts)?;
    let typed = pairs(form);
    let result = match roles_of(&typed) {
        Err(e) => Err(e),
        Ok(roles) => {
            let request = op::ChangeAccountRequest {
                name: name.clone(),
                roles,
                sites: sites_of(&typed),
                reason: field(&typed, "reason").unwrap_or("").to_string(),
                user: viewer.user(),
                clock: viewer.state.trial_clock(),
            };
            viewer.state.write(move |t| op::change_account(t, &request)).await
        }
    };
    after(&viewer, &name, result.map(|a| format!("Changed the roles and sites of {}.", a.account.name))).await
}

/// POST /accounts/{name}/tokens: a new API token, shown once.
pub async fn create_token(viewer: Viewer, Path(name): Path<String>, form: Pairs) -> PageResult {
    viewer.may(Action::ManageAccounts)?;
    let typed = pairs(form);
    let days = field(&typed, "expires_days").unwrap_or("90").trim();
    let Ok(expires_days) = days.parse::<u32>() else {
        let e = Error::Input(format!(
            "{:?} is not a number of days; give a whole number",
            crate::referral::truncate(days, 20)
        ));
        return after(&viewer, &name, Err(e)).await;
    };
    let request = op::TokenRequest {
        account: name.clone(),
        expires_days,
        user: viewer.user(),
        clock: viewer.state.trial_clock(),
    };
    match viewer.state.write(move |t| op::create_token(t, &request)).await {
        Ok(token) => {
            accounts_page(&viewer, StatusCode::OK, Shown { token: Some((name, token)), ..Shown::default() }).await
        }
        Err(e) => after(&viewer, &name, Err(e)).await,
    }
}

/// POST /tokens/{id}/revoke.
pub async fn revoke_token(viewer: Viewer, Path(id): Path<String>, form: Pairs) -> PageResult {
    viewer.may(Action::ManageAccounts)?;
    let typed = pairs(form);
    let request = op::RevokeRequest {
        id: id.clone(),
        reason: field(&typed, "reason").unwrap_or("revoked from the accounts page").to_string(),
        user: viewer.user(),
        clock: viewer.state.trial_clock(),
    };
    let result = viewer.state.write(move |t| op::revoke_token(t, &request)).await;
    after(&viewer, &format!("token {id}"), result.map(|t| format!("Revoked token {} of {}.", t.id, t.account))).await
}

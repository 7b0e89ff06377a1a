//! What every page shares: the document, a skip link, the header with the
//! trial's title, the user, their roles and sites and the logout form, the
//! navigation (only what the account's roles allow, asked of
//! [`Account::scope`]), and the practice banner when the trial is one.

use maud::{DOCTYPE, Markup, html};

use crate::accounts::{Account, Action, Role};

/// The stylesheet's route (the one file every page links; no inline styles,
/// so the pages live under `default-src 'self'`).
pub const STYLESHEET: &str = "/static/style.css";

/// The stylesheet itself.
pub const STYLE: &str = include_str!("style.css");

/// What the header of a signed-in page shows.
#[derive(Debug, Clone, Copy)]
pub struct Chrome<'a> {
    /// The trial's title.
    pub trial_title: &'a str,
    /// The signed-in account.
    pub account: &'a Account,
    /// The session's CSRF token, for the logout form (empty for a token caller).
    pub csrf: &'a str,
    /// Whether to show the PRACTICE banner (a training copy of the trial).
    pub practice: bool,
}

/// The pages of the navigation, each with the action that shows it.
pub const NAV: &[(&str, &str, &[Action])] = &[
    ("/randomise", "Randomise", &[Action::Randomise]),
    ("/participants", "Participants", &[Action::ViewParticipants]),
    ("/due", "Follow-up due", &[Action::FollowUpDue]),
    ("/status", "Status", &[Action::ViewStatus]),
    ("/exports", "Exports", &[Action::Export, Action::ExportLog]),
    ("/analysis", "Analysis", &[Action::Analyse]),
    ("/report", "Report", &[Action::Report]),
    ("/verify", "Verification", &[Action::Verify]),
    ("/checkpoint", "Checkpoint", &[Action::Checkpoint]),
    ("/accounts", "Accounts", &[Action::ManageAccounts]),
];

/// The navigation links `account` may follow, in menu order.
pub fn nav_links(account: &Account) -> Vec<(&'static str, &'static str)> {
    NAV.iter()
        .filter(|(_, _, actions)| actions.iter().any(|a| account.scope(*a).allowed()))
        .map(|(href, label, _)| (*href, *label))
        .collect()
}

/// The account's roles, as shown.
pub fn roles_text(account: &Account) -> String {
    account.roles.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
}

/// The account's sites, as shown: a coordinator's sites, else every site.
pub fn sites_text(account: &Account) -> String {
    if account.sites.is_empty() {
        if account.has(Role::Coordinator) { "none".into() } else { "all sites".into() }
    } else {
        account.sites.join(", ")
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) }
            link rel="stylesheet" href=(STYLESHEET);
        }
    }
}

/// A signed-in page: header, navigation, then `body` under `heading`.
pub fn page(chrome: &Chrome, heading: &str, body: Markup) -> Markup {
    let a = chrome.account;
    let here = heading;
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(&format!("{heading} · {}", chrome.trial_title)))
            body {
                a.skip href="#main" id="skip" { "Skip to content" }
                @if chrome.practice {
                    p.practice id="practice" role="note" { "PRACTICE: a training copy of the trial; nothing here is real" }
                }
                header.top {
                    p.trial id="trial-title" { (chrome.trial_title) }
                    div.who {
                        span { "Signed in as " strong id="user" { (a.name) } }
                        span { " · roles: " span id="roles" { (roles_text(a)) } }
                        span { " · sites: " span id="sites" { (sites_text(a)) } }
                        form.inline id="logout" method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(chrome.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                    nav id="nav" aria-label="Main" {
                        ul {
                            li { a href="/" aria-current=[(here == "Home").then_some("page")] { "Home" } }
                            @for (href, label) in nav_links(a) {
                                li { a href=(href) aria-current=[(here == label).then_some("page")] { (label) } }
                            }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (heading) }
                    (body)
                }
            }
        }
    }
}

/// A page without a signed-in user (the login page).
pub fn bare(trial_title: &str, heading: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(&format!("{heading} · {trial_title}")))
            body {
                a.skip href="#main" id="skip" { "Skip to content" }
                header.top { p.trial id="trial-title" { (trial_title) } }
                main id="main" tabindex="-1" {
                    h1 { (heading) }
                    (body)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(roles: &[Role], sites: &[&str]) -> Account {
        Account {
            name: "ann".into(),
            roles: roles.to_vec(),
            sites: sites.iter().map(|s| s.to_string()).collect(),
            disabled: false,
        }
    }

    #[test]
    fn the_header_shows_title_user_roles_sites_and_logout() {
        let a = account(&[Role::Coordinator], &["dudley", "sandwell"]);
        let chrome = Chrome { trial_title: "A <trial>", account: &a, csrf: "c1", practice: false };
        let html = page(&chrome, "Home", html! { p { "hi" } }).into_string();
        assert!(html.contains("id=\"trial-title\">A &lt;trial&gt;<"), "{html}");
        assert!(html.contains("id=\"user\">ann<"));
        assert!(html.contains("id=\"roles\">coordinator<"));
        assert!(html.contains("id=\"sites\">dudley, sandwell<"));
        assert!(html.contains("id=\"logout\"") && html.contains("name=\"csrf\" value=\"c1\""));
        assert!(html.contains("href=\"#main\"") && html.contains(STYLESHEET));
        assert!(!html.contains("<script") && !html.contains("style=\""));
        assert!(!html.contains("PRACTICE"));
        let practice = page(&Chrome { practice: true, ..chrome }, "Home", html! {}).into_string();
        assert!(practice.contains("id=\"practice\""));
    }

    #[test]
    fn the_navigation_offers_only_what_the_roles_allow() {
        let links = |roles: &[Role], sites: &[&str]| -> Vec<&str> {
            nav_links(&account(roles, sites)).into_iter().map(|(h, _)| h).collect()
        };
        assert_eq!(links(&[Role::Coordinator], &["dudley"]), ["/randomise", "/participants", "/due", "/status"]);
        assert_eq!(links(&[Role::Admin], &[]), ["/status", "/checkpoint", "/accounts"]);
        assert_eq!(links(&[Role::Auditor], &[]), ["/status", "/exports", "/verify", "/checkpoint"]);
        assert_eq!(links(&[Role::Evaluator], &[]), ["/status", "/exports", "/analysis", "/report"]);
        assert_eq!(links(&[Role::DataManager], &[]), ["/participants", "/due", "/status"]);
    }
}

//! The portal's HTML: plain forms that work without JavaScript, one short inline stylesheet,
//! no external assets. Every string that is not a literal of this file goes through
//! `fhirguard::sanitize::html` (`text` for element content, `attr` for attribute values).

use std::fmt::Write as _;

use fhirguard::sanitize::html::{attr, text};

use super::STYLE;

/// What the page header shows about the visitor.
pub(crate) struct Chrome<'a> {
    pub csrf: &'a str,
    pub signed_in_as: Option<&'a str>,
}

pub(crate) fn page(title: &str, chrome: &Chrome<'_>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(name) = chrome.signed_in_as {
        let _ = write!(
            nav,
            "<nav><span class=\"muted\">Signed in as {}</span> · <a href=\"/portal/apps\">Connected apps</a> · <a href=\"/portal/launch\">Open an app</a> \
             <form class=\"inline\" method=\"post\" action=\"/portal/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Sign out</button></form></nav>",
            text(name),
            attr(chrome.csrf)
        );
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · fhirguard demo EHR</title><style>{STYLE}</style></head>\
         <body><header><p class=\"muted\">fhirguard demo EHR · patient portal</p>{nav}</header><main>{body}</main></body></html>\n",
        text(title)
    )
}

pub(crate) fn error_line(error: Option<&str>) -> String {
    match error {
        Some(e) => format!("<p class=\"error\" role=\"alert\">{}</p>", text(e)),
        None => String::new(),
    }
}

/// The sign-in form (step 1: name and password).
pub(crate) fn login(
    chrome: &Chrome<'_>,
    request: Option<&str>,
    app_name: Option<&str>,
    error: Option<&str>,
) -> String {
    let mut body = String::from("<h1>Sign in to your patient portal</h1>");
    if let Some(app) = app_name {
        let _ = write!(
            body,
            "<p>The app <strong>{}</strong> wants to connect to your health record. Sign in first; \
             you will then choose exactly what to share.</p>",
            text(app)
        );
    }
    body.push_str(&error_line(error));
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/portal/login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">{}\
         <p><label for=\"username\">User name</label>\
         <input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" required></p>\
         <p><label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required></p>\
         <p><button class=\"primary\" type=\"submit\">Sign in</button></p></form>",
        attr(chrome.csrf),
        hidden_request(request)
    );
    page("Sign in", chrome, &body)
}

fn hidden_request(request: Option<&str>) -> String {
    match request {
        Some(r) => format!(
            "<input type=\"hidden\" name=\"request\" value=\"{}\">",
            attr(r)
        ),
        None => String::new(),
    }
}

/// Step 2 when the risk policy asks for it: the TOTP code.
pub(crate) fn totp(
    chrome: &Chrome<'_>,
    request: Option<&str>,
    reasons: &str,
    error: Option<&str>,
) -> String {
    let mut body = String::from("<h1>Confirm it is you</h1>");
    let _ = write!(
        body,
        "<p>Enter the 6-digit code from your authenticator app. {}</p>",
        text(reasons)
    );
    body.push_str(&error_line(error));
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/portal/totp\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">{}\
         <p><label for=\"code\">Authenticator code</label>\
         <input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" \
         pattern=\"[0-9]{{6}}\" maxlength=\"6\" required></p>\
         <p><button class=\"primary\" type=\"submit\">Continue</button></p></form>",
        attr(chrome.csrf),
        hidden_request(request)
    );
    page("Second step", chrome, &body)
}

/// One category as the approval page lists it.
pub(crate) struct CategoryRow<'a> {
    pub id: &'a str,
    pub label: &'a str,
    pub description: &'a str,
    pub checked: bool,
}

pub(crate) struct Approval<'a> {
    pub request: &'a str,
    pub app_name: &'a str,
    pub disclosure: &'a [String],
    pub disclosure_sha256: &'a str,
    pub requested_scope: &'a str,
    pub categories: Vec<CategoryRow<'a>>,
    pub min_date: &'a str,
    pub max_date: &'a str,
    pub end_date: &'a str,
    pub error: Option<&'a str>,
}

/// The approval page: disclosure, one checkbox per category the request can reach, end date,
/// Approve and Deny.
pub(crate) fn approval(chrome: &Chrome<'_>, a: &Approval<'_>) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Share your health data with {}?</h1>",
        text(a.app_name)
    );
    body.push_str(&error_line(a.error));
    body.push_str("<div class=\"disclosure\">");
    for paragraph in a.disclosure {
        let lines: Vec<String> = paragraph.lines().map(|l| text(l).into_owned()).collect();
        let _ = write!(body, "<p>{}</p>", lines.join("<br>"));
    }
    body.push_str(
        "<p><strong>Only the categories you tick below are sent.</strong> Anything you leave unticked stays private.</p>",
    );
    body.push_str("</div>");
    let _ = write!(
        body,
        "<p class=\"muted\">The app asked for: <code>{}</code></p>",
        text(a.requested_scope)
    );
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/portal/consent\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"request\" value=\"{}\">\
         <input type=\"hidden\" name=\"disclosure\" value=\"{}\">\
         <fieldset><legend>Choose what to share (nothing is shared unless you tick it)</legend>",
        attr(chrome.csrf),
        attr(a.request),
        attr(a.disclosure_sha256)
    );
    if a.categories.is_empty() {
        body.push_str(
            "<p>This app did not ask for any part of your health record that can be shared here, so there is nothing to approve. Choose Deny and ask the app's maker which data it needs.</p>",
        );
    }
    for c in &a.categories {
        let _ = write!(
            body,
            "<div class=\"cat\"><input type=\"checkbox\" id=\"cat-{id}\" name=\"category\" value=\"{id}\"{checked}>\
             <label for=\"cat-{id}\"><strong>{label}</strong><small>{desc}</small></label></div>",
            id = attr(c.id),
            checked = if c.checked { " checked" } else { "" },
            label = text(c.label),
            desc = text(c.description)
        );
    }
    let _ = write!(
        body,
        "</fieldset><fieldset><legend>How long</legend>\
         <p><label for=\"end_date\">Sharing ends on (at most one year from today)</label>\
         <input type=\"date\" id=\"end_date\" name=\"end_date\" min=\"{}\" max=\"{}\" value=\"{}\" required></p>\
         <p class=\"muted\">You can stop sharing at any time on the Connected apps page.</p></fieldset>\
         <p><button class=\"primary\" type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" formnovalidate>Deny</button></p></form>",
        attr(a.min_date),
        attr(a.max_date),
        attr(a.end_date)
    );
    page("Approve sharing", chrome, &body)
}

/// One row of an app's access history.
pub(crate) struct HistoryRow {
    pub when: String,
    pub what: String,
    pub categories: String,
    pub outcome: String,
}

/// One approval (one consent grant) of an app.
pub(crate) struct GrantCard {
    pub grant_id: String,
    pub categories: Vec<String>,
    pub approved: String,
    pub ends: String,
    pub status: String,
    pub history: Vec<HistoryRow>,
}

/// One connected app: every approval she gave it, newest first, and one Revoke button that
/// ends all of its access.
pub(crate) struct AppCard {
    pub client_id: String,
    pub app_name: String,
    /// Whether any approval is still active (the Revoke button is shown).
    pub active: bool,
    pub grants: Vec<GrantCard>,
}

/// The connected-apps page.
pub(crate) fn apps(
    chrome: &Chrome<'_>,
    patient_name: &str,
    cards: &[AppCard],
    notice: Option<&str>,
) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Apps connected to {}'s record</h1>",
        text(patient_name)
    );
    if let Some(n) = notice {
        let _ = write!(body, "<p role=\"status\"><strong>{}</strong></p>", text(n));
    }
    if cards.is_empty() {
        body.push_str("<p>No app has access to your record.</p>");
    }
    for card in cards {
        body.push_str("<section class=\"app\"><div class=\"apphead\">");
        let _ = write!(body, "<h2>{}</h2>", text(&card.app_name));
        if card.active {
            let _ = write!(
                body,
                "<form method=\"post\" action=\"/portal/apps/revoke\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <input type=\"hidden\" name=\"client\" value=\"{}\">\
                 <button type=\"submit\" aria-label=\"Revoke {}\">Revoke</button></form>",
                attr(chrome.csrf),
                attr(&card.client_id),
                attr(&card.app_name)
            );
        }
        body.push_str("</div>");
        if card.active {
            body.push_str(
                "<p class=\"muted\">Revoke ends everything this app may read, at once.</p>",
            );
        }
        for grant in &card.grants {
            let cats: Vec<String> = grant
                .categories
                .iter()
                .map(|c| text(c).into_owned())
                .collect();
            let _ = write!(
                body,
                "<div class=\"grant\" id=\"grant-{}\"><p>Status: <strong>{}</strong></p>\
                 <p>Shares: {}</p><p>Approved {} · sharing ends {}</p>",
                attr(&grant.grant_id),
                text(&grant.status),
                cats.join(", "),
                text(&grant.approved),
                text(&grant.ends)
            );
            if grant.history.is_empty() {
                body.push_str("<p class=\"muted\">No access yet.</p>");
            } else {
                body.push_str(
                    "<details open><summary>Access history</summary><table><thead><tr><th>When (UTC)</th><th>What</th>\
                     <th>Categories</th><th>Result</th></tr></thead><tbody>",
                );
                for row in &grant.history {
                    let _ = write!(
                        body,
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        text(&row.when),
                        text(&row.what),
                        text(&row.categories),
                        text(&row.outcome)
                    );
                }
                body.push_str("</tbody></table></details>");
            }
            body.push_str("</div>");
        }
        body.push_str("</section>");
    }
    page("Connected apps", chrome, &body)
}

/// A short error page (bad or expired form, unknown request).
pub(crate) fn problem(chrome: &Chrome<'_>, title: &str, message: &str) -> String {
    let body = format!(
        "<h1>{}</h1><p>{}</p><p><a href=\"/portal/apps\">Go to the portal</a></p>",
        text(title),
        text(message)
    );
    page(title, chrome, &body)
}

/// An app the patient can open from the portal (EHR launch).
pub(crate) struct LaunchableApp {
    pub client_id: String,
    pub app_name: String,
}

/// The "Open an app" page: one button per registered app with a launch URL. Opening an app
/// sends it the patient's context; what it may read is still decided on the approval page.
pub(crate) fn launch(chrome: &Chrome<'_>, apps: &[LaunchableApp], notice: Option<&str>) -> String {
    let mut body = String::from(
        "<h1>Open an app</h1><p>Opening an app from here tells it which record you are          working with. The app still asks for your approval, and reads only what you choose          to share.</p>",
    );
    if let Some(n) = notice {
        let _ = write!(body, "<p role=\"status\"><strong>{}</strong></p>", text(n));
    }
    if apps.is_empty() {
        body.push_str("<p>No app can be opened from the portal.</p>");
    }
    for app in apps {
        let _ = write!(
            body,
            "<section class=\"app\"><div class=\"apphead\"><h2>{}</h2>\
             <form method=\"post\" action=\"/portal/launch\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <input type=\"hidden\" name=\"client_id\" value=\"{}\">\
             <button type=\"submit\" aria-label=\"Open {}\">Open</button></form></div></section>",
            text(&app.app_name),
            attr(chrome.csrf),
            attr(&app.client_id),
            attr(&app.app_name)
        );
    }
    page("Open an app", chrome, &body)
}

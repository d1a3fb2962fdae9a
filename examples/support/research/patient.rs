//! A scripted patient at the portal: a tiny "browser" (cookies, plain HTML forms, no
//! JavaScript) that signs in, ticks the chosen categories, approves, and later revokes on the
//! connected-apps page — exactly the forms a person would fill in.

use std::collections::BTreeMap;

use http::{HeaderValue, Method, Request, StatusCode, header};
use openidconnect::url::Url;

use super::app::AppError;
use super::http::HttpsClient;

/// One demo account.
#[derive(Clone)]
pub struct Patient {
    /// Login name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Base32 TOTP secret (the patient's authenticator app), if enrolled.
    pub totp_secret: Option<String>,
}

impl std::fmt::Debug for Patient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Patient")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What happened at the portal while approving.
#[derive(Debug, Clone, Default)]
pub struct ApprovalTrace {
    /// Pages seen, by title, in order.
    pub pages: Vec<String>,
    /// Whether a second factor was asked.
    pub second_factor: bool,
    /// The categories offered on the approval page (`value` of each checkbox).
    pub offered: Vec<String>,
    /// The end date submitted.
    pub end_date: Option<String>,
    /// Where the portal sent the browser at the end (the app's redirect URI + code + state).
    pub redirect: String,
}

/// One app as the connected-apps page shows it.
#[derive(Debug, Clone)]
pub struct ConnectedApp {
    /// The app's name as displayed (decoded text).
    pub name: String,
    /// The text of its card (status, categories, history), tags removed.
    pub text: String,
    /// Whether it has a Revoke button.
    pub revocable: bool,
    /// Its status line ("Active", "Revoked on ...").
    pub status: String,
    /// The categories it shares, as listed.
    pub shares: String,
    /// Rows in its access history.
    pub history_rows: usize,
}

impl ConnectedApp {
    /// One line for people: status, what it shares, how many accesses are listed.
    pub fn summary(&self) -> String {
        format!(
            "{} | shares {} | {} access{} listed",
            self.status,
            self.shares,
            self.history_rows,
            if self.history_rows == 1 { "" } else { "es" }
        )
    }
}

/// The scripted browser.
pub struct PatientBrowser {
    http: HttpsClient,
    cookies: BTreeMap<String, String>,
}

/// One HTML form as parsed from a page.
#[derive(Debug, Clone, Default)]
pub struct Form {
    /// `action` (as written).
    pub action: String,
    /// `method`, lower-case.
    pub method: String,
    /// Hidden, text, password and date inputs: (name, type, value).
    pub inputs: Vec<(String, String, String)>,
    /// Checkboxes: (name, value).
    pub checkboxes: Vec<(String, String)>,
    /// Buttons: (name, value, aria-label).
    pub buttons: Vec<(String, String, String)>,
    /// The page's HTML from the previous form's end up to this form's end.
    pub context: String,
}

impl PatientBrowser {
    /// A browser with an empty cookie jar.
    pub fn new(http: HttpsClient) -> Self {
        Self {
            http,
            cookies: BTreeMap::new(),
        }
    }

    async fn send(
        &mut self,
        method: Method,
        url: &Url,
        form: Option<&[(String, String)]>,
    ) -> Result<(StatusCode, Option<String>, String), AppError> {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(url.as_str())
            .header(header::ACCEPT, "text/html");
        if !self.cookies.is_empty() && url.scheme() == "https" {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let value = HeaderValue::from_str(&cookie).map_err(|_| AppError::new("bad cookie"))?;
            builder = builder.header(header::COOKIE, value);
        }
        let body = match form {
            Some(fields) => {
                builder = builder
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header(header::ORIGIN, origin(url));
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .finish()
                    .into_bytes()
            }
            None => Vec::new(),
        };
        let request = builder
            .body(body)
            .map_err(|e| AppError::new(format!("request: {e}")))?;
        let response = self
            .http
            .send(request)
            .await
            .map_err(|e| AppError::new(format!("{method} {}: {e}", url.path())))?;
        for value in response.headers().get_all(header::SET_COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            let first = text.split(';').next().unwrap_or("");
            if let Some((name, v)) = first.split_once('=') {
                let expired = text.to_ascii_lowercase().contains("max-age=0");
                if v.is_empty() || expired {
                    self.cookies.remove(name.trim());
                } else {
                    self.cookies
                        .insert(name.trim().to_owned(), v.trim().to_owned());
                }
            }
        }
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let html = String::from_utf8_lossy(response.body()).into_owned();
        Ok((response.status(), location, html))
    }

    /// Opens the app's authorize URL and walks the portal as the patient: sign in (and the
    /// second step when asked), tick exactly `categories`, keep the proposed end date,
    /// Approve. Stops at the redirect to `redirect_uri` and returns it without following.
    pub async fn approve(
        &mut self,
        authorize_url: &Url,
        patient: &Patient,
        categories: &[&str],
        redirect_uri: &str,
    ) -> Result<ApprovalTrace, AppError> {
        self.walk(authorize_url, patient, Some(categories), redirect_uri)
            .await
    }

    /// Like [`approve`](Self::approve) but presses Deny.
    pub async fn deny(
        &mut self,
        authorize_url: &Url,
        patient: &Patient,
        redirect_uri: &str,
    ) -> Result<ApprovalTrace, AppError> {
        self.walk(authorize_url, patient, None, redirect_uri).await
    }

    async fn walk(
        &mut self,
        authorize_url: &Url,
        patient: &Patient,
        categories: Option<&[&str]>,
        redirect_uri: &str,
    ) -> Result<ApprovalTrace, AppError> {
        let mut trace = ApprovalTrace::default();
        let mut url = authorize_url.clone();
        let (mut status, mut location, mut html) = self.send(Method::GET, &url, None).await?;
        for _ in 0..12 {
            if status.is_redirection() {
                let Some(to) = location.take() else {
                    return Err(AppError::new("a redirect without a Location"));
                };
                if to.starts_with(redirect_uri) {
                    trace.redirect = to;
                    return Ok(trace);
                }
                url = url
                    .join(&to)
                    .map_err(|e| AppError::new(format!("redirect target: {e}")))?;
                (status, location, html) = self.send(Method::GET, &url, None).await?;
                continue;
            }
            let title = page_title(&html);
            trace.pages.push(title.clone());
            if !status.is_success() {
                let before = trace.pages[..trace.pages.len() - 1].join(" -> ");
                return Err(AppError::new(format!(
                    "the portal answered {status} on \"{title}\"{} (after: {before})",
                    error_suffix(&html)
                )));
            }
            let forms = parse_forms(&html);
            let find = |suffix: &str| forms.iter().find(|f| f.action.ends_with(suffix)).cloned();
            let mut fields: Vec<(String, String)>;
            let action;
            if let Some(form) = find("/portal/consent") {
                if let Some(err) = error_line(&html) {
                    return Err(AppError::new(format!("the approval page says: {err}")));
                }
                trace.offered = form
                    .checkboxes
                    .iter()
                    .filter(|(n, _)| n == "category")
                    .map(|(_, v)| v.clone())
                    .collect();
                fields = form.hidden();
                match categories {
                    Some(chosen) => {
                        for c in chosen {
                            if !trace.offered.iter().any(|o| o == c) {
                                return Err(AppError::new(format!(
                                    "the approval page offers no category \"{c}\""
                                )));
                            }
                            fields.push(("category".into(), (*c).to_owned()));
                        }
                        let end = form.input("end_date").unwrap_or_default();
                        trace.end_date = Some(end.clone());
                        fields.push(("end_date".into(), end));
                        fields.push(("decision".into(), "approve".into()));
                    }
                    None => fields.push(("decision".into(), "deny".into())),
                }
                action = form.action;
            } else if let Some(form) = find("/portal/totp") {
                if trace.second_factor {
                    return Err(AppError::new(format!(
                        "the second step was refused{}",
                        error_suffix(&html)
                    )));
                }
                trace.second_factor = true;
                let secret = patient.totp_secret.as_deref().ok_or_else(|| {
                    AppError::new("the portal asks for a code but the account has no authenticator")
                })?;
                fields = form.hidden();
                fields.push(("code".into(), totp_code(secret)?));
                action = form.action;
            } else if let Some(form) = find("/portal/login") {
                if trace.pages.iter().filter(|p| **p == title).count() > 1 {
                    return Err(AppError::new(format!(
                        "sign-in failed{}",
                        error_suffix(&html)
                    )));
                }
                fields = form.hidden();
                fields.push(("username".into(), patient.username.clone()));
                fields.push(("password".into(), patient.password.clone()));
                action = form.action;
            } else {
                return Err(AppError::new(format!(
                    "unexpected portal page \"{title}\"{}",
                    error_suffix(&html)
                )));
            }
            url = url
                .join(&action)
                .map_err(|e| AppError::new(format!("form action: {e}")))?;
            (status, location, html) = self.send(Method::POST, &url, Some(&fields)).await?;
        }
        Err(AppError::new("the portal did not finish within 12 pages"))
    }

    /// Follows the final redirect to the app's loopback callback, as a browser would.
    pub async fn follow_to_app(&mut self, redirect: &str) -> Result<StatusCode, AppError> {
        let url = Url::parse(redirect).map_err(|e| AppError::new(format!("redirect: {e}")))?;
        let (status, _, _) = self.send(Method::GET, &url, None).await?;
        Ok(status)
    }

    /// Opens the connected-apps page (signing in again if the session is gone).
    pub async fn connected_apps(
        &mut self,
        apps_url: &str,
        patient: &Patient,
    ) -> Result<Vec<ConnectedApp>, AppError> {
        let html = self.apps_page(apps_url, patient).await?;
        Ok(parse_apps(&html))
    }

    async fn apps_page(&mut self, apps_url: &str, patient: &Patient) -> Result<String, AppError> {
        let url = Url::parse(apps_url).map_err(|e| AppError::new(format!("apps URL: {e}")))?;
        let (status, _, html) = self.send(Method::GET, &url, None).await?;
        if !status.is_success() {
            return Err(AppError::new(format!("connected apps: {status}")));
        }
        let forms = parse_forms(&html);
        if let Some(login) = forms.iter().find(|f| f.action.ends_with("/portal/login")) {
            let mut fields = login.hidden();
            fields.push(("username".into(), patient.username.clone()));
            fields.push(("password".into(), patient.password.clone()));
            let target = url
                .join(&login.action)
                .map_err(|e| AppError::new(e.to_string()))?;
            let (status, _, html) = self.send(Method::POST, &target, Some(&fields)).await?;
            if status.is_redirection() {
                let (_, _, html) = self.send(Method::GET, &url, None).await?;
                return Ok(html);
            }
            if parse_forms(&html)
                .iter()
                .any(|f| f.action.ends_with("/portal/totp"))
            {
                let secret = patient
                    .totp_secret
                    .as_deref()
                    .ok_or_else(|| AppError::new("second step without an authenticator"))?;
                let form = parse_forms(&html)
                    .into_iter()
                    .find(|f| f.action.ends_with("/portal/totp"))
                    .unwrap_or_default();
                let mut fields = form.hidden();
                fields.push(("code".into(), totp_code(secret)?));
                let target = url
                    .join(&form.action)
                    .map_err(|e| AppError::new(e.to_string()))?;
                let _ = self.send(Method::POST, &target, Some(&fields)).await?;
                let (_, _, html) = self.send(Method::GET, &url, None).await?;
                return Ok(html);
            }
            return Err(AppError::new(format!(
                "sign-in failed{}",
                error_suffix(&html)
            )));
        }
        Ok(html)
    }

    /// Presses Revoke beside `app_name` on the connected-apps page; returns the page after.
    pub async fn revoke(
        &mut self,
        apps_url: &str,
        patient: &Patient,
        app_name: &str,
    ) -> Result<Vec<ConnectedApp>, AppError> {
        let html = self.apps_page(apps_url, patient).await?;
        let form = parse_forms(&html)
            .into_iter()
            .find(|f| {
                f.action.contains("revoke")
                    && (f
                        .buttons
                        .iter()
                        .any(|(_, _, label)| label.contains(app_name))
                        || decode(&f.context).contains(app_name))
            })
            .ok_or_else(|| AppError::new(format!("no Revoke button beside \"{app_name}\"")))?;
        let url = Url::parse(apps_url).map_err(|e| AppError::new(e.to_string()))?;
        let target = url
            .join(&form.action)
            .map_err(|e| AppError::new(e.to_string()))?;
        let mut fields = form.hidden();
        if let Some((name, value, _)) = form.buttons.first() {
            if !name.is_empty() {
                fields.push((name.clone(), value.clone()));
            }
        }
        let (status, location, html) = self.send(Method::POST, &target, Some(&fields)).await?;
        let html = if status.is_redirection() {
            let to = url
                .join(location.as_deref().unwrap_or(apps_url))
                .map_err(|e| AppError::new(e.to_string()))?;
            self.send(Method::GET, &to, None).await?.2
        } else if status.is_success() {
            html
        } else {
            return Err(AppError::new(format!("revoking answered {status}")));
        };
        Ok(parse_apps(&html))
    }
}

impl Form {
    /// The hidden inputs as form fields.
    pub fn hidden(&self) -> Vec<(String, String)> {
        self.inputs
            .iter()
            .filter(|(_, t, _)| t == "hidden")
            .map(|(n, _, v)| (n.clone(), v.clone()))
            .collect()
    }

    /// The value of the input named `name`.
    pub fn input(&self, name: &str) -> Option<String> {
        self.inputs
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| v.clone())
    }
}

fn origin(url: &Url) -> String {
    match url.port() {
        Some(p) => format!("{}://{}:{p}", url.scheme(), url.host_str().unwrap_or("")),
        None => format!("{}://{}", url.scheme(), url.host_str().unwrap_or("")),
    }
}

/// The current TOTP code for a base32 secret, as the patient's authenticator app shows it.
pub fn totp_code(secret_b32: &str) -> Result<String, AppError> {
    use fhirguard::auth::{TotpParams, TotpSecret, code_at};
    let secret = TotpSecret::from_base32(secret_b32)
        .map_err(|e| AppError::new(format!("TOTP secret: {e}")))?;
    code_at(
        &secret,
        &TotpParams::default(),
        time::OffsetDateTime::now_utc(),
    )
    .map_err(|e| AppError::new(format!("TOTP: {e}")))
}

/// Decodes the HTML character references the portal's encoder produces.
pub fn decode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest[..rest.len().min(12)].find(';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let ch = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Text of an HTML fragment: tags dropped, references decoded, whitespace collapsed.
pub fn text_of(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    decode(&out)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The page's `<title>`.
pub fn page_title(html: &str) -> String {
    between(html, "<title>", "</title>")
        .map(text_of)
        .unwrap_or_else(|| "(untitled)".to_owned())
}

fn error_line(html: &str) -> Option<String> {
    let i = html.find("class=\"error\"")?;
    let start = html[i..].find('>')? + i + 1;
    let end = html[start..].find("</")? + start;
    Some(text_of(&html[start..end]))
}

fn error_suffix(html: &str) -> String {
    error_line(html)
        .map(|e| format!(": {e}"))
        .unwrap_or_default()
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let i = s.find(open)? + open.len();
    let j = s[i..].find(close)? + i;
    Some(&s[i..j])
}

/// Attributes of one tag (`<input a="b" c>`), values decoded.
fn attributes(tag: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let bytes = tag.as_bytes();
    // Skip the tag name.
    let mut i = tag.find(|c: char| c.is_whitespace()).unwrap_or(tag.len());
    while i < bytes.len() {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        let start = i;
        while i < bytes.len()
            && !bytes[i].is_ascii_whitespace()
            && bytes[i] != b'='
            && bytes[i] != b'>'
        {
            i += 1;
        }
        let name = tag[start..i].to_ascii_lowercase();
        if name.is_empty() {
            break;
        }
        let mut value = String::new();
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
                let quote = bytes[i];
                i += 1;
                let vstart = i;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
                value = decode(&tag[vstart..i]);
                i += 1;
            } else {
                let vstart = i;
                while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
                    i += 1;
                }
                value = decode(&tag[vstart..i]);
            }
        }
        out.insert(name, value);
    }
    out
}

/// Every `<form>` of a page with its inputs and buttons.
pub fn parse_forms(html: &str) -> Vec<Form> {
    let mut forms = Vec::new();
    let mut rest = html;
    let mut context_start = 0usize;
    let mut offset = 0usize;
    while let Some(i) = rest.find("<form") {
        let Some(end) = rest[i..].find("</form>").map(|e| e + i) else {
            break;
        };
        let inner = &rest[i..end];
        let open_end = inner.find('>').unwrap_or(inner.len());
        let attrs = attributes(&inner[1..open_end]);
        let mut form = Form {
            action: attrs.get("action").cloned().unwrap_or_default(),
            method: attrs
                .get("method")
                .cloned()
                .unwrap_or_else(|| "get".into())
                .to_ascii_lowercase(),
            context: html[context_start..offset + end].to_owned(),
            ..Form::default()
        };
        let mut body = &inner[open_end..];
        while let Some(t) = body.find('<') {
            body = &body[t + 1..];
            let close = body.find('>').unwrap_or(body.len());
            let tag = &body[..close];
            let lower = tag.to_ascii_lowercase();
            if lower.starts_with("input") {
                let a = attributes(tag);
                let kind = a.get("type").cloned().unwrap_or_else(|| "text".into());
                let name = a.get("name").cloned().unwrap_or_default();
                let value = a.get("value").cloned().unwrap_or_default();
                if kind == "checkbox" {
                    form.checkboxes.push((name, value));
                } else {
                    form.inputs.push((name, kind, value));
                }
            } else if lower.starts_with("button") {
                let a = attributes(tag);
                form.buttons.push((
                    a.get("name").cloned().unwrap_or_default(),
                    a.get("value").cloned().unwrap_or_default(),
                    a.get("aria-label").cloned().unwrap_or_default(),
                ));
            }
            body = &body[close.min(body.len())..];
        }
        forms.push(form);
        let consumed = end + "</form>".len();
        offset += consumed;
        context_start = offset;
        rest = &rest[consumed..];
    }
    forms
}

/// The apps listed on the connected-apps page: one `<section>` per app, its `<h2>` the name.
pub fn parse_apps(html: &str) -> Vec<ConnectedApp> {
    let mut out = Vec::new();
    for part in html.split("<section").skip(1) {
        let section = part.split("</section>").next().unwrap_or(part);
        let Some(name) = between(section, "<h2>", "</h2>").map(text_of) else {
            continue;
        };
        let status = between(section, "Status:", "</p>")
            .map(text_of)
            .unwrap_or_default();
        let shares = between(section, "Shares:", "</p>")
            .map(text_of)
            .unwrap_or_default();
        let history_rows =
            between(section, "<tbody>", "</tbody>").map_or(0, |rows| rows.matches("<tr").count());
        out.push(ConnectedApp {
            name,
            text: text_of(section.split_once('>').map_or(section, |(_, s)| s)),
            revocable: section.contains("revoke"),
            status,
            shares,
            history_rows,
        });
    }
    out
}

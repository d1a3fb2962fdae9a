//! The Sync for Science story, step by step, each step checked. The walkthrough example prints
//! it; the integration test runs the same steps and asserts every one passed.
//!
//! The app only talks HTTPS to the EHR. The narrator (this module) additionally reads the EHR's
//! data directory at the end, to verify the audit log the way an auditor would.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::Value;

use fhirguard::CategoryId;
use fhirguard::audit::{
    AccessHistory as _, AccessIndex, AccessQuery, EventKind, KeyId, KeyRing, Outcome, Verifier,
    read_log_dir, summarize, verify_log_dir,
};
use fhirguard::category::{CategoryRegistry, Membership};
use fhirguard::enforce::ScopeContext;

use super::DemoInfo;
use super::app::{Download, ResearchApp, Session};
use super::callback::CallbackListener;
use super::patient::{ConnectedApp, PatientBrowser};

/// What to run.
#[derive(Debug, Clone)]
pub struct StoryOptions {
    /// The running demo, from its `demo.json`.
    pub demo: DemoInfo,
    /// The demo's data directory (the audit log and its key live there).
    pub data_dir: PathBuf,
    /// The patient's login name.
    pub username: String,
    /// The categories the patient approves.
    pub approve: Vec<String>,
    /// Receive the redirect on the app's loopback listener (`false`: the scripted browser
    /// hands the redirect URL to the app directly, e.g. when the port is taken).
    pub use_listener: bool,
}

impl StoryOptions {
    /// The story as the README tells it: Dustin approves vital signs and lab results only.
    pub fn standard(demo: DemoInfo, data_dir: PathBuf) -> Self {
        Self {
            demo,
            data_dir,
            username: "dustin".to_owned(),
            approve: vec!["vital-signs".to_owned(), "laboratory".to_owned()],
            use_listener: true,
        }
    }
}

/// One step's result.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    /// Short name (the summary table's first column).
    pub name: &'static str,
    /// Passed?
    pub ok: bool,
    /// One line: what was seen.
    pub detail: String,
}

/// Every step's result, in order.
#[derive(Debug, Clone, Default)]
pub struct StoryReport {
    /// The steps run (a failed step ends the story; later steps are not run).
    pub steps: Vec<StepOutcome>,
    /// Wall time of the whole story.
    pub elapsed: Duration,
}

/// The story's steps, in order (names as in the summary table).
pub const STEPS: [&str; 9] = [
    "discovery",
    "patient approves",
    "token + id_token",
    "approved data read",
    "denied data withheld",
    "refresh",
    "patient revokes",
    "access refused",
    "audit log verified",
];

impl StoryReport {
    /// Whether every step ran and passed.
    pub fn passed(&self) -> bool {
        self.steps.len() == STEPS.len() && self.steps.iter().all(|s| s.ok)
    }

    /// The summary table, plain text.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let width = STEPS.iter().map(|s| s.len()).max().unwrap_or(10);
        let _ = writeln!(
            out,
            "  {:<2} {:<width$}  {:<6}  what was seen",
            "#", "step", "result"
        );
        let _ = writeln!(out, "  {}", "-".repeat(width + 60));
        for (i, name) in STEPS.iter().enumerate() {
            let (result, detail) = match self.steps.get(i) {
                Some(s) if s.ok => ("ok", s.detail.as_str()),
                Some(s) => ("FAILED", s.detail.as_str()),
                None => ("-", "not run"),
            };
            let _ = writeln!(
                out,
                "  {:<2} {:<width$}  {:<6}  {}",
                i + 1,
                name,
                result,
                detail
            );
        }
        out
    }
}

/// Runs the story. `say` receives the narration, one line at a time. `flush_audit` makes the
/// EHR write out its audit buffer before the log is verified.
pub async fn run(
    options: &StoryOptions,
    flush_audit: &(dyn Fn() + Sync),
    say: &mut (dyn FnMut(&str) + Send),
) -> StoryReport {
    let started = Instant::now();
    let mut story = Story {
        options,
        say,
        report: StoryReport::default(),
    };
    let result = story.steps(flush_audit).await;
    if let Err(failure) = result {
        let line = format!("  FAILED: {failure}");
        (story.say)(&line);
    }
    let mut report = story.report;
    report.elapsed = started.elapsed();
    report
}

struct Story<'a> {
    options: &'a StoryOptions,
    say: &'a mut (dyn FnMut(&str) + Send),
    report: StoryReport,
}

/// A step's failure, already recorded in the report.
struct Stop(String);

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Story<'_> {
    fn line(&mut self, text: impl AsRef<str>) {
        (self.say)(text.as_ref());
    }

    fn heading(&mut self, n: usize, text: &str) {
        self.line("");
        self.line(format!("Step {n}. {text}"));
    }

    fn pass(&mut self, name: &'static str, detail: impl Into<String>) {
        let detail = detail.into();
        self.line(format!("  [ok] {detail}"));
        self.report.steps.push(StepOutcome {
            name,
            ok: true,
            detail,
        });
    }

    fn fail(&mut self, name: &'static str, detail: impl Into<String>) -> Stop {
        let detail = detail.into();
        self.report.steps.push(StepOutcome {
            name,
            ok: false,
            detail: detail.clone(),
        });
        Stop(detail)
    }

    async fn steps(&mut self, flush_audit: &(dyn Fn() + Sync)) -> Result<(), Stop> {
        let demo = self.options.demo.clone();
        let registry = CategoryRegistry::default_registry();
        let label = |id: &str| {
            CategoryId::new(id)
                .ok()
                .and_then(|c| registry.get(&c).map(|c| c.label.clone()))
                .unwrap_or_else(|| id.to_owned())
        };
        let approved_labels: Vec<String> = self.options.approve.iter().map(|c| label(c)).collect();
        let (patient, patient_id) = demo
            .patient(&self.options.username)
            .map_err(|e| self.fail(STEPS[0], e.to_string()))?;
        let http = demo
            .http_client()
            .map_err(|e| self.fail(STEPS[0], e.to_string()))?;

        // ---- 1. discovery --------------------------------------------------------------
        self.heading(1, "The research app finds the EHR's sign-in service");
        self.line(format!(
            "  The app knows one address: the FHIR server {}",
            demo.fhir_base
        ));
        let app = ResearchApp::discover(http.clone(), demo.app_config())
            .await
            .map_err(|e| self.fail(STEPS[0], e.to_string()))?;
        let d = app.discovery.clone();
        self.line("  It reads /.well-known/smart-configuration and the OpenID configuration:");
        self.line(format!("    sign-in page   {}", d.authorization_endpoint));
        self.line(format!("    token service  {}", d.token_endpoint));
        self.line(format!(
            "    signing keys   {} ({} key{})",
            d.jwks_uri,
            d.jwks_keys,
            if d.jwks_keys == 1 { "" } else { "s" }
        ));
        let standalone = d.capabilities.iter().any(|c| c == "launch-standalone");
        if !standalone || d.jwks_keys == 0 {
            return Err(self.fail(
                STEPS[0],
                "the server does not advertise launch-standalone or has no signing keys",
            ));
        }
        self.pass(
            STEPS[0],
            format!(
                "SMART + OpenID discovery, PKCE {}, {} capabilities",
                d.code_challenge_methods.join("/"),
                d.capabilities.len()
            ),
        );

        // ---- 2. the patient approves ---------------------------------------------------
        self.heading(
            2,
            "The patient signs in at the EHR's portal and approves some categories",
        );
        let launch = app.start_launch();
        let url = launch.url.clone();
        let param = |k: &str| {
            url.query_pairs()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        self.line(format!(
            "  The app opens the browser at {}{}?...",
            url.origin().ascii_serialization(),
            url.path()
        ));
        self.line(format!("    scope          {}", param("scope")));
        self.line(format!("    aud            {}", param("aud")));
        self.line(format!(
            "    PKCE           code_challenge_method={}, plus a random state and nonce",
            param("code_challenge_method")
        ));
        if param("code_challenge_method") != "S256" || param("aud") != demo.fhir_base {
            return Err(self.fail(STEPS[1], "the authorize URL lacks PKCE S256 or aud"));
        }
        let mut listener = if self.options.use_listener {
            match CallbackListener::bind(&demo.redirect_uri).await {
                Ok(l) => Some(l),
                Err(e) => {
                    self.line(format!(
                        "  (note: {e}; the browser hands the redirect to the app directly)"
                    ));
                    None
                }
            }
        } else {
            None
        };
        let mut browser = PatientBrowser::new(http.clone());
        let chosen: Vec<&str> = self.options.approve.iter().map(String::as_str).collect();
        let trace = browser
            .approve(&launch.url, &patient, &chosen, &demo.redirect_uri)
            .await
            .map_err(|e| self.fail(STEPS[1], e.to_string()))?;
        self.line(format!(
            "  The patient (demo account \"{}\") signs in{} and sees the approval page:",
            patient.username,
            if trace.second_factor {
                " (plus an authenticator code)"
            } else {
                ""
            }
        ));
        self.line(format!(
            "  who is asking, what HIPAA does and does not protect, and {} categories to tick.",
            trace.offered.len()
        ));
        self.line(format!(
            "  The patient ticks only: {} (sharing ends {}), and presses Approve.",
            approved_labels.join(", "),
            trace.end_date.as_deref().unwrap_or("?")
        ));
        let callback = match listener.as_mut() {
            Some(l) => {
                let status = browser
                    .follow_to_app(&trace.redirect)
                    .await
                    .map_err(|e| self.fail(STEPS[1], e.to_string()))?;
                if status != StatusCode::OK {
                    return Err(
                        self.fail(STEPS[1], format!("the app's callback answered {status}"))
                    );
                }
                l.wait(Duration::from_secs(10))
                    .await
                    .map_err(|e| self.fail(STEPS[1], e.to_string()))?
            }
            None => trace.redirect.clone(),
        };
        drop(listener);
        self.line(format!(
            "  The portal sends the browser back to {} with a one-time code.",
            demo.redirect_uri
        ));
        self.pass(
            STEPS[1],
            format!(
                "{} approved {} of {} categories: {}",
                patient.username,
                chosen.len(),
                trace.offered.len(),
                approved_labels.join(", ")
            ),
        );

        // ---- 3. token ---------------------------------------------------------------
        self.heading(3, "The app exchanges the code for tokens");
        let mut session = app
            .finish_launch(launch, &callback)
            .await
            .map_err(|e| self.fail(STEPS[2], e.to_string()))?;
        self.line("  The state matches; the code is exchanged with the PKCE verifier.");
        self.line(format!(
            "  The id_token's {} signature verifies against the JWKS (issuer, audience, nonce ok):",
            session.id_token_alg
        ));
        self.line(format!(
            "    signed-in user {}",
            session.fhir_user.as_deref().unwrap_or(&session.subject)
        ));
        self.line(format!("    patient        {}", session.patient));
        self.line("  Scopes granted (what the patient approved, as SMART scopes):");
        let granted = session.scopes.clone();
        for s in &granted {
            self.line(format!("    {s}"));
        }
        let wanted: BTreeSet<CategoryId> = self
            .options
            .approve
            .iter()
            .filter_map(|c| CategoryId::new(c.as_str()).ok())
            .collect();
        let allowed_scopes: BTreeSet<String> = registry
            .scopes_for(wanted.iter(), ScopeContext::Patient)
            .iter()
            .map(ToString::to_string)
            .collect();
        let data_scopes: Vec<&String> = granted
            .iter()
            .filter(|s| s.starts_with("patient/") || s.starts_with("user/"))
            .collect();
        let stray: Vec<&&String> = data_scopes
            .iter()
            .filter(|s| !allowed_scopes.contains(s.as_str()))
            .collect();
        if session.patient != patient_id {
            return Err(self.fail(
                STEPS[2],
                format!("patient in context is {}", session.patient),
            ));
        }
        if data_scopes.is_empty() || !stray.is_empty() {
            return Err(self.fail(
                STEPS[2],
                format!("granted data scopes beyond the approval: {stray:?}"),
            ));
        }
        if !session.has_refresh_token() {
            return Err(self.fail(
                STEPS[2],
                "no refresh token although offline_access was asked",
            ));
        }
        self.pass(
            STEPS[2],
            format!(
                "id_token verified; {} data scopes, all within the approval",
                data_scopes.len()
            ),
        );

        // ---- 4. approved data -------------------------------------------------------
        self.heading(4, "The app downloads what it was given");
        let downloads = app
            .download(&session)
            .await
            .map_err(|e| self.fail(STEPS[3], e.to_string()))?;
        let mut per_category: BTreeMap<String, usize> = BTreeMap::new();
        let mut outside: Vec<String> = Vec::new();
        let mut total = 0usize;
        let mut supporting = 0usize;
        let mut by_reference: Vec<String> = Vec::new();
        self.line("  One search per granted scope, every page:");
        for dl in &downloads {
            if dl.reference_only {
                by_reference.push(dl.resource_type.clone());
                continue;
            }
            let what = describe(dl, &registry, &self.options.approve);
            let examples = if dl.examples.is_empty() {
                String::new()
            } else {
                format!("  e.g. {}", dl.examples.join("; "))
            };
            // A `next` link the server wrote must work: a broken page is lost data.
            if let Some(st) = dl.truncated {
                return Err(self.fail(
                    STEPS[3],
                    format!(
                        "{} search stopped after {} page(s): the next page answered {}",
                        dl.resource_type,
                        dl.pages,
                        st.as_u16()
                    ),
                ));
            }
            let cut = "";
            if dl.status.is_success() {
                self.line(format!("    {:>4}  {what}{cut}{examples}", dl.count));
            } else {
                self.line(format!(
                    "      --  {what}: answered {}",
                    status_text(dl.status)
                ));
            }
            total += dl.count;
            for r in &dl.resources {
                match registry.classify(r).map(|c| c.membership) {
                    Ok(Membership::Categories(cats)) => {
                        let inside: Vec<&CategoryId> =
                            cats.iter().filter(|c| wanted.contains(*c)).collect();
                        if inside.is_empty() {
                            outside.push(resource_ref(r));
                        }
                        for c in inside {
                            *per_category.entry(c.to_string()).or_default() += 1;
                        }
                    }
                    Ok(Membership::Supporting(_)) => supporting += 1,
                    _ => outside.push(resource_ref(r)),
                }
            }
        }
        if !by_reference.is_empty() {
            self.line(format!(
                "    and, when a record refers to them: {}",
                by_reference.join(", ")
            ));
        }
        self.line(format!(
            "  The narrator classifies each of the {total} resources with the category registry."
        ));
        let missing: Vec<String> = self
            .options
            .approve
            .iter()
            .filter(|c| per_category.get(c.as_str()).copied().unwrap_or(0) == 0)
            .map(|c| label(c))
            .collect();
        if !outside.is_empty() {
            return Err(self.fail(
                STEPS[3],
                format!("resources outside the approval came back: {outside:?}"),
            ));
        }
        if !missing.is_empty() {
            return Err(self.fail(STEPS[3], format!("nothing came back for {missing:?}")));
        }
        let mut counts: Vec<String> = per_category
            .iter()
            .map(|(c, n)| format!("{n} {}", label(c).to_lowercase()))
            .collect();
        if supporting > 0 {
            counts.push(format!("{supporting} supporting"));
        }
        self.pass(
            STEPS[3],
            format!("{total} resources: {}; none outside", counts.join(", ")),
        );

        // ---- 5. denied data ---------------------------------------------------------
        self.heading(5, "What the patient did not approve stays at the EHR");
        let smoking = find_smoking_status(&demo, &session, &app).await;
        let mut denied_checks = Vec::new();
        // (a) A direct read of one of the patient's smoking-status observations.
        match &smoking {
            Some(id) => {
                let r = app
                    .get(&session, &format!("Observation/{id}"))
                    .await
                    .map_err(|e| self.fail(STEPS[4], e.to_string()))?;
                let leaked = r.status.is_success() && r.body["id"] == id.as_str();
                self.line(format!(
                    "  GET Observation/{id} (a smoking-status record)  -> {}",
                    status_text(r.status)
                ));
                if leaked {
                    return Err(self.fail(STEPS[4], "the smoking-status observation was returned"));
                }
                denied_checks.push("smoking-status read refused".to_owned());
            }
            None => {
                return Err(self.fail(
                    STEPS[4],
                    "no smoking-status observation found in the EHR's data to probe with",
                ));
            }
        }
        // (b) A broad Observation search: only approved categories may come back.
        let r = app
            .get(
                &session,
                &format!("Observation?patient={}&_count=200", session.patient),
            )
            .await
            .map_err(|e| self.fail(STEPS[4], e.to_string()))?;
        let smoking_codes = ["72166-2", "11367-0", "401201003", "782516008"];
        let leaked_smoking = r
            .resources()
            .iter()
            .filter(|o| {
                o["code"]["coding"].as_array().is_some_and(|codings| {
                    codings
                        .iter()
                        .any(|c| smoking_codes.iter().any(|s| c["code"] == *s))
                })
            })
            .count();
        self.line(format!(
            "  GET Observation?patient={}  -> {}, {} observations, {} about smoking",
            session.patient,
            status_text(r.status),
            r.resources().len(),
            leaked_smoking
        ));
        if leaked_smoking > 0 {
            return Err(self.fail(STEPS[4], "an Observation search returned smoking status"));
        }
        denied_checks.push("smoking status filtered from searches".to_owned());
        // (c) The problem list.
        let r = app
            .get(&session, &format!("Condition?patient={}", session.patient))
            .await
            .map_err(|e| self.fail(STEPS[4], e.to_string()))?;
        let conditions = r
            .resources()
            .iter()
            .filter(|c| c["resourceType"] == "Condition")
            .count();
        self.line(format!(
            "  GET Condition?patient={} (the problem list)  -> {}, {} conditions",
            session.patient,
            status_text(r.status),
            conditions
        ));
        if conditions > 0 {
            return Err(self.fail(STEPS[4], "the problem search returned conditions"));
        }
        denied_checks.push("problems search empty".to_owned());
        self.pass(STEPS[4], denied_checks.join("; "));

        // ---- 6. refresh --------------------------------------------------------------
        self.heading(6, "An hour later: the app refreshes its access");
        let stale = ResearchApp::current_refresh(&session);
        app.refresh(&mut session)
            .await
            .map_err(|e| self.fail(STEPS[5], e.to_string()))?;
        let check = first_read(&app, &session, &downloads).await;
        let Some((path, status)) = check else {
            return Err(self.fail(STEPS[5], "nothing to re-read"));
        };
        self.line(format!(
            "  New tokens (the refresh token rotates). GET {path}  -> {}",
            status_text(status)
        ));
        if !status.is_success() {
            return Err(self.fail(STEPS[5], format!("read with the refreshed token: {status}")));
        }
        let replay = match &stale {
            Some(old) => app.refresh_with_stale(old).await.is_err(),
            None => false,
        };
        self.line(format!(
            "  Reusing the old refresh token  -> {}",
            if replay { "refused" } else { "ACCEPTED" }
        ));
        if !replay {
            return Err(self.fail(STEPS[5], "the rotated-out refresh token still worked"));
        }
        self.pass(
            STEPS[5],
            "refresh works, new token reads, old refresh token refused",
        );

        // ---- 7. revoke ---------------------------------------------------------------
        self.heading(
            7,
            "The patient changes their mind and revokes the app in the portal",
        );
        let before = browser
            .connected_apps(&demo.connected_apps_url, &patient)
            .await
            .map_err(|e| self.fail(STEPS[6], e.to_string()))?;
        let card = find_app(&before, &demo.client_name)
            .ok_or_else(|| self.fail(STEPS[6], "the app is not on the connected-apps page"))?;
        self.line(format!(
            "  The connected-apps page lists \"{}\": {}",
            card.name,
            card.summary()
        ));
        let after = browser
            .revoke(&demo.connected_apps_url, &patient, &demo.client_name)
            .await
            .map_err(|e| self.fail(STEPS[6], e.to_string()))?;
        let card = find_app(&after, &demo.client_name)
            .ok_or_else(|| self.fail(STEPS[6], "the app vanished from the page"))?;
        self.line(format!(
            "  The patient presses Revoke beside it. Now: {}",
            card.status
        ));
        if card.revocable || !card.status.to_lowercase().contains("revoked") {
            return Err(self.fail(STEPS[6], "the page does not show the app as revoked"));
        }
        self.pass(STEPS[6], format!("\"{}\" shown as revoked", card.name));

        // ---- 8. refused ---------------------------------------------------------------
        self.heading(8, "The app tries again");
        let (path, status) = first_read(&app, &session, &downloads)
            .await
            .ok_or_else(|| self.fail(STEPS[7], "nothing to re-read"))?;
        self.line(format!("  GET {path}  -> {}", status_text(status)));
        let refresh = app.refresh(&mut session).await;
        self.line(format!(
            "  refresh  -> {}",
            match &refresh {
                Ok(()) => "ACCEPTED".to_owned(),
                Err(e) => format!("refused ({})", oauth_error(&e.0)),
            }
        ));
        if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
            return Err(self.fail(STEPS[7], format!("read after revocation answered {status}")));
        }
        if refresh.is_ok() {
            return Err(self.fail(STEPS[7], "refresh after revocation succeeded"));
        }
        self.pass(
            STEPS[7],
            format!("read -> {}, refresh refused", status.as_u16()),
        );

        // ---- 9. audit ------------------------------------------------------------------
        self.heading(9, "The audit log: intact, and it says who saw what");
        flush_audit();
        let audit = self.audit(&patient_id, &wanted);
        match audit {
            Ok((lines, detail)) => {
                for l in lines {
                    self.line(l);
                }
                self.pass(STEPS[8], detail);
            }
            Err(e) => return Err(self.fail(STEPS[8], e)),
        }
        Ok(())
    }

    fn audit(
        &self,
        patient_id: &str,
        wanted: &BTreeSet<CategoryId>,
    ) -> Result<(Vec<String>, String), String> {
        let dir = &self.options.data_dir;
        let audit_dir = self
            .options
            .demo
            .raw
            .get("audit_dir")
            .and_then(Value::as_str)
            .map_or_else(|| dir.join("audit"), PathBuf::from);
        // The demo keeps its audit HMAC key in secrets.json (a real EHR: a KMS).
        let secrets: Value = std::fs::read_to_string(dir.join("secrets.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or("cannot read the demo's secrets.json (the audit key)")?;
        let key_b64 = secrets["audit_key_b64"]
            .as_str()
            .ok_or("secrets.json has no audit key")?;
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD
            .decode(key_b64)
            .map_err(|e| format!("audit key: {e}"))?;
        let ring = KeyRing::new(KeyId::new("demo-1").map_err(|e| e.to_string())?, &key)
            .map_err(|e| e.to_string())?;
        let verified = verify_log_dir(Verifier::new(&ring), &audit_dir, "audit")
            .map_err(|e| format!("the audit log does not verify: {e}"))?;
        let records = read_log_dir(&audit_dir, "audit").map_err(|e| e.to_string())?;
        let mut lines = vec![format!(
            "  {} records; the HMAC chain verifies end to end (no record altered, removed or reordered).",
            verified.records
        )];
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        let mut denied_reads = 0usize;
        let mut approved = 0usize;
        let mut revoked = 0usize;
        for r in &records {
            let rec = r.record();
            match rec.event {
                EventKind::ConsentApproved => approved += 1,
                EventKind::ConsentRevoked => revoked += 1,
                _ => {}
            }
            if rec
                .patient
                .as_ref()
                .is_some_and(|p| p.as_str() == patient_id)
                && rec.client.is_some()
                && matches!(rec.outcome, Outcome::Denied(_))
            {
                denied_reads += 1;
            }
            *kinds.entry(format!("{:?}", rec.event)).or_default() += 1;
        }
        let index = AccessIndex::from_records(records.iter());
        let patient = fhirguard::PatientId::new(patient_id).map_err(|e| e.to_string())?;
        let history = index.access_history(&AccessQuery::for_patient(patient));
        let summary = summarize(&history);
        lines.push(format!(
            "  What the log says about patient {patient_id}'s record (time UTC, app, request, data, result):"
        ));
        for e in &history {
            let t = e.time.get();
            let what = format!(
                "{} {}",
                e.interaction.as_ref().map_or("access", interaction_word),
                e.resource_type.as_ref().map_or("", |t| t.as_str())
            );
            let cats: Vec<String> = e.categories.iter().map(ToString::to_string).collect();
            let result = match &e.outcome {
                Outcome::Success => "shared".to_owned(),
                Outcome::Denied(reason) => format!("refused: {}", words(&format!("{reason:?}"))),
                other => words(&format!("{other:?}")),
            };
            lines.push(format!(
                "    {:02}:{:02}:{:02}  {:<13} {:<24} {:<24} {}",
                t.hour(),
                t.minute(),
                t.second(),
                e.client
                    .as_ref()
                    .map_or("-".to_owned(), ToString::to_string),
                what,
                if cats.is_empty() {
                    "-".to_owned()
                } else {
                    cats.join(", ")
                },
                result
            ));
        }
        let mut disclosed_outside = Vec::new();
        for s in &summary {
            for c in &s.categories {
                if !wanted.contains(c) {
                    disclosed_outside.push(c.to_string());
                }
            }
        }
        lines.push(format!(
            "  Consent: {approved} approval, {revoked} revocation; {denied_reads} refused requests by apps."
        ));
        if summary.is_empty() {
            return Err("the audit log shows no access by the app".to_owned());
        }
        if !disclosed_outside.is_empty() {
            return Err(format!(
                "the audit log shows disclosure outside the approval: {disclosed_outside:?}"
            ));
        }
        if approved == 0 || revoked == 0 || denied_reads == 0 {
            return Err(format!(
                "missing audit events (approvals {approved}, revocations {revoked}, refusals {denied_reads})"
            ));
        }
        Ok((
            lines,
            format!(
                "{} records verify; disclosures only of approved categories",
                verified.records
            ),
        ))
    }
}

fn describe(dl: &Download, registry: &CategoryRegistry, approved: &[String]) -> String {
    if registry.supporting_rule_for(&dl.resource_type).is_some() {
        let why = if dl.resource_type == "Encounter" {
            "supporting: the visits the results belong to"
        } else {
            "supporting record"
        };
        return format!("{} ({why})", dl.resource_type);
    }
    // Name the category whose scopes include this one.
    for c in approved {
        let Ok(id) = CategoryId::new(c.as_str()) else {
            continue;
        };
        let scopes: Vec<String> = registry
            .scopes_for([&id], ScopeContext::Patient)
            .iter()
            .map(ToString::to_string)
            .collect();
        if scopes.contains(&dl.scope) {
            let label = registry.get(&id).map_or(c.clone(), |c| c.label.clone());
            return format!("{} ({label})", dl.resource_type);
        }
    }
    match &dl.filter {
        Some((k, v)) => format!("{} ({k}={v})", dl.resource_type),
        None => dl.resource_type.clone(),
    }
}

fn interaction_word(i: &fhirguard::audit::AuditInteraction) -> &'static str {
    use fhirguard::audit::AuditInteraction as I;
    match i {
        I::Read => "read",
        I::Vread => "vread",
        I::SearchType | I::SearchSystem | I::SearchCompartment => "search",
        _ => "request",
    }
}

/// `CategoryNotGranted` -> `category not granted`.
fn words(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if !c.is_alphanumeric() {
            break;
        }
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// The OAuth error code out of an error text ("... invalid_grant: ..."), or the text.
fn oauth_error(text: &str) -> String {
    for code in [
        "invalid_grant",
        "invalid_client",
        "invalid_request",
        "unauthorized_client",
        "invalid_scope",
    ] {
        if text.contains(code) {
            return code.to_owned();
        }
    }
    shorten(text, 60)
}

fn resource_ref(r: &Value) -> String {
    format!(
        "{}/{}",
        r["resourceType"].as_str().unwrap_or("?"),
        r["id"].as_str().unwrap_or("?")
    )
}

fn status_text(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}...")
    }
}

fn find_app<'a>(apps: &'a [ConnectedApp], name: &str) -> Option<&'a ConnectedApp> {
    apps.iter().find(|a| a.name == name)
}

/// A re-read the app can repeat: the first approved search.
async fn first_read(
    app: &ResearchApp,
    session: &Session,
    downloads: &[Download],
) -> Option<(String, StatusCode)> {
    let dl = downloads.iter().find(|d| d.count > 0)?;
    let mut path = format!("{}?patient={}", dl.resource_type, session.patient);
    if let Some((k, v)) = &dl.filter {
        let v: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
        path.push_str(&format!("&{k}={v}"));
    }
    let r = app.get(session, &path).await.ok()?;
    let shown = match &dl.filter {
        Some((k, v)) => format!(
            "{}?patient={}&{k}={}",
            dl.resource_type,
            session.patient,
            v.rsplit('|').next().unwrap_or(v)
        ),
        None => path,
    };
    Some((shown, r.status))
}

/// The id of one of the patient's smoking-status observations, from the EHR's own records
/// (the narrator peeks at the fixture; the app could not find it, which is the point).
async fn find_smoking_status(
    _demo: &DemoInfo,
    session: &Session,
    _app: &ResearchApp,
) -> Option<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let text = std::fs::read_to_string(
        dir.join(format!("uscore_bundle_patient_{}.json", session.patient)),
    )
    .ok()?;
    let bundle: Value = serde_json::from_str(&text).ok()?;
    bundle["entry"].as_array()?.iter().find_map(|e| {
        let r = &e["resource"];
        let is_smoking = r["resourceType"] == "Observation"
            && r["code"]["coding"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["code"] == "72166-2"));
        if is_smoking {
            r["id"].as_str().map(str::to_owned)
        } else {
            None
        }
    })
}

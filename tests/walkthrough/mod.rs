//! The walkthrough's story as an integration test: the same steps `examples/s4s_walkthrough.rs`
//! narrates, against a fresh demo EHR over real HTTPS on loopback, each step asserted.

#[path = "../../examples/support/research/mod.rs"]
pub mod research;

use std::net::SocketAddr;

use research::DemoInfo;
use research::app::ResearchApp;
use research::patient::PatientBrowser;
use research::story::{self, STEPS, StoryOptions};

/// The research app's loopback redirect port is fixed by its registration: tests that listen
/// on it take this lock.
pub static LOOPBACK_PORT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A fresh demo EHR on 127.0.0.1:0 in a temporary directory (weak password hashing: this is
/// an unoptimised test build).
pub async fn start_ehr() -> (crate::ehr::RunningEhr, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("fhirguard-walkthrough-")
        .tempdir()
        .unwrap();
    let mut config = crate::ehr::EhrConfig::new(dir.path());
    config.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.dangerous_weak_password_hashing = true;
    let running = crate::ehr::start(config).await.unwrap();
    (running, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s4s_story_passes_every_step() {
    let _port = LOOPBACK_PORT.lock().await;
    let (ehr, dir) = start_ehr().await;
    let demo = DemoInfo::from_json(ehr.demo.clone()).unwrap();
    let options = StoryOptions::standard(demo, dir.path().to_path_buf());
    let mut lines = Vec::new();
    let flush = || ehr.flush_audit();
    let report = story::run(&options, &flush, &mut |l: &str| lines.push(l.to_owned())).await;
    ehr.stop().await;
    let narration = lines.join("\n");
    assert!(report.passed(), "{}\n\n{narration}", report.table());
    let names: Vec<&str> = report.steps.iter().map(|s| s.name).collect();
    assert_eq!(names, STEPS);
    // The narration a newcomer reads says what happened, in plain words.
    for expected in [
        "ticks only: Vital signs, Lab results",
        "(a smoking-status record)  -> 404",
        "Reusing the old refresh token  -> refused",
        "Revoked on",
        "-> 401 Unauthorized",
        "refresh  -> refused (invalid_grant)",
        "the HMAC chain verifies",
    ] {
        assert!(
            narration.contains(expected),
            "missing {expected:?} in:\n{narration}"
        );
    }
    assert!(!narration.contains("ACCEPTED"), "{narration}");
    let table = report.table();
    assert_eq!(table.matches("  ok  ").count(), STEPS.len(), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_step_shows_as_failed_and_stops_the_story() {
    // A step that misbehaves must show as FAILED and stop the story (the walkthrough then
    // exits non-zero): here the patient is asked to tick a category the portal does not offer.
    let _port = LOOPBACK_PORT.lock().await;
    let (ehr, dir) = start_ehr().await;
    let demo = DemoInfo::from_json(ehr.demo.clone()).unwrap();
    let mut options = StoryOptions::standard(demo, dir.path().to_path_buf());
    options.approve = vec!["vital-signs".to_owned(), "no-such-category".to_owned()];
    options.use_listener = false;
    let flush = || ehr.flush_audit();
    let report = story::run(&options, &flush, &mut |_: &str| {}).await;
    ehr.stop().await;
    assert!(!report.passed());
    assert_eq!(report.steps.len(), 2, "{}", report.table());
    let last = report.steps.last().unwrap();
    assert!(!last.ok, "{}", report.table());
    assert!(last.detail.contains("no-such-category"), "{}", last.detail);
    assert!(report.table().contains("FAILED"));
    assert!(report.table().contains("not run"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_authorization_reaches_the_app_as_access_denied() {
    let (ehr, _dir) = start_ehr().await;
    let demo = DemoInfo::from_json(ehr.demo.clone()).unwrap();
    let http = demo.http_client().unwrap();
    let app = ResearchApp::discover(http.clone(), demo.app_config())
        .await
        .unwrap();
    let (patient, _) = demo.patient("dustin").unwrap();
    let launch = app.start_launch();
    let mut browser = PatientBrowser::new(http);
    let trace = browser
        .deny(&launch.url, &patient, &demo.redirect_uri)
        .await
        .unwrap();
    assert!(
        trace.redirect.contains("error=access_denied"),
        "{}",
        trace.redirect
    );
    let err = app
        .finish_launch(launch, &trace.redirect)
        .await
        .unwrap_err();
    assert!(err.0.contains("access_denied"), "{err}");
    ehr.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_with_a_forged_state_is_refused_by_the_app() {
    let (ehr, _dir) = start_ehr().await;
    let demo = DemoInfo::from_json(ehr.demo.clone()).unwrap();
    let http = demo.http_client().unwrap();
    let app = ResearchApp::discover(http.clone(), demo.app_config())
        .await
        .unwrap();
    let (patient, _) = demo.patient("dustin").unwrap();
    let launch = app.start_launch();
    let mut browser = PatientBrowser::new(http);
    let trace = browser
        .approve(&launch.url, &patient, &["vital-signs"], &demo.redirect_uri)
        .await
        .unwrap();
    let forged = format!("{}?code=abc&state=forged", demo.redirect_uri);
    let err = app.finish_launch(launch, &forged).await.unwrap_err();
    assert!(err.0.contains("state does not match"), "{err}");
    assert!(trace.redirect.contains("code="));
    ehr.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_patient_with_an_authenticator_passes_the_second_step() {
    let (ehr, _dir) = start_ehr().await;
    let demo = DemoInfo::from_json(ehr.demo.clone()).unwrap();
    let user = demo.raw["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["totp_secret"].is_string())
        .expect("a demo user with TOTP")["username"]
        .as_str()
        .unwrap()
        .to_owned();
    let http = demo.http_client().unwrap();
    let app = ResearchApp::discover(http.clone(), demo.app_config())
        .await
        .unwrap();
    let (patient, patient_id) = demo.patient(&user).unwrap();
    let launch = app.start_launch();
    let mut browser = PatientBrowser::new(http);
    let trace = browser
        .approve(
            &launch.url,
            &patient,
            &["vital-signs", "laboratory"],
            &demo.redirect_uri,
        )
        .await
        .unwrap();
    assert!(trace.second_factor, "{:?}", trace.pages);
    let session = app.finish_launch(launch, &trace.redirect).await.unwrap();
    assert_eq!(session.patient, patient_id);
    let downloads = app.download(&session).await.unwrap();
    assert!(downloads.iter().any(|d| d.count > 0));
    ehr.stop().await;
}

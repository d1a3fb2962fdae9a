//! The S4S research app on its own, against a running demo EHR.
//!
//! ```text
//! cargo run --release --example ehr_server -- --data-dir /tmp/ehr        # terminal 1
//! cargo run --release --example research_app -- --demo-json /tmp/ehr/demo.json   # terminal 2
//! ```
//!
//! It discovers the EHR (SMART configuration, OpenID configuration, JWKS), listens on its
//! registered loopback redirect URI, prints the authorize URL for you to open in a browser
//! (trust the demo's CA, `DIR/tls/ca.pem`, or accept the warning), and once you have signed in
//! and approved, exchanges the code (PKCE), verifies the id_token, refreshes, and downloads
//! what you shared, with a summary per category.
//!
//! `--as-patient USERNAME` drives the portal's forms itself with that demo account (for
//! scripted use); `--categories a,b` chooses what that patient approves (default
//! `vital-signs,laboratory`).

#![allow(clippy::print_stdout, unreachable_pub, missing_docs)]

#[path = "support/research/mod.rs"]
mod research;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use research::app::ResearchApp;
use research::callback::CallbackListener;
use research::patient::PatientBrowser;

fn usage() -> ExitCode {
    eprintln!(
        "usage: research_app --demo-json PATH [--as-patient USERNAME] [--categories id,id,...]"
    );
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut demo_json: Option<PathBuf> = None;
    let mut as_patient: Option<String> = None;
    let mut categories = vec!["vital-signs".to_owned(), "laboratory".to_owned()];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--demo-json" => match args.next() {
                Some(p) => demo_json = Some(PathBuf::from(p)),
                None => return usage(),
            },
            "--as-patient" => match args.next() {
                Some(u) => as_patient = Some(u),
                None => return usage(),
            },
            "--categories" => match args.next() {
                Some(c) => {
                    categories = c
                        .split(',')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned)
                        .collect()
                }
                None => return usage(),
            },
            "-h" | "--help" => {
                let _ = usage();
                return ExitCode::SUCCESS;
            }
            _ => return usage(),
        }
    }
    let Some(demo_json) = demo_json else {
        return usage();
    };
    match run(&demo_json, as_patient.as_deref(), &categories).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("research_app: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    demo_json: &std::path::Path,
    as_patient: Option<&str>,
    categories: &[String],
) -> Result<(), research::app::AppError> {
    let demo = research::DemoInfo::load(demo_json)?;
    let http = demo.http_client()?;
    let app = ResearchApp::discover(http.clone(), demo.app_config()).await?;
    println!("Discovered {}", demo.fhir_base);
    println!("  authorize: {}", app.discovery.authorization_endpoint);
    println!("  token:     {}", app.discovery.token_endpoint);
    println!(
        "  JWKS:      {} ({} keys)",
        app.discovery.jwks_uri, app.discovery.jwks_keys
    );

    let mut listener = CallbackListener::bind(&demo.redirect_uri).await?;
    let launch = app.start_launch();
    let callback = match as_patient {
        Some(username) => {
            let (patient, _) = demo.patient(username)?;
            let mut browser = PatientBrowser::new(http.clone());
            let chosen: Vec<&str> = categories.iter().map(String::as_str).collect();
            println!(
                "Signing in as {username} and approving: {}",
                chosen.join(", ")
            );
            let trace = browser
                .approve(&launch.url, &patient, &chosen, &demo.redirect_uri)
                .await?;
            browser.follow_to_app(&trace.redirect).await?;
            listener.wait(Duration::from_secs(10)).await?
        }
        None => {
            println!();
            println!("Open this URL in a browser, sign in with a demo account from demo.json,");
            println!(
                "and approve (the browser must trust {}):",
                demo.ca_cert.display()
            );
            println!();
            println!("  {}", launch.url);
            println!();
            println!("Waiting for the redirect to {} ...", demo.redirect_uri);
            listener.wait(Duration::from_secs(600)).await?
        }
    };
    drop(listener);

    let mut session = app.finish_launch(launch, &callback).await?;
    println!(
        "Signed in: id_token ({}) verified against the JWKS",
        session.id_token_alg
    );
    println!(
        "  user {}  patient {}",
        session.fhir_user.as_deref().unwrap_or(&session.subject),
        session.patient
    );
    println!("  granted: {}", session.scopes.join(" "));
    if session.has_refresh_token() {
        app.refresh(&mut session).await?;
        println!("Refreshed the tokens (refresh token rotated).");
    }
    println!("Downloaded:");
    for dl in app.download(&session).await? {
        let what = match &dl.filter {
            Some((k, v)) => format!(
                "{} {k}={}",
                dl.resource_type,
                v.rsplit('|').next().unwrap_or(v)
            ),
            None => dl.resource_type.clone(),
        };
        if dl.reference_only {
            println!("     -  {what}: read when a downloaded record refers to it");
        } else if dl.status.is_success() {
            let examples = if dl.examples.is_empty() {
                String::new()
            } else {
                format!("  e.g. {}", dl.examples.join("; "))
            };
            println!("  {:>4}  {what}{examples}", dl.count);
        } else {
            println!("    --  {what}: {}", dl.status);
        }
    }
    Ok(())
}

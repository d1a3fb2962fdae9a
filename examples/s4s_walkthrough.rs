//! The Sync for Science walkthrough: one command, no set-up.
//!
//! ```text
//! cargo run --release --example s4s_walkthrough
//! ```
//!
//! It starts the demo EHR in this process (HTTPS on 127.0.0.1, a temporary data directory) and
//! the research app, then tells the S4S story step by step, checking each step: the patient
//! approves vital signs and lab results only; the app reads them; the smoking status and the
//! problem list stay at the EHR; refresh works; the patient revokes the app in the portal; the app is
//! refused; the audit log verifies and shows who accessed what. It exits non-zero if any step
//! misbehaves.
//!
//! Options: `--keep DIR` keeps the EHR's data directory in DIR (demo.json, audit log) instead
//! of a temporary one; `--quiet` prints only the summary table.

#![allow(clippy::print_stdout, unreachable_pub, missing_docs)]

#[path = "support/fhir_store.rs"]
mod fhir_store;

#[path = "support/ehr/mod.rs"]
mod ehr;

#[path = "support/research/mod.rs"]
mod research;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use research::story::{self, StoryOptions};

fn usage() -> ExitCode {
    eprintln!("usage: s4s_walkthrough [--keep DIR] [--quiet]");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut keep: Option<PathBuf> = None;
    let mut quiet = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--keep" => match args.next() {
                Some(d) => keep = Some(PathBuf::from(d)),
                None => return usage(),
            },
            "--quiet" | "-q" => quiet = true,
            "-h" | "--help" => {
                let _ = usage();
                return ExitCode::SUCCESS;
            }
            _ => return usage(),
        }
    }

    // A fresh data directory: new CA, keys and demo passwords every run.
    let temp = match tempfile::Builder::new().prefix("fhirguard-s4s-").tempdir() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("s4s_walkthrough: cannot create a temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let data_dir = keep.unwrap_or_else(|| temp.path().to_path_buf());

    println!("fhirguard: the Sync for Science walkthrough");
    println!("A patient shares part of their record with a research app, then stops sharing.");
    println!();
    let mut config = ehr::EhrConfig::new(&data_dir);
    config.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let ehr = match ehr::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("s4s_walkthrough: the demo EHR did not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let demo = match research::DemoInfo::from_json(ehr.demo.clone()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("s4s_walkthrough: {e}");
            ehr.stop().await;
            return ExitCode::FAILURE;
        }
    };
    println!(
        "The demo EHR is running at {} (HTTPS, its own CA).",
        ehr.base_url
    );
    println!("  FHIR API     {}", demo.fhir_base);
    println!("  portal       {}", demo.portal_url);
    println!("  data         {}", data_dir.display());
    println!(
        "The research app \"{}\" ({}) is a public SMART app",
        demo.client_name, demo.client_id
    );
    println!(
        "  using the oauth2 and openidconnect crates; its redirect is {}.",
        demo.redirect_uri
    );

    let options = StoryOptions::standard(demo, data_dir.clone());
    let flush = || ehr.flush_audit();
    let mut say = |line: &str| {
        if !quiet {
            println!("{line}");
        }
    };
    let report = story::run(&options, &flush, &mut say).await;
    ehr.stop().await;

    println!();
    println!("Summary ({:.1} s)", report.elapsed.as_secs_f64());
    print!("{}", report.table());
    println!();
    if report.passed() {
        println!("All {} steps behaved as they should.", report.steps.len());
        ExitCode::SUCCESS
    } else {
        println!("Something misbehaved: see the FAILED step above.");
        ExitCode::FAILURE
    }
}

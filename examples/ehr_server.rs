//! The fhirguard demo EHR: a SMART-on-FHIR server over HTTPS with a patient portal.
//!
//! ```text
//! cargo run --release --example ehr_server --features tls,axum -- --data-dir DIR [--addr 127.0.0.1:8443]
//! ```
//!
//! On first start it generates a CA and a server certificate, signing keys, client keys and
//! demo passwords into `DIR`; it writes `DIR/demo.json` (URLs, clients, users, categories) on
//! every start. Trust `DIR/tls/ca.pem` in your client.

#![allow(clippy::print_stdout, unreachable_pub, missing_docs)]

#[path = "support/fhir_store.rs"]
mod fhir_store;

#[path = "support/ehr/mod.rs"]
mod ehr;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("usage: ehr_server --data-dir DIR [--addr 127.0.0.1:8443]");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut data_dir: Option<PathBuf> = None;
    let mut addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8443));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--data-dir" => match args.next() {
                Some(d) => data_dir = Some(PathBuf::from(d)),
                None => return usage(),
            },
            "--addr" => match args.next().and_then(|a| a.parse().ok()) {
                Some(a) => addr = a,
                None => return usage(),
            },
            "-h" | "--help" => {
                let _ = usage();
                return ExitCode::SUCCESS;
            }
            _ => return usage(),
        }
    }
    let Some(data_dir) = data_dir else {
        return usage();
    };
    let running = match ehr::start(ehr::EhrConfig {
        data_dir,
        addr,
        dangerous_weak_password_hashing: false,
        request_timeout: ehr::DEFAULT_REQUEST_TIMEOUT,
    })
    .await
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ehr_server: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("fhirguard demo EHR listening on {}", running.base_url);
    println!("  FHIR base:  {}/fhir", running.base_url);
    println!("  portal:     {}/portal", running.base_url);
    println!("  demo.json:  {}", running.demo_json.display());
    println!(
        "  CA cert:    {}",
        running.demo["ca_cert"].as_str().unwrap_or("")
    );
    println!("Press Ctrl-C to stop.");
    let _ = tokio::signal::ctrl_c().await;
    running.stop().await;
    ExitCode::SUCCESS
}

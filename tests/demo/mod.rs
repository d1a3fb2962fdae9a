//! End-to-end tests of the demo EHR (`examples/ehr_server.rs`) over real HTTPS on loopback:
//! one server on port 0 in a temporary data directory, driven like the black-box suite drives
//! it — read `demo.json`, trust its CA, fill the portal's forms, exchange codes with PKCE.

mod client;
mod flows;
mod grants;
mod prompt;
mod semantics;
mod timeout;
mod wire;

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

pub use client::{Browser, Reply, form_action, input_value, query};

/// The shared demo server, running for the whole test process on its own runtime.
pub struct Demo {
    pub json: Value,
    pub dir: PathBuf,
    pub ca: Vec<u8>,
    pub base: String,
}

impl Demo {
    pub fn browser(&self) -> Browser {
        Browser::new(&self.ca, &self.base)
    }
    pub fn fhir(&self) -> String {
        self.json["fhir_base_url"].as_str().unwrap().to_owned()
    }
    pub fn client(&self, kind: &str) -> &Value {
        self.json["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .unwrap()
    }
    pub fn client_by_id(&self, id: &str) -> &Value {
        self.json["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["client_id"] == id)
            .unwrap()
    }
    pub fn user(&self, with_totp: bool) -> &Value {
        self.json["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["totp_secret"].is_null() != with_totp)
            .unwrap()
    }
}

pub fn demo() -> &'static Demo {
    static DEMO: OnceLock<Demo> = OnceLock::new();
    DEMO.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let (tx, rx) = std::sync::mpsc::channel();
        let data_dir = dir.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let running = crate::ehr::start(crate::ehr::EhrConfig {
                    data_dir,
                    addr: "127.0.0.1:0".parse().unwrap(),
                    dangerous_weak_password_hashing: true,
                    request_timeout: crate::ehr::DEFAULT_REQUEST_TIMEOUT,
                })
                .await
                .unwrap();
                tx.send(running.demo_json.clone()).unwrap();
                running.wait().await;
            });
        });
        let demo_json = rx.recv().unwrap();
        let json: Value = serde_json::from_slice(&std::fs::read(&demo_json).unwrap()).unwrap();
        let ca = std::fs::read(json["ca_cert"].as_str().unwrap()).unwrap();
        let base = json["base_url"].as_str().unwrap().to_owned();
        Demo {
            json,
            dir,
            ca,
            base,
        }
    })
}

/// Runs an async test body on a fresh current-thread runtime.
pub fn run<F: std::future::Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f);
}

/// HEAD answered as RFC 9110 §9.3.2 says: GET's status and these headers, the GET body's
/// length, no body.
pub fn assert_head_is_get_without_body(head: &Reply, get: &Reply, what: &str, headers: &[&str]) {
    assert_eq!(head.status, get.status, "HEAD {what}");
    assert!(head.body.is_empty(), "HEAD {what}");
    assert_eq!(
        head.header("content-length"),
        Some(get.body.len().to_string()),
        "HEAD {what}"
    );
    for name in headers {
        assert_eq!(head.header(name), get.header(name), "HEAD {what}: {name}");
    }
}

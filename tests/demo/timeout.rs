//! A request whose body never arrives is answered 408 and its connection closed once the
//! whole-request deadline passes (black-box F22: such connections were held for ≥ 600 s); a
//! request without exactly one Host is answered 400 and its connection closed.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{Browser, run};

#[test]
fn a_stalled_body_gets_408_and_the_connection_closes() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::ehr::EhrConfig::new(dir.path());
        config.addr = "127.0.0.1:0".parse().unwrap();
        config.dangerous_weak_password_hashing = true;
        config.request_timeout = Duration::from_secs(2);
        let running = crate::ehr::start(config).await.unwrap();
        let demo = running.demo.clone();
        let ca = std::fs::read(demo["ca_cert"].as_str().unwrap()).unwrap();
        let base = demo["base_url"].as_str().unwrap().to_owned();
        let browser = Browser::new(&ca, &base);
        let host = base.trim_start_matches("https://").to_owned();

        for path in ["/auth/token", "/portal/login", "/fhir/Observation/_search"] {
            let mut conn = browser.connect_raw().await;
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\n\
                 Content-Length: 100\r\n\r\ngrant_type=x"
            );
            conn.write_all(head.as_bytes()).await.unwrap();
            conn.flush().await.unwrap();
            let started = Instant::now();
            let mut got = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(20), async {
                let mut buf = [0u8; 4096];
                loop {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
            })
            .await;
            assert!(read.is_ok(), "{path}: connection still open after 20 s");
            let elapsed = started.elapsed();
            let text = String::from_utf8_lossy(&got);
            assert!(
                text.starts_with("HTTP/1.1 408"),
                "{path} after {elapsed:?}: {text}"
            );
            assert!(
                elapsed >= Duration::from_millis(1500),
                "{path}: answered before the deadline ({elapsed:?})"
            );
            assert!(!text.contains("grant_type"), "{path}: {text}");
            // A FHIR client reads every error of the API as an OperationOutcome.
            let lower = text.to_ascii_lowercase();
            if path.starts_with("/fhir/") {
                assert!(
                    lower.contains("content-type: application/fhir+json")
                        && text.contains("\"resourceType\":\"OperationOutcome\"")
                        && text.contains("\"code\":\"timeout\""),
                    "{path}: {text}"
                );
            } else {
                assert!(lower.contains("content-type: text/plain"), "{path}: {text}");
            }
        }

        // RFC 9112 §3.2: an HTTP/1.1 request without exactly one Host is a 400, not routed;
        // HTTP/1.0 had no Host and is served.
        let exchange = |request: String| {
            let browser = &browser;
            async move {
                let mut conn = browser.connect_raw().await;
                conn.write_all(request.as_bytes()).await.unwrap();
                let mut got = Vec::new();
                let read =
                    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut got));
                let _ = read.await;
                String::from_utf8_lossy(&got).into_owned()
            }
        };
        for path in ["/fhir/metadata", "/portal/login"] {
            for hosts in [String::new(), format!("Host: {host}\r\nHost: {host}\r\n")] {
                let text = exchange(format!("GET {path} HTTP/1.1\r\n{hosts}\r\n")).await;
                assert!(text.starts_with("HTTP/1.1 400"), "{path} {hosts:?}: {text}");
                assert!(
                    text.to_ascii_lowercase().contains("connection: close"),
                    "{text}"
                );
            }
            let text = exchange(format!("GET {path} HTTP/1.0\r\n\r\n")).await;
            assert!(text.starts_with("HTTP/1.0 200"), "{path} HTTP/1.0: {text}");
        }

        // Normal requests are unaffected.
        let mut browser = browser;
        let metadata = browser.get(&format!("{base}/fhir/metadata")).await;
        assert_eq!(metadata.status, 200);
        let page = browser.get("/portal/login").await;
        assert_eq!(page.status, 200, "{}", page.text());
        running.stop().await;
    });
}

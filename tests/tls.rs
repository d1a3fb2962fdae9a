//! The TLS policy checked with an independent client: OpenSSL's `s_client` against a rustls
//! server on loopback built by `fhirguard::tls`.
//!
//! OpenSSL 3 refuses TLS 1.0/1.1 by itself at its default security level, so the probes for old
//! versions lower the client's floor with `-cipher 'DEFAULT:@SECLEVEL=0'`: only then does a
//! refusal prove something about the server.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fhirguard::tls::TlsServerConfigBuilder;

fn tls_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/tls")
        .join(name)
}

/// A tiny HTTPS server: completes the handshake, reads one request head and answers `200 ok`.
/// It runs until the test process ends.
fn start_server(config: rustls::ServerConfig) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = Arc::new(config);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let config = config.clone();
            std::thread::spawn(move || serve_one(config, stream));
        }
    });
    port
}

fn serve_one(config: Arc<rustls::ServerConfig>, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(connection) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") && head.len() < 8192 {
        match tls.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

struct Probe {
    served: bool,
    output: String,
}

/// Runs `openssl s_client` with `args`, sends one HTTP request and reports whether the server
/// answered it (the only proof that the handshake, including client authentication, succeeded).
fn probe(port: u16, args: &[&str]) -> Probe {
    let mut child = Command::new("timeout")
        .arg("20")
        .arg("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-servername")
        .arg("localhost")
        .arg("-ign_eof")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed (scripts/test-all.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let output = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Probe {
        served: output.contains("HTTP/1.1 200 OK"),
        output,
    }
}

fn policy_server() -> u16 {
    let config = TlsServerConfigBuilder::new()
        .certificate_chain_pem(&std::fs::read(tls_fixture("server.cert.pem")).unwrap())
        .private_key_pem(&std::fs::read(tls_fixture("server.key.pem")).unwrap())
        .build()
        .unwrap();
    start_server(config)
}

#[test]
fn old_protocol_versions_are_refused_even_when_the_client_allows_them() {
    let port = policy_server();
    for version in ["-tls1", "-tls1_1"] {
        let result = probe(port, &[version, "-cipher", "DEFAULT:@SECLEVEL=0"]);
        assert!(!result.served, "{version} was served:\n{}", result.output);
    }
}

#[test]
fn cbc_suites_are_refused_on_tls12() {
    let port = policy_server();
    for suite in [
        "AES128-SHA",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA384",
    ] {
        let result = probe(port, &["-tls1_2", "-cipher", suite]);
        assert!(!result.served, "{suite} was served:\n{}", result.output);
    }
}

#[test]
fn tls12_and_tls13_are_served_with_aead_suites() {
    let port = policy_server();
    let tls12 = probe(port, &["-tls1_2"]);
    assert!(tls12.served, "TLS 1.2 failed:\n{}", tls12.output);
    assert!(tls12.output.contains("TLSv1.2"), "{}", tls12.output);
    assert!(
        tls12.output.contains("GCM") || tls12.output.contains("CHACHA20"),
        "{}",
        tls12.output
    );
    let tls13 = probe(port, &["-tls1_3"]);
    assert!(tls13.served, "TLS 1.3 failed:\n{}", tls13.output);
    assert!(tls13.output.contains("TLSv1.3"), "{}", tls13.output);
}

#[test]
fn mutual_tls_requires_a_certificate_from_the_configured_ca() {
    let config = TlsServerConfigBuilder::new()
        .certificate_chain_pem(&std::fs::read(tls_fixture("server.cert.pem")).unwrap())
        .private_key_pem(&std::fs::read(tls_fixture("server.key.pem")).unwrap())
        .require_client_certificates(&std::fs::read(tls_fixture("client-ca.cert.pem")).unwrap())
        .build()
        .unwrap();
    let port = start_server(config);

    let cert = tls_fixture("client.cert.pem");
    let key = tls_fixture("client.key.pem");
    let with_cert = probe(
        port,
        &[
            "-cert",
            cert.to_str().unwrap(),
            "-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        with_cert.served,
        "client certificate refused:\n{}",
        with_cert.output
    );

    for version in ["-tls1_2", "-tls1_3"] {
        let without = probe(port, &[version]);
        assert!(
            !without.served,
            "served without a client certificate ({version})"
        );
    }

    // A certificate the configured CA did not issue (the server's own self-signed one).
    let stranger = probe(
        port,
        &[
            "-cert",
            tls_fixture("server.cert.pem").to_str().unwrap(),
            "-key",
            tls_fixture("server.key.pem").to_str().unwrap(),
        ],
    );
    assert!(!stranger.served, "served a certificate from an unknown CA");
}

/// The control experiment: the same probe against an OpenSSL server that does allow TLS 1.1
/// and CBC succeeds, so the refusals above are the server's doing, not the client's.
#[test]
fn the_probe_does_reach_a_server_that_allows_old_protocols() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-www"])
        .args(["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"])
        .arg("-cert")
        .arg(tls_fixture("server-rsa.cert.pem"))
        .arg("-key")
        .arg(tls_fixture("server-rsa.key.pem"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let result = probe(port, &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        result.output.contains("HTTP/1.0 200 ok") && result.output.contains("TLSv1.1"),
        "the TLS 1.1 probe cannot reach a TLS 1.1 server, so its refusals prove nothing:\n{}",
        result.output
    );
}

//! Loopback load test of the guard: the same FHIR read handler served twice over plain hyper,
//! once behind `GuardLayer` and once bare, driven by `wrk` (installed by
//! `scripts/load-test.sh`). Prints throughput, p50/p99 latency and the guarded/unguarded
//! ratio (two runs of `LOAD_SECONDS` each, in ABBA order), and checks that the audit log holds exactly one record per request served.
//!
//! Also the reference for wiring the guard into a plain hyper server (no axum): accept,
//! insert the peer address as a `PeerAddr` extension, call the guarded tower service.
//!
//! Environment: `LOAD_SECONDS` (default 5), `LOAD_CONNECTIONS` (32), `LOAD_THREADS` (2),
//! `LOAD_MIN_RATIO` (0.70; below it the run fails), `WRK` (path of wrk, default `wrk`),
//! `LOAD_REPORT` (a file to write the Markdown result rows to), `LOAD_TOKEN_CACHE` (`1`,
//! the default: validate through `CachedTokenValidator`; `0`: verify every signature),
//! `LOAD_SERVER_THREADS` (2: tokio worker threads of the servers), `LOAD_INPROC_REQUESTS` (20000: requests per side of the in-process measurement),
//! `LOAD_INPROC_ONLY` (`1`: stop after the in-process measurement, e.g. to profile it).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

#[path = "support/fhir_store.rs"]
#[allow(unreachable_pub)]
mod fhir_store;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration as StdDuration;

use bytes::Bytes;
use fhirguard::audit::{AuditLog, AuditSink, ChainHead, KeyId, KeyRing, SealedRecord, SinkError};
use fhirguard::category::CategoryRegistry;
use fhirguard::consent::ActiveGrant;
use fhirguard::middleware::{
    CachedTokenValidator, GuardConfig, GuardLayer, PeerAddr, TokenValidation,
};
use fhirguard::sanitize::SanitizerConfig;
use fhirguard::token::{
    AccessTokenClaims, Algorithm, AuthorizationServer, InMemoryClientRegistry, InMemoryKeySource,
    InMemoryTokenStore, MemoryGrantStatus, ServerConfig, SigningKey, sign_access_token,
};
use fhirguard::{CategoryId, ClientId, Clock, GrantId, PatientId, SystemClock};
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::{Layer, Service, ServiceExt};

use fhir_store::FhirStore;

/// The system allocator, counting: the in-process measurement reports how many allocations
/// each request costs (the same counting on both sides).
#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

const ISSUER: &str = "https://ehr.example.org/auth";
const FHIR_BASE: &str = "https://ehr.example.org/fhir";
const VITAL_355: &str = "4e425466-5d90-a9a3-8caa-53216d5430b7";

/// The host's FHIR handler: reads one resource from the in-memory store.
#[derive(Clone)]
struct ReadHandler {
    store: Arc<FhirStore>,
}

impl<B> Service<Request<B>> for ReadHandler {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut segments = req.uri().path().trim_start_matches("/fhir/").split('/');
        let response = match (segments.next(), segments.next(), segments.next()) {
            (Some(ty), Some(id), None) => match self.store.read(ty, id) {
                Ok(resource) => Response::builder()
                    .header(header::CONTENT_TYPE, "application/fhir+json")
                    .body(Full::new(Bytes::from(
                        serde_json::to_vec(&resource).unwrap(),
                    )))
                    .unwrap(),
                Err(_) => not_found(),
            },
            _ => not_found(),
        };
        ready(Ok(response))
    }
}

fn not_found() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// An audit sink that seals (the chain's HMAC runs as usual) and counts, without keeping the
/// records in memory: the load test only needs the count.
#[derive(Default)]
struct CountingSink {
    records: AtomicU64,
}

impl AuditSink for CountingSink {
    fn append(&self, _record: &SealedRecord) -> Result<(), SinkError> {
        self.records.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Serves `svc` over HTTP/1.1 on `listener` — the plain-hyper wiring of the guard.
async fn serve<S>(listener: TcpListener, svc: S)
where
    S: Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let svc = svc.clone();
        tokio::spawn(async move {
            let hyper_svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(PeerAddr::from(peer));
                svc.clone().oneshot(req)
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), hyper_svc)
                .await;
        });
    }
}

struct WrkResult {
    requests: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

fn parse_duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, factor) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.trim().parse::<f64>().ok().map(|v| v * factor)
}

fn run_wrk(wrk: &str, url: &str, token: &str, seconds: u64, conns: u64, threads: u64) -> WrkResult {
    let output = Command::new(wrk)
        .args([
            &format!("-t{threads}"),
            &format!("-c{conns}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
            &format!("Authorization: Bearer {token}"),
            url,
        ])
        .output()
        .expect("wrk runs (scripts/load-test.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "wrk failed: {text}");
    let mut result = WrkResult {
        requests: 0,
        rps: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        non_2xx: 0,
    };
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            result.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = t.strip_prefix("50%") {
            result.p50_ms = parse_duration_ms(v).unwrap_or(f64::NAN);
        } else if let Some(v) = t.strip_prefix("99%") {
            result.p99_ms = parse_duration_ms(v).unwrap_or(f64::NAN);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            result.non_2xx = v.trim().parse().unwrap_or(u64::MAX);
        } else if t.contains(" requests in ") {
            result.requests = t
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        }
    }
    result
}

/// Two runs of equal length as one: summed requests, mean rate and mean percentiles.
fn combine(a: &WrkResult, b: &WrkResult) -> WrkResult {
    WrkResult {
        requests: a.requests + b.requests,
        rps: (a.rps + b.rps) / 2.0,
        p50_ms: (a.p50_ms + b.p50_ms) / 2.0,
        p99_ms: (a.p99_ms + b.p99_ms) / 2.0,
        non_2xx: a.non_2xx + b.non_2xx,
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let seconds = env_u64("LOAD_SECONDS", 5);
    let conns = env_u64("LOAD_CONNECTIONS", 32);
    let threads = env_u64("LOAD_THREADS", 2);
    let min_ratio: f64 = std::env::var("LOAD_MIN_RATIO")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.70);
    let wrk = std::env::var("WRK").unwrap_or_else(|_| "wrk".into());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::try_from(env_u64("LOAD_SERVER_THREADS", 2)).unwrap_or(2))
        .enable_all()
        .build()
        .unwrap();

    // The authorization server's keys, a grant for patient 355 (vital signs), a token.
    let pem = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/token/as_es256.pem"),
    )
    .unwrap();
    let rs_pem = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/token/as_rs256.pem"),
    )
    .unwrap();
    let keys = Arc::new(
        InMemoryKeySource::with_keys(
            time::Duration::hours(2),
            [
                SigningKey::from_pem(Algorithm::ES256, "es-1", &pem).unwrap(),
                SigningKey::from_pem(Algorithm::RS256, "rs-1", &rs_pem).unwrap(),
            ],
        )
        .unwrap(),
    );
    let now = SystemClock.now();
    let grants = Arc::new(MemoryGrantStatus::new());
    grants.insert(ActiveGrant {
        grant_id: GrantId::new("g-load").unwrap(),
        patient: PatientId::new("355").unwrap(),
        client_id: ClientId::new("load-app").unwrap(),
        categories: BTreeSet::from([CategoryId::new("vital-signs").unwrap()]),
        ends_at: now + time::Duration::days(30),
    });
    let server = Arc::new(
        AuthorizationServer::new(
            ServerConfig::new(ISSUER, FHIR_BASE),
            keys.clone(),
            Arc::new(InMemoryClientRegistry::new()),
            Arc::new(InMemoryTokenStore::new()),
            grants.clone(),
        )
        .unwrap(),
    );
    let claims = AccessTokenClaims {
        iss: ISSUER.into(),
        sub: "user-355".into(),
        aud: vec![FHIR_BASE.into()],
        exp: (now + time::Duration::minutes(50)).unix_timestamp(),
        iat: now.unix_timestamp(),
        nbf: None,
        jti: "load-jti".into(),
        client_id: ClientId::new("load-app").unwrap(),
        scope: "launch/patient patient/Observation.rs".into(),
        grant_id: Some(GrantId::new("g-load").unwrap()),
        patient: Some(PatientId::new("355").unwrap()),
        encounter: None,
        fhir_user: None,
        family: None,
        context: None,
    };
    let token = sign_access_token(keys.as_ref(), Algorithm::ES256, &claims).unwrap();

    let sink = Arc::new(CountingSink::default());
    let audit = Arc::new(AuditLog::new(
        KeyRing::new(KeyId::new("load").unwrap(), &[7u8; 32]).unwrap(),
        ChainHead::GENESIS,
        sink.clone(),
    ));
    let token_cache = std::env::var("LOAD_TOKEN_CACHE").map_or(true, |v| v != "0");
    let validator: Arc<dyn TokenValidation> = if token_cache {
        Arc::new(CachedTokenValidator::new(server))
    } else {
        server
    };
    let config = GuardConfig::builder()
        .fhir_base(FHIR_BASE)
        .sanitizer_config(SanitizerConfig::us_core("/fhir"))
        .validator(validator)
        .grants(grants)
        .registry(Arc::new(CategoryRegistry::default_registry()))
        .audit(audit)
        .clock(Arc::new(SystemClock))
        .build()
        .unwrap();

    let handler = ReadHandler {
        store: Arc::new(FhirStore::with_fixtures().unwrap()),
    };
    let served = Arc::new(AtomicU64::new(0));
    let counter = served.clone();
    let inproc_guard = GuardLayer::new(config.clone()).layer(handler.clone());
    let guarded = ServiceExt::<Request<Incoming>>::map_response(
        GuardLayer::new(config).layer(handler.clone()),
        move |r| {
            counter.fetch_add(1, Ordering::Relaxed);
            r
        },
    );

    // In-process cost per request (no sockets): the guard's own work next to the handler's.
    let inproc = |label: &str, svc: &mut dyn FnMut() -> StatusCode| {
        let n = u32::try_from(env_u64("LOAD_INPROC_REQUESTS", 20_000)).unwrap_or(u32::MAX);
        let region = stats_alloc::Region::new(GLOBAL);
        let start = std::time::Instant::now();
        for _ in 0..n {
            assert_eq!(svc(), StatusCode::OK);
        }
        let per = start.elapsed() / n;
        let allocs = region.change().allocations as u64 / u64::from(n);
        println!(
            "in-process {label}: {:.1} µs, {allocs} allocations per request",
            per.as_secs_f64() * 1e6
        );
        per
    };
    let local = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let auth = format!("Bearer {token}");
    let uri = format!("/fhir/Observation/{VITAL_355}");
    let mk = || {
        Request::get(uri.as_str())
            .header(header::AUTHORIZATION, auth.as_str())
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let mut bare = handler.clone();
    let t_bare = inproc("handler alone", &mut || {
        local.block_on(bare.call(mk())).unwrap().status()
    });
    let t_guard = inproc("guarded handler", &mut || {
        local
            .block_on(ServiceExt::<Request<Full<Bytes>>>::oneshot(
                inproc_guard.clone(),
                mk(),
            ))
            .unwrap()
            .status()
    });
    println!(
        "in-process guard overhead: {:.1} µs per request",
        (t_guard.as_secs_f64() - t_bare.as_secs_f64()) * 1e6
    );

    if std::env::var("LOAD_INPROC_ONLY").is_ok_and(|v| v == "1") {
        return;
    }

    let (guarded_addr, plain_addr): (SocketAddr, SocketAddr) = runtime.block_on(async {
        let g = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addrs = (g.local_addr().unwrap(), p.local_addr().unwrap());
        tokio::spawn(serve(g, guarded));
        tokio::spawn(serve(p, handler));
        addrs
    });
    let path = format!("/fhir/Observation/{VITAL_355}");
    let guarded_url = format!("http://{guarded_addr}{path}");
    let plain_url = format!("http://{plain_addr}{path}");

    // Warm up both (caches, allocator, connection setup), then measure each for `seconds`.
    run_wrk(&wrk, &plain_url, &token, 1, conns, threads);
    run_wrk(&wrk, &guarded_url, &token, 1, conns, threads);
    std::thread::sleep(StdDuration::from_millis(300));
    let audit_before = sink.records.load(Ordering::SeqCst);
    let served_before = served.load(Ordering::SeqCst);
    // ABBA order, so that drift in the machine's load (other jobs) hits both sides alike.
    let plain_a = run_wrk(&wrk, &plain_url, &token, seconds, conns, threads);
    let guard_a = run_wrk(&wrk, &guarded_url, &token, seconds, conns, threads);
    let guard_b = run_wrk(&wrk, &guarded_url, &token, seconds, conns, threads);
    let plain_b = run_wrk(&wrk, &plain_url, &token, seconds, conns, threads);
    std::thread::sleep(StdDuration::from_millis(500));
    let audit_records = sink.records.load(Ordering::SeqCst) - audit_before;
    let served_requests = served.load(Ordering::SeqCst) - served_before;
    let plain = combine(&plain_a, &plain_b);
    let guard = combine(&guard_a, &guard_b);

    let ratio = guard.rps / plain.rps;
    println!(
        "loopback load test: {conns} connections, {threads} wrk threads, 2 x {seconds}s each \
         (ABBA), token cache {}",
        if token_cache { "on" } else { "off" }
    );
    println!(
        "unguarded: {:>10.0} req/s  p50 {:.3} ms  p99 {:.3} ms  ({} requests)",
        plain.rps, plain.p50_ms, plain.p99_ms, plain.requests
    );
    println!(
        "guarded:   {:>10.0} req/s  p50 {:.3} ms  p99 {:.3} ms  ({} requests, {} non-2xx)",
        guard.rps, guard.p50_ms, guard.p99_ms, guard.requests, guard.non_2xx
    );
    println!(
        "ratio guarded/unguarded: {:.1}% (minimum {:.0}%)",
        ratio * 100.0,
        min_ratio * 100.0
    );
    println!(
        "audit records: {audit_records}; guarded requests served: {served_requests}; wrk counted {}",
        guard.requests
    );
    if let Ok(path) = std::env::var("LOAD_REPORT") {
        let rows = format!(
            "| unguarded handler | {conns} | {:.0} | {:.3} | {:.3} | — |\n\
             | guarded (`GuardLayer`, token cache {}) | {conns} | {:.0} | {:.3} | {:.3} | {:.1}% |\n",
            plain.rps,
            plain.p50_ms,
            plain.p99_ms,
            if token_cache { "on" } else { "off" },
            guard.rps,
            guard.p50_ms,
            guard.p99_ms,
            ratio * 100.0
        );
        std::fs::write(path, rows).unwrap();
    }

    let mut failed = false;
    if guard.non_2xx != 0 || plain.non_2xx != 0 {
        println!("FAIL: non-2xx responses during the run");
        failed = true;
    }
    if audit_records != served_requests {
        println!("FAIL: audit records ({audit_records}) != requests served ({served_requests})");
        failed = true;
    }
    if served_requests < guard.requests {
        println!("FAIL: wrk counted more responses than the server served");
        failed = true;
    }
    if ratio < min_ratio {
        println!(
            "FAIL: guarded throughput below {:.0}% of unguarded",
            min_ratio * 100.0
        );
        failed = true;
    }
    runtime.shutdown_timeout(StdDuration::from_millis(200));
    if failed {
        std::process::exit(1);
    }
    println!("OK");
}

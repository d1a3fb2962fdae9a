//! Loopback load test of the guard: the same FHIR read handler served twice over plain hyper,
//! once behind `GuardLayer` and once bare, driven by `wrk` (installed by
//! `scripts/load-test.sh`). It measures the handler in both answering styles (the resource's
//! bytes, and `FhirJson`, which hands the guard the resource itself), each in `LOAD_ROUNDS`
//! rounds of four `LOAD_SECONDS` runs in ABBA order; prints throughput, p50/p99 latency and
//! the guarded/unguarded ratio, and checks that the audit log holds exactly one record per
//! request served.
//!
//! Each is measured in two topologies. On *shared cores* the servers (two worker threads) and
//! wrk (`LOAD_THREADS` threads) run on the same two cores, as on a small machine: the
//! generator's work competes with the server's, and a slower server leaves wrk idle so that
//! every response must wake it, which bills kernel time to the side that is already slower. On
//! *separate cores* (two CPUs and `taskset` needed) the servers run on one worker thread pinned
//! to CPU 0 and wrk with one thread on CPU 1, so the figure is what the server itself
//! sustains; the ratio is checked there (on shared cores when separate cores are unavailable
//! or not asked for).
//!
//! The process runs on the system allocator as it is: a counting allocator's shared counters
//! would make every allocation contend between the cores and charge the side that allocates
//! more. Allocations per request are counted by `cargo bench --bench guard`, on one thread.
//!
//! Also the reference for wiring the guard into a plain hyper server (no axum): accept,
//! insert the peer address as a `PeerAddr` extension, call the guarded tower service.
//!
//! Environment: `LOAD_SECONDS` (default 5), `LOAD_ROUNDS` (2), `LOAD_CONNECTIONS` (32),
//! `LOAD_THREADS` (2: wrk threads), `LOAD_SERVER_THREADS` (2: tokio worker threads of the
//! servers), `LOAD_MIN_RATIO` (0.70; below it the run fails), `LOAD_BODY` (`bytes`,
//! `resource`, or both by default), `WRK` (path of wrk, default `wrk`), `LOAD_REPORT` (a
//! file to write the Markdown result rows to), `LOAD_TOKEN_CACHE` (`1`, the default:
//! validate through `CachedTokenValidator`; `0`: verify every signature),
//! `LOAD_INPROC_REQUESTS` (20000: requests per side of the in-process timing),
//! `LOAD_INPROC_ONLY` (`1`: stop after the in-process timing, e.g. to profile it),
//! `LOAD_SERVE_SECONDS` (only serve both sides that long, printing their URLs and the token,
//! to drive them by hand), `LOAD_TOPOLOGY` (`shared`, `separate`, or both by default).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

#[path = "support/fhir_store.rs"]
#[allow(unreachable_pub)]
mod fhir_store;
#[path = "support/guard_fixture.rs"]
mod guard_fixture;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use bytes::Bytes;
use fhirguard::middleware::{FhirJson, GuardLayer, PeerAddr};
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::{Layer, Service, ServiceExt};

use guard_fixture::{Answer, Fixture, VITAL_355, serve_one};

/// Serves `svc` over HTTP/1.1 on `listener` — the plain-hyper wiring of the guard.
async fn serve<S, RB>(listener: TcpListener, svc: S)
where
    RB: Body<Data = Bytes, Error = Infallible> + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<RB>, Error = Infallible>
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

fn run_wrk(
    wrk: &str,
    cpu: Option<usize>,
    url: &str,
    token: &str,
    seconds: u64,
    conns: u64,
    threads: u64,
) -> WrkResult {
    let mut command = match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string(), wrk]);
            c
        }
        None => Command::new(wrk),
    };
    let output = command
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

/// Runs of equal length as one: summed requests, mean rate and mean percentiles.
fn combine(runs: &[WrkResult]) -> WrkResult {
    let n = runs.len().max(1) as f64;
    WrkResult {
        requests: runs.iter().map(|r| r.requests).sum(),
        rps: runs.iter().map(|r| r.rps).sum::<f64>() / n,
        p50_ms: runs.iter().map(|r| r.p50_ms).sum::<f64>() / n,
        p99_ms: runs.iter().map(|r| r.p99_ms).sum::<f64>() / n,
        non_2xx: runs.iter().map(|r| r.non_2xx).sum(),
    }
}

fn single_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
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

    let token_cache = std::env::var("LOAD_TOKEN_CACHE").map_or(true, |v| v != "0");
    let fixture = Fixture::new(token_cache);
    let run = Run {
        seconds,
        conns,
        threads,
        min_ratio,
        wrk,
        token_cache,
        fixture,
    };
    // `LOAD_BODY`: `bytes`, `resource`, or both (the default).
    let kinds = std::env::var("LOAD_BODY").unwrap_or_default();
    let mut failed = false;
    let mut report = String::new();
    if kinds != "resource" {
        failed |= measure::<Full<Bytes>>(&run, &runtime, &mut report);
    }
    if kinds != "bytes" {
        failed |= measure::<FhirJson>(&run, &runtime, &mut report);
    }
    if let Ok(path) = std::env::var("LOAD_REPORT") {
        std::fs::write(path, report).unwrap();
    }
    runtime.shutdown_timeout(StdDuration::from_millis(200));
    if failed {
        std::process::exit(1);
    }
    println!("OK");
}

/// What every measurement shares.
struct Run {
    seconds: u64,
    conns: u64,
    threads: u64,
    min_ratio: f64,
    wrk: String,
    token_cache: bool,
    fixture: Fixture,
}

/// Measures the handler answering with `A`, bare and guarded: in process, then over loopback.
/// Appends the Markdown rows to `report`; true when a check failed.
fn measure<A: Answer>(run: &Run, runtime: &tokio::runtime::Runtime, report: &mut String) -> bool {
    let fixture = &run.fixture;
    let config = &fixture.config;
    println!("--- the handler answers with {}", A::LABEL);
    let handler = fixture.handler::<A>();
    let served = Arc::new(AtomicU64::new(0));
    let counter = served.clone();
    let inproc_guard = GuardLayer::new(config.clone()).layer(handler.clone());
    let guarded = ServiceExt::<Request<Incoming>>::map_response(
        GuardLayer::new(config.clone()).layer(handler.clone()),
        move |r| {
            counter.fetch_add(1, Ordering::Relaxed);
            r
        },
    );

    // In-process cost per request (no sockets): the guard's own work next to the handler's.
    // Both sides read the whole body, as a server would: a `FhirJson` is serialised then.
    let n = u32::try_from(env_u64("LOAD_INPROC_REQUESTS", 20_000)).unwrap_or(u32::MAX);
    let inproc = |label: &str, svc: &mut dyn FnMut() -> usize| {
        let start = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(svc());
        }
        let per = start.elapsed() / n;
        println!(
            "in-process {label}: {:.1} µs per request",
            per.as_secs_f64() * 1e6
        );
        per
    };
    let local = single_thread_runtime();
    let t_bare = inproc("handler alone", &mut || {
        serve_one(&local, &handler, fixture.request())
    });
    let t_guard = inproc("guarded handler", &mut || {
        serve_one(&local, &inproc_guard, fixture.request())
    });
    println!(
        "in-process guard overhead: {:.1} µs per request",
        (t_guard.as_secs_f64() - t_bare.as_secs_f64()) * 1e6
    );

    // The same on two threads at once (one per core): what sharing costs. A guard whose
    // requests touch the same memory on both cores (locks, reference counts) slows down here
    // more than the handler does.
    let parallel = |label: &str, serve: &(dyn Fn(&tokio::runtime::Runtime) -> usize + Sync)| {
        let start = std::time::Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    let rt = single_thread_runtime();
                    for _ in 0..n {
                        std::hint::black_box(serve(&rt));
                    }
                });
            }
        });
        let per = start.elapsed() / n;
        println!(
            "in-process {label}, two threads at once: {:.1} µs per request on each",
            per.as_secs_f64() * 1e6
        );
        per
    };
    let p_bare = parallel("handler alone", &|rt| {
        serve_one(rt, &handler, fixture.request())
    });
    let p_guard = parallel("guarded handler", &|rt| {
        serve_one(rt, &inproc_guard, fixture.request())
    });
    println!(
        "in-process guard overhead, two threads at once: {:.1} µs per request",
        (p_guard.as_secs_f64() - p_bare.as_secs_f64()) * 1e6
    );

    if std::env::var("LOAD_INPROC_ONLY").is_ok_and(|v| v == "1") {
        return false;
    }

    let mut failed = false;
    for topology in topologies(runtime) {
        failed |= loopback(
            run,
            &topology,
            &guarded,
            &handler,
            &served,
            A::LABEL,
            report,
        );
    }
    failed
}

/// Where the servers and the load generator run.
enum Topology<'r> {
    /// Server (two worker threads by default) and wrk (`LOAD_THREADS` threads) share both
    /// cores, as a small machine would: the generator's work competes with the server's.
    Shared(&'r tokio::runtime::Runtime),
    /// The server on one core (one worker thread pinned to CPU 0), wrk with one thread on the
    /// other (CPU 1): what the server itself sustains, without the generator's share of the same
    /// cores in the figure.
    Separate(tokio::runtime::Runtime),
}

impl Topology<'_> {
    fn runtime(&self) -> &tokio::runtime::Runtime {
        match self {
            Topology::Shared(rt) => rt,
            Topology::Separate(rt) => rt,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Topology::Shared(_) => "shared cores",
            Topology::Separate(_) => "separate cores",
        }
    }
}

/// The topologies `LOAD_TOPOLOGY` asks for (`shared`, `separate`, or both by default);
/// `separate` needs two CPUs and `taskset`, and is skipped (with a note) without them.
fn topologies(shared: &tokio::runtime::Runtime) -> Vec<Topology<'_>> {
    let wanted = std::env::var("LOAD_TOPOLOGY").unwrap_or_default();
    let mut out = Vec::new();
    if wanted != "separate" {
        out.push(Topology::Shared(shared));
    }
    if wanted != "shared" {
        if separate_cores_possible() {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .on_thread_start(|| pin_this_thread(0))
                .enable_all()
                .build()
                .unwrap();
            out.push(Topology::Separate(runtime));
        } else {
            println!("(separate cores skipped: needs two CPUs and taskset)");
        }
    }
    out
}

/// Pins the calling thread to `cpu` (through `taskset -p`, which takes a thread id).
fn pin_this_thread(cpu: usize) {
    let tid = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    if let Some(tid) = tid {
        let _ = Command::new("taskset")
            .args(["-p", "-c", &cpu.to_string(), &tid])
            .output();
    }
}

/// Serves the guarded and the bare handler over loopback in `topology` and drives both with
/// wrk in ABBA rounds; prints and reports the figures; true when a check failed.
fn loopback<G, H, A>(
    run: &Run,
    topology: &Topology<'_>,
    guarded: &G,
    handler: &H,
    served: &AtomicU64,
    label: &str,
    report: &mut String,
) -> bool
where
    G: Service<
            Request<Incoming>,
            Response = Response<fhirguard::middleware::GuardBody>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    G::Future: Send + 'static,
    H: Service<Request<Incoming>, Response = Response<A>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    H::Future: Send + 'static,
    A: Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    let Run {
        seconds,
        conns,
        threads,
        min_ratio,
        ref wrk,
        token_cache,
        ref fixture,
    } = *run;
    let (sink, token) = (&fixture.sink, &fixture.token);
    let (threads, wrk_cpu) = match topology {
        Topology::Shared(_) => (threads, None),
        Topology::Separate(_) => (1, Some(1)),
    };
    let (guarded_addr, plain_addr): (SocketAddr, SocketAddr) = topology.runtime().block_on(async {
        let g = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addrs = (g.local_addr().unwrap(), p.local_addr().unwrap());
        tokio::spawn(serve(g, guarded.clone()));
        tokio::spawn(serve(p, handler.clone()));
        addrs
    });
    let path = format!("/fhir/Observation/{VITAL_355}");
    let guarded_url = format!("http://{guarded_addr}{path}");
    let plain_url = format!("http://{plain_addr}{path}");

    // `LOAD_SERVE_SECONDS`: only serve both for that long (to drive them by hand, e.g. under
    // `perf`), printing their addresses and the bearer token.
    if let Some(serve_for) = std::env::var("LOAD_SERVE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        println!(
            "{}\nguarded {guarded_url}\nunguarded {plain_url}\ntoken {token}",
            topology.label()
        );
        std::thread::sleep(StdDuration::from_secs(serve_for));
        return false;
    }
    let wrk_run =
        |url: &str, seconds: u64| run_wrk(wrk, wrk_cpu, url, token, seconds, conns, threads);

    // Warm up both (caches, allocator, connection setup), then measure each for `seconds`.
    wrk_run(&plain_url, 1);
    wrk_run(&guarded_url, 1);
    std::thread::sleep(StdDuration::from_millis(300));
    let audit_before = sink.records.load(Ordering::SeqCst);
    let served_before = served.load(Ordering::SeqCst);
    // Rounds in ABBA order, so that drift in the machine's load (other jobs) hits both sides
    // alike; each round's ratio is printed, the combined one is checked.
    let rounds = env_u64("LOAD_ROUNDS", 2).max(1);
    let mut plain_runs = Vec::new();
    let mut guard_runs = Vec::new();
    for round in 1..=rounds {
        let plain_a = wrk_run(&plain_url, seconds);
        let guard_a = wrk_run(&guarded_url, seconds);
        let guard_b = wrk_run(&guarded_url, seconds);
        let plain_b = wrk_run(&plain_url, seconds);
        println!(
            "{}, round {round}: unguarded {:.0} / {:.0} req/s, guarded {:.0} / {:.0} req/s, ratio {:.1}%",
            topology.label(),
            plain_a.rps,
            plain_b.rps,
            guard_a.rps,
            guard_b.rps,
            100.0 * (guard_a.rps + guard_b.rps) / (plain_a.rps + plain_b.rps)
        );
        plain_runs.extend([plain_a, plain_b]);
        guard_runs.extend([guard_a, guard_b]);
    }
    std::thread::sleep(StdDuration::from_millis(500));
    let audit_records = sink.records.load(Ordering::SeqCst) - audit_before;
    let served_requests = served.load(Ordering::SeqCst) - served_before;
    let plain = combine(&plain_runs);
    let guard = combine(&guard_runs);

    let ratio = guard.rps / plain.rps;
    let server_threads = match topology {
        Topology::Shared(_) => env_u64("LOAD_SERVER_THREADS", 2),
        Topology::Separate(_) => 1,
    };
    println!(
        "loopback load test, {}: {conns} connections, {server_threads} server thread(s), \
         {threads} wrk thread(s), {rounds} ABBA rounds of {seconds}s runs, token cache {}",
        topology.label(),
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
    // The ratio is checked where the server's own throughput is measured: on separate cores
    // when they are available, otherwise on shared ones.
    let checked = matches!(topology, Topology::Separate(_)) || !separate_cores_measured();
    println!(
        "ratio guarded/unguarded: {:.1}% ({})",
        ratio * 100.0,
        if checked {
            format!("minimum {:.0}%", min_ratio * 100.0)
        } else {
            "reported, not checked".to_owned()
        }
    );
    println!(
        "audit records: {audit_records}; guarded requests served: {served_requests}; wrk counted {}",
        guard.requests
    );
    report.push_str(&format!(
        "| {}: unguarded handler, answering with {label} | {conns} | {:.0} | {:.3} | {:.3} | — |\n\
         | {}: guarded (`GuardLayer`, token cache {}) | {conns} | {:.0} | {:.3} | {:.3} | {:.1}% |\n",
        topology.label(),
        plain.rps,
        plain.p50_ms,
        plain.p99_ms,
        topology.label(),
        if token_cache { "on" } else { "off" },
        guard.rps,
        guard.p50_ms,
        guard.p99_ms,
        ratio * 100.0
    ));

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
    if checked && ratio < min_ratio {
        println!(
            "FAIL: guarded throughput below {:.0}% of unguarded",
            min_ratio * 100.0
        );
        failed = true;
    }
    failed
}

/// Whether the separate-cores topology is asked for and can run here.
fn separate_cores_measured() -> bool {
    std::env::var("LOAD_TOPOLOGY").map_or(true, |v| v != "shared") && separate_cores_possible()
}

/// Two CPUs and `taskset`.
fn separate_cores_possible() -> bool {
    std::thread::available_parallelism().map_or(1, usize::from) >= 2
        && Command::new("taskset").arg("-V").output().is_ok()
}

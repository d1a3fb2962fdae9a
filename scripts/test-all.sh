#!/usr/bin/env bash
# Runs every check fhirguard has, on a fresh machine or a warm one:
#   formatting, clippy (all targets, all features, warnings are errors), unit + integration +
#   doc tests, benches in test mode, and a short smoke run of every cargo-fuzz target.
# It installs what it needs (Debian packages, cargo-fuzz) and starts the servers the tests use
# (PostgreSQL as the `postgres` user in a temporary data directory), and stops them on exit.
#
# Environment:
#   FUZZ_SECONDS   seconds per fuzz target (default 30; 0 skips the fuzz smoke run)
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
started=$(date +%s)
step() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - started ))" "$*"; }

# --- system packages -------------------------------------------------------------------------
apt_updated=""
need_pkg() { # need_pkg <command-or-path> <debian-package>
    if ! command -v "$1" >/dev/null 2>&1 && [ ! -e "$1" ]; then
        if [ -z "$apt_updated" ]; then
            step "apt-get update"
            apt-get update -qq
            apt_updated=1
        fi
        step "installing $2"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    fi
}
need_pkg openssl openssl
need_pkg /usr/lib/postgresql/15/bin/initdb postgresql
# --- walkthrough: the real-browser test (issue 10) drives headless Chromium via chromedriver ---
need_pkg chromium chromium
need_pkg chromedriver chromium-driver

# --- PostgreSQL for the multi-node store tests -------------------------------------------------
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
pg_dir=$(mktemp -d /tmp/fhirguard-pg.XXXXXX)
pg_port="${FHIRGUARD_PG_PORT:-54329}"
chown postgres:postgres "$pg_dir"
stop_pg() { su postgres -s /bin/sh -c "$pg_bin/pg_ctl -D '$pg_dir/data' -m immediate stop" >/dev/null 2>&1 || true; rm -rf "$pg_dir"; }
trap stop_pg EXIT
step "starting PostgreSQL on 127.0.0.1:$pg_port"
su postgres -s /bin/sh -c "$pg_bin/initdb -D '$pg_dir/data' -A trust -U postgres --no-sync" >/dev/null
su postgres -s /bin/sh -c "$pg_bin/pg_ctl -D '$pg_dir/data' -l '$pg_dir/log' -w -o \"-p $pg_port -k '$pg_dir' -c listen_addresses=127.0.0.1 -c fsync=on\" start" >/dev/null
export FHIRGUARD_PG_URL="host=127.0.0.1 port=$pg_port user=postgres dbname=postgres"

# --- Rust checks -------------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets --all-features -- -D warnings"
cargo clippy --all-targets --all-features -- -D warnings

# Each feature is optional: the library alone must build clean too (what a fuzz target or a
# host without the middleware links).
step "cargo clippy --lib --no-default-features -- -D warnings"
cargo clippy --lib --no-default-features -- -D warnings

step "cargo test --all-features (unit, integration and doc tests)"
cargo test --all-features

step "cargo test --benches (each criterion bench once, as a test)"
cargo test --all-features --benches

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --all-features --no-deps --quiet

# --- middleware load test (issue 8) -----------------------------------------------------------
# Guarded vs unguarded FHIR read over loopback with wrk, 32 connections, the handler answering
# with bytes and with FhirJson, on shared and on separate cores, two ABBA rounds of 3 s runs
# each (about two minutes). In this run
# it fails on what must hold on any machine: a non-2xx response, or audit records != requests
# served. The throughput ratio is printed, not enforced (LOAD_MIN_RATIO=0): a CI machine's load
# varies, and speed is shown by the figures in docs/performance.md, not by a timed test. Run
# `scripts/load-test.sh` on an idle machine to check the 70% target (its default threshold).
need_pkg wrk wrk
step "guard load test (scripts/load-test.sh)"
LOAD_SECONDS="${LOAD_SECONDS:-3}" LOAD_MIN_RATIO="${LOAD_MIN_RATIO:-0}" scripts/load-test.sh

# --- fuzz smoke run ----------------------------------------------------------------------------
if [ "$FUZZ_SECONDS" != "0" ]; then
    if ! cargo fuzz --version >/dev/null 2>&1; then
        step "cargo install cargo-fuzz"
        cargo install cargo-fuzz --locked
    fi
    targets=$(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz list)
    if [ -n "$targets" ]; then
        step "building fuzz targets"
        (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build -O)
        for target in $targets; do
            step "fuzz $target for ${FUZZ_SECONDS}s"
            corpus="fuzz/corpus/$target"
            mkdir -p "$corpus"
            work=$(mktemp -d)
            cp -r "$corpus/." "$work/" 2>/dev/null || true
            # The committed corpus is read, never written: new inputs go to a scratch copy.
            (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$target" "$work" -- \
                -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -print_final_stats=0 >/dev/null 2>"$work.log") || {
                tail -n 40 "$work.log"; echo "fuzz target $target failed"; exit 1; }
            rm -rf "$work" "$work.log"
        done
    fi
fi

step "all checks passed"

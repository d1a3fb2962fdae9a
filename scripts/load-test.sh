#!/usr/bin/env bash
# Loopback load test of the guard middleware (issue 8), bounded in time.
#
# Installs `wrk` (Debian) if missing, builds examples/guard_load.rs in release mode and runs it:
# the same FHIR read handler behind GuardLayer and bare, LOAD_CONNECTIONS connections, two runs
# of LOAD_SECONDS seconds each in ABBA order (plus a 1 s warm-up each; about 25 s in all).
# Fails if the guarded throughput is below LOAD_MIN_RATIO of the unguarded one, if any response
# was not 2xx, or if the audit log does not hold exactly one record per request served.
#
# Environment: LOAD_SECONDS (5), LOAD_CONNECTIONS (32), LOAD_THREADS (2), LOAD_MIN_RATIO (0.70),
#              LOAD_REPORT (file for the Markdown rows of docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
    echo "installing wrk"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
    fi
fi

cargo build --release --quiet --example guard_load --features tower
exec timeout 120 target/release/examples/guard_load

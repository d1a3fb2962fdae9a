#!/usr/bin/env bash
# Loopback load test of the guard middleware (issue 8), bounded in time.
#
# Installs `wrk` (Debian) if missing, builds examples/guard_load.rs in release mode and runs it:
# the same FHIR read handler behind GuardLayer and bare, answering with the resource's bytes and
# with FhirJson, LOAD_CONNECTIONS connections, LOAD_ROUNDS rounds of four LOAD_SECONDS runs in
# ABBA order per answering style and topology (server and wrk sharing both cores; server on
# CPU 0 and wrk on CPU 1, with taskset), plus a 1 s warm-up each: about 3 minutes by default.
# Fails if a guarded throughput on separate cores (on shared cores when separate ones are not
# measured) is below LOAD_MIN_RATIO of its unguarded one, if any response was not 2xx, or if
# the audit log does not hold exactly one record per request served.
#
# Environment: LOAD_SECONDS (5), LOAD_ROUNDS (2), LOAD_CONNECTIONS (32), LOAD_THREADS (2),
#              LOAD_MIN_RATIO (0.70), LOAD_BODY (bytes | resource | both by default),
#              LOAD_TOPOLOGY (shared | separate | both by default),
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
exec timeout 600 target/release/examples/guard_load

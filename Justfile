# List the recipes.
default:
    @just --list

# Run the whole test suite (the README's test command does the same).
test:
    cargo test

# Run hookline against a throwaway PostgreSQL, with a demo endpoint.
dev:
    cargo run -- dev

# Regenerate openapi/hookline.json from the code.
openapi:
    cargo run --quiet -- openapi > openapi/hookline.json

# Format, lint and test.
check:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings
    cargo test

# The commit the benchmarks measure this build against.
baseline_commit := "6ddd2c9"

# Benchmarks, this build beside the baseline (alternating): delivery engine (drain, steady, 200/s latency, CPU,
# statement time, send, noisy neighbour) and HTTP API (ingest, closed loop, call→receipt, inbound).
bench: baseline
    cargo bench --bench delivery --bench api

# Build the baseline binary once, from its own worktree and target directory (target/baseline).
baseline:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -x target/baseline/release/hookline ]; then exit 0; fi
    [ -d target/baseline/src ] || git worktree add --force --detach target/baseline/src {{baseline_commit}}
    cd target/baseline/src && CARGO_TARGET_DIR=../ cargo build --release --bin hookline

# Faults as a test: producers, 3 workers killed at random once a second, a PostgreSQL crash-restart, a receiver
# failing 20% and hanging 1%, then a worker cut off by a network partition (ip netns); prints lost (must be 0),
# duplicates, recovery, late completions refused. SOAK_SECONDS of faults (default 120).
soak:
    cargo bench --bench soak

# The README's pictures of the dashboard and the portal (docs/*.png), taken by the tests' headless Chromium.
screenshots:
    cargo test --test it screenshots -- --ignored

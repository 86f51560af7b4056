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

# Benchmarks: delivery engine (drain, steady, latency, send, CPU, WAL) and HTTP API (ingest, closed loop, call→receipt).
bench:
    cargo bench --bench delivery --bench api

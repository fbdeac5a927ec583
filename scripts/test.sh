#!/usr/bin/env bash
# Runs every test: unit tests, the storage conformance suite on memory, SQLite and a real etcd, the
# API tests, and the end-to-end tests that drive the real `skiff` binary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# The end-to-end tests run target/debug/skiff: build it first, with every feature (etcd included).
cargo build -p skiff --all-features
cargo test --workspace --all-features "$@"
# The node's static helpers are a crate of their own (pause/Cargo.toml says why); its tests build it
# dynamically, so in a target directory apart from the static binaries the node tests install.
cargo test --manifest-path pause/Cargo.toml --target-dir "${CARGO_TARGET_DIR:-target}/pause-tests"

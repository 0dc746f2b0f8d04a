#!/usr/bin/env bash
# The one test command: formatting, lints, docs and every test of the workspace.
#
#   scripts/test.sh                           # from anywhere in the repository
#   MWDEPLOY_INSTALL_DEPS=0 scripts/test.sh   # never install system packages
#
# The system packages the tests need are installed first when any is missing (as root,
# or through sudo, saying which; see scripts/install-deps.sh), so the one command works
# on a fresh Debian machine. When they are all there, nothing is touched.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ${MWDEPLOY_INSTALL_DEPS:-} != 0 ]]; then
    scripts/install-deps.sh
fi

step() { printf '\n==> %s\n' "$*"; }

step cargo fmt --all -- --check
cargo fmt --all -- --check

# Lint levels go on clippy's command line, never into RUSTFLAGS: a changed RUSTFLAGS
# would rebuild every dependency, and the test build below reuses the cache as it is.
step cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --workspace --all-targets -- -D warnings

step cargo doc --workspace --no-deps
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps

step cargo test --workspace
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace 2>&1 | tee "$log" || status=$?
# One closing line for the whole run: cargo prints a "test result" per test binary,
# and the last of them is often a crate with no doc tests.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"

# The Debian package, built from the test build and unpacked in a throw-away root.
step scripts/check-deb.sh
scripts/check-deb.sh || status=$?
exit "$status"

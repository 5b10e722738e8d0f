#!/usr/bin/env bash
# The README's "run all tests" command: every Rust test (unit, integration with real git and
# real gh against local servers), shellcheck on every script, and the demo with short-lived
# tokens. Tests that need port 443 run in their own network namespace and need root
# (as CI has); .ci/run installs gh and shellcheck first.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

command -v shellcheck >/dev/null || { echo "test.sh: shellcheck is not installed (apt-get install shellcheck)" >&2; exit 1; }
echo "== shellcheck =="
# shellcheck disable=SC2046
shellcheck $(git ls-files '*.sh' '.ci/run')

echo "== cargo test =="
# The soak writes its one-line summary here; libtest captures a passing test's output.
rm -f target/soak-summary.txt
cargo test --workspace --locked
cat target/soak-summary.txt

echo "== demo (short-lived tokens) =="
DEMO_TTL_SECS=${DEMO_TTL_SECS:-6} DEMO_ROTATIONS=${DEMO_ROTATIONS:-3} timeout 300 scripts/demo.sh

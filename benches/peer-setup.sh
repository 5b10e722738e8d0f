# shellcheck shell=bash
# tmp and token come from peer-latency.sh, which sources this file; OURS_HELPER goes back to it.
# shellcheck disable=SC2154,SC2034
# Setup file for ../shared/bench/peer-latency.sh (sourced by it, after it has set HOME=$tmp and
# made a token): adds git-credential-molecule on a cache hit, as a helper git runs by path.
# Usage: bash ../shared/bench/peer-latency.sh benches/peer-setup.sh
: "${MOLECULE_BIN:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release/git-credential-molecule}"
export MOLECULE_TOKEN_CACHE_DIR="$tmp/molecule-cache" MOLECULE_LOG=warn
mkdir -p "$MOLECULE_TOKEN_CACHE_DIR" && chmod 700 "$MOLECULE_TOKEN_CACHE_DIR"
exp=$(date -u -d '+50 minutes' +%Y-%m-%dT%H:%M:%SZ)
printf '{"version":1,"entries":{"github.com":{"token":"%s","expires_at":"%s","fetched_at":"%s","source":"platform","suspect":false}}}\n' \
  "$token" "$exp" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$MOLECULE_TOKEN_CACHE_DIR/tokens.json"
chmod 600 "$MOLECULE_TOKEN_CACHE_DIR/tokens.json"
OURS_HELPER="!$MOLECULE_BIN"

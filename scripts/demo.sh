#!/usr/bin/env bash
# The README's "run it" command: git keeps working across token rotations.
#
# Builds the binaries, starts local stand-ins (a token platform that mints short-lived
# tokens and an HTTPS git server that accepts only the currently valid one), configures an
# isolated git to use git-credential-molecule, then clones and pushes until the token has
# rotated DEMO_ROTATIONS times, printing a timeline. No network beyond loopback; Ctrl-C or
# the end leaves no process or file behind.
#
# Environment: DEMO_TTL_SECS (token lifetime, default 20), DEMO_ROTATIONS (default 3).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
ttl=${DEMO_TTL_SECS:-20}
rotations=${DEMO_ROTATIONS:-3}
margin=$(( ttl / 4 > 1 ? ttl / 4 : 1 ))

say() { printf '[%6.1fs] %s\n' "$(elapsed)" "$*"; }
elapsed() { awk -v s="$start_ns" -v n="$(date +%s%N)" 'BEGIN { printf "%.1f", (n - s) / 1e9 }'; }

echo "== building (cargo build) =="
(cd "$root" && cargo build --quiet --bins)
bin=$root/target/debug

tmp=$(mktemp -d)
testkit_pid=
cleanup() {
  status=$?
  trap - EXIT INT TERM
  if [ -n "$testkit_pid" ]; then
    kill "$testkit_pid" 2>/dev/null || true
    wait "$testkit_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A clean environment: nothing from this machine's git, CA or token settings leaks in.
unset GH_TOKEN GITHUB_TOKEN GH_ENTERPRISE_TOKEN GITHUB_ENTERPRISE_TOKEN \
  GIT_SSL_CAINFO SSL_CERT_FILE SSL_CERT_DIR CURL_CA_BUNDLE GIT_CONFIG_GLOBAL GIT_CONFIG_SYSTEM
export HOME=$tmp/home GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0 LC_ALL=C
mkdir -p "$HOME" "$tmp/configs"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$tmp/configs/.auth_token"

"$bin/molecule-testkit" serve --state-dir "$tmp/stack" --ttl-secs "$ttl" \
  --remint-below-secs "$(( margin * 2 ))" --bearer-file "$tmp/configs/.auth_token" \
  --repo demo.git > "$tmp/mints" 2> "$tmp/testkit.log" &
testkit_pid=$!
for _ in $(seq 300); do
  [ -f "$tmp/stack/ready.json" ] && break
  kill -0 "$testkit_pid" 2>/dev/null || { cat "$tmp/testkit.log" >&2; exit 1; }
  sleep 0.1
done
[ -f "$tmp/stack/ready.json" ] || { echo "stand-ins did not start" >&2; exit 1; }
# shellcheck source=/dev/null
. "$tmp/stack/ready.env"

export PATH=$bin:$PATH
export PLATFORM_URL=$TESTKIT_PLATFORM_URL CONFIGS_DIR=$tmp/configs \
  MOLECULE_GIT_HOSTS=$TESTKIT_GIT_HOST TOKEN_REFRESH_MARGIN_SEC=$margin \
  GIT_SSL_CAINFO=$TESTKIT_CA_PEM GIT_AUTHOR_NAME=Demo GIT_AUTHOR_EMAIL=demo@molecule.invalid \
  GIT_COMMITTER_NAME=Demo GIT_COMMITTER_EMAIL=demo@molecule.invalid

echo "== tokens live ${ttl}s; the helper refreshes ${margin}s before expiry =="
start_ns=$(date +%s%N)
say "platform stand-in $TESTKIT_PLATFORM_URL, git server $TESTKIT_GIT_URL"
git-credential-molecule configure --global --host "$TESTKIT_GIT_HOST" >/dev/null
say "git config: $(git config --global --get-all "credential.https://$TESTKIT_GIT_HOST.helper" | sed 's/^$/(empty)/' | paste -sd' ' -)"

git clone -q "$TESTKIT_GIT_URL/demo.git" "$tmp/work" 2>/dev/null
say "clone ok"
cd "$tmp/work"
push=0
minted() { grep -c 'minted' "$tmp/mints" || true; }
deadline=$(( $(date +%s) + ttl * (rotations + 2) + 30 ))
while [ "$(minted)" -le "$rotations" ]; do
  push=$((push + 1))
  echo "change $push" >> log.txt
  git add log.txt && git commit -qm "change $push"
  git push -q origin HEAD:main
  state=$(git-credential-molecule status | grep "^$TESTKIT_GIT_HOST:" | sed "s/^$TESTKIT_GIT_HOST: //")
  say "push #$push ok; tokens minted so far: $(minted); cache: $state"
  [ "$(date +%s)" -lt "$deadline" ] || { echo "demo did not see $rotations rotations in time" >&2; exit 1; }
  sleep "$(awk -v t="$ttl" 'BEGIN { printf "%.1f", t / 4 }')"
done
git fetch -q origin
say "fetch ok; server has $(git rev-list --count origin/main) commits"
echo "== platform timeline =="
cat "$tmp/mints"
echo "== done: $push pushes across $rotations token rotations, zero failures =="

#!/usr/bin/env bash
# The README's "run it" command: an agent's git (and gh) keep working while its token rotates.
#
# Builds the binaries, starts local stand-ins (a token platform minting short-lived tokens and
# a GitHub-like HTTPS host serving git and the API), runs the container entrypoint's agent half
# against them with a stale GH_TOKEN exported, and has the agent push (and call `gh api /user`)
# until the token has rotated DEMO_ROTATIONS times, printing a timeline. Loopback only.
# As root, with gh and unshare available, it runs in a private network namespace so the host
# can be `localhost` on port 443, which gh requires; otherwise gh is left out.
# Ctrl-C or the end leaves no process or file behind.
#
# Environment: DEMO_TTL_SECS (token lifetime, default 20), DEMO_ROTATIONS (default 3).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
ttl=${DEMO_TTL_SECS:-20}
rotations=${DEMO_ROTATIONS:-3}
margin=$(( ttl / 4 > 1 ? ttl / 4 : 1 ))

if [ -z "${DEMO_IN_NETNS:-}" ]; then
  echo "== building (cargo build) =="
  (cd "$root" && cargo build --quiet --workspace --bins)
  if [ "$(id -u)" = 0 ] && command -v gh >/dev/null && command -v unshare >/dev/null \
     && unshare -n true 2>/dev/null; then
    DEMO_IN_NETNS=1 exec unshare -n "$0" "$@"
  fi
  DEMO_IN_NETNS=0
fi
with_gh=no
if [ "$DEMO_IN_NETNS" = 1 ]; then
  ip link set lo up
  with_gh=yes
fi
bin=$root/target/debug

tmp=$(mktemp -d)
chmod 755 "$tmp"
testkit_pid=''
agent_pid=''
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  status=$?
  trap - EXIT INT TERM
  # The entrypoint's process group: the agent, the daemon and its respawn loop.
  [ -z "$agent_pid" ] || kill -TERM -- "-$agent_pid" 2>/dev/null || true
  [ -z "$testkit_pid" ] || kill "$testkit_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A clean environment: nothing from this machine's git, CA or token settings leaks in.
unset GH_TOKEN GITHUB_TOKEN GH_ENTERPRISE_TOKEN GITHUB_ENTERPRISE_TOKEN GH_HOST \
  GIT_SSL_CAINFO SSL_CERT_FILE SSL_CERT_DIR CURL_CA_BUNDLE GIT_CONFIG_GLOBAL GIT_CONFIG_SYSTEM
export HOME=$tmp/home GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0 LC_ALL=C GH_NO_UPDATE_NOTIFIER=1
mkdir -p "$HOME" "$tmp/configs"
(umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$tmp/configs/.auth_token")

git_addr=127.0.0.1:0
[ "$with_gh" = no ] || git_addr=127.0.0.1:443
"$bin/molecule-testkit" serve --state-dir "$tmp/stack" --ttl-secs "$ttl" \
  --remint-below-secs "$(( margin * 2 ))" --bearer-file "$tmp/configs/.auth_token" \
  --git-addr "$git_addr" --git-api --repo demo.git > "$tmp/mints" 2> "$tmp/testkit.log" &
testkit_pid=$!
for _ in $(seq 300); do
  [ -f "$tmp/stack/ready.json" ] && break
  kill -0 "$testkit_pid" 2>/dev/null || { cat "$tmp/testkit.log" >&2; exit 1; }
  sleep 0.1
done
[ -f "$tmp/stack/ready.json" ] || { echo "stand-ins did not start" >&2; exit 1; }
set -a  # the agent reads TESTKIT_* too
# shellcheck source=/dev/null
. "$tmp/stack/ready.env"
set +a

export PATH=$bin:$PATH
export PLATFORM_URL=$TESTKIT_PLATFORM_URL CONFIGS_DIR=$tmp/configs \
  MOLECULE_GIT_HOSTS=$TESTKIT_GIT_HOST TOKEN_REFRESH_MARGIN_SEC=$margin \
  GIT_SSL_CAINFO=$TESTKIT_CA_PEM SSL_CERT_FILE=$TESTKIT_CA_PEM \
  GIT_AUTHOR_NAME=Demo GIT_AUTHOR_EMAIL=demo@molecule.invalid \
  GIT_COMMITTER_NAME=Demo GIT_COMMITTER_EMAIL=demo@molecule.invalid \
  MOLECULE_ENTRYPOINT_NO_DROP=1 DEMO_TMP=$tmp DEMO_ROTATIONS=$rotations DEMO_WITH_GH=$with_gh
DEMO_PAUSE=$(awk -v t="$ttl" 'BEGIN { printf "%.1f", t / 4 }')
export DEMO_PAUSE

echo "== tokens live ${ttl}s; the helper and daemon refresh ${margin}s before expiry =="
echo "== platform $TESTKIT_PLATFORM_URL; git and API at $TESTKIT_GIT_URL; gh shown: $with_gh =="
[ "$with_gh" = yes ] || echo "   (gh needs its host on port 443: run as root with unshare to include gh api)"

# The agent the entrypoint execs: pushes until the token has rotated, printing a timeline.
cat > "$tmp/agent.sh" <<'AGENT'
#!/bin/sh
set -eu
t0=$(date +%s%N)
say() { printf '[%6.1fs] %s\n' "$(awk -v s="$t0" -v n="$(date +%s%N)" 'BEGIN { printf "%.1f", (n - s) / 1e9 }')" "$*"; }
minted() { grep -c minted "$DEMO_TMP/mints" || true; }
say "agent: GH_TOKEN is ${GH_TOKEN:-unset}, GITHUB_TOKEN is ${GITHUB_TOKEN:-unset}"
git clone -q "$TESTKIT_GIT_URL/demo.git" "$DEMO_TMP/work" 2>/dev/null
say "agent: git clone ok"
cd "$DEMO_TMP/work"
push=0
while [ "$(minted)" -le "$DEMO_ROTATIONS" ]; do
  push=$((push + 1))
  echo "change $push" >> log.txt && git add log.txt && git commit -qm "change $push"
  git push -q origin HEAD:main
  line="git push #$push ok"
  if [ "$DEMO_WITH_GH" = yes ]; then
    login=$(gh api --hostname "$TESTKIT_GIT_HOST" /user --jq .login)
    line="$line, gh api /user ok ($login)"
  fi
  state=$(git-credential-molecule status | sed -n "s/^$TESTKIT_GIT_HOST: //p" | cut -d, -f1-2)
  say "$line; tokens minted so far: $(minted); cache: $state"
  sleep "$DEMO_PAUSE"
done
git fetch -q origin
say "agent: git fetch ok; the server has $(git rev-list --count origin/main) commits, zero failures"
AGENT
chmod 755 "$tmp/agent.sh"

GH_TOKEN=ghs_stale_token_from_container_start setsid "$root/scripts/entrypoint.sh" "$tmp/agent.sh" \
  2> "$tmp/entrypoint.log" &
agent_pid=$!
status=0
wait "$agent_pid" || status=$?
sed 's/^/    /' "$tmp/entrypoint.log" | grep -E 'entrypoint:|respawn' || true
echo "== platform timeline (tokens are never printed, only their lengths) =="
sed 's/^/    /' "$tmp/mints"
if [ "$status" -eq 0 ]; then
  echo "== done: git push$([ "$with_gh" = no ] || echo ' and gh api') worked across $rotations token rotations =="
else
  echo "== the agent failed (exit $status); daemon and entrypoint log:" >&2
  cat "$tmp/entrypoint.log" >&2
fi
exit "$status"

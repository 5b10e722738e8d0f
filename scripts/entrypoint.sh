#!/bin/sh
# Container entrypoint for agents whose GitHub tokens die every hour (DESIGN.md, "The
# container story").
#
#   entrypoint.sh CMD [ARGS...]
#
# Root half (when started as root):
#   - `git-credential-molecule configure --system`: for each host, an empty helper entry, then
#     ours, so no other helper replays a stale token;
#   - the cache directory, owned by the agent user, mode 0700;
#   - drop to the agent user (setpriv, runuser or gosu) and run the agent half.
# Agent half (after the drop, or when started directly as the agent user):
#   - save the boot-time GH_TOKEN/GITHUB_TOKEN as the fallback token (mode 0600);
#   - unset them: gh prefers a stale GH_TOKEN over its stored login, and refuses to log in
#     while it is set; GITHUB_PERSONAL_ACCESS_TOKEN and COPILOT_GITHUB_TOKEN too; then start
#     again, so that this process's environment no longer holds the token;
#   - `gh-token-refresh --once` to prime the cache and gh;
#   - the daemon under scripts/respawn.sh, in a session of its own;
#   - CMD as a child, with this shell's stdin and terminal; then, when CMD has exited, the
#     daemon is stopped and waited for (at most 10 s), and the exit status is CMD's.
# SIGTERM goes to CMD and stops the daemon at once; the shell exits once CMD has, and the
# daemon has written its last status record (and revoked, with --revoke-on-exit) or been
# killed after 10 s. SIGHUP, SIGUSR1 and SIGUSR2 go to CMD. SIGINT and SIGQUIT too, unless
# stdin is a terminal: the terminal sends those to CMD itself.
# Safe to run again: configure is idempotent, the fallback is rewritten atomically, and a
# second daemon on the same cache directory exits at once.
#
# Environment: MOLECULE_AGENT_USER (default agent), MOLECULE_TOKEN_CACHE_DIR (default
# ~agent/.molecule-token-cache), MOLECULE_FALLBACK_TOKEN_FILE, MOLECULE_GIT_HOSTS and the rest
# of DESIGN.md's variables, which pass through to both binaries. MOLECULE_ENTRYPOINT_NO_DROP=1
# runs everything as the current user even as root (git configured --global): for rootless
# containers, where uid 0 is already unprivileged, and for demos.
set -eu

log() { printf 'entrypoint: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 78; }

here=$(cd "$(dirname "$0")" && pwd)
self="$here/$(basename "$0")"
helper=git-credential-molecule
daemon=gh-token-refresh

[ $# -gt 0 ] || { log "usage: $(basename "$0") CMD [ARGS...]"; exit 64; }
command -v "$helper" >/dev/null || die "$helper is not on PATH"
command -v "$daemon" >/dev/null || die "$daemon is not on PATH"
# The respawn loop: respawn.sh beside this script in the source tree; installed by a release
# artifact (as molecule-entrypoint), molecule-respawn on PATH.
respawn=${MOLECULE_RESPAWN:-$here/respawn.sh}
if [ -z "${MOLECULE_RESPAWN:-}" ] && [ ! -x "$respawn" ]; then
  respawn=$(command -v molecule-respawn) || die "molecule-respawn is not on PATH"
fi

field() { printf '%s\n' "$1" | cut -d: -f"$2"; }

root_half() {
  user=${MOLECULE_AGENT_USER:-agent}
  entry=$(getent passwd "$user") || die "agent user '$user' does not exist (set MOLECULE_AGENT_USER)"
  uid=$(field "$entry" 3)
  gid=$(field "$entry" 4)
  home=$(field "$entry" 6)
  [ "$uid" != 0 ] || die "the agent user must not be root"

  "$helper" configure --system | sed 's/^/entrypoint: /' >&2

  cache=${MOLECULE_TOKEN_CACHE_DIR:-$home/.molecule-token-cache}
  [ ! -L "$cache" ] || die "$cache is a symlink; refusing to use it as the token cache"
  mkdir -p "$cache"
  chown "$uid:$gid" "$cache"
  chmod 700 "$cache"
  log "cache $cache: owner $user, mode 0700"

  export MOLECULE_TOKEN_CACHE_DIR="$cache" HOME="$home" USER="$user" LOGNAME="$user"
  export MOLECULE_ENTRYPOINT_STAGE=agent
  if command -v setpriv >/dev/null; then
    exec setpriv --reuid="$uid" --regid="$gid" --init-groups -- "$self" "$@"
  elif command -v runuser >/dev/null; then
    exec runuser -p -u "$user" -- "$self" "$@"
  elif command -v gosu >/dev/null; then
    exec gosu "$user" "$self" "$@"
  fi
  die "cannot drop privileges: none of setpriv, runuser or gosu is installed"
}

# Where a container may be given the boot-time token: gh's variables, and the names MCP
# servers and Copilot read it by. None reaches the agent.
token_vars="GH_TOKEN GITHUB_TOKEN GH_ENTERPRISE_TOKEN GITHUB_ENTERPRISE_TOKEN
  GITHUB_PERSONAL_ACCESS_TOKEN COPILOT_GITHUB_TOKEN"

agent_half() {
  cache=${MOLECULE_TOKEN_CACHE_DIR:-$HOME/.molecule-token-cache}
  export MOLECULE_TOKEN_CACHE_DIR="$cache"
  [ ! -L "$cache" ] || die "$cache is a symlink; refusing to use it as the token cache"
  (umask 077 && mkdir -p "$cache")
  chmod 700 "$cache"

  # Without the root half nobody configured git for this user yet.
  if [ "${MOLECULE_ENTRYPOINT_STAGE:-}" != agent ]; then
    "$helper" configure --global | sed 's/^/entrypoint: /' >&2
  fi

  fallback=${MOLECULE_FALLBACK_TOKEN_FILE:-$cache/fallback-token}
  boot=${GH_TOKEN:-${GITHUB_TOKEN:-}}
  if [ -n "$boot" ]; then
    # printf is a shell builtin: the token never appears in any process's argv.
    (umask 077 && printf '%s\n' "$boot" > "$fallback.tmp.$$" && mv -f "$fallback.tmp.$$" "$fallback")
    log "saved the boot-time token as the fallback ($fallback, mode 0600)"
  fi
  # shellcheck disable=SC2086 # a list of names
  unset boot $token_vars
  # This shell stays for the agent's whole life, and the environment it was started with, the
  # token included, is what /proc/PID/environ shows every process of the agent user. unset
  # does not change that; starting again does.
  export MOLECULE_ENTRYPOINT_STAGE=run
  exec "$self" "$@"
}

# The rest of the agent half, in a process started without the boot token.
run_half() {
  # shellcheck disable=SC2086 # a list of names; none is set unless this stage was forced
  unset MOLECULE_ENTRYPOINT_STAGE $token_vars
  if "$daemon" --once; then
    log "cache and gh primed"
  else
    log "warning: priming failed (exit $?); git fetches on demand and falls back to the boot-time token"
  fi

  start_daemon
  run_agent "$@"
}

# The daemon under the respawn loop, in a session of its own where setsid exists: out of the
# terminal's foreground group (a Ctrl-C meant for the agent would stop it for good) and out of
# reach of a signal sent to this shell's group. This shell stops it (stop_daemon).
start_daemon() {
  if command -v setsid >/dev/null; then
    setsid "$respawn" "$daemon" &
  else
    "$respawn" "$daemon" &
  fi
  keeper=$!
  keeper_stopped_at=
  log "$daemon running under $(basename "$respawn") (pid $keeper)"
}

# Waits, at most a second, until process $1, just forked, runs its own program. Until then it
# is a copy of this shell, whose signal handler would swallow a signal meant for the program;
# its command line changes when it execs. (scripts/respawn.sh has the same.)
await_exec() {
  n=0
  while [ "$n" -lt 100 ] && cmp -s "/proc/$1/cmdline" "/proc/$$/cmdline" 2>/dev/null; do
    sleep 0.01
    n=$((n + 1))
  done
}

# Asks the respawn loop to stop the daemon; once.
stop_daemon() {
  [ -z "$keeper_stopped_at" ] || return 0
  keeper_stopped_at=$(date +%s)
  await_exec "$keeper"
  kill -TERM "$keeper" 2>/dev/null || true
}

# Stops the daemon and waits until it has stopped, at most 10 s from when it was asked; past
# that the respawn loop and the daemon are killed. kill -0 polls: `wait` has no timeout, and a
# foreground sleep lets the shell reap the loop, so a stopped one is not mistaken for alive.
await_daemon() {
  stop_daemon
  deadline=$((keeper_stopped_at + 10))
  while kill -0 "$keeper" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "warning: $daemon did not stop within 10s of SIGTERM; killing it"
      # The whole session when setsid made one; else the loop alone.
      kill -KILL "-$keeper" 2>/dev/null || kill -KILL "$keeper" 2>/dev/null || true
      return 0
    fi
    sleep 0.1
  done
  log "$daemon stopped"
}

# Forwards a signal this shell received to the agent; SIGTERM also stops the daemon. A signal
# that comes before the agent runs is kept for it.
on_signal() {
  [ "$1" != TERM ] || stop_daemon
  if [ -n "$agent" ]; then
    await_exec "$agent"
    kill -"$1" "$agent" 2>/dev/null || true
  else
    pending=$1
  fi
}

# Runs the agent as a child rather than exec'ing it, so that this shell outlives it and can
# stop the daemon afterwards. A non-interactive shell starts a background command with
# /dev/null for stdin and SIGINT and SIGQUIT ignored (POSIX, for shells without job control):
# the agent gets this shell's stdin through fd 9, and its signals back through env. It stays
# in this shell's process group, which tini makes the terminal's foreground group: an agent
# that reads the terminal can.
run_agent() {
  agent=
  pending=
  trap 'on_signal TERM' TERM
  trap 'on_signal HUP' HUP
  trap 'on_signal USR1' USR1
  trap 'on_signal USR2' USR2
  if [ -t 0 ]; then
    # The terminal sends these to its whole foreground group, the agent included: a trap,
    # not an ignore (children would inherit that), keeps this shell alive through them.
    trap : INT QUIT
  else
    trap 'on_signal INT' INT
    trap 'on_signal QUIT' QUIT
  fi
  reset=
  if env --default-signal=INT,QUIT true 2>/dev/null; then
    reset="env --default-signal=INT,QUIT"
  elif [ -t 0 ]; then
    log "warning: env has no --default-signal here; the agent starts with SIGINT and SIGQUIT ignored"
  fi
  if (: <&0) 2>/dev/null; then
    exec 9<&0
    $reset "$@" <&9 9<&- &
    agent=$!
    exec 9<&-
  else
    $reset "$@" &
    agent=$!
  fi
  [ -z "$pending" ] || on_signal "$pending"

  # A trapped signal ends `wait` early (status above 128) while the agent runs on: wait again.
  while :; do
    status=0
    wait "$agent" || status=$?
    kill -0 "$agent" 2>/dev/null || break
  done
  # The last `wait` may have been cut short by a signal just as the agent exited: the shell
  # still holds the agent's own status then (127: it was collected above already).
  last=0
  wait "$agent" 2>/dev/null || last=$?
  [ "$last" = 127 ] || status=$last

  await_daemon
  exit "$status"
}

case ${MOLECULE_ENTRYPOINT_STAGE:-} in
  run) run_half "$@" ;;
  agent) ;;
  *) if [ "$(id -u)" = 0 ] && [ "${MOLECULE_ENTRYPOINT_NO_DROP:-}" != 1 ]; then
       root_half "$@"
     fi ;;
esac
agent_half "$@"

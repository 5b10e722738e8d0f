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
#     while it is set;
#   - `gh-token-refresh --once` to prime the cache and gh;
#   - the daemon under scripts/respawn.sh, in the background;
#   - exec CMD.
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
  unset boot GH_TOKEN GITHUB_TOKEN GH_ENTERPRISE_TOKEN GITHUB_ENTERPRISE_TOKEN MOLECULE_ENTRYPOINT_STAGE

  if "$daemon" --once; then
    log "cache and gh primed"
  else
    log "warning: priming failed (exit $?); git fetches on demand and falls back to the boot-time token"
  fi

  "$respawn" "$daemon" &
  log "$daemon running under $(basename "$respawn") (pid $!)"
  exec "$@"
}

if [ "$(id -u)" = 0 ] && [ "${MOLECULE_ENTRYPOINT_STAGE:-}" != agent ] && [ "${MOLECULE_ENTRYPOINT_NO_DROP:-}" != 1 ]; then
  root_half "$@"
fi
agent_half "$@"

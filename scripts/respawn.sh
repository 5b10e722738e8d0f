#!/bin/sh
# Keeps a daemon running: respawn.sh CMD [ARGS...]
#
# Restarts CMD when it dies. A run shorter than MOLECULE_RESPAWN_HEALTHY_SEC (default 300)
# doubles the delay before the next start, from MOLECULE_RESPAWN_MIN_DELAY_SEC (default 1) up
# to MOLECULE_RESPAWN_MAX_DELAY_SEC (default 300); a healthy run resets it. Exit status 0 means
# CMD stopped on purpose (SIGTERM, or another instance already runs): no restart.
# SIGTERM/SIGINT stop CMD and this loop; SIGHUP is passed on to CMD.
#
# Output goes to this process's stderr (the container's log) unless MOLECULE_RESPAWN_LOG_FILE
# is set: then CMD's output is appended there and the file is rotated (one .1 kept) whenever
# it passes MOLECULE_RESPAWN_LOG_MAX_BYTES (default 1 MiB), checked by a background ticker every
# minute and before each start. Never an ever-growing file.
set -eu

[ $# -gt 0 ] || { echo "usage: respawn.sh CMD [ARGS...]" >&2; exit 64; }
min=${MOLECULE_RESPAWN_MIN_DELAY_SEC:-1}
max=${MOLECULE_RESPAWN_MAX_DELAY_SEC:-300}
healthy=${MOLECULE_RESPAWN_HEALTHY_SEC:-300}
logfile=${MOLECULE_RESPAWN_LOG_FILE:-}
logmax=${MOLECULE_RESPAWN_LOG_MAX_BYTES:-1048576}
name=$(basename "$1")
delay=$min
child=
ticker=
sleeper=
stopping=

say() { printf '%s respawn: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }

rotate() {
  [ -n "$logfile" ] && [ -f "$logfile" ] || return 0
  size=$(wc -c < "$logfile")
  if [ "$size" -gt "$logmax" ]; then
    # Copy then truncate: CMD keeps its O_APPEND descriptor and goes on writing at the new end.
    cp -f "$logfile" "$logfile.1" && : > "$logfile"
  fi
}

# Waits, at most a second, until process $1, just forked, runs its own program. Until then it
# is a copy of this shell, whose signal handler would swallow a signal meant for the program;
# its command line changes when it execs. (scripts/entrypoint.sh has the same.)
await_exec() {
  n=0
  while [ "$n" -lt 100 ] && cmp -s "/proc/$1/cmdline" "/proc/$$/cmdline" 2>/dev/null; do
    sleep 0.01
    n=$((n + 1))
  done
}

# Ends the loop: CMD gets SIGTERM and is waited for. A signal that comes while no CMD runs is
# noted and the loop ends at its next step; so is one that comes in the instant between
# starting CMD and knowing its pid (a shell runs traps between commands), after which the loop
# calls this again, with the pid.
stop() {
  stopping=1
  [ -z "$ticker" ] || kill "$ticker" 2>/dev/null || true
  [ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null || true
  [ -n "$child" ] || return 0
  trap - TERM INT
  if kill -0 "$child" 2>/dev/null; then
    await_exec "$child"
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  exit 0
}
trap stop TERM INT
trap '[ -z "$child" ] || { await_exec "$child"; kill -HUP "$child" 2>/dev/null || true; }' HUP

# Waits for CMD; a trapped signal interrupts `wait`, so wait again while CMD lives.
await() {
  while :; do
    status=0
    wait "$child" || status=$?
    if ! kill -0 "$child" 2>/dev/null; then
      return "$status"
    fi
  done
}

if [ -n "$logfile" ]; then
  # Without a log file nothing here wakes up between restarts.
  # It ends with this loop, however this loop ends ($$ is this loop's pid in the subshell too).
  (trap - TERM INT HUP; while sleep 60 && kill -0 $$ 2>/dev/null; do rotate; done) &
  ticker=$!
fi

while :; do
  [ -z "$stopping" ] || exit 0
  rotate
  started=$(date +%s)
  if [ -n "$logfile" ]; then
    "$@" >> "$logfile" 2>&1 &
  else
    "$@" &
  fi
  child=$!
  [ -z "$stopping" ] || stop
  status=0
  await || status=$?
  child=
  ran=$(( $(date +%s) - started ))
  if [ "$status" -eq 0 ]; then
    say "$name exited cleanly after ${ran}s; not restarting"
    [ -z "$ticker" ] || kill "$ticker" 2>/dev/null || true
    exit 0
  fi
  [ "$ran" -lt "$healthy" ] || delay=$min
  say "$name exited with status $status after ${ran}s; restarting in ${delay}s"
  sleep "$delay" &
  sleeper=$!
  wait "$sleeper" || true
  sleeper=
  if [ "$ran" -lt "$healthy" ]; then
    delay=$(( delay * 2 ))
    [ "$delay" -le "$max" ] || delay=$max
  fi
done

#!/bin/sh
# Installs git-credential-molecule and gh-token-refresh, then makes git use the helper.
#
#   scripts/install.sh [--prefix DIR] [--from DIR] [--static|--dynamic]
#                      [--global|--system|--file PATH|--no-configure]
#
#   --prefix DIR   install into DIR/bin (default /usr/local as root, else ~/.local): both
#                  binaries, and the container scripts as molecule-entrypoint and
#                  molecule-respawn, as every release artifact installs them
#   --from DIR     take already built binaries from DIR instead of building
#   --static       build static musl binaries (the default when the musl target and musl-gcc
#                  are installed): the fastest start, ~0.5 ms less per git credential lookup
#                  than a dynamic glibc build
#   --dynamic      build what a plain `cargo build --release` gives (dynamic glibc); without
#                  either flag and without musl, a static glibc build (~0.3 ms faster to start;
#                  glibc >= 2.34 resolves hosts and DNS without loading NSS modules)
#   --global | --system | --file PATH | --no-configure
#                  where configure writes (default: --system as root, else --global)
#
# Safe to re-run: files are replaced atomically and configure is idempotent.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" = 0 ]; then prefix=/usr/local; scope=--system; else prefix=$HOME/.local; scope=--global; fi
from=''
link=auto
scope_arg=''
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) prefix=$2; shift 2 ;;
    --from) from=$2; shift 2 ;;
    --static) link=static; shift ;;
    --dynamic) link=dynamic; shift ;;
    --global|--system|--no-configure) scope=$1; shift ;;
    --file) scope=--file; scope_arg=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
done
bins="git-credential-molecule gh-token-refresh"

if [ -z "$from" ]; then
  musl=x86_64-unknown-linux-musl
  have_musl=no
  if rustup target list --installed 2>/dev/null | grep -qx "$musl" && command -v musl-gcc >/dev/null; then
    have_musl=yes
  fi
  [ "$link" != static ] || [ "$have_musl" = yes ] || {
    echo "install.sh: --static needs 'rustup target add $musl' and musl-gcc (apt-get install musl-tools)" >&2; exit 1; }
  if [ "$link" = static ] || { [ "$link" = auto ] && [ "$have_musl" = yes ]; }; then
    echo "install.sh: building static (musl) release binaries"
    (cd "$root" && CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked --target "$musl" \
      -p git-credential-molecule -p gh-token-refresh)
    from=$root/target/$musl/release
  elif [ "$link" = auto ] && host=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p') \
       && case $host in *-linux-gnu) true ;; *) false ;; esac; then
    # crt-static needs an explicit --target: applied to the host build it would also reach
    # cargo's proc-macros, which cannot be static.
    echo "install.sh: building static (glibc) release binaries"
    (cd "$root" && RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" cargo build --release --locked \
      --target "$host" -p git-credential-molecule -p gh-token-refresh)
    from=$root/target/$host/release
  else
    echo "install.sh: building release binaries"
    (cd "$root" && cargo build --release --locked -p git-credential-molecule -p gh-token-refresh)
    from=$root/target/release
  fi
fi

mkdir -p "$prefix/bin"
# Copies beside, then renames: a running binary is never overwritten in place.
put() { cp "$1" "$prefix/bin/.$2.new" && chmod 0755 "$prefix/bin/.$2.new" && mv -f "$prefix/bin/.$2.new" "$prefix/bin/$2"; }
for b in $bins; do
  [ -x "$from/$b" ] || { echo "install.sh: $from/$b is missing" >&2; exit 1; }
  put "$from/$b" "$b"
done
put "$root/scripts/entrypoint.sh" molecule-entrypoint
put "$root/scripts/respawn.sh" molecule-respawn
echo "install.sh: installed $bins, molecule-entrypoint and molecule-respawn into $prefix/bin"

[ "$scope" != --no-configure ] || exit 0
# Started by its installed path, configure registers that path: git finds the helper whatever
# its caller's PATH, and starts it without a second git process. The path stays valid across
# re-installs, which rename a new file over it.
if [ "$scope" = --file ]; then
  "$prefix/bin/git-credential-molecule" configure --file "$scope_arg"
else
  "$prefix/bin/git-credential-molecule" configure "$scope"
fi

#!/usr/bin/env bash
# The benchmark suite: one run, one table, every figure beside its target and its peer.
#
#   scripts/bench.sh [--quick]
#
# Builds release binaries (a plain `cargo build --release`; the release artifacts with
# scripts/release.sh, whose archive's helper is measured beside it; and a static musl build
# when the musl target and musl-gcc are installed, as install.sh and the Dockerfile build it), then runs
# molecule-bench: (a) git credential fill beside git's credential-store, credential-cache and
# gh; (b) the helper run directly; (c) a cold get from a loopback platform; (d) a 64-process
# stampede; (e) the daemon idle for 60 s; (f) the fleet simulation. --quick cuts the runs and
# the idle time for a smoke test. Needs git; gh is measured when installed. Loopback only.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=300 idle=60 trials=20
if [ "${1:-}" = --quick ]; then runs=30 idle=5 trials=3; fi

# The subject is what a plain `cargo build --release` gives (glibc, dynamic). The static musl
# build that install.sh and the Dockerfile ship is measured beside it when its target and
# musl-gcc are installed.
cargo build --quiet --release --locked
bins=$root/target/release
build="builds: plain cargo build --release (glibc)"
static_args=""
musl=x86_64-unknown-linux-musl
if rustup target list --installed 2>/dev/null | grep -qx "$musl" && command -v musl-gcc >/dev/null; then
  echo "bench.sh: also building static (musl) release binaries" >&2
  CC_x86_64_unknown_linux_musl=musl-gcc cargo build --quiet --release --locked --target "$musl" \
    -p git-credential-molecule
  static_args="--static-helper $root/target/$musl/release/git-credential-molecule"
  build="$build, static musl"
else
  echo "bench.sh: no static musl build (rustup target add $musl; apt-get install musl-tools)" >&2
fi
# The released binary: the helper in the archive scripts/release.sh builds (static), as a
# user unpacks it.
echo "bench.sh: building the release artifacts (scripts/release.sh)" >&2
dist=$root/target/release-dist
scripts/release.sh --allow-dirty --out "$dist" >&2
tarball=$(find "$dist" -maxdepth 1 -name 'molecule-credential-*.tar.gz' | sort | head -n1)
unpacked=$root/target/bench-released
rm -rf "$unpacked" && mkdir -p "$unpacked"
tar -xzf "$tarball" -C "$unpacked"
released=$(find "$unpacked" -path '*/bin/git-credential-molecule')
static_args="$static_args --released-helper $released"
build="$build, the released archive's helper ($(basename "$tarball" .tar.gz))"
cargo build --quiet --release --locked -p molecule-bench

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
mem=$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
echo "Hardware: ${cpu:-unknown CPU}, $(nproc) cores, $mem RAM, Linux $(uname -r); git $(git --version | cut -d' ' -f3)$(command -v gh >/dev/null && gh --version | head -n1 | sed 's/gh version \([^ ]*\).*/, gh \1/'); $build; $(date -u +%Y-%m-%d)"
echo "Command: scripts/bench.sh $*"
echo
# shellcheck disable=SC2086 # static_args: flags and paths without spaces
"$root/target/release/molecule-bench" --helper "$bins/git-credential-molecule" --daemon "$bins/gh-token-refresh" \
  --runs "$runs" --idle-secs "$idle" --trials "$trials" $static_args

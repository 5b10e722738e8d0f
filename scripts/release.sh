#!/usr/bin/env bash
# Builds the release artifacts (DESIGN.md, "Releases") from this checkout's HEAD:
#
#   scripts/release.sh [--out DIR] [--allow-dirty]
#
#   --out DIR       where the artifacts go (default dist/); earlier artifacts there are replaced
#   --allow-dirty   build even though tracked files differ from HEAD (the commit in
#                   `--version` is then marked -dirty); scripts/test.sh uses it
#
# Into DIR:
#   molecule-credential-VERSION-TARGET.tar.gz  for each Linux target of this machine's
#       architecture whose standard library is installed (static musl needs musl-gcc too).
#       A prefix: bin/ (both binaries, static; molecule-entrypoint, molecule-respawn),
#       share/man/man1, share/{bash-completion,zsh,fish}, share/doc/molecule-credential
#       (README.md, LICENSE-MIT, LICENSE-APACHE, CHANGELOG.md), so that
#       `tar -xzf … -C /usr/local --strip-components=1` installs it.
#   molecule-credential_VERSION-1_ARCH.deb     cargo-deb, from packaging/Cargo.toml
#   molecule_credential-VERSION-py3-none-….whl maturin, from packaging/pyproject.toml
#   SHA256SUMS                                 over all of them
# The .deb and the wheel hold the first target's build (musl when it was built, else glibc):
# the very files its archive holds.
#
# Reproducible: the same commit gives the same bytes wherever it is checked out.
# SOURCE_DATE_EPOCH is the commit's time; rustc maps the checkout and CARGO_HOME to fixed
# names; archive members are sorted, owned by 0:0, dated SOURCE_DATE_EPOCH; gzip -n. cargo-deb
# and maturin date their members SOURCE_DATE_EPOCH (checked by building twice).
#
# Offline apart from the package registries: cargo fetches the locked crates, and the pinned
# tools below are installed on first use into $MOLECULE_RELEASE_TOOLS (default
# ~/.cache/molecule-release): cargo-deb with `cargo install --locked`, maturin with pip into
# a venv.
set -euo pipefail

# The pinned packaging tools: the one list.
CARGO_DEB_VERSION=3.8.0
MATURIN_VERSION=1.16.0
WHEEL_VERSION=0.48.0
# The wheel's platform tags: the binaries are static, so any glibc or musl Linux of the
# architecture runs them. maturin tags a gnu-target build manylinux (2_17: Rust's own glibc
# floor) and refuses to add musllinux to it; `wheel tags` adds it after.
MANYLINUX=manylinux_2_17
MUSLLINUX=musllinux_1_1

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=$root/dist
allow_dirty=no
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --allow-dirty) allow_dirty=yes; shift ;;
    -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "release.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
done
say() { printf 'release.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# --- what is built, and from what ----------------------------------------------------------
commit=$(git rev-parse --short=12 HEAD)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  [ "$allow_dirty" = yes ] || die "tracked files differ from HEAD; commit them, or pass --allow-dirty"
  commit=$commit-dirty
fi
version=$(cargo metadata --format-version 1 --no-deps --locked \
  | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "git-credential-molecule"))')
host=$(rustc -vV | sed -n 's/^host: //p')
arch=${host%%-*}
installed=$(rustup target list --installed 2>/dev/null || echo "$host")
targets=()
for t in "$arch-unknown-linux-musl" "$arch-unknown-linux-gnu"; do
  grep -qx "$t" <<< "$installed" || continue
  if [ "${t##*-}" = musl ] && ! command -v musl-gcc >/dev/null; then
    say "skipping $t: its standard library is installed, musl-gcc is not (apt-get install musl-tools)"
    continue
  fi
  targets+=("$t")
done
[ ${#targets[@]} -gt 0 ] || die "no Linux standard library for $arch is installed (rustup target add $arch-unknown-linux-gnu)"

# --- the environment every build runs in ---------------------------------------------------
export SOURCE_DATE_EPOCH
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct HEAD)
export TZ=UTC LC_ALL=C CARGO_TARGET_DIR=$root/target
umask 022
# Flags come from here alone: anything inherited would make another build's bytes.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS
cargo_home=${CARGO_HOME:-$HOME/.cargo}
# crt-static with an explicit --target: static-pie binaries (the C runtime linked in), while
# build scripts and proc-macros, built for the host, stay dynamic as they must. The target
# directory is inside the checkout, so one mapping covers the sources and OUT_DIR.
rustflags="-C target-feature=+crt-static --remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$root=/build"
stage=$root/target/dist-stage
rm -rf "$stage"
mkdir -p "$stage" "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/molecule-credential-*.tar.gz "$out"/molecule-credential_*.deb \
      "$out"/molecule_credential-*.whl "$out/SHA256SUMS"

# --- the pinned tools -----------------------------------------------------------------------
tools=${MOLECULE_RELEASE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/molecule-release}
cargo_deb=$tools/cargo-deb-$CARGO_DEB_VERSION/bin/cargo-deb
if [ ! -x "$cargo_deb" ]; then
  say "installing cargo-deb $CARGO_DEB_VERSION into $tools (once)"
  cargo install --quiet --locked --version "$CARGO_DEB_VERSION" \
    --root "$tools/cargo-deb-$CARGO_DEB_VERSION" cargo-deb
fi
venv=$tools/maturin-$MATURIN_VERSION-wheel-$WHEEL_VERSION
if [ ! -x "$venv/bin/maturin" ] || [ ! -x "$venv/bin/wheel" ]; then
  say "installing maturin $MATURIN_VERSION and wheel $WHEEL_VERSION into $venv (once)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "maturin==$MATURIN_VERSION" "wheel==$WHEEL_VERSION"
fi

# A static, position-independent executable: no program interpreter, no shared library.
# (lintian rejects a static binary that is not PIE.)
check_static() {
  local elf
  elf=$(readelf -hldW "$1")
  grep -Eq '^ +Type: +DYN ' <<< "$elf" || die "$1 is not position-independent"
  ! grep -q 'Requesting program interpreter' <<< "$elf" || die "$1 is dynamically linked"
  ! grep -q '(NEEDED)' <<< "$elf" || die "$1 needs shared libraries"
}

# The environment of target $1's build, in build_env: the flags, the commit for `--version`,
# and for musl, musl's C compiler (ring's C code).
build_env() {
  build_env=(RUSTFLAGS="$rustflags" MOLECULE_BUILD_COMMIT="$commit")
  [ "${1##*-}" != musl ] || build_env+=("CC_${1//-/_}=musl-gcc")
}

# Writes the archive tree for target $1 into $stage/NAME and prints NAME.
stage_target() {
  local t=$1 name bins tree b sh
  name=molecule-credential-$version-$t
  bins=$CARGO_TARGET_DIR/$t/release
  tree=$stage/$name
  say "building $t (static)"
  build_env "$t"
  # Each binary in a cargo run of its own, so that its dependencies' features are its own:
  # built together, the helper would get the daemon's (hyper's server, for the metrics
  # listener), and maturin, which builds the helper alone, would build other bytes.
  env "${build_env[@]}" cargo build --quiet --release --locked --target "$t" -p git-credential-molecule
  env "${build_env[@]}" cargo build --quiet --release --locked --target "$t" -p gh-token-refresh
  if [ ! -d "$stage/man" ]; then
    # The man pages, once: molecule-man (packaging/) renders them from the binaries' clap
    # definitions. Built like the binaries, in a cargo run of its own (the product's build
    # stays exactly the two packages), it reuses every dependency they compiled.
    say "man pages (packaging/: molecule-man)"
    env "${build_env[@]}" cargo build --quiet --release --locked --target "$t" -p molecule-packaging
    "$bins/molecule-man" --out "$stage/man" --date "$(date -u -d "@$SOURCE_DATE_EPOCH" +%F)" > /dev/null
    gzip -9n "$stage"/man/*.1
  fi
  mkdir -p "$tree/bin" "$tree/share/man/man1" "$tree/share/bash-completion/completions" \
    "$tree/share/zsh/site-functions" "$tree/share/fish/vendor_completions.d" \
    "$tree/share/doc/molecule-credential"
  for b in git-credential-molecule gh-token-refresh; do
    check_static "$bins/$b"
    install -m 755 "$bins/$b" "$tree/bin/$b"
    # Completions as the binary itself prints them (`completions SHELL`).
    "$tree/bin/$b" completions bash > "$tree/share/bash-completion/completions/$b"
    "$tree/bin/$b" completions zsh > "$tree/share/zsh/site-functions/_$b"
    "$tree/bin/$b" completions fish > "$tree/share/fish/vendor_completions.d/$b.fish"
  done
  for sh in entrypoint respawn; do
    install -m 755 "scripts/$sh.sh" "$tree/bin/molecule-$sh"
  done
  install -m 644 "$stage"/man/*.1.gz "$tree/share/man/man1/"
  install -m 644 README.md LICENSE-MIT LICENSE-APACHE CHANGELOG.md "$tree/share/doc/molecule-credential/"
  find "$tree/share" -type f -exec chmod 644 {} +
  echo "$name"
}

archive() {
  tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    --mode='u=rwX,go=rX' --format=gnu -C "$stage" -cf - "$1" | gzip -9n > "$out/$1.tar.gz"
}

first=''
for t in "${targets[@]}"; do
  name=$(stage_target "$t")
  archive "$name"
  [ -n "$first" ] || first=$t
done
primary=$stage/molecule-credential-$version-$first

# --- the .deb and the wheel, from the first target's tree ----------------------------------
# packaging/Cargo.toml and packaging/pyproject.toml name these paths.
cp -a "$primary" "$stage/tree"
mkdir -p "$stage/wheel-data/scripts" "$stage/wheel-data/data"
cp -a "$primary"/bin/gh-token-refresh "$primary"/bin/molecule-entrypoint \
  "$primary"/bin/molecule-respawn "$stage/wheel-data/scripts/"
cp -a "$primary/share" "$stage/wheel-data/data/"

say "the .deb (cargo-deb $CARGO_DEB_VERSION)"
maintainer=$(sed -n 's/^maintainer = "\(.*\)"$/\1/p' packaging/Cargo.toml)
cat > "$stage/debian-changelog" <<EOF
molecule-credential ($version-1) unstable; urgency=medium

  * Release $version (commit $commit): see
    /usr/share/doc/molecule-credential/changelog.gz.

 -- $maintainer  $(date -u -R -d "@$SOURCE_DATE_EPOCH")
EOF
"$cargo_deb" --quiet --no-build --no-strip --locked --target "$first" -p molecule-packaging \
  --output "$out/"

say "the wheel (maturin $MATURIN_VERSION)"
# maturin runs cargo for the helper with the same flags: cargo finds it built and current.
build_env "$first"
# maturin tags the build for its own C library; `wheel tags` adds the other (static binaries
# need neither).
case $first in
  *-linux-musl) own=$MUSLLINUX other=$MANYLINUX ;;
  *) own=$MANYLINUX other=$MUSLLINUX ;;
esac
wheels=$stage/wheels
(cd packaging && env "${build_env[@]}" "$venv/bin/maturin" build --quiet --release --locked \
  --target "$first" --compatibility "$own" --out "$wheels")
wheel=$(echo "$wheels"/*.whl)
[ -f "$wheel" ] || die "maturin wrote no single wheel into $wheels"
"$venv/bin/wheel" tags --remove --platform-tag "+${other}_$arch" "$wheel" > /dev/null
wheel=$(echo "$wheels"/*.whl)
# Ship what the archive holds: had maturin built the helper again, the bytes would differ.
python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
    "$wheel" "molecule_credential-$version.data/scripts/git-credential-molecule" \
  | cmp -s - "$primary/bin/git-credential-molecule" \
  || die "the wheel's git-credential-molecule is not the archive's"
mv "$wheel" "$out/"

# --- SHA256SUMS ------------------------------------------------------------------------------
(cd "$out" && find . -maxdepth 1 -type f \( -name 'molecule-credential-*.tar.gz' \
  -o -name 'molecule-credential_*.deb' -o -name 'molecule_credential-*.whl' \) -printf '%f\n' \
  | sort | xargs sha256sum -- > SHA256SUMS)
say "done: $out (commit $commit, SOURCE_DATE_EPOCH $SOURCE_DATE_EPOCH)"
sed 's/^/  /' "$out/SHA256SUMS" >&2

#!/usr/bin/env bash
# The README's "run all tests" command: every Rust test (unit, integration with real git and
# real gh against local servers, the release artifacts built and installed, the shipped image
# built and run, the Kubernetes pod simulated), shellcheck on every script, the deployment
# files against their validators, and the demo with short-lived tokens.
#
# As root it first installs what the tests need (scripts/test-deps.txt: the one list), and
# runs everything. As any other user it installs nothing, runs every test it can, and names
# at the end each test it skipped and why (tests/support/skip.rs). Never silent.
#
# Environment: DEMO_TTL_SECS, DEMO_ROTATIONS (the demo), SOAK_SECS (the soak test).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# Where every skipped test is named, by the Rust tests (molecule_tests::skip) and by the steps
# below alike. Printed when this script ends, however it ends.
export MOLECULE_SKIP_FILE="$root/target/skipped-tests.txt"
reports=$root/target/test-reports
mkdir -p "$root/target"
: > "$MOLECULE_SKIP_FILE"
rm -rf "$reports"
skip() { printf '%s: %s\n' "$1" "$2" >> "$MOLECULE_SKIP_FILE"; }
have() { command -v "$1" >/dev/null; }
is_root() { [ "$(id -u)" = 0 ]; }
summary() {
  status=$?
  n=$(grep -c . "$MOLECULE_SKIP_FILE" 2>/dev/null || true)
  echo "== skipped: ${n:-0} =="
  if [ "${n:-0}" = 0 ]; then
    echo "skipped: none"
  else
    sed 's/^/  /' "$MOLECULE_SKIP_FILE"
  fi
  exit "$status"
}
trap summary EXIT

# The pinned Python tools live in one venv, kept between runs (CI clones afresh each time).
venv=/var/cache/molecule-tests/pip-venv
deps() { sed -e 's/#.*//' scripts/test-deps.txt | awk -v kind="$1" '$1 == kind { print $2 }'; }

install_deps() {
  local missing=() pkg
  for pkg in $(deps apt); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' \
      || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing (apt): ${missing[*]} =="
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  local pins
  pins=$(deps pip | sort | tr '\n' ' ')
  if [ -n "$pins" ] && [ "$(cat "$venv/pins" 2>/dev/null)" != "$pins" ]; then
    echo "== installing (pip, into $venv): $pins=="
    rm -rf "$venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086  # one word per pin
    "$venv/bin/pip" install --quiet --disable-pip-version-check $pins
    printf '%s' "$pins" > "$venv/pins"
  fi
}

if is_root; then
  install_deps
else
  echo "== not root: installing nothing; tests that need root or a missing tool are skipped and named at the end =="
fi

echo "== shellcheck =="
if have shellcheck; then
  # shellcheck disable=SC2046
  shellcheck $(git ls-files '*.sh' '.ci/run')
  echo "shellcheck: $(git ls-files '*.sh' '.ci/run' | wc -l) scripts clean"
else
  skip "shellcheck" "shellcheck is not installed (scripts/test.sh installs it when run as root)"
fi

echo "== deployment files: docker/kubernetes (kubernetes-validate, and the CRDs of custom resources), docker/systemd (systemd-analyze) =="
validator=$venv/bin/kubernetes-validate
if [ -x "$validator" ]; then
  # --strict: an unknown field is an error, not ignored. Against the oldest Kubernetes the
  # manifests claim (native sidecars: 1.29) and the validator's default, the newest it
  # bundles. Offline: as root in a network namespace with nothing in it, proving the schemas
  # come with the package.
  offline=()
  if is_root && have unshare; then offline=(unshare -n); fi
  # A kind the validator has no schema for only warns, and passes: any such warning fails
  # here, but for custom resources (an API group with a dot, not *.k8s.io), which are
  # validated against their CRDs below.
  k8s_validate() {
    local out
    out=$("${offline[@]}" "$validator" --strict "$@" docker/kubernetes/*.yaml) || { echo "$out"; return 1; }
    echo "$out"
    if printf '%s\n' "$out" | grep '^WARN' \
        | grep -Ev "Couldn't find schema for kind [A-Za-z]+ with api version [a-z0-9-]+(\.[a-z0-9-]+)+/" \
        | grep -v '\.k8s\.io/' | grep .; then
      echo "kubernetes-validate has no schema for the resources above: none was checked"
      return 1
    fi
  }
  k8s_validate --kubernetes-version 1.29
  k8s_validate
  # Custom resources (External Secrets Operator's, the prometheus-operator's PodMonitor)
  # against their CRDs, strictly; the CRDs are committed as test data (tests/fixtures/README.md
  # says where each comes from).
  "${offline[@]}" "$venv/bin/python3" scripts/check-custom-resources.py tests/fixtures/crds docker/kubernetes/*.yaml
else
  skip "kubernetes-validate" "the pinned validator is not installed in $venv (scripts/test.sh installs it when run as root)"
fi
if have systemd-analyze; then
  # The unit as its user would install it, checked by a user manager (--user; it needs a
  # runtime directory). verify also checks that ExecStart= binaries exist: give it a home
  # holding the one it names (any executable will do for that check).
  unit_home=$(mktemp -d)
  mkdir -p "$unit_home/.local/bin" "$unit_home/run"
  chmod 700 "$unit_home/run"
  ln -s /bin/true "$unit_home/.local/bin/gh-token-refresh"
  out=$(HOME=$unit_home XDG_RUNTIME_DIR=$unit_home/run \
        systemd-analyze --user verify --man=no docker/systemd/gh-token-refresh.service 2>&1) \
    || { echo "$out"; rm -rf "$unit_home"; exit 1; }
  rm -rf "$unit_home"
  # Any message at all (an unknown key, a bad value) is a finding.
  [ -z "$out" ] || { echo "$out"; echo "systemd-analyze verify: not clean"; exit 1; }
  echo "systemd-analyze verify ($(systemd-analyze --version | head -n1)): clean"
else
  skip "systemd-analyze verify" "systemd is not installed (scripts/test.sh installs it when run as root)"
fi

# The release artifacts (scripts/release.sh: the archive, the .deb, the wheel, SHA256SUMS),
# built once, in the open: the artifact tests install them, and the image and pod tests ship
# their static binaries (docker/Dockerfile's prebuilt mode). release.sh installs its pinned
# packaging tools on first use (into ~/.cache/molecule-release).
echo "== scripts/release.sh (the artifacts the release, image and pod tests use) =="
release_started=$(date +%s)
if scripts/release.sh --allow-dirty --out "$root/target/release-dist"; then
  export MOLECULE_RELEASE_DIST="$root/target/release-dist"
elif is_root; then
  echo "scripts/release.sh failed"; exit 1
else
  # Without root nothing is installed: release.sh needs python3-venv and the package
  # registries for its pinned tools. The tests of the artifacts are then skipped, by name.
  MOLECULE_RELEASE_UNAVAILABLE="scripts/release.sh failed as $(id -un) (it needs python3-venv and the package registries; scripts/test.sh as root installs what it needs)"
  export MOLECULE_RELEASE_UNAVAILABLE
fi
echo "release build: $(( $(date +%s) - release_started ))s"

echo "== cargo test =="
cargo test --workspace --locked
# Tests report what they measured here (libtest hides a passing test's output).
if [ -d "$reports" ]; then
  for f in "$reports"/*.txt; do
    [ -f "$f" ] || continue
    echo "-- $(basename "$f" .txt) --"
    cat "$f"
  done
fi

echo "== demo (short-lived tokens) =="
DEMO_TTL_SECS=${DEMO_TTL_SECS:-6} DEMO_ROTATIONS=${DEMO_ROTATIONS:-3} timeout 300 scripts/demo.sh

//! The release artifacts (DESIGN.md, "Releases"), as `scripts/release.sh` builds them, and
//! the tests of the artifacts themselves: the four files and their checksums, the same bytes
//! from two clones at two paths, static binaries that say what they are, the same files in
//! every artifact, completions that load and man pages that render.
//!
//! Built once per run: `scripts/test.sh` runs `scripts/release.sh --allow-dirty --out
//! target/release-dist` before `cargo test` and names the directory in
//! `MOLECULE_RELEASE_DIST`; a test run without it (one test by hand) runs release.sh itself,
//! once per test process, into the same directory. The image tests' `prebuilt` binaries are
//! the same build (target/TARGET/release/).
//!
//! What installs each artifact with its one line lives with the test of that place: `deb`
//! (a clean Debian root), `wheel` (a venv), `dns` (the archive's binaries in an empty root),
//! `template` (the Dockerfile's `binaries` stage in another image).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use molecule_tests::skip;

use crate::support::{output_within, report, root, run_ok};

/// Set by scripts/test.sh (and passed into network namespaces): the directory release.sh
/// wrote the artifacts into.
pub const DIST_VAR: &str = "MOLECULE_RELEASE_DIST";
/// The binaries, scripts and the rest, as every artifact installs them.
pub const BINARIES: [&str; 2] = ["git-credential-molecule", "gh-token-refresh"];
pub const SCRIPTS: [&str; 2] = ["molecule-entrypoint", "molecule-respawn"];

/// One release.sh run's output.
#[derive(Debug)]
pub struct Dist {
    pub dir: PathBuf,
    pub version: String,
    /// The target the .deb and the wheel hold (the first archive's).
    pub target: String,
    /// HEAD's short hash, which `--version` names (marked `-dirty` when the tree was, as
    /// scripts/test.sh builds it).
    pub commit: String,
}

impl Dist {
    fn at(dir: PathBuf) -> Dist {
        let sums = std::fs::read_to_string(dir.join("SHA256SUMS"))
            .unwrap_or_else(|e| panic!("{}/SHA256SUMS: {e}", dir.display()));
        let tarball = sums
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .find(|f| f.starts_with("molecule-credential-") && f.ends_with(".tar.gz"))
            .expect("SHA256SUMS names an archive")
            .to_owned();
        let rest = tarball
            .trim_start_matches("molecule-credential-")
            .trim_end_matches(".tar.gz");
        let (version, target) = rest.split_once('-').expect("VERSION-TARGET");
        Dist {
            version: version.to_owned(),
            target: target.to_owned(),
            commit: git_out(&root(), &["rev-parse", "--short=12", "HEAD"]),
            dir,
        }
    }

    /// Every artifact SHA256SUMS names, in its order.
    pub fn files(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("SHA256SUMS"))
            .unwrap()
            .lines()
            .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
            .collect()
    }

    fn named(&self, pred: impl Fn(&str) -> bool, what: &str) -> PathBuf {
        let found: Vec<String> = self.files().into_iter().filter(|f| pred(f)).collect();
        assert_eq!(
            found.len(),
            1,
            "one {what} in {}: {found:?}",
            self.dir.display()
        );
        self.dir.join(&found[0])
    }

    pub fn tarball(&self) -> PathBuf {
        let name = format!(
            "molecule-credential-{}-{}.tar.gz",
            self.version, self.target
        );
        self.named(|f| f == name, "archive")
    }

    pub fn deb(&self) -> PathBuf {
        let prefix = format!("molecule-credential_{}-1_", self.version);
        self.named(|f| f.starts_with(&prefix) && f.ends_with(".deb"), ".deb")
    }

    pub fn wheel(&self) -> PathBuf {
        let prefix = format!("molecule_credential-{}-py3-none-", self.version);
        self.named(|f| f.starts_with(&prefix) && f.ends_with(".whl"), "wheel")
    }

    /// The archive unpacked into `into` (`tar -xzf`); returns its top directory.
    pub fn unpack(&self, into: &Path) -> PathBuf {
        run_ok(
            Command::new("tar")
                .arg("-xzf")
                .arg(self.tarball())
                .arg("-C")
                .arg(into),
            Duration::from_secs(60),
        );
        into.join(format!(
            "molecule-credential-{}-{}",
            self.version, self.target
        ))
    }

    /// The static binaries the image's `prebuilt` mode copies, relative to the repository
    /// (`MOLECULE_PREBUILT_DIR`): release.sh's build, the archive's bytes.
    pub fn prebuilt_dir(&self) -> String {
        format!("target/{}/release", self.target)
    }
}

/// What `c` prints on stdout; it must succeed within `timeout`.
fn stdout_ok(c: &mut Command, timeout: Duration) -> String {
    String::from_utf8(run_ok(c, timeout).stdout).unwrap()
}

/// What `git args…` prints in `repo`, trimmed.
fn git_out(repo: &Path, args: &[&str]) -> String {
    stdout_ok(
        Command::new("git").current_dir(repo).args(args),
        Duration::from_secs(30),
    )
    .trim()
    .to_owned()
}

/// Whether this checkout's tracked files differ from HEAD (release.sh then marks the commit
/// `-dirty`, and a fresh clone cannot reproduce its bytes).
fn is_dirty() -> bool {
    !git_out(&root(), &["status", "--porcelain", "--untracked-files=no"]).is_empty()
}

/// The artifacts of this checkout: scripts/test.sh's, or built here once.
pub fn dist() -> &'static Dist {
    static DIST: OnceLock<Dist> = OnceLock::new();
    DIST.get_or_init(|| {
        if let Some(dir) = molecule_credential::config::process_env(DIST_VAR) {
            return Dist::at(PathBuf::from(dir));
        }
        let dir = root().join("target/release-dist");
        let started = Instant::now();
        release_sh(&root(), &dir, &["--allow-dirty"], false);
        report(
            "release-build",
            &format!(
                "scripts/release.sh --allow-dirty (run by the tests): {:.0}s",
                started.elapsed().as_secs_f64()
            ),
        );
        Dist::at(dir)
    })
}

/// Runs `checkout`'s scripts/release.sh into `out` with `args`, bounded (a cold build of
/// everything takes minutes on two cores). `niced`: at the lowest CPU priority, for a clone's
/// cold build that runs beside the tests whose tokens live six seconds and must not starve
/// them.
pub fn release_sh(checkout: &Path, out: &Path, args: &[&str], niced: bool) {
    let script = checkout.join("scripts/release.sh");
    let mut c = if niced {
        let mut c = Command::new("nice");
        c.args(["-n", "19"]).arg(&script);
        c
    } else {
        Command::new(&script)
    };
    run_ok(
        c.current_dir(checkout).arg("--out").arg(out).args(args),
        Duration::from_secs(2400),
    );
}

/// Tools every artifact test needs.
pub const TOOLS: &[&str] = &["tar", "sha256sum", "readelf", "python3"];

/// Set by scripts/test.sh, run without root, when release.sh could not build: why.
pub const UNAVAILABLE_VAR: &str = "MOLECULE_RELEASE_UNAVAILABLE";

/// Whether a test of the artifacts can run here; records the skip otherwise.
pub fn available(test: &str) -> bool {
    if let Some(why) = molecule_credential::config::process_env(UNAVAILABLE_VAR) {
        skip::skip(test, &why);
        return false;
    }
    skip::require_tools(test, TOOLS)
}

/// The ELF facts of `bin` that make it run in any root filesystem: position-independent
/// (`Type: DYN`), no program interpreter, no shared library.
pub fn assert_static_pie(bin: &Path) {
    let out = run_ok(
        Command::new("readelf").arg("-hldW").arg(bin),
        Duration::from_secs(30),
    );
    let elf = String::from_utf8_lossy(&out.stdout);
    assert!(
        elf.lines()
            .any(|l| l.trim_start().starts_with("Type:") && l.contains("DYN")),
        "{} is not position-independent",
        bin.display()
    );
    assert!(
        !elf.contains("Requesting program interpreter"),
        "{} names a program interpreter",
        bin.display()
    );
    assert!(
        !elf.contains("(NEEDED)"),
        "{} needs a shared library",
        bin.display()
    );
}

impl Dist {
    /// Panics unless `line` is what `name --version` prints for this release: the version,
    /// HEAD's commit (`-dirty` when built from a tree with changes) and the target.
    pub fn assert_version_line(&self, name: &str, line: &str) {
        let want = |commit: &str| {
            format!(
                "{name} {} (commit {commit}, {}, static)\n",
                self.version, self.target
            )
        };
        assert!(
            line == want(&self.commit) || line == want(&format!("{}-dirty", self.commit)),
            "{name} --version printed {line:?}, not {:?}",
            want(&self.commit)
        );
    }
}

/// `bin --version`, which must name `name`, the version, the commit and the target.
pub fn assert_version(bin: &Path, name: &str, dist: &Dist) -> String {
    let line = stdout_ok(Command::new(bin).arg("--version"), Duration::from_secs(10));
    dist.assert_version_line(name, &line);
    line.trim().to_owned()
}

/// What `sha256sum -c SHA256SUMS` says in `dir`.
fn checksums_verify(dir: &Path) -> String {
    stdout_ok(
        Command::new("sha256sum")
            .current_dir(dir)
            .args(["-c", "SHA256SUMS"]),
        Duration::from_secs(60),
    )
}

/// Every path in the archive, with its owner, mode and time (`tar -tvz`, numeric).
fn listing(tarball: &Path) -> Vec<String> {
    stdout_ok(
        Command::new("tar")
            .args(["--numeric-owner", "--full-time", "-tvzf"])
            .arg(tarball),
        Duration::from_secs(60),
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

/// The commit time of HEAD: SOURCE_DATE_EPOCH of the release.
fn commit_time(repo: &Path) -> i64 {
    git_out(repo, &["log", "-1", "--format=%ct", "HEAD"])
        .parse()
        .unwrap()
}

#[test]
fn the_four_artifacts_verify_and_hold_static_binaries() {
    const NAME: &str = "release::the_four_artifacts_verify_and_hold_static_binaries";
    if !available(NAME) {
        return;
    }
    let dist = dist();
    let tarball = dist.tarball();
    let (deb, wheel) = (dist.deb(), dist.wheel());
    let mut names: Vec<String> = [&tarball, &deb, &wheel]
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        dist.files(),
        names,
        "SHA256SUMS covers exactly the artifacts"
    );
    assert!(deb.to_string_lossy().ends_with("_amd64.deb"));
    let verified = checksums_verify(&dist.dir);
    assert_eq!(verified.matches(": OK").count(), 3, "{verified}");

    // The archive: a prefix, members sorted, owned by 0:0, dated the commit.
    let top = format!("molecule-credential-{}-{}", dist.version, dist.target);
    let listing = listing(&tarball);
    let paths: Vec<&str> = listing
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "archive members are sorted");
    let when = time::OffsetDateTime::from_unix_timestamp(commit_time(&root())).unwrap();
    let stamp = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        when.year(),
        u8::from(when.month()),
        when.day(),
        when.hour(),
        when.minute(),
        when.second()
    );
    for l in &listing {
        assert!(l.contains(" 0/0 "), "not owned by 0:0: {l}");
        assert!(l.contains(&stamp), "not dated the commit ({stamp}): {l}");
    }
    let mut expected: Vec<String> = vec![];
    for b in BINARIES {
        expected.extend([
            format!("bin/{b}"),
            format!("share/bash-completion/completions/{b}"),
            format!("share/zsh/site-functions/_{b}"),
            format!("share/fish/vendor_completions.d/{b}.fish"),
            format!("share/man/man1/{b}.1.gz"),
        ]);
    }
    expected.extend(SCRIPTS.iter().map(|s| format!("bin/{s}")));
    expected.extend(
        ["README.md", "LICENSE-MIT", "LICENSE-APACHE", "CHANGELOG.md"]
            .iter()
            .map(|d| format!("share/doc/molecule-credential/{d}")),
    );
    for e in &expected {
        let full = format!("{top}/{e}");
        assert!(paths.contains(&full.as_str()), "the archive lacks {full}");
    }
    for x in BINARIES.iter().chain(&SCRIPTS) {
        let line = listing
            .iter()
            .find(|l| l.ends_with(&format!("{top}/bin/{x}")))
            .unwrap();
        assert!(line.starts_with("-rwxr-xr-x "), "{line}");
    }

    // Static binaries that say what they are.
    let t = tempfile::tempdir().unwrap();
    let tree = dist.unpack(t.path());
    let mut versions = Vec::new();
    for b in BINARIES {
        assert_static_pie(&tree.join("bin").join(b));
        versions.push(assert_version(&tree.join("bin").join(b), b, dist));
    }
    let help = run_ok(
        Command::new(tree.join("bin/git-credential-molecule")).arg("--help"),
        Duration::from_secs(10),
    );
    assert!(
        !String::from_utf8_lossy(&help.stdout).contains("completions"),
        "completions is hidden from the main help"
    );
    report(
        "release",
        &format!(
            "{}\n{}\nsha256sum -c SHA256SUMS:\n{}",
            dist.files().join("\n"),
            versions.join("\n"),
            verified.trim_end()
        ),
    );
}

/// The files of the .deb (`dpkg-deb -x`) and the wheel, by path, that must be the archive's
/// bytes: (the .deb's or wheel's path, the archive's path under its prefix).
fn same_files() -> Vec<(String, String, String)> {
    let mut pairs = Vec::new();
    for b in BINARIES.iter().chain(&SCRIPTS) {
        pairs.push((format!("usr/bin/{b}"), format!("bin/{b}")));
    }
    for b in BINARIES {
        pairs.extend([
            (
                format!("usr/share/bash-completion/completions/{b}"),
                format!("share/bash-completion/completions/{b}"),
            ),
            (
                format!("usr/share/zsh/vendor-completions/_{b}"),
                format!("share/zsh/site-functions/_{b}"),
            ),
            (
                format!("usr/share/fish/vendor_completions.d/{b}.fish"),
                format!("share/fish/vendor_completions.d/{b}.fish"),
            ),
            (
                format!("usr/share/man/man1/{b}.1.gz"),
                format!("share/man/man1/{b}.1.gz"),
            ),
        ]);
    }
    pairs
        .into_iter()
        .map(|(deb, tar)| {
            // The wheel: the helper is maturin's binary, the rest wheel data.
            let wheel = match tar.strip_prefix("bin/") {
                Some(b) => format!("scripts/{b}"),
                None => format!("data/{tar}"),
            };
            (deb, tar, wheel)
        })
        .collect()
}

#[test]
fn every_artifact_holds_the_archives_files() {
    const NAME: &str = "release::every_artifact_holds_the_archives_files";
    if !available(NAME) || !skip::require_tools(NAME, &["dpkg-deb"]) {
        return;
    }
    let dist = dist();
    let t = tempfile::tempdir().unwrap();
    let tree = dist.unpack(t.path());
    let deb_root = t.path().join("deb");
    run_ok(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(dist.deb())
            .arg(&deb_root),
        Duration::from_secs(60),
    );
    let wheel_root = t.path().join("wheel");
    run_ok(
        Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(dist.wheel())
            .arg(&wheel_root),
        Duration::from_secs(60),
    );
    let data = wheel_root.join(format!("molecule_credential-{}.data", dist.version));
    let mut compared = 0;
    for (in_deb, in_tar, in_wheel) in same_files() {
        let want = std::fs::read(tree.join(&in_tar)).unwrap();
        let deb = std::fs::read(deb_root.join(&in_deb))
            .unwrap_or_else(|e| panic!("the .deb lacks {in_deb}: {e}"));
        assert!(
            deb == want,
            "the .deb's {in_deb} is not the archive's {in_tar}"
        );
        let whl = std::fs::read(data.join(&in_wheel))
            .unwrap_or_else(|e| panic!("the wheel lacks {in_wheel}: {e}"));
        assert!(
            whl == want,
            "the wheel's {in_wheel} is not the archive's {in_tar}"
        );
        compared += 1;
    }
    // Installing the .deb configures nothing: it ships no file under /etc, and no
    // maintainer script that could write one.
    assert!(!deb_root.join("etc").exists(), "the .deb ships /etc");
    let control = t.path().join("control");
    run_ok(
        Command::new("dpkg-deb")
            .arg("-e")
            .arg(dist.deb())
            .arg(&control),
        Duration::from_secs(60),
    );
    for script in ["preinst", "postinst", "prerm", "postrm", "conffiles"] {
        assert!(
            !control.join(script).exists(),
            "the .deb has a {script}: installing it must configure nothing"
        );
    }
    // The wheel installs on glibc and on musl Linux, as its WHEEL file says.
    let tags = std::fs::read_to_string(wheel_root.join(format!(
        "molecule_credential-{}.dist-info/WHEEL",
        dist.version
    )))
    .unwrap();
    let arch = dist.target.split('-').next().unwrap();
    for tag in [
        format!("Tag: py3-none-manylinux_2_17_{arch}"),
        format!("Tag: py3-none-musllinux_1_1_{arch}"),
    ] {
        assert!(tags.lines().any(|l| l == tag), "WHEEL lacks {tag}:\n{tags}");
    }
    report(
        "release-contents",
        &format!(
            "{compared} files of the archive byte for byte in the .deb and the wheel; the .deb has no /etc and no maintainer script; the wheel's tags:\n{}",
            tags.lines()
                .filter(|l| l.starts_with("Tag:"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    );
}

#[test]
fn two_clones_at_two_paths_give_the_same_sha256sums() {
    const NAME: &str = "release::two_clones_at_two_paths_give_the_same_sha256sums";
    if !available(NAME) || !skip::require_tools(NAME, &["git", "cargo", "nice"]) {
        return;
    }
    let dist = dist();
    // Clones of HEAD, at paths of different lengths. This checkout is one of them when it
    // is clean (as in CI): its artifacts must equal a clone's. Otherwise (uncommitted
    // changes) a second clone stands in for it.
    let t = tempfile::tempdir().unwrap();
    let clone = |path: &Path| {
        std::fs::create_dir_all(path).unwrap();
        for args in [
            vec!["init", "-q"],
            vec!["fetch", "-q", root().to_str().unwrap(), "HEAD"],
            vec!["checkout", "-q", "FETCH_HEAD"],
        ] {
            run_ok(
                Command::new("git").current_dir(path).args(&args),
                Duration::from_secs(120),
            );
        }
    };
    let started = Instant::now();
    let first = t.path().join("a/clone");
    clone(&first);
    release_sh(&first, &first.join("dist"), &[], true);
    let first_took = started.elapsed();
    let (other_name, other_dir) = if is_dirty() {
        let second = t.path().join("b/a/longer/path/to/a/second-clone");
        clone(&second);
        release_sh(&second, &second.join("dist"), &[], true);
        ("a second clone".to_owned(), second.join("dist"))
    } else {
        (
            format!("this checkout ({})", root().display()),
            dist.dir.clone(),
        )
    };
    let a = std::fs::read_to_string(first.join("dist/SHA256SUMS")).unwrap();
    let b = std::fs::read_to_string(other_dir.join("SHA256SUMS")).unwrap();
    if a != b {
        let diff = output_within(
            Command::new("diff")
                .arg(first.join("dist/SHA256SUMS"))
                .arg(other_dir.join("SHA256SUMS")),
            Duration::from_secs(10),
        );
        panic!(
            "{} and {other_name} built different bytes:\n{}",
            first.display(),
            String::from_utf8_lossy(&diff.stdout)
        );
    }
    report(
        "release-reproducible",
        &format!(
            "HEAD built in {} and in {other_name}: identical SHA256SUMS (a cold release.sh in a fresh clone: {:.0}s, {:.0}s in all)\n{}",
            first.display(),
            first_took.as_secs_f64(),
            started.elapsed().as_secs_f64(),
            a.trim_end()
        ),
    );
}

/// The completions `bash` offers for `words` (the last one being completed), with the
/// archive's completion script for `command` loaded as bash-completion loads it.
fn bash_completes(script: &Path, command: &str, words: &[&str]) -> Vec<String> {
    let line = format!("{command} {}", words.join(" "));
    let program = r#"
set -u
source "$1"
spec=$(complete -p "$2") || { echo "no completion registered for $2" >&2; exit 1; }
fn=$(printf '%s\n' "$spec" | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
[ -n "$fn" ] || { echo "no completion function in: $spec" >&2; exit 1; }
shift 2
COMP_LINE=$1; shift
COMP_POINT=${#COMP_LINE}
COMP_WORDS=("$@")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
cur=${COMP_WORDS[COMP_CWORD]}
prev=${COMP_WORDS[COMP_CWORD-1]}
"$fn" "${COMP_WORDS[0]}" "$cur" "$prev"
[ ${#COMPREPLY[@]} -eq 0 ] || printf '%s\n' "${COMPREPLY[@]}"
"#;
    stdout_ok(
        Command::new("bash")
            .args(["--norc", "--noprofile", "-c", program, "bash"])
            .arg(script)
            .arg(command)
            .arg(&line)
            .arg(command)
            .args(words),
        Duration::from_secs(20),
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

/// What `tool args… file` says; it must succeed and print nothing on stderr.
fn quiet_ok(tool: &str, args: &[&str], file: &Path) -> String {
    let out = run_ok(
        Command::new(tool).args(args).arg(file),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.is_empty(),
        "{tool} {args:?} {}: {stderr}",
        file.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn completions_load_and_man_pages_render() {
    const NAME: &str = "release::completions_load_and_man_pages_render";
    if !available(NAME) || !skip::require_tools(NAME, &["bash", "zsh", "fish", "groff", "man"]) {
        return;
    }
    let dist = dist();
    let t = tempfile::tempdir().unwrap();
    let tree = dist.unpack(t.path());
    let share = tree.join("share");

    // bash completes the subcommands --help lists (the hidden one too: it still works), and
    // a subcommand's options.
    let bash = share.join("bash-completion/completions");
    let offered = bash_completes(
        &bash.join("git-credential-molecule"),
        "git-credential-molecule",
        &[""],
    );
    for sub in [
        "get",
        "store",
        "erase",
        "configure",
        "status",
        "refresh",
        "token",
        "exec",
        "doctor",
    ] {
        assert!(
            offered.iter().any(|w| w == sub),
            "bash does not offer {sub}: {offered:?}"
        );
    }
    let options = bash_completes(
        &bash.join("git-credential-molecule"),
        "git-credential-molecule",
        &["configure", "--sy"],
    );
    assert_eq!(options, ["--system"]);
    let daemon = bash_completes(&bash.join("gh-token-refresh"), "gh-token-refresh", &["st"]);
    assert_eq!(daemon, ["status"]);

    // zsh and fish parse theirs.
    for b in BINARIES {
        quiet_ok(
            "zsh",
            &["-n"],
            &share.join(format!("zsh/site-functions/_{b}")),
        );
        quiet_ok(
            "fish",
            &["-n"],
            &share.join(format!("fish/vendor_completions.d/{b}.fish")),
        );
    }

    // Every man page renders as man renders it (groff with preconv, every warning on),
    // without a warning; man itself shows each subcommand.
    let man1 = share.join("man/man1");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&man1)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pages.sort();
    for page in &pages {
        let roff = t.path().join("page.1");
        let out = run_ok(
            Command::new("gzip").arg("-dc").arg(page),
            Duration::from_secs(10),
        );
        std::fs::write(&roff, out.stdout).unwrap();
        quiet_ok("groff", &["-k", "-man", "-ww", "-Tutf8", "-z"], &roff);
    }
    let shown = Command::new("man")
        .arg("-l")
        .arg(man1.join("git-credential-molecule.1.gz"))
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    assert!(shown.status.success());
    let shown = String::from_utf8_lossy(&shown.stdout);
    for section in ["NAME", "SYNOPSIS", "OPTIONS", "SUBCOMMANDS", "VERSION"] {
        assert!(
            shown.contains(section),
            "man -l shows no {section}:\n{shown}"
        );
    }
    for sub in ["configure", "doctor", "exec"] {
        assert!(
            shown.contains(&format!("git-credential-molecule-{sub}(1)")),
            "{sub} is not listed"
        );
        assert!(
            pages
                .iter()
                .any(|p| p.ends_with(format!("git-credential-molecule-{sub}.1.gz"))),
            "no page for {sub}"
        );
    }
    assert!(
        !shown.contains("completions"),
        "the hidden subcommand has no place in the page"
    );
    report(
        "release-docs",
        &format!(
            "bash offers {} words after `git-credential-molecule `; `configure --sy` completes to --system; zsh -n and fish -n parse both scripts; {} man pages render with groff -k -man -ww without a warning",
            offered.len(),
            pages.len()
        ),
    );
}

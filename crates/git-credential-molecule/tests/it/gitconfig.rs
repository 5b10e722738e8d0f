//! `gitconfig`, the one home of git's configuration rules, held against real git: every git
//! on this machine (Debian's 2.39 in /usr/bin and 2.47 in /usr/local/bin here), each in its
//! own sandbox.
//!
//! - The listing: origins with spaces, absolute and relative include files, worktree scope,
//!   the command line, values with `=` and newlines, a key without a value, read from the top
//!   of a repository, a subdirectory and a linked worktree.
//! - Which file an entry is in: the command `doctor` prints for an entry removes exactly that
//!   entry, run from where doctor ran.
//! - urlmatch and the helper grammar: the helpers git runs for a URL, in order, are the ones
//!   `gitconfig::helpers` names, run the way `helper_program` says.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use git_credential_molecule::gitconfig::helper_value::{HelperProgram, helper_program};
use git_credential_molecule::gitconfig::urlmatch::{Lookup, Url};
use git_credential_molecule::gitconfig::{Entry, Git, Scope, Target, helpers, parse_version};
use molecule_tests::deadline::run_within;
use molecule_tests::gitcmd;

/// Every distinct git here: the two this machine has, and whatever PATH finds.
fn gits() -> Vec<PathBuf> {
    let mut seen = BTreeSet::new();
    let candidates = ["/usr/bin/git", "/usr/local/bin/git"]
        .map(PathBuf::from)
        .into_iter()
        .chain(molecule_tests::skip::which("git"));
    let found: Vec<PathBuf> = candidates
        .filter(|p| p.is_file())
        .filter(|p| seen.insert(std::fs::canonicalize(p).unwrap()))
        .collect();
    assert!(!found.is_empty(), "no git on this machine");
    found
}

/// `git` at `program`, isolated in `home`, run in `dir`.
fn git_at(program: &Path, home: &Path, dir: &Path) -> Command {
    let mut c = Command::new(program);
    gitcmd::isolate(&mut c, home);
    c.current_dir(dir);
    c
}

fn ok(mut c: Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn version(program: &Path) -> String {
    let home = tempfile::tempdir().unwrap();
    let mut c = git_at(program, home.path(), home.path());
    c.arg("--version");
    ok(c).trim().to_owned()
}

/// A home, a repository called `my repo` with a linked worktree `wt`, and config in every
/// scope and shape the listing must read, under a directory whose name has a space.
struct Layout {
    _tmp: tempfile::TempDir,
    git: PathBuf,
    home: PathBuf,
    repo: PathBuf,
    sub: PathBuf,
    worktree: PathBuf,
}

impl Layout {
    fn new(git: &Path) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a dir");
        let (home, repo) = (root.join("home"), root.join("my repo"));
        let sub = repo.join("sub dir");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&sub).unwrap();
        let global_include = root.join("inc dir/global inc.cfg");
        std::fs::create_dir_all(global_include.parent().unwrap()).unwrap();
        std::fs::write(&global_include, "[test]\n\tglobalinc = gi\n").unwrap();
        std::fs::write(
            home.join(".gitconfig"),
            format!(
                "[test]\n\tglobal = g\n[include]\n\tpath = {}\n",
                global_include.display()
            ),
        )
        .unwrap();
        // Relative to the including file's directory (.git): the repository's top.
        std::fs::write(
            repo.join("rel inc.cfg"),
            "[test]\n\trelinc = ri\n\tmulti = \"a=b\\nc\"\n\tnovalue\n",
        )
        .unwrap();
        let layout = Self {
            _tmp: tmp,
            git: git.to_owned(),
            home,
            repo,
            sub,
            worktree: root.join("wt"),
        };
        layout.ok(&layout.repo, &["init", "-q"]);
        layout.ok(&layout.repo, &["config", "test.local", "l"]);
        layout.ok(
            &layout.repo,
            &["config", "--add", "include.path", "../rel inc.cfg"],
        );
        layout.ok(&layout.repo, &["commit", "-q", "--allow-empty", "-m", "x"]);
        let wt = layout.worktree.to_str().unwrap().to_owned();
        layout.ok(&layout.repo, &["worktree", "add", "-q", &wt]);
        layout.ok(
            &layout.repo,
            &["config", "extensions.worktreeConfig", "true"],
        );
        layout.ok(&layout.worktree, &["config", "--worktree", "test.wt", "w"]);
        layout
    }

    /// git in `dir`, with one entry on the command line (`GIT_CONFIG_COUNT`).
    fn command(&self, dir: &Path) -> Command {
        let mut c = git_at(&self.git, &self.home, dir);
        c.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "test.command")
            .env("GIT_CONFIG_VALUE_0", "c");
        c
    }

    fn ok(&self, dir: &Path, args: &[&str]) -> String {
        let mut c = self.command(dir);
        c.args(args);
        ok(c)
    }

    /// The `test.*` entries, as `gitconfig` reads them in `dir`.
    fn entries(&self, dir: &Path) -> Vec<Entry> {
        let listing = Git::like(&self.command(dir)).list().unwrap();
        listing
            .entries
            .into_iter()
            .filter(|e| e.key.section == "test")
            .collect()
    }
}

/// What a test compares of an entry: name, scope, file (canonical), the flag that edits it
/// when that is not `--file`, value.
type Row = (
    String,
    Scope,
    Option<PathBuf>,
    Option<Target>,
    Option<String>,
);

fn row(
    name: &str,
    scope: Scope,
    file: Option<PathBuf>,
    edits: Option<Target>,
    value: Option<&str>,
) -> Row {
    let file = file.map(|f| std::fs::canonicalize(&f).unwrap_or_else(|e| panic!("{f:?}: {e}")));
    (
        name.to_owned(),
        scope,
        file,
        edits,
        value.map(str::to_owned),
    )
}

#[test]
fn the_listing_reads_every_scope_and_shape_from_anywhere_in_a_repository() {
    for git in gits() {
        let v = version(&git);
        let l = Layout::new(&git);
        let root = l.home.parent().unwrap();
        let (repo_config, included) = (l.repo.join(".git/config"), l.repo.join("rel inc.cfg"));
        for dir in [&l.repo, &l.sub, &l.worktree] {
            let local = |name, file: &Path, edits, value| {
                row(name, Scope::Local, Some(file.to_owned()), edits, value)
            };
            let mut want = vec![
                row(
                    "global",
                    Scope::Global,
                    Some(l.home.join(".gitconfig")),
                    None,
                    Some("g"),
                ),
                row(
                    "globalinc",
                    Scope::Global,
                    Some(root.join("inc dir/global inc.cfg")),
                    None,
                    Some("gi"),
                ),
                local("local", &repo_config, Some(Target::Local), Some("l")),
                // An included file is read in the local scope, but --local does not edit it.
                local("relinc", &included, None, Some("ri")),
                local("multi", &included, None, Some("a=b\nc")),
                local("novalue", &included, None, None),
            ];
            if dir == &l.worktree {
                let own = l.repo.join(".git/worktrees/wt/config.worktree");
                want.push(row(
                    "wt",
                    Scope::Worktree,
                    Some(own),
                    Some(Target::Worktree),
                    Some("w"),
                ));
            }
            want.push(row("command", Scope::Command, None, None, Some("c")));
            let at = format!("{v}, in {}", dir.display());
            let got: Vec<Row> = l
                .entries(dir)
                .into_iter()
                .map(|e| {
                    let edits = match e.target {
                        Some(Target::File(path)) => {
                            // --file names the entry's own file, absolute.
                            assert!(path.is_absolute(), "{at}: {path:?}");
                            assert_eq!(Some(&path), e.file.as_ref(), "{at}");
                            None
                        }
                        other => other,
                    };
                    row(&e.key.name, e.scope, e.file, edits, e.value.as_deref())
                })
                .collect();
            assert_eq!(got, want, "{at}");
        }
    }
}

/// The command doctor prints for an entry (`git config TARGET --unset-all KEY`) removes that
/// entry and nothing else, run in the directory doctor ran in: a subdirectory, or a linked
/// worktree, where git's own origin (`file:.git/config`, relative) names no file.
#[test]
fn the_printed_target_removes_exactly_its_entry() {
    for git in gits() {
        let v = version(&git);
        for from in ["a subdirectory", "a linked worktree"] {
            let l = Layout::new(&git);
            let dir = if from == "a subdirectory" {
                &l.sub
            } else {
                &l.worktree
            };
            if from == "a subdirectory" {
                // What the second mapping of old printed for a local entry, and why it went.
                let mut c = l.command(dir);
                c.args([
                    "config",
                    "--file",
                    ".git/config",
                    "--unset-all",
                    "test.local",
                ]);
                assert!(
                    !c.output().unwrap().status.success(),
                    "{v}: --file .git/config from {from}"
                );
            }
            let mut left = l.entries(dir);
            for entry in l.entries(dir).into_iter().filter(|e| e.target.is_some()) {
                let target = entry.target.as_ref().unwrap();
                let fix = format!("git config {} --unset-all {}", target.shell(), entry.key);
                let mut sh = Command::new("sh");
                gitcmd::isolate(&mut sh, &l.home);
                sh.args(["-c", &fix])
                    .current_dir(dir)
                    .env("PATH", path_with(&git));
                let out = sh.output().unwrap();
                assert!(
                    out.status.success(),
                    "{v}, from {from}: {fix}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                left.retain(|e| e != &entry);
                assert_eq!(l.entries(dir), left, "{v}, from {from}: after {fix}");
            }
            let names: Vec<String> = left.iter().map(|e| e.key.name.clone()).collect();
            assert_eq!(
                names,
                ["command"],
                "{v}, from {from}: only the command line is left"
            );
        }
    }
}

/// PATH with `git`'s directory first, so `sh -c 'git …'` runs that git.
fn path_with(git: &Path) -> String {
    format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        git.parent().unwrap().display()
    )
}

/// What git itself asks for a URL: each helper appends its label and `$0` to a log; git
/// then fails (no prompt), and the log is the answer.
fn helpers_git_runs(l: &Layout, dir: &Path, log: &Path, url: &str) -> Vec<(String, String)> {
    let _ = std::fs::remove_file(log);
    let mut c = l.command(dir);
    c.args(["credential", "fill"]).env("HELPER_LOG", log).env(
        "PATH",
        format!("{}:{}", l.home.join("bin").display(), path_with(&l.git)),
    );
    let fill = run_within(
        &mut c,
        format!("url={url}\n\n").as_bytes(),
        Duration::from_secs(30),
    );
    fill.assert_in_time("git credential fill");
    assert_ne!(fill.code, Some(0), "no helper answers, so fill fails");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let (label, program) = line.split_once(' ').unwrap();
            (label.to_owned(), program.to_owned())
        })
        .collect()
}

/// The lookup git builds from a URL (`credential_from_url`): host with its port, user, and
/// the path without its slashes.
fn lookup_of(url: &str) -> Lookup<'_> {
    let u = Url::parse(url).unwrap();
    let path = u.rest.trim_matches('/');
    Lookup {
        protocol: u.scheme,
        host: u.host,
        path: (!path.is_empty()).then_some(path),
        username: u.userinfo.map(|i| i.split(':').next().unwrap()),
    }
}

#[test]
fn urlmatch_and_the_helper_grammar_agree_with_git() {
    for git in gits() {
        let v = version(&git);
        let l = Layout::new(&git);
        // Helpers in all three forms: a lookup name, an absolute path (with a space, so
        // quoted in a `!` command), and shell commands.
        let bin = l.home.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let script = "#!/bin/sh\necho \"$1 $0\" >> \"$HELPER_LOG\"\n";
        let tool_dir = l.home.join("my tools");
        std::fs::create_dir_all(&tool_dir).unwrap();
        for path in [
            bin.join("git-credential-labelled"),
            tool_dir.join("labelled"),
        ] {
            std::fs::write(&path, script).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // Each helper logs its label: the first word after the program.
        fn shell(label: &'static str) -> (String, &'static str) {
            (format!("!echo {label} sh >> \"$HELPER_LOG\"; :"), label)
        }
        let tool = tool_dir.join("labelled");
        let path_helper = (format!("!'{}' path", tool.display()), "path");
        let patterns = [
            ("credential.helper", shell("all")),
            ("credential.https://github.com.helper", shell("host")),
            ("credential.https://*.example.com.helper", shell("wildcard")),
            (
                "credential.https://github.com/acme.helper",
                ("labelled acme-path".to_owned(), "acme-path"),
            ),
            (
                "credential.https://octocat@github.com.helper",
                shell("user"),
            ),
            ("credential.github.com.helper", shell("partial")),
            (
                "credential.github.com/acme/app.git.helper",
                shell("partial-path"),
            ),
            (
                "credential.https://GitHub.COM:443/.helper",
                shell("case-and-port"),
            ),
            ("credential.http://github.com.helper", shell("http")),
            ("credential.https://ghe.corp:8443.helper", path_helper),
            (
                "credential.https://github.com/./x/../acme/app.git.helper",
                shell("dots"),
            ),
            (
                "credential.https://github.com/%61cme.helper",
                shell("escaped"),
            ),
            (
                "credential.https://reset.example.com.helper",
                (String::new(), ""),
            ),
            (
                "credential.https://reset.example.com.helper",
                shell("after-reset"),
            ),
        ];
        for (key, (value, _)) in &patterns {
            l.ok(&l.repo, &["config", "--global", "--add", key, value]);
        }
        let label_of = |value: &str| {
            patterns
                .iter()
                .find(|(_, (v, _))| v == value)
                .map(|(_, (_, label))| label.to_string())
                .unwrap()
        };
        let log = l.home.join("helpers.log");
        let listing = Git::like(&l.command(&l.repo)).list().unwrap();
        for url in [
            "https://github.com/acme/app.git",
            "https://github.com/other/app.git",
            "https://octocat@github.com/acme/app.git",
            "https://GitHub.com/acme",
            "https://github.com:443/acme/app.git",
            "http://github.com/acme",
            "https://ghe.example.com/x",
            "https://a.b.example.com/x",
            "https://ghe.corp:8443/x",
            "https://reset.example.com/x",
        ] {
            let ran = helpers_git_runs(&l, &l.repo, &log, url);
            let ours = helpers(&listing.entries, &lookup_of(url));
            let ours_labels: Vec<String> = ours
                .iter()
                .map(|e| label_of(e.value.as_deref().unwrap()))
                .collect();
            let git_labels: Vec<String> = ran.iter().map(|(label, _)| label.clone()).collect();
            assert_eq!(ours_labels, git_labels, "{v}: {url}");
            // And each ran the program the grammar says it would.
            for (entry, (_, program)) in ours.iter().zip(&ran) {
                match helper_program(entry.value.as_deref().unwrap()).unwrap() {
                    HelperProgram::Lookup(name) => assert_eq!(
                        Path::new(program).file_name().unwrap(),
                        format!("git-credential-{name}").as_str(),
                        "{v}: {url}"
                    ),
                    HelperProgram::Path(path) => assert_eq!(Path::new(program), path, "{v}: {url}"),
                    HelperProgram::Shell(_) => assert_eq!(program, "sh", "{v}: {url}"),
                }
            }
        }
        // The fill that reaches every form at once, so the comparison above is not vacuous.
        let all = helpers_git_runs(&l, &l.repo, &log, "https://github.com/acme/app.git");
        assert!(all.len() >= 6, "{v}: {all:?}");
        assert!(parse_version(&v).is_some(), "{v}");
    }
}

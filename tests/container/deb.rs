//! The .deb, installed with its one line into a clean Debian 12 root filesystem (mmdebstrap's
//! minbase, the tarball `runtime` keeps): `dpkg -i` adds the package's own files and changes
//! nothing else (installing configures nothing), the installed binaries and scripts run from
//! PATH, `lintian` reports no error, and `dpkg -P` leaves the root filesystem as it found it.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use molecule_tests::skip;

use crate::release::{self, BINARIES, SCRIPTS, dist};
use crate::runtime::debian_root_tarball;
use crate::support::{output_within, report, run_ok};

const NAME: &str = "deb::the_deb_installs_into_a_clean_debian_and_purges_without_a_trace";

/// Every path under `root` with what identifies its state: type, mode, owner, and for a file
/// its size and modification time, for a link its target. dpkg's own records (its database
/// and log) are left out: they are what dpkg is for.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut all = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if rel.starts_with("var/lib/dpkg/") || rel == "var/log/dpkg.log" || rel == "proc" {
                continue;
            }
            let m = std::fs::symlink_metadata(&path).unwrap();
            let owner = format!("{:o} {}:{}", m.mode(), m.uid(), m.gid());
            let state = if m.is_dir() {
                dirs.push(path.clone());
                format!("dir {owner}")
            } else if m.file_type().is_symlink() {
                format!(
                    "link {owner} -> {}",
                    std::fs::read_link(&path).unwrap().display()
                )
            } else {
                format!("file {owner} {} {}.{}", m.size(), m.mtime(), m.mtime_nsec())
            };
            all.insert(format!("/{rel}"), state);
        }
    }
    all
}

/// `argv` run in the root filesystem `root` (`chroot`), in a mount and PID namespace of its
/// own with /proc mounted, as a container runtime would give it.
fn in_root(root: &Path, argv: &[&str]) -> Output {
    output_within(
        Command::new("unshare")
            .args(["--mount", "--pid", "--fork"])
            .arg(format!("--mount-proc={}", root.join("proc").display()))
            .arg("chroot")
            .arg(root)
            .args(argv)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .env("LC_ALL", "C"),
        Duration::from_secs(120),
    )
}

fn in_root_ok(root: &Path, argv: &[&str]) -> String {
    let out = in_root(root, argv);
    assert!(
        out.status.success(),
        "{argv:?} in the Debian root: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Paths that differ between two snapshots.
fn changed(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let mut paths: Vec<String> = a
        .iter()
        .filter(|(p, s)| b.get(*p) != Some(s))
        .map(|(p, _)| p.clone())
        .chain(b.keys().filter(|p| !a.contains_key(*p)).cloned())
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

#[test]
fn the_deb_installs_into_a_clean_debian_and_purges_without_a_trace() {
    if !release::available(NAME)
        || !skip::require_root(NAME)
        || !skip::require_tools(NAME, &["unshare", "chroot", "lintian", "mmdebstrap"])
    {
        return;
    }
    let dist = dist();
    let deb = dist.deb();

    // lintian, as Debian's archive runs it: no error.
    let lintian = output_within(
        Command::new("lintian")
            .args(["--fail-on", "error", "--tag-display-limit", "0"])
            .arg(&deb),
        Duration::from_secs(300),
    );
    let findings = String::from_utf8_lossy(&lintian.stdout).into_owned();
    assert!(
        lintian.status.success() && !findings.lines().any(|l| l.starts_with("E:")),
        "lintian reports errors:\n{findings}{}",
        String::from_utf8_lossy(&lintian.stderr)
    );

    // A clean Debian 12.
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir(&root).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(debian_root_tarball())
            .arg("-C")
            .arg(&root),
        Duration::from_secs(300),
    );
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    let before = snapshot(&root);

    // The one line. The .deb is handed in through /tmp, and taken away after.
    std::fs::copy(&deb, root.join("tmp").join(&name)).unwrap();
    in_root_ok(&root, &["dpkg", "-i", &format!("/tmp/{name}")]);
    std::fs::remove_file(root.join("tmp").join(&name)).unwrap();
    let installed = snapshot(&root);
    let listed: Vec<String> = in_root_ok(&root, &["dpkg", "-L", "molecule-credential"])
        .lines()
        .map(str::to_owned)
        .collect();
    // Added: the package's files, and the directories above them. Nothing else changed.
    for path in changed(&before, &installed) {
        assert!(
            listed.contains(&path) && !before.contains_key(&path),
            "dpkg -i changed {path}, which is not the package's ({:?} -> {:?})",
            before.get(&path),
            installed.get(&path)
        );
    }
    for b in BINARIES.iter().chain(&SCRIPTS) {
        assert!(
            listed.contains(&format!("/usr/bin/{b}")),
            "{b} is not in /usr/bin"
        );
    }

    // It runs, from PATH, in that root.
    let mut versions = Vec::new();
    for b in BINARIES {
        let line = in_root_ok(&root, &[b, "--version"]);
        dist.assert_version_line(b, &line);
        versions.push(line.trim().to_owned());
    }
    let usage = in_root(&root, &["molecule-entrypoint"]);
    assert_eq!(usage.status.code(), Some(64));
    assert_eq!(
        String::from_utf8_lossy(&usage.stderr),
        "entrypoint: usage: molecule-entrypoint CMD [ARGS...]\n"
    );
    let respawn = in_root(&root, &["molecule-respawn"]);
    assert_eq!(respawn.status.code(), Some(64));

    // Removed with its configuration: exactly what was there before.
    in_root_ok(&root, &["dpkg", "-P", "molecule-credential"]);
    let purged = snapshot(&root);
    let left = changed(&before, &purged);
    assert!(
        left.is_empty(),
        "dpkg -P left these behind or changed: {left:?}"
    );

    report(
        "deb",
        &format!(
            "lintian {}: no error{}\n\
             dpkg -i {name} into Debian 12 (mmdebstrap minbase): {} paths added, none changed; {}\n\
             dpkg -P: the root filesystem as before ({} paths compared)",
            String::from_utf8_lossy(
                &run_ok(
                    Command::new("lintian").arg("--version"),
                    Duration::from_secs(30)
                )
                .stdout
            )
            .trim(),
            if findings.trim().is_empty() {
                String::new()
            } else {
                format!(" ({})", findings.lines().count())
            },
            changed(&before, &installed).len(),
            versions.join("; "),
            before.len()
        ),
    );
}

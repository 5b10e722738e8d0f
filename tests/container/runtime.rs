//! Images and containers without a container daemon (TESTING.md, "Containers without a
//! container runtime daemon"): the image built from docker/Dockerfile with buildah, and run
//! the way a container runtime runs it, with util-linux.
//!
//! - The base: `debian:bookworm-slim`, made locally from Debian's packages by `mmdebstrap`
//!   (registry images are out of reach). Its tarball is kept in [`CACHE_DIR`] between runs
//!   and rebuilt when a week old.
//! - The image: `buildah bud --isolation chroot --pull=never --format docker --build-arg
//!   MOLECULE_BINARIES=prebuilt`, with this workspace's release binaries. `--format docker`:
//!   the OCI format drops `HEALTHCHECK`. One build at a time (a lock file); the stage
//!   containers and images a build leaves behind are removed at once, the image itself when
//!   the test drops it.
//! - A container: its own copy of the image's root filesystem (`buildah from` + `buildah
//!   mount`), and new PID, mount, UTS and IPC namespaces; the network namespace is the test's
//!   (the stand-ins listen there on loopback, as a pod's containers share one). `/dev` holds
//!   what a runtime's does (null, zero, full, random, urandom, tty, shm); `/etc/hosts` and
//!   `/etc/hostname` are the runtime's, as Docker's are. Bind mounts are the volumes. What
//!   runs is `argv` as PID 1, with exactly the environment given: the caller builds it from
//!   the image's `Env` (see [`ImageConfig`]) as a runtime would.
//! - `exec`: a process entering a running container's namespaces and root (`nsenter`), as
//!   `docker exec`, a health check or a kubelet's exec probe does.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use molecule_tests::skip;

use crate::support::{output_or_timeout, output_within, root, run_ok};

/// Where the base tarball is kept between runs (tests that build images run as root).
pub const CACHE_DIR: &str = "/var/cache/molecule-tests";
/// What the Dockerfile's `FROM debian:bookworm-slim` resolves to with `--pull=never`.
const BASE_IMAGE: &str = "localhost/debian:bookworm-slim";
/// A base older than this is built again (security updates).
const BASE_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Tools every image test needs on the machine.
const TOOLS: &[&str] = &[
    "mmdebstrap",
    "podman",
    "buildah",
    "unshare",
    "nsenter",
    "chroot",
    "mount",
    "ip",
];

/// True when `test` can build and run images here: root, and every tool installed.
/// Otherwise the skip is recorded (see `molecule_tests::skip`).
pub fn available(test: &str) -> bool {
    skip::require_root(test) && skip::require_tools(test, TOOLS)
}

/// A host tool by absolute path: inside a container's chroot PATH means the image's.
fn tool(name: &str) -> PathBuf {
    skip::which(name).unwrap_or_else(|| panic!("{name} is installed (checked by available)"))
}

/// The image's configuration, as a runtime reads it (`buildah inspect`, Docker format).
#[derive(Debug, Clone)]
pub struct ImageConfig {
    pub env: Vec<(String, String)>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `None` for an image without a `HEALTHCHECK` (a template image, the binaries stage).
    pub healthcheck: Option<Healthcheck>,
}

/// The image's `HEALTHCHECK`.
#[derive(Debug, Clone)]
pub struct Healthcheck {
    /// The command to run (from `["CMD", …]`, or `sh -c` for `["CMD-SHELL", …]`).
    pub command: Vec<String>,
    pub timeout: Duration,
}

impl ImageConfig {
    fn from_inspect(json: &serde_json::Value) -> ImageConfig {
        let config = &json["Docker"]["config"];
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default()
        };
        let env = strings(&config["Env"])
            .into_iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let hc = &config["Healthcheck"];
        let test = strings(&hc["Test"]);
        let command = match test.first().map(String::as_str) {
            None => None,
            Some("CMD") => Some(test[1..].to_vec()),
            Some("CMD-SHELL") => Some(vec!["/bin/sh".into(), "-c".into(), test[1].clone()]),
            other => panic!("the image has no usable HEALTHCHECK (Test starts with {other:?})"),
        };
        let nanos = |v: &serde_json::Value| Duration::from_nanos(v.as_u64().unwrap_or(0));
        ImageConfig {
            env,
            entrypoint: strings(&config["Entrypoint"]),
            cmd: strings(&config["Cmd"]),
            healthcheck: command.map(|command| Healthcheck {
                command,
                timeout: nanos(&hc["Timeout"]),
            }),
        }
    }

    /// The environment a runtime starts a container with: the image's `Env`, then the
    /// run's own variables (`docker run -e`, a pod's `env`), each replacing one of the same
    /// name. Docker adds `HOSTNAME`, and `HOME` when the image sets none.
    pub fn env_with(&self, hostname: &str, run: &[(String, String)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![
            ("HOSTNAME".into(), hostname.into()),
            ("HOME".into(), "/root".into()),
        ];
        for (k, v) in self.env.iter().chain(run) {
            env.retain(|(name, _)| name != k);
            env.push((k.clone(), v.clone()));
        }
        env
    }
}

/// An image built from docker/Dockerfile; removed when the run that built it drops it.
pub struct Image {
    pub name: String,
    pub config: ImageConfig,
    /// The build's `STEP` lines and how long it took, for the test's report.
    pub build_report: String,
    owned: bool,
}

impl Drop for Image {
    fn drop(&mut self) {
        if self.owned {
            let _ = buildah(&["rmi", "--force", &self.name]);
        }
    }
}

/// Tells a test's inner run (in its network namespace) which image the outer run built.
const IMAGE_VAR: &str = "MOLECULE_TEST_IMAGE";
const BUILD_REPORT_VAR: &str = "MOLECULE_TEST_IMAGE_BUILD";

/// The agent image for `test`, which runs in a private network namespace (the stand-ins
/// own port 443 there): docker/Dockerfile as shipped, see [`image_in_netns`].
pub fn agent_image_in_netns(test: &str) -> Option<Image> {
    image_in_netns(test, agent_image)
}

/// The image `build` makes (given a tag derived from `test`), for `test`, which runs in a
/// private network namespace. The build needs Debian's mirror, which that namespace cannot
/// reach, so the outer run builds it, runs the test inside, and removes it after:
///
/// ```ignore
/// let Some(image) = runtime::agent_image_in_netns(NAME) else { return };
/// // inside the namespace, with the image
/// ```
///
/// `None` in the outer run (after the inner run passed), or when `test` is skipped.
pub fn image_in_netns(test: &str, build: impl FnOnce(&str) -> Image) -> Option<Image> {
    if molecule_tests::netns::is_inner(test) {
        let name = molecule_credential::config::process_env(IMAGE_VAR)
            .expect("the outer run names the image");
        let inspect: serde_json::Value =
            serde_json::from_str(&buildah_ok(&["inspect", "--type", "image", &name])).unwrap();
        // Inside: this brings loopback up.
        assert!(molecule_tests::netns::in_private_netns(test));
        return Some(Image {
            config: ImageConfig::from_inspect(&inspect),
            build_report: molecule_credential::config::process_env(BUILD_REPORT_VAR)
                .unwrap_or_default(),
            name,
            owned: false,
        });
    }
    if !available(test) {
        return None;
    }
    let tag = test.rsplit("::").next().unwrap_or(test).replace('_', "-");
    let image = build(&tag);
    molecule_tests::netns::in_private_netns_with(
        test,
        &[
            (IMAGE_VAR, &image.name),
            (BUILD_REPORT_VAR, &image.build_report),
        ],
    );
    None
}

fn buildah(args: &[&str]) -> Output {
    output_within(
        Command::new(tool("buildah")).args(args),
        Duration::from_secs(120),
    )
}

fn buildah_ok(args: &[&str]) -> String {
    let out = run_ok(
        Command::new(tool("buildah")).args(args),
        Duration::from_secs(120),
    );
    String::from_utf8(out.stdout).unwrap()
}

/// How the containers tests make are named ([`Container::create`], [`image_files`]): their
/// owners remove them.
const TEST_CONTAINER: &str = "molecule-test-";

/// IDs of every image (`-a`: intermediate ones too), or of every container but the tests'
/// own, buildah holds. A build's leftovers are the difference before and after it, and a test
/// running beside the build may create a container meanwhile: that one is not a leftover.
fn ids(what: &str) -> BTreeSet<String> {
    let args: &[&str] = if what == "containers" {
        &[
            "containers",
            "--all",
            "--noheading",
            "--notruncate",
            "--format",
            "{{.ContainerID}} {{.ContainerName}}",
        ]
    } else {
        &["images", "--all", "--quiet", "--no-trunc"]
    };
    buildah_ok(args)
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_none_or(|name| !name.starts_with(TEST_CONTAINER))
        })
        .filter_map(|l| l.split_whitespace().next())
        .map(|id| id.trim_start_matches("sha256:").to_owned())
        .collect()
}

/// Holds the build lock: one image build (and base import) at a time on this machine.
struct BuildLock(#[expect(dead_code, reason = "held for its Drop, which unlocks")] File);

fn build_lock() -> BuildLock {
    std::fs::create_dir_all(CACHE_DIR).unwrap();
    let f = File::create(Path::new(CACHE_DIR).join("build.lock")).unwrap();
    // Bounded: a build takes well under a minute; a holder stuck for ten is a broken run.
    let end = Instant::now() + Duration::from_secs(600);
    loop {
        match f.try_lock() {
            Ok(()) => return BuildLock(f),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("{CACHE_DIR}/build.lock: {e}"),
        }
    }
}

/// Debian 12's minimal root filesystem as a tarball (mmdebstrap, from Debian's packages),
/// kept in [`CACHE_DIR`] and built again when a week old. Returns its path and, when it had
/// to be built, how long that took. Call with the build lock held.
fn base_tarball() -> (PathBuf, Option<Duration>) {
    let tarball = Path::new(CACHE_DIR).join("bookworm-minbase.tar");
    let age = std::fs::metadata(&tarball)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok());
    if age.is_some_and(|a| a <= BASE_MAX_AGE) {
        return (tarball, None);
    }
    let started = Instant::now();
    let partial = tarball.with_extension("tar.partial");
    // Left by an interrupted run: a file, or a directory mmdebstrap began to fill.
    let _ = std::fs::remove_file(&partial);
    let _ = std::fs::remove_dir_all(&partial);
    run_ok(
        Command::new(tool("mmdebstrap"))
            .args([
                "--variant=minbase",
                "--include=ca-certificates",
                "--format=tar",
                "bookworm",
            ])
            .arg(&partial),
        Duration::from_secs(600),
    );
    std::fs::rename(&partial, &tarball).unwrap();
    let _ = buildah(&["rmi", "--force", BASE_IMAGE]);
    (tarball, Some(started.elapsed()))
}

/// The cached Debian root filesystem's tarball, for a test that unpacks it (built if
/// missing, under the build lock).
pub fn debian_root_tarball() -> PathBuf {
    let _lock = build_lock();
    base_tarball().0
}

/// Makes `debian:bookworm-slim` a local image, from the cached tarball (or a new one).
fn ensure_base() -> String {
    let (tarball, built) = base_tarball();
    let mut note = built
        .map(|took| {
            format!(
                "base: mmdebstrap bookworm (minbase) in {:.1}s",
                took.as_secs_f64()
            )
        })
        .unwrap_or_default();
    if !buildah(&["inspect", "--type", "image", BASE_IMAGE])
        .status
        .success()
    {
        run_ok(
            Command::new(tool("podman"))
                .arg("import")
                .arg(&tarball)
                .arg(BASE_IMAGE),
            Duration::from_secs(300),
        );
        if note.is_empty() {
            note = format!("base: imported the cached {}", tarball.display());
        }
    }
    if note.is_empty() {
        note = format!("base: {BASE_IMAGE}, already imported");
    }
    note
}

/// docker/Dockerfile as shipped, with `MOLECULE_BINARIES=prebuilt`: the release's static
/// binaries (scripts/release.sh, see `crate::release`).
pub fn agent_image(tag: &str) -> Image {
    let prebuilt = crate::release::dist().prebuilt_dir();
    build_image(&Build {
        dockerfile: &root().join("docker/Dockerfile"),
        context: &root(),
        stage: None,
        args: &[
            ("MOLECULE_BINARIES", "prebuilt"),
            ("MOLECULE_PREBUILT_DIR", &prebuilt),
        ],
        tag: &format!("molecule-agent-test:{tag}"),
    })
}

/// What `buildah bud` builds.
pub struct Build<'a> {
    pub dockerfile: &'a Path,
    pub context: &'a Path,
    /// `--target`: the stage to build (`None`: the last).
    pub stage: Option<&'a str>,
    pub args: &'a [(&'a str, &'a str)],
    /// `NAME:TAG` under localhost/; the process id is appended, so runs never collide.
    pub tag: &'a str,
}

/// Builds an image as a runtime without a daemon does: `buildah bud --isolation chroot
/// --pull=never --format docker`, `FROM debian:bookworm-slim` resolving to the local base.
/// One build at a time; what the build leaves behind besides the image is removed.
pub fn build_image(b: &Build) -> Image {
    let _lock = build_lock();
    let base = ensure_base();
    let (containers_before, images_before) = (ids("containers"), ids("images"));
    let name = format!("localhost/{}-{}", b.tag, std::process::id());
    let mut argv: Vec<String> = [
        "bud",
        "--isolation",
        "chroot",
        "--pull=never",
        "--format",
        "docker",
    ]
    .map(String::from)
    .to_vec();
    for (k, v) in b.args {
        argv.extend(["--build-arg".into(), format!("{k}={v}")]);
    }
    if let Some(stage) = b.stage {
        argv.extend(["--target".into(), stage.to_owned()]);
    }
    argv.extend(["-f".into(), b.dockerfile.display().to_string()]);
    argv.extend(["-t".into(), name.clone(), ".".into()]);
    let started = Instant::now();
    let out = output_within(
        Command::new(tool("buildah"))
            .current_dir(b.context)
            .args(&argv),
        Duration::from_secs(900),
    );
    let took = started.elapsed();
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // What the build left behind besides the image: the container and image of a stage
    // that is only `FROM <stage>`. Removed now, whether the build passed or not.
    for c in ids("containers").difference(&containers_before) {
        let _ = buildah(&["rm", c]);
    }
    let image_id = buildah(&[
        "inspect",
        "--type",
        "image",
        "--format",
        "{{.FromImageID}}",
        &name,
    ]);
    let image_id = String::from_utf8_lossy(&image_id.stdout).trim().to_owned();
    for i in ids("images").difference(&images_before) {
        if *i != image_id {
            let _ = buildah(&["rmi", "--force", i]);
        }
    }
    assert!(out.status.success(), "buildah bud failed:\n{log}");
    let inspect: serde_json::Value =
        serde_json::from_str(&buildah_ok(&["inspect", "--type", "image", &name])).unwrap();
    let steps: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("STEP ") || l.contains("COMMIT"))
        .collect();
    let shown = argv[..argv.len() - 3].join(" ");
    Image {
        owned: true,
        config: ImageConfig::from_inspect(&inspect),
        build_report: format!(
            "{base}\nbuildah {shown}: {:.1}s\n  {}",
            took.as_secs_f64(),
            steps.join("\n  ")
        ),
        name,
    }
}

/// Every regular file and link in `image`'s root filesystem, relative to it, with its mode
/// (`buildah from` + `buildah mount`, removed after).
pub fn image_files(image: &Image) -> Vec<(String, u32)> {
    let name = format!("{TEST_CONTAINER}files-{}", std::process::id());
    let _ = buildah(&["rm", &name]);
    buildah_ok(&["from", "--pull-never", "--name", &name, &image.name]);
    let root = PathBuf::from(buildah_ok(&["mount", &name]).trim());
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                dirs.push(e.path());
            } else {
                let rel = e.path().strip_prefix(&root).unwrap().display().to_string();
                files.push((rel, meta.permissions().mode() & 0o7777));
            }
        }
    }
    let _ = buildah(&["umount", &name]);
    let _ = buildah(&["rm", &name]);
    files.sort();
    files
}

/// A bind mount: `host` at `path` inside the container.
pub struct Mount {
    pub host: PathBuf,
    pub path: String,
    pub read_only: bool,
}

/// How a container is started.
pub struct Run {
    /// PID 1's command line (resolved on the container's PATH).
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `uid:gid` and supplementary gids, as a pod's `runAsUser`/`runAsGroup`/`fsGroup`;
    /// `None` runs as root (the image sets no `USER`).
    pub user: Option<(u32, u32, Vec<u32>)>,
    pub mounts: Vec<Mount>,
    /// Written to PID 1's stdin, then closed (`docker run -i … < file`); else /dev/null.
    pub stdin: Option<String>,
}

/// A container: a root filesystem of its own and, once started, PID 1 in new namespaces.
/// Dropping it kills whatever still runs and removes the root filesystem.
pub struct Container {
    pub name: String,
    pub root: PathBuf,
    dir: tempfile::TempDir,
    process: Option<Child>,
    env: Vec<(String, String)>,
}

impl Container {
    /// A new container from `image` (`buildah from`), its root filesystem mounted.
    pub fn create(image: &Image, name: &str) -> Container {
        let name = format!("{TEST_CONTAINER}{name}-{}", std::process::id());
        let _ = buildah(&["rm", &name]);
        buildah_ok(&["from", "--pull-never", "--name", &name, &image.name]);
        let root = PathBuf::from(buildah_ok(&["mount", &name]).trim());
        let dir = tempfile::tempdir().unwrap();
        // What a runtime writes for each container.
        std::fs::write(
            dir.path().join("hosts"),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("hostname"), format!("{name}\n")).unwrap();
        for f in ["hosts", "hostname"] {
            std::fs::set_permissions(dir.path().join(f), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        Container {
            name,
            root,
            dir,
            process: None,
            env: Vec::new(),
        }
    }

    /// Where the container's stdout and stderr go.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("container.log")
    }

    /// The container's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts PID 1. The shell that sets the namespaces up is the machine's and runs before
    /// `chroot`; from `chroot` on, everything is the image's.
    pub fn start(&mut self, run: Run) {
        assert!(self.process.is_none(), "{} is already running", self.name);
        let root = self.root.display().to_string();
        let mut setup = String::from("set -e\nroot=$1; shift\n");
        // /dev as a runtime makes it: a tmpfs with the usual devices, and /dev/shm.
        setup.push_str(
            "mount -t tmpfs -o mode=755,nosuid tmpfs \"$root/dev\"\n\
             for d in null zero full random urandom tty; do\n\
               : > \"$root/dev/$d\" && mount --bind \"/dev/$d\" \"$root/dev/$d\"\n\
             done\n\
             mkdir -p \"$root/dev/shm\" && mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs \"$root/dev/shm\"\n\
             ln -s /proc/self/fd \"$root/dev/fd\"\n\
             ln -s /proc/self/fd/0 \"$root/dev/stdin\"; ln -s /proc/self/fd/1 \"$root/dev/stdout\"; ln -s /proc/self/fd/2 \"$root/dev/stderr\"\n",
        );
        let mut mounts: Vec<(String, String, bool)> = vec![
            (
                self.dir.path().join("hosts").display().to_string(),
                "/etc/hosts".into(),
                true,
            ),
            (
                self.dir.path().join("hostname").display().to_string(),
                "/etc/hostname".into(),
                true,
            ),
        ];
        mounts.extend(
            run.mounts
                .iter()
                .map(|m| (m.host.display().to_string(), m.path.clone(), m.read_only)),
        );
        for (host, path, ro) in &mounts {
            let is_dir = Path::new(host).is_dir();
            let make = if is_dir {
                format!("mkdir -p \"$root{path}\"")
            } else {
                format!(
                    "mkdir -p \"$(dirname \"$root{path}\")\" && [ -e \"$root{path}\" ] || : > \"$root{path}\""
                )
            };
            let opt = if *ro { "-o ro " } else { "" };
            setup.push_str(&format!(
                "{make}\nmount --bind {opt}'{host}' \"$root{path}\"\n"
            ));
        }
        setup.push_str(&format!(
            "echo '{}' > /proc/sys/kernel/hostname\n",
            self.name
        ));
        let userspec = match &run.user {
            None => String::new(),
            Some((uid, gid, groups)) => {
                let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
                format!("--userspec={uid}:{gid} --groups={} ", groups.join(","))
            }
        };
        setup.push_str(&format!(
            "exec '{}' {userspec}\"$root\" \"$@\"\n",
            tool("chroot").display()
        ));

        let mut c = Command::new(tool("unshare"));
        c.args(["--pid", "--fork", "--kill-child=SIGKILL", "--mount"])
            .arg(format!("--mount-proc={root}/proc"))
            .args(["--uts", "--ipc", "--"])
            .arg(tool("sh"))
            .arg("-c")
            .arg(setup)
            .arg("container-setup")
            .arg(&root)
            .args(&run.argv)
            .env_clear()
            .envs(run.env.iter().map(|(k, v)| (k, v)))
            .stdin(if run.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(File::create(self.log_path()).unwrap())
            .stderr(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(self.log_path())
                    .unwrap(),
            )
            // Its own group: killing the runtime's side never touches the test.
            .process_group(0);
        let mut child = c.spawn().unwrap();
        if let Some(input) = run.stdin {
            let mut stdin = child.stdin.take().unwrap();
            // A pipe holds 64 KiB; the scripts given here are a few KiB.
            stdin.write_all(input.as_bytes()).unwrap();
        }
        self.env = run.env;
        self.process = Some(child);
    }

    /// The host's pid of the container's PID 1, once it runs.
    pub fn pid1(&self) -> Option<u32> {
        let unshare = self.process.as_ref()?.id();
        let children =
            std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }

    /// Waits (bounded) for PID 1 to exist, and returns its host pid.
    pub fn wait_pid1(&self) -> u32 {
        let mut pid = None;
        assert!(
            crate::support::wait_for(Duration::from_secs(10), || {
                pid = self.pid1();
                pid.is_some()
            }),
            "{}: PID 1 did not start: {}",
            self.name,
            self.log()
        );
        pid.unwrap()
    }

    /// Host pids of every process in the container's PID namespace.
    pub fn processes(&self, pid1: u32) -> Vec<u32> {
        let Ok(ns) = std::fs::read_link(format!("/proc/{pid1}/ns/pid")) else {
            return Vec::new();
        };
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| std::fs::read_link(format!("/proc/{pid}/ns/pid")).is_ok_and(|n| n == ns))
            .collect()
    }

    /// PID 1's exit status, waiting at most `timeout`; `None` if still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.process.as_mut()?;
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the container now (SIGKILL to PID 1 ends its whole PID namespace), as a node
    /// losing a container does.
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid1() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `argv` inside the running container: its namespaces, root and working directory,
    /// the container's environment plus `extra`, as `user` (`None`: root), within `timeout`
    /// (panics past it).
    pub fn exec(
        &self,
        argv: &[&str],
        user: Option<u32>,
        extra: &[(&str, &str)],
        timeout: Duration,
    ) -> Output {
        self.try_exec(argv, user, extra, timeout)
            .unwrap_or_else(|| {
                panic!(
                    "{argv:?} in {} did not finish within {timeout:?}",
                    self.name
                )
            })
    }

    /// As [`Container::exec`]; `None` when `timeout` passed first (the process is killed).
    pub fn try_exec(
        &self,
        argv: &[&str],
        user: Option<u32>,
        extra: &[(&str, &str)],
        timeout: Duration,
    ) -> Option<Output> {
        let pid = self.pid1().expect("the container is running");
        let mut c = Command::new(tool("nsenter"));
        c.arg(format!("--target={pid}"))
            .args(["--mount", "--uts", "--ipc", "--pid", "--root", "--wd"]);
        if let Some(uid) = user {
            c.arg(format!("--setuid={uid}"))
                .arg(format!("--setgid={uid}"));
        }
        c.arg("--")
            .args(argv)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(extra.iter().copied());
        output_or_timeout(&mut c, timeout)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.kill();
        let _ = buildah(&["umount", &self.name]);
        let _ = buildah(&["rm", &self.name]);
    }
}

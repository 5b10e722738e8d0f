//! Paths to the workspace's binaries and scripts, an agent user that exists only in a private
//! mount namespace, and process-group control.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The agent user the tests create: its uid is chosen so it exists nowhere else.
pub const AGENT: &str = "molecule-agent";
pub const AGENT_UID: u32 = 4242;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The directory holding the workspace's debug binaries (beside this test's `deps/`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    for b in ["git-credential-molecule", "gh-token-refresh"] {
        assert!(
            dir.join(b).is_file(),
            "{b} is not built in {}: run `cargo build --bins` (cargo test --workspace does)",
            dir.display()
        );
    }
    dir
}

/// Writes what a test measured to `target/test-reports/NAME.txt`: libtest hides a passing
/// test's output, and `scripts/test.sh` prints every report after `cargo test`.
pub fn report(name: &str, text: &str) {
    let dir = root().join("target/test-reports");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{name}.txt")),
        format!("{}\n", text.trim_end()),
    )
    .unwrap();
}

pub fn script(name: &str) -> PathBuf {
    root().join("scripts").join(name)
}

/// A world-traversable temp directory (the agent user must reach its home inside it).
pub fn open_tempdir() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    t
}

/// Makes `path` a directory owned by the agent.
pub fn agent_dir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    std::os::unix::fs::chown(path, Some(AGENT_UID), Some(AGENT_UID)).unwrap();
    path.to_path_buf()
}

/// passwd and group files: the machine's, plus the agent with `home`.
pub fn user_db(dir: &Path, home: &Path) -> (PathBuf, PathBuf) {
    let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd.push_str(&format!(
        "{AGENT}:x:{AGENT_UID}:{AGENT_UID}:agent:{}:/bin/sh\n",
        home.display()
    ));
    let mut group = std::fs::read_to_string("/etc/group").unwrap();
    group.push_str(&format!("{AGENT}:x:{AGENT_UID}:\n"));
    let (p, g) = (dir.join("passwd"), dir.join("group"));
    std::fs::write(&p, passwd).unwrap();
    std::fs::write(&g, group).unwrap();
    for f in [&p, &g] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    (p, g)
}

/// `argv` run with the agent user present: in a private mount namespace where `passwd` and
/// `group` replace the machine's. In its own process group, so the daemon and respawn loop it
/// leaves behind can be stopped together.
pub fn with_agent_user(passwd: &Path, group: &Path, argv: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.arg("-m")
        .arg("sh")
        .arg("-c")
        .arg("mount --bind \"$1\" /etc/passwd && mount --bind \"$2\" /etc/group && shift 2 && exec \"$@\"")
        .arg("sh")
        .arg(passwd)
        .arg(group)
        .args(argv)
        .process_group(0);
    c
}

/// Sends `signal` to the process group led by `child`.
pub fn kill_group(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{}", child.id()))
        .status();
}

/// Stops everything in `child`'s process group (the daemon and respawn loop an entrypoint
/// leaves behind) and waits until none of it is left.
pub fn stop_group(child: &Child) {
    kill_group(child, "TERM");
    let alive = || {
        Command::new("kill")
            .args(["-0", "--", &format!("-{}", child.id())])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !wait_for(Duration::from_secs(10), || !alive()) {
        kill_group(child, "KILL");
        panic!("processes of group {} ignored SIGTERM for 10 s", child.id());
    }
}

/// Waits for `child` to exit within `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("process {} did not exit within {timeout:?}", child.id());
}

/// Runs `c` to completion with stdin closed and its output collected, killing it and
/// panicking if it is not done within `timeout`: no child of a test runs unbounded.
pub fn output_within(c: &mut Command, timeout: Duration) -> std::process::Output {
    output_or_timeout(c, timeout).unwrap_or_else(|| {
        panic!(
            "{:?} {:?} did not finish within {timeout:?}",
            c.get_program(),
            c.get_args().collect::<Vec<_>>()
        )
    })
}

/// As [`output_within`], and the command must succeed: panics with its stderr otherwise.
pub fn run_ok(c: &mut Command, timeout: Duration) -> std::process::Output {
    let out = output_within(c, timeout);
    assert!(
        out.status.success(),
        "{:?} {:?}: {}\n{}",
        c.get_program(),
        c.get_args().collect::<Vec<_>>(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The variables a container may be started with that carry the boot-time token: gh's, and
/// the names MCP servers and Copilot read it by. The entrypoint unsets them all.
pub const TOKEN_VARIABLES: [&str; 6] = [
    "GH_TOKEN",
    "GITHUB_TOKEN",
    "GH_ENTERPRISE_TOKEN",
    "GITHUB_ENTERPRISE_TOKEN",
    "GITHUB_PERSONAL_ACCESS_TOKEN",
    "COPILOT_GITHUB_TOKEN",
];

/// Panics if `env` (`NAME=value` lines, as `env` prints them) holds a variable gh, git tools,
/// MCP servers or Copilot take a token from ([`TOKEN_VARIABLES`]): `who` (say, "the agent")
/// must get its tokens another way.
pub fn assert_no_token_variable(env: &str, who: &str) {
    for var in TOKEN_VARIABLES.map(|name| format!("{name}=")) {
        assert!(
            !env.lines().any(|l| l.starts_with(&var)),
            "{who}: {var} is set"
        );
    }
}

/// Sends `signal` (`TERM`, `KILL`, …) to process `pid`, which must exist.
pub fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid}: {sent}");
}

/// As [`output_within`], but a command still running at `timeout` is killed and `None`
/// returned: for probes, where a timeout is an answer.
pub fn output_or_timeout(c: &mut Command, timeout: Duration) -> Option<std::process::Output> {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = c
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", c.get_program()));
    let end = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Some(std::process::Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    })
}

/// Polls `cond` every 50 ms until `timeout`.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// Owner uid and mode bits of `path`.
pub fn owner_mode(path: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.uid(), m.mode() & 0o777)
}

/// The values of a multi-valued git config key in `file`.
pub fn git_config_all(file: &Path, key: &str) -> Vec<String> {
    let out = Command::new("git")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["config", "--file"])
        .arg(file)
        .args(["--get-all", key])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A fake gh that records logins and never touches a network: for tests about the entrypoint,
/// not about gh.
pub fn fake_gh(dir: &Path) -> PathBuf {
    let bin = dir.join("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    let gh = bin.join("gh");
    std::fs::write(
        &gh,
        "#!/bin/sh\n[ -z \"${GH_TOKEN}${GITHUB_TOKEN}\" ] || exit 1\ncase \"$1 $2\" in\n  \"auth login\") cat > /dev/null ;;\n  *) exit 1 ;;\nesac\n",
    )
    .unwrap();
    std::fs::set_permissions(&gh, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// The fields of `/proc/PID/stat` after the command name (which is in parentheses and may
/// hold anything): state, parent, process group, session, …
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Whether process `pid` runs: it exists and is not a zombie (this machine's init may not
/// reap orphans, so a dead one can linger as one).
pub fn alive(pid: u32) -> bool {
    stat_fields(pid)
        .is_some_and(|f| !matches!(f.first().map(String::as_str), None | Some("Z" | "X")))
}

/// Running processes (zombies left out) of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    processes_where(2, pgid)
}

/// Running processes (zombies left out) of session `sid`.
pub fn session_members(sid: u32) -> Vec<u32> {
    processes_where(3, sid)
}

fn processes_where(field: usize, id: u32) -> Vec<u32> {
    let id = id.to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat_fields(*pid).is_some_and(|f| f.get(field) == Some(&id)))
        .filter(|pid| alive(*pid))
        .collect()
}

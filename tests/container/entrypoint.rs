//! scripts/entrypoint.sh as root with a created agent user, and started directly as the agent.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use molecule_tests::deadline::Guard;
use molecule_tests::{PlatformOptions, PlatformStandIn, TokenAuthority};

use crate::support::*;

const STALE: &str = "ghs_stale_boot_token_0123456789";

/// What the agent command records: its uid, its environment and the helper list git sees.
const RECORD: &str = "id -u > \"$OUT/uid\"; env > \"$OUT/env\"";

struct Scene {
    t: tempfile::TempDir,
    platform: PlatformStandIn,
    home: std::path::PathBuf,
    out: std::path::PathBuf,
    passwd: std::path::PathBuf,
    group: std::path::PathBuf,
}

impl Scene {
    fn new() -> Self {
        let t = open_tempdir();
        let platform = PlatformStandIn::start(
            "127.0.0.1:0".parse().unwrap(),
            PlatformOptions {
                bearer: "bearer-e".into(),
                ..PlatformOptions::default()
            },
            TokenAuthority::new(),
        );
        let home = agent_dir(&t.path().join("home/agent"));
        std::fs::set_permissions(
            t.path().join("home"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let out = agent_dir(&t.path().join("out"));
        std::fs::create_dir_all(t.path().join("configs")).unwrap();
        // The daemon runs as the agent: the bearer is the agent's alone, as a secret volume
        // mounted for its uid would be.
        molecule_tests::write_secret(&t.path().join("configs/.auth_token"), "bearer-e\n");
        std::os::unix::fs::chown(t.path().join("configs/.auth_token"), Some(AGENT_UID), None)
            .unwrap();
        let (passwd, group) = user_db(t.path(), &home);
        Self {
            t,
            platform,
            home,
            out,
            passwd,
            group,
        }
    }

    fn env(&self, c: &mut Command) {
        let fake = fake_gh(self.t.path());
        c.env_clear()
            .env(
                "PATH",
                format!(
                    "{}:{}:/usr/sbin:/usr/bin:/sbin:/bin",
                    fake.display(),
                    bin_dir().display()
                ),
            )
            .env("HOME", "/root")
            .env("GIT_CONFIG_SYSTEM", self.t.path().join("etc-gitconfig"))
            .env("PLATFORM_URL", self.platform.url())
            .env("CONFIGS_DIR", self.t.path().join("configs"))
            .env("MOLECULE_AGENT_USER", AGENT)
            .envs(TOKEN_VARIABLES.map(|name| (name, STALE)))
            .env("OUT", &self.out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // A file, not a pipe: the daemon the entrypoint leaves running inherits it, and a
            // pipe would never reach end of file.
            .stderr(std::fs::File::create(self.t.path().join("entrypoint.log")).unwrap());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.t.path().join("entrypoint.log")).unwrap_or_default()
    }

    fn cache(&self) -> std::path::PathBuf {
        self.home.join(".molecule-token-cache")
    }
}

/// The helper value `configure` registers when the entrypoint starts it by name: its path on
/// PATH (DESIGN.md: the absolute path of the installed binary).
fn installed_helper() -> String {
    bin_dir()
        .join("git-credential-molecule")
        .display()
        .to_string()
}

fn run_entrypoint(s: &Scene, mut c: Command) -> (i32, String, std::process::Child) {
    let mut child = c.spawn().unwrap();
    let code = wait_exit(&mut child, Duration::from_secs(60)).unwrap_or(-1);
    (code, s.log(), child)
}

#[test]
fn as_root_it_configures_git_owns_the_cache_and_drops_the_boot_token() {
    if !molecule_tests::netns::in_private_netns(
        "entrypoint::as_root_it_configures_git_owns_the_cache_and_drops_the_boot_token",
    ) {
        return;
    }
    let s = Scene::new();
    let entry = script("entrypoint.sh");
    let mut runs = Vec::new();
    for round in 1..=2 {
        let mut c = with_agent_user(
            &s.passwd,
            &s.group,
            &[entry.to_str().unwrap(), "sh", "-c", RECORD],
        );
        s.env(&mut c);
        let (code, err, child) = run_entrypoint(&s, c);
        assert_eq!(code, 0, "round {round}: {err}");
        assert!(!err.contains(STALE), "the boot token reached the log");

        // git: exactly the empty entry, then ours by the path the entrypoint found it at on
        // PATH, however often the entrypoint runs.
        let helpers = git_config_all(
            &s.t.path().join("etc-gitconfig"),
            "credential.https://github.com.helper",
        );
        assert_eq!(
            helpers,
            ["".to_owned(), installed_helper()],
            "round {round}"
        );
        // The cache: the agent's, 0700. The fallback: the agent's, 0600, the boot token.
        assert_eq!(owner_mode(&s.cache()), (AGENT_UID, 0o700), "round {round}");
        let fallback = s.cache().join("fallback-token");
        assert_eq!(owner_mode(&fallback), (AGENT_UID, 0o600), "round {round}");
        assert_eq!(
            std::fs::read_to_string(&fallback).unwrap(),
            format!("{STALE}\n")
        );
        // The agent: its own uid and home, and no token variable at all.
        assert_eq!(
            std::fs::read_to_string(s.out.join("uid")).unwrap().trim(),
            AGENT_UID.to_string()
        );
        let env = std::fs::read_to_string(s.out.join("env")).unwrap();
        assert_no_token_variable(&env, &format!("round {round}: the agent"));
        assert!(
            env.lines()
                .any(|l| l == format!("HOME={}", s.home.display())),
            "round {round}"
        );
        // The prime worked: the cache holds a platform token, owned by the agent.
        assert_eq!(
            owner_mode(&s.cache().join("tokens.json")),
            (AGENT_UID, 0o600)
        );
        // The agent exited, so the entrypoint stopped the daemon before it returned: gone,
        // with its stop recorded.
        let (pid, stopped) = daemon_record(&s.cache()).expect("the daemon ran");
        assert!(stopped, "round {round}: the daemon recorded no stop\n{err}");
        assert!(
            !alive(pid),
            "round {round}: the daemon outlived the entrypoint"
        );
        assert!(
            err.contains("gh-token-refresh stopped"),
            "round {round}: {err}"
        );
        runs.push((err, child));
    }
    assert!(runs[0].0.contains("cache and gh primed"), "{}", runs[0].0);
    for (_, child) in &runs {
        stop_group(child);
    }
}

#[test]
fn started_directly_as_the_agent_it_configures_global_git() {
    if !molecule_tests::netns::in_private_netns(
        "entrypoint::started_directly_as_the_agent_it_configures_global_git",
    ) {
        return;
    }
    let s = Scene::new();
    let entry = script("entrypoint.sh");
    let uid = format!("--reuid={AGENT_UID}");
    let gid = format!("--regid={AGENT_UID}");
    let mut c = with_agent_user(
        &s.passwd,
        &s.group,
        &[
            "setpriv",
            &uid,
            &gid,
            "--clear-groups",
            "--",
            entry.to_str().unwrap(),
            "sh",
            "-c",
            RECORD,
        ],
    );
    s.env(&mut c);
    c.env("HOME", &s.home)
        .env_remove("GIT_CONFIG_SYSTEM")
        .env("GIT_CONFIG_NOSYSTEM", "1");
    let (code, err, child) = run_entrypoint(&s, c);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        git_config_all(
            &s.home.join(".gitconfig"),
            "credential.https://github.com.helper"
        ),
        ["".to_owned(), installed_helper()]
    );
    assert_eq!(owner_mode(&s.cache()), (AGENT_UID, 0o700));
    assert_eq!(
        owner_mode(&s.cache().join("fallback-token")),
        (AGENT_UID, 0o600)
    );
    let env = std::fs::read_to_string(s.out.join("env")).unwrap();
    assert_no_token_variable(&env, "the agent");
    stop_group(&child);
}

#[test]
fn without_a_command_it_says_how_to_use_it() {
    let out = Command::new(script("entrypoint.sh"))
        .env("PATH", format!("{}:/usr/bin:/bin", bin_dir().display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: entrypoint.sh CMD"));
}

// ---------------------------------------------------------------------------------------
// The agent's life and the clean stop, with the entrypoint started directly as this test's
// user (`MOLECULE_ENTRYPOINT_NO_DROP=1`): the real daemon against the platform stand-in,
// under the real respawn loop.

/// The daemon's last status record in `cache`: its pid, and whether it recorded its stop
/// (a stopping daemon clears `next_wake_at`).
fn daemon_record(cache: &Path) -> Option<(u32, bool)> {
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("daemon.status.json")).ok()?).ok()?;
    let pid = u32::try_from(status["pid"].as_u64()?).ok()?;
    Some((pid, status["next_wake_at"].is_null()))
}

/// The entrypoint run as this user, with its own home, the platform stand-in and a fake gh.
struct Direct {
    t: tempfile::TempDir,
    platform: PlatformStandIn,
    home: std::path::PathBuf,
    out: std::path::PathBuf,
}

impl Direct {
    fn new() -> Self {
        let t = tempfile::tempdir().unwrap();
        let platform = PlatformStandIn::start(
            "127.0.0.1:0".parse().unwrap(),
            PlatformOptions {
                bearer: "bearer-direct".into(),
                ..PlatformOptions::default()
            },
            TokenAuthority::new(),
        );
        let (home, out) = (t.path().join("home"), t.path().join("out"));
        for d in [&home, &out, &t.path().join("configs")] {
            std::fs::create_dir_all(d).unwrap();
        }
        molecule_tests::write_secret(&t.path().join("configs/.auth_token"), "bearer-direct\n");
        Self {
            t,
            platform,
            home,
            out,
        }
    }

    /// An executable script in the test's directory.
    fn script(&self, name: &str, body: &str) -> String {
        let path = self.t.path().join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    /// `argv` with the entrypoint's environment: the stale boot token under every name,
    /// `$OUT`, the workspace's binaries after `first_on_path` (a directory of stand-ins).
    fn command(&self, argv: &[&str], first_on_path: Option<&Path>) -> Command {
        let fake = fake_gh(self.t.path());
        let mut path = format!("{}:", fake.display());
        if let Some(dir) = first_on_path {
            path.push_str(&format!("{}:", dir.display()));
        }
        path.push_str(&format!(
            "{}:/usr/sbin:/usr/bin:/sbin:/bin",
            bin_dir().display()
        ));
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..])
            .env_clear()
            .env("PATH", path)
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("PLATFORM_URL", self.platform.url())
            .env("CONFIGS_DIR", self.t.path().join("configs"))
            .env("MOLECULE_ENTRYPOINT_NO_DROP", "1")
            .envs(TOKEN_VARIABLES.map(|name| (name, STALE)))
            .env("OUT", &self.out)
            .stdout(std::fs::File::create(self.t.path().join("entrypoint.log")).unwrap())
            .stderr(std::fs::File::create(self.t.path().join("entrypoint.err")).unwrap());
        c
    }

    /// What the entrypoint and everything it started wrote, stdout then stderr.
    fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.t.path().join(f)).unwrap_or_default();
        read("entrypoint.log") + &read("entrypoint.err")
    }

    fn cache(&self) -> std::path::PathBuf {
        self.home.join(".molecule-token-cache")
    }

    /// A file the agent wrote into `$OUT`.
    fn out(&self, name: &str) -> String {
        std::fs::read_to_string(self.out.join(name)).unwrap_or_default()
    }

    /// The respawn loop's pid, as the entrypoint logged it: it leads the daemon's session.
    fn keeper(&self) -> Option<u32> {
        let log = self.log();
        let line = log.lines().find(|l| l.contains("running under"))?;
        line.rsplit_once("(pid ")?
            .1
            .trim_end_matches(')')
            .parse()
            .ok()
    }

    /// The running daemon's pid, once it has written its status.
    fn running_daemon(&self) -> Option<u32> {
        daemon_record(&self.cache())
            .and_then(|(pid, stopped)| (!stopped && alive(pid)).then_some(pid))
    }
}

impl Drop for Direct {
    /// Whatever a failed test left: the daemon's session, and the agent's process group
    /// (on a pseudo-terminal, in a session `script` made).
    fn drop(&mut self) {
        if let Some(keeper) = self.keeper() {
            molecule_tests::deadline::kill_group(keeper, "KILL");
        }
        let agent_group = self
            .out("agent")
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("group=")?.parse().ok());
        if let Some(group) = agent_group {
            molecule_tests::deadline::kill_group(group, "KILL");
        }
    }
}

/// An agent that reads the terminal: it records its process group, the terminal's foreground
/// group (fields 5 and 8 of /proc/PID/stat), whether stdin is a terminal and the signals it
/// ignores; then reads a line, records each SIGINT, and exits 7 once `$OUT/finish` exists.
const TTY_AGENT: &str = r#"#!/bin/sh
set -- $(cut -d' ' -f5,8 /proc/$$/stat)
tty=no
[ -t 0 ] && tty=yes
echo "group=$1 foreground=$2 tty=$tty ignored=$(awk '/^SigIgn:/ {print $2}' /proc/$$/status)" > "$OUT/agent"
trap 'echo int >> "$OUT/signals"' INT
IFS= read -r line
printf '%s\n' "$line" > "$OUT/read"
while [ ! -f "$OUT/finish" ]; do sleep 0.1; done
exit 7
"#;

const TERMINAL_TEST: &str =
    "entrypoint::a_terminal_agent_reads_the_terminal_and_gets_ctrl_c_and_the_daemon_does_not";

/// `docker run -it IMAGE agent`: the entrypoint under tini on a real pseudo-terminal. The
/// agent is in the terminal's foreground group with the terminal as stdin, reads what is
/// typed, and Ctrl-C reaches it (once, and not ignored) but not the daemon. When the agent
/// exits, the daemon is stopped, and the exit status that comes out is the agent's.
#[test]
fn a_terminal_agent_reads_the_terminal_and_gets_ctrl_c_and_the_daemon_does_not() {
    use std::io::Write as _;
    if !molecule_tests::skip::require_tools(TERMINAL_TEST, &["script", "tini"]) {
        return;
    }
    let d = Direct::new();
    let agent = d.script("tty-agent.sh", TTY_AGENT);
    let entry = script("entrypoint.sh");
    // -s: not PID 1 here, tini reaps as a subreaper instead.
    let inner = format!("tini -s -- {} {agent}", entry.display());
    let mut c = d.command(
        &[
            "script",
            "--quiet",
            "--return",
            "--command",
            &inner,
            "/dev/null",
        ],
        None,
    );
    let mut guard = Guard::spawn(c.stdin(Stdio::piped()));
    let mut terminal = guard.child().stdin.take().unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || !d.out("agent").is_empty()
            && d.running_daemon().is_some()),
        "the agent or the daemon did not start:\n{}",
        d.log()
    );
    let daemon = d.running_daemon().unwrap();

    terminal.write_all(b"typed at the terminal\n").unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || !d.out("read").is_empty()),
        "the agent read nothing from the terminal:\n{}",
        d.log()
    );
    assert_eq!(d.out("read"), "typed at the terminal\n");

    // Ctrl-C: the terminal signals its foreground group.
    terminal.write_all(b"\x03").unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || !d.out("signals").is_empty()),
        "Ctrl-C did not reach the agent:\n{}",
        d.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.out("signals"), "int\n", "one Ctrl-C, one SIGINT");
    assert!(alive(daemon), "Ctrl-C reached the daemon:\n{}", d.log());
    assert_eq!(d.running_daemon(), Some(daemon));

    std::fs::write(d.out.join("finish"), "").unwrap();
    let code = wait_exit(guard.child(), Duration::from_secs(20));
    drop(terminal);
    assert_eq!(code, Some(7), "the agent's status:\n{}", d.log());
    assert_eq!(
        daemon_record(&d.cache()),
        Some((daemon, true)),
        "the daemon recorded its stop:\n{}",
        d.log()
    );
    assert!(!alive(daemon));
    assert!(d.log().contains("gh-token-refresh stopped"), "{}", d.log());

    let record = d.out("agent");
    let field = |name: &str| {
        record
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {record}"))
            .to_owned()
    };
    assert_eq!(field("tty"), "yes", "{record}");
    assert_eq!(
        field("group"),
        field("foreground"),
        "the agent is in the terminal's foreground group: {record}"
    );
    let ignored = u64::from_str_radix(&field("ignored"), 16).unwrap();
    // Bits 1 and 2: SIGINT (2) and SIGQUIT (3).
    assert_eq!(
        ignored & 0b110,
        0,
        "the agent starts with SIGINT or SIGQUIT ignored: {record}"
    );
    for name in TOKEN_VARIABLES {
        assert!(
            !d.log().contains(STALE),
            "{name}: the boot token reached the terminal"
        );
    }
}

/// An agent that records each SIGTERM and exits 5 on it, after reading one line from stdin
/// (what `docker run -i` pipes in must reach it).
const TERM_AGENT: &str = r#"#!/bin/sh
trap 'echo term >> "$OUT/signals"; exit 5' TERM
IFS= read -r line
printf '%s\n' "$line" > "$OUT/read"
env > "$OUT/env"
while :; do sleep 0.1; done
"#;

/// `docker stop`: SIGTERM to the entrypoint. The agent gets it, once; the daemon is stopped
/// and records its stop before the entrypoint exits, with the agent's status.
#[test]
fn sigterm_reaches_the_agent_once_and_the_daemon_stops_before_the_entrypoint_exits() {
    use std::io::Write as _;
    let d = Direct::new();
    let agent = d.script("term-agent.sh", TERM_AGENT);
    let entry = script("entrypoint.sh");
    let mut c = d.command(&[entry.to_str().unwrap(), &agent], None);
    let mut guard = Guard::spawn(c.stdin(Stdio::piped()));
    guard
        .child()
        .stdin
        .take()
        .unwrap()
        .write_all(b"piped in\n")
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || !d.out("env").is_empty()
            && d.running_daemon().is_some()),
        "the agent or the daemon did not start:\n{}",
        d.log()
    );
    assert_eq!(
        d.out("read"),
        "piped in\n",
        "the agent got the entrypoint's stdin"
    );
    assert_no_token_variable(&d.out("env"), "the agent");
    // The entrypoint stays for the agent's life: its own environment, which every process of
    // the agent user can read, must not hold the token either.
    let environ = std::fs::read(format!("/proc/{}/environ", guard.id())).unwrap();
    assert_no_token_variable(
        &String::from_utf8_lossy(&environ).replace('\0', "\n"),
        "the entrypoint's /proc/PID/environ",
    );
    let daemon = d.running_daemon().unwrap();
    let keeper = d.keeper().expect("the entrypoint names the respawn loop");

    let sent = std::time::Instant::now();
    signal(guard.id(), "TERM");
    let code = wait_exit(guard.child(), Duration::from_secs(15));
    let took = sent.elapsed();
    assert_eq!(code, Some(5), "the agent's status:\n{}", d.log());
    assert_eq!(
        d.out("signals"),
        "term\n",
        "exactly one SIGTERM reached the agent"
    );
    // The daemon wrote its last record and exited before the entrypoint did.
    assert_eq!(
        daemon_record(&d.cache()),
        Some((daemon, true)),
        "{}",
        d.log()
    );
    assert!(!alive(daemon));
    assert_eq!(
        session_members(keeper),
        Vec::<u32>::new(),
        "the daemon's session is empty"
    );
    assert!(d.log().contains("gh-token-refresh stopped"), "{}", d.log());
    assert!(took < Duration::from_secs(3), "the stop took {took:?}");
    assert!(!d.log().contains(STALE), "the boot token reached the log");
}

/// A daemon that ignores SIGTERM: records its pid, then sleeps forever. `--once` succeeds.
const STUBBORN_DAEMON: &str = r#"#!/bin/sh
[ "${1:-}" = --once ] && exit 0
trap '' TERM
echo $$ > "$OUT/daemon"
while :; do sleep 1; done
"#;

/// The agent exits on its own (status 3) and the daemon ignores SIGTERM: the entrypoint
/// waits for it at most 10 s, kills it and its respawn loop, and exits with the agent's
/// status.
#[test]
fn a_daemon_that_ignores_sigterm_holds_the_exit_at_most_10_s() {
    let d = Direct::new();
    let stand_ins = d.t.path().join("stand-ins");
    std::fs::create_dir_all(&stand_ins).unwrap();
    let path = stand_ins.join("gh-token-refresh");
    std::fs::write(&path, STUBBORN_DAEMON).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let agent = d.script(
        "quick-agent.sh",
        "#!/bin/sh\nwhile [ ! -s \"$OUT/daemon\" ]; do sleep 0.1; done\nexit 3\n",
    );
    let entry = script("entrypoint.sh");
    let mut c = d.command(&[entry.to_str().unwrap(), &agent], Some(&stand_ins));
    let started = std::time::Instant::now();
    let mut guard = Guard::spawn(c.stdin(Stdio::null()));
    let code = wait_exit(guard.child(), Duration::from_secs(30));
    let took = started.elapsed();
    assert_eq!(code, Some(3), "the agent's status:\n{}", d.log());
    let daemon: u32 = d.out("daemon").trim().parse().unwrap();
    assert!(!alive(daemon), "the stubborn daemon was killed");
    let keeper = d.keeper().unwrap();
    assert_eq!(
        session_members(keeper),
        Vec::<u32>::new(),
        "nothing of its session is left"
    );
    assert!(
        d.log()
            .contains("gh-token-refresh did not stop within 10s of SIGTERM; killing it"),
        "{}",
        d.log()
    );
    // 10 s at most by the wall clock's whole seconds (so 9 to 10 s), and a poll of 0.1 s.
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_millis(11_500),
        "the entrypoint exited {took:?} after the start"
    );
}

//! `exec [--restart [--grace-sec N]] -- CMD…`: run a command with a fresh token in its
//! environment (DESIGN.md, "Tokens for tools that do not ask git"), for tools that read the
//! token once at start: MCP servers, SDK clients, long scripts.
//!
//! CMD gets the token in `GH_TOKEN` and `GITHUB_TOKEN`, and for a host other than github.com
//! also in `GH_ENTERPRISE_TOKEN` and `GITHUB_ENTERPRISE_TOKEN` (gh reads those, not
//! `GH_TOKEN`, for an enterprise host); nothing else in its environment changes, and the token
//! is never in anyone's argv. Tokens come through [`crate::helper::obtain`], the whole source
//! order through the single-flight broker, so both modes work with or without the daemon.
//!
//! Plain `exec` replaces this process with CMD (127 when CMD is not found, 126 when it cannot
//! be run, as a shell says).
//!
//! With `--restart` this process stays as CMD's supervisor, on a current-thread runtime built
//! only on this path:
//!
//! - **When.** The pure decisions are [`restart`]'s: the child is restarted [`restart::LEAD`]
//!   before the token it holds enters the margin, never sooner and only for a fresh token;
//!   a look that finds none is retried on the daemon's backoff series. The loop sleeps on a
//!   wall-clock [`Alarm`] (a timerfd on `CLOCK_REALTIME`), so a suspend, a snapshot restore or a
//!   clock step is noticed at once, as in the daemon, and on a monotonic timer for retries.
//! - **How.** The new token is obtained first, so a failed look never costs the child
//!   anything; then the child is stopped (SIGTERM, SIGKILL after `--grace-sec`) and started
//!   again with the new token; one line on stderr says so.
//! - **Process group.** The child runs in a process group of its own, and every signal goes
//!   to that whole group: a child that is a shell, `npx` or another launcher is stopped with
//!   everything it started, so no grandchild keeps running with an old token (or keeps
//!   reading the stdin the new child should get). A terminal's Ctrl-C reaches the supervisor
//!   alone, which forwards it once. The cost: the child is not in the terminal's foreground
//!   group, so it cannot read from a terminal (it would be stopped by SIGTTIN); `--restart` is
//!   for servers and scripts, not interactive programs.
//! - **Signals.** SIGINT, SIGTERM and SIGHUP are forwarded to the child's group. SIGINT and
//!   SIGTERM also end supervision: no restart after them; the child gets the grace, then
//!   SIGKILL, and the supervisor exits with its status.
//! - **Exit.** Whenever the child exits on its own (any code, a crash included) the supervisor
//!   exits with its status: its code, or 128 + the signal that ended it, as a shell reports it.
//!   A child is restarted for a new token, never for a crash.
//! - **Death.** If the supervisor dies first, even by SIGKILL, the kernel sends the child
//!   SIGTERM (`PR_SET_PDEATHSIG`): no child keeps running with a token nobody renews.
//!
//! Every wait is bounded: a look by the source's budget, a stop by the grace plus a few
//! seconds after SIGKILL.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use molecule_credential::alarm::{Alarm, RealtimeAlarm};
use molecule_credential::clock::{Clock, SystemClock, format_rfc3339};
use molecule_credential::config::{Config, vars};
use molecule_credential::logging::redact;
use molecule_credential::route::Target;
use molecule_credential::schedule::{Dice, RandomDice};
use molecule_credential::{Class, Error, Secret};
use rustix::process::{Pid, Signal};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::commands::TokenArgs;
use crate::helper::{Token, obtain};
use crate::{NAME, report_error};

pub mod restart;

use restart::{Held, Next, Plan, Verdict};

/// `exec` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ExecArgs {
    /// Which token
    #[command(flatten)]
    pub token: TokenArgs,
    /// Stay as CMD's supervisor: before its token enters the margin, restart it with a new one
    #[arg(long)]
    pub restart: bool,
    /// With --restart: seconds CMD has to exit after SIGTERM before SIGKILL
    #[arg(
        long,
        value_name = "N",
        default_value_t = 10,
        requires = "restart",
        value_parser = clap::value_parser!(u64).range(0..=3600)
    )]
    pub grace_sec: u64,
    /// The command and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

/// The variables CMD gets the token in: `GH_TOKEN` and `GITHUB_TOKEN`, and for a host other
/// than github.com also `GH_ENTERPRISE_TOKEN` and `GITHUB_ENTERPRISE_TOKEN`, which gh reads
/// instead for an enterprise host.
pub fn token_vars(host: &str) -> &'static [&'static str] {
    const DOTCOM: &[&str] = &[vars::GH_TOKEN, vars::GITHUB_TOKEN];
    const ENTERPRISE: &[&str] = &[
        vars::GH_TOKEN,
        vars::GITHUB_TOKEN,
        vars::GH_ENTERPRISE_TOKEN,
        vars::GITHUB_ENTERPRISE_TOKEN,
    ];
    if host == "github.com" {
        DOTCOM
    } else {
        ENTERPRISE
    }
}

/// `exec`: plain, or with `--restart` as CMD's supervisor. Exits 69 only when every token
/// source failed, like `token`.
pub fn run(config: &Config, args: &ExecArgs) -> Result<u8, Error> {
    let target = args.token.target(config)?;
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    let spec = Spec {
        program: program.clone(),
        args: rest.to_vec(),
        vars: token_vars(&target.host),
        grace: Duration::from_secs(args.grace_sec),
    };
    if args.restart {
        supervise_command(config, target, &spec)
    } else {
        exec_once(config, &target, &spec)
    }
}

/// Replaces this process with CMD; returns only when that failed.
fn exec_once(config: &Config, target: &Target, spec: &Spec) -> Result<u8, Error> {
    let Token { token, .. } = obtain(config, target)?;
    let mut cmd = std::process::Command::new(&spec.program);
    cmd.args(&spec.args);
    for name in spec.vars {
        cmd.env(name, token.expose());
    }
    let e = cmd.exec();
    Ok(cannot_run(&spec.program, &e))
}

/// Says why CMD could not be started; the shell's exit code for it: 127 not found, 126 found
/// but not runnable.
fn cannot_run(program: &OsString, e: &io::Error) -> u8 {
    report_error(&Error::new(
        Class::LocalConfig,
        format!("cannot run {}: {e}", program.to_string_lossy()),
    ));
    if e.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

/// One line on stderr, redacted, whatever the log filter: what a restart says.
fn notice(line: &str) {
    let line = format!("{NAME}: {line}\n");
    let _ = io::stderr().write_all(redact(&line).as_bytes());
}

/// What the supervisor runs.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The program (looked up on `PATH`).
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// The variables the token goes into ([`token_vars`]).
    pub vars: &'static [&'static str],
    /// How long the child has after SIGTERM before SIGKILL.
    pub grace: Duration,
}

/// A token a look found, and what the supervisor knows of it.
pub struct Found {
    /// The token.
    pub token: Secret<String>,
    /// Its expiry, or that it is the fallback.
    pub held: Held,
}

impl std::fmt::Debug for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Found { token, held } = self;
        f.debug_struct("Found")
            .field("token", &format_args!("<{} bytes>", token.len()))
            .field("held", held)
            .finish()
    }
}

/// Looks for a token through the whole source order; run on a blocking thread (it may take
/// locks and call the source, each within its budget).
pub type Look = Arc<dyn Fn() -> Result<Found, Error> + Send + Sync>;

/// A signal the supervisor received, as a value: `main`-side code installs the handlers and
/// feeds them in, so the supervisor can be driven without signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// SIGINT: forwarded, and supervision ends.
    Interrupt,
    /// SIGTERM: forwarded, and supervision ends.
    Terminate,
    /// SIGHUP: forwarded only.
    Hangup,
}

impl Received {
    fn signal(self) -> Signal {
        match self {
            Received::Interrupt => Signal::INT,
            Received::Terminate => Signal::TERM,
            Received::Hangup => Signal::HUP,
        }
    }

    fn ends_supervision(self) -> bool {
        matches!(self, Received::Interrupt | Received::Terminate)
    }
}

/// What the supervisor is given rather than reaching for: time, a wall-clock alarm,
/// randomness for the backoff, the way to a token, and the signals.
pub struct Deps<A, D> {
    /// The wall clock.
    pub clock: Arc<dyn Clock>,
    /// Wakes the loop at a wall-clock time, or when the wall clock is changed.
    pub alarm: A,
    /// Randomness for the backoff's jitter.
    pub dice: D,
    /// The way to a token.
    pub look: Look,
    /// Signals received, in order.
    pub signals: mpsc::Receiver<Received>,
}

/// `exec --restart`: the first token, then the supervisor on a current-thread runtime.
fn supervise_command(config: &Config, target: Target, spec: &Spec) -> Result<u8, Error> {
    let plan = Plan::from_config(config);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let look = source_look(config, target);
    // Before the runtime exists: `obtain` may build its own to mint, and a runtime cannot be
    // started inside another on the same thread. Later looks run on blocking threads.
    let first = look()?;
    let runtime = molecule_credential::runtime()?;
    let code = runtime.block_on(async {
        let signals = match install_signals() {
            Ok(s) => s,
            Err(e) => {
                report_error(&Error::new(
                    Class::LocalConfig,
                    format!("cannot install signal handlers: {e}"),
                ));
                return Class::LocalConfig.exit_code();
            }
        };
        let deps = Deps {
            clock,
            alarm: RealtimeAlarm::new(),
            dice: RandomDice,
            look,
            signals,
        };
        supervise(&plan, spec, first, deps).await
    });
    // A look abandoned when the child exited may still be running on a blocking thread (it
    // ends within the source's budget): exit now rather than wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(code)
}

/// The production look: [`obtain`] asked with the supervisor's margin ([`Plan::due_margin`]),
/// so a token about to be due is refreshed (single-flight) rather than served. The answer's
/// real expiry is what the child holds; the fallback has none.
fn source_look(config: &Config, target: Target) -> Look {
    let mut asking = config.clone();
    asking.margin = Plan::from_config(config).due_margin();
    Arc::new(move || {
        let Token {
            token,
            expiry: _,
            expires_at,
            source: _,
        } = obtain(&asking, &target)?;
        let held = expires_at.map_or(Held::Unknown, Held::Expires);
        Ok(Found { token, held })
    })
}

/// SIGINT, SIGTERM and SIGHUP, as values on a channel.
fn install_signals() -> io::Result<mpsc::Receiver<Received>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let received = tokio::select! {
                Some(()) = int.recv() => Received::Interrupt,
                Some(()) = term.recv() => Received::Terminate,
                Some(()) = hup.recv() => Received::Hangup,
                else => break,
            };
            if tx.send(received).await.is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

/// The next signal; never resolves once no more can come.
async fn next_signal(signals: &mut mpsc::Receiver<Received>) -> Received {
    match signals.recv().await {
        Some(received) => received,
        None => std::future::pending().await,
    }
}

/// The exit code a shell would report for `status`: the code, or 128 + the signal.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(u8::MAX),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(u8::MAX),
        (None, None) => u8::MAX,
    }
}

/// What a child killed by SIGKILL reports, for a stop whose status could not be read.
const KILLED: u8 = 128 + 9;

/// How long a child has to be reaped after SIGKILL: only a process stuck in the kernel takes
/// longer, and the supervisor will not hang on one.
const AFTER_KILL: Duration = Duration::from_secs(5);

/// How often a stop checks whether the rest of the child's process group is gone.
const GROUP_POLL: Duration = Duration::from_millis(50);

/// Whether a process of `group` is still running. kill(2) answers for zombies too, and a
/// zombie whose parent died stays one for good under an init that does not reap (or when this
/// supervisor is PID 1): so once kill(2) says the group exists, `/proc` decides, and zombies do
/// not count. Without a readable `/proc` the group counts as running (the grace bounds that).
fn group_running(group: Pid) -> bool {
    if rustix::process::test_kill_process_group(group).is_err() {
        return false;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return true;
    };
    let group = group.as_raw_pid();
    procs
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .as_encoded_bytes()
                .iter()
                .all(u8::is_ascii_digit)
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| state_and_group(&stat))
        .any(|(state, pgrp)| pgrp == group && !matches!(state, 'Z' | 'X'))
}

/// The state and process group in a `/proc/PID/stat` line: the first and third fields after
/// the command name, which is in parentheses and may itself hold spaces and parentheses.
pub fn state_and_group(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _parent = fields.next()?;
    let group = fields.next()?.parse().ok()?;
    Some((state, group))
}

/// Has the kernel send the child SIGTERM when the supervisor dies, however it dies
/// (`PR_SET_PDEATHSIG`, set in the child between fork and exec).
///
/// The signal reaches the child alone, not the process group it leads: what the child started
/// is the child's to stop (a launcher that `exec`s, or one that passes SIGTERM on, does). The
/// kernel clears it when the child runs a set-user-ID or set-group-ID program.
#[expect(
    unsafe_code,
    reason = "pre_exec: a closure run in the child between fork and exec"
)]
fn die_with_supervisor(cmd: &mut tokio::process::Command) {
    let supervisor = rustix::process::getpid();
    // SAFETY: between fork and exec only async-signal-safe calls are allowed. The closure makes
    // two system calls (prctl, getppid) and builds an io::Error from an errno: nothing
    // allocates, takes a lock or touches the parent's memory.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::TERM))?;
            // The supervisor may have died between the fork and the prctl: then no signal
            // will come, and the child must not start.
            if rustix::process::getppid() != Some(supervisor) {
                return Err(rustix::io::Errno::SRCH.into());
            }
            Ok(())
        });
    }
}

/// A running child, leader of its own process group.
struct Running {
    child: tokio::process::Child,
    group: Option<Pid>,
}

impl Running {
    /// Starts the child. Call it from the supervisor's loop, which runs on the thread that
    /// drives the runtime for the supervisor's whole life: the death signal
    /// ([`die_with_supervisor`]) fires when the thread that forked exits, not the process.
    fn start(spec: &Spec, token: &Secret<String>) -> io::Result<Self> {
        let mut cmd = tokio::process::Command::new(&spec.program);
        cmd.args(&spec.args).process_group(0);
        for name in spec.vars {
            cmd.env(name, token.expose());
        }
        die_with_supervisor(&mut cmd);
        let child = cmd.spawn()?;
        // Never the group of init: kill(-1) would signal every process we may signal.
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw)
            .filter(|pid| *pid != Pid::INIT);
        Ok(Self { child, group })
    }

    /// Sends `signal` to the child's whole process group. A group already gone is not an
    /// error.
    fn signal(&self, signal: Signal) {
        if let Some(group) = self.group {
            let _ = rustix::process::kill_process_group(group, signal);
        }
    }

    /// Whether anything of the child's process group is still running.
    fn group_alive(&self) -> bool {
        self.group.is_some_and(group_running)
    }

    /// The child's exit, as a code.
    async fn exited(&mut self) -> u8 {
        match self.child.wait().await {
            Ok(status) => exit_code(status),
            Err(e) => {
                report_error(&Error::new(
                    Class::LocalConfig,
                    format!("waiting for the command: {e}"),
                ));
                self.signal(Signal::KILL);
                Class::LocalConfig.exit_code()
            }
        }
    }

    /// Forwards `received` to the child's group. SIGINT and SIGTERM end supervision: the
    /// child is stopped with them ([`Running::stop`]) and its exit code returned.
    async fn forward(
        &mut self,
        received: Received,
        grace: Duration,
        signals: &mut mpsc::Receiver<Received>,
    ) -> Option<u8> {
        if received.ends_supervision() {
            Some(self.stop(received.signal(), grace, signals).await.0)
        } else {
            self.signal(received.signal());
            None
        }
    }

    /// Stops the child's process group: `first` now, SIGKILL once `grace` has passed with
    /// anything of the group left. Signals received meanwhile are forwarded too; the first one
    /// that ends supervision is returned with the child's exit code.
    async fn stop(
        &mut self,
        first: Signal,
        grace: Duration,
        signals: &mut mpsc::Receiver<Received>,
    ) -> (u8, Option<Received>) {
        self.signal(first);
        let deadline = tokio::time::Instant::now() + grace;
        let mut ending = None;
        let mut forward = |received: Received, running: &Self| {
            running.signal(received.signal());
            if received.ends_supervision() {
                ending.get_or_insert(received);
            }
        };
        let mut status = loop {
            tokio::select! {
                status = self.child.wait() => break status.ok(),
                () = tokio::time::sleep_until(deadline) => break None,
                received = next_signal(signals) => forward(received, self),
            }
        };
        // The leader is gone: what it started gets the rest of the grace too.
        while status.is_some() && self.group_alive() && tokio::time::Instant::now() < deadline {
            tokio::select! {
                () = tokio::time::sleep(GROUP_POLL) => {}
                received = next_signal(signals) => forward(received, self),
            }
        }
        if status.is_none() || self.group_alive() {
            self.signal(Signal::KILL);
            if status.is_none() {
                status = tokio::time::timeout(AFTER_KILL, self.child.wait())
                    .await
                    .ok()
                    .and_then(Result::ok);
            }
        }
        (status.map_or(KILLED, exit_code), ending)
    }
}

/// Runs `work` while the child runs: its output, or the code to exit with when the child
/// exits first or a signal ends supervision. Other signals are forwarded, and the wait goes on.
async fn while_running<T>(
    running: &mut Running,
    signals: &mut mpsc::Receiver<Received>,
    grace: Duration,
    work: impl std::future::Future<Output = T>,
) -> Result<T, u8> {
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return Ok(out),
            code = running.exited() => return Err(code),
            received = next_signal(signals) => {
                if let Some(code) = running.forward(received, grace, signals).await {
                    return Err(code);
                }
            }
        }
    }
}

/// One look for a token, on a blocking thread (it may take locks and call the source, each
/// within its budget).
async fn look_once(look: &Look) -> Result<Found, Error> {
    let look = look.clone();
    tokio::task::spawn_blocking(move || look())
        .await
        .unwrap_or_else(|e| {
            Err(Error::new(
                Class::LocalConfig,
                format!("looking for a token: {e}"),
            ))
        })
}

/// How many looks in a row found no fresh token, after one more that kept `held`.
fn misses_after(plan: &Plan, held: Held, misses: u32, now: OffsetDateTime) -> u32 {
    if held.is_fresh(plan, now) {
        0
    } else {
        misses.saturating_add(1)
    }
}

/// Stops the child and starts it again with `found`'s token: the new child, or the code to
/// exit with (the child exited on its own just before, a signal ended supervision during the
/// stop, or the new child could not be started).
async fn restart_child(
    running: &mut Running,
    spec: &Spec,
    found: &Found,
    signals: &mut mpsc::Receiver<Received>,
) -> Result<Running, u8> {
    // It may have exited on its own a moment ago: then that is what to report.
    if let Ok(Some(status)) = running.child.try_wait() {
        return Err(exit_code(status));
    }
    let expires = match found.held {
        Held::Expires(at) => format!("expires {}", format_rfc3339(at)),
        Held::Unknown => "the fallback token, expiry unknown".to_owned(),
    };
    notice(&format!(
        "restarting {} with a new token ({expires})",
        spec.program.to_string_lossy()
    ));
    let (code, ending) = running.stop(Signal::TERM, spec.grace, signals).await;
    if ending.is_some() {
        return Err(code);
    }
    Running::start(spec, &found.token).map_err(|e| cannot_run(&spec.program, &e))
}

/// Runs `spec` with `first`'s token and keeps it supplied with a fresh one until it exits or a
/// SIGINT or SIGTERM ends supervision; returns the exit code (the child's, as a shell reports
/// it, or 126/127 when it cannot be started).
pub async fn supervise<A: Alarm, D: Dice>(
    plan: &Plan,
    spec: &Spec,
    first: Found,
    deps: Deps<A, D>,
) -> u8 {
    let Deps {
        clock,
        mut alarm,
        mut dice,
        look,
        mut signals,
    } = deps;
    let mut running = match Running::start(spec, &first.token) {
        Ok(r) => r,
        Err(e) => return cannot_run(&spec.program, &e),
    };
    let Found {
        mut token,
        mut held,
    } = first;
    let mut misses = u32::from(!held.is_fresh(plan, clock.now()));
    loop {
        let next = restart::next(plan, held, misses, clock.now(), &mut dice);
        let wake = async {
            match next {
                Next::Now => {}
                Next::After(wait) => tokio::time::sleep(wait).await,
                Next::At(at) => alarm.wait_until(at).await,
            }
        };
        if let Err(code) = while_running(&mut running, &mut signals, spec.grace, wake).await {
            return code;
        }
        // The alarm also wakes when the wall clock is changed: decide again from the new
        // reading, which acts at once if the token is due by it.
        if let Next::At(at) = next
            && clock.now() < at
        {
            continue;
        }

        let looking = look_once(&look);
        let looked = match while_running(&mut running, &mut signals, spec.grace, looking).await {
            Ok(looked) => looked,
            Err(code) => return code,
        };
        let now = clock.now();
        let found = match looked {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(
                    class = %e.class(),
                    "no new token for {}: {e}; it keeps the one it has",
                    spec.program.to_string_lossy()
                );
                misses = misses_after(plan, held, misses, now);
                continue;
            }
        };
        let same = found.token == token;
        match restart::verdict(plan, held, found.held, same, now) {
            Verdict::Keep => {
                if same {
                    held = found.held;
                }
                misses = misses_after(plan, held, misses, now);
            }
            Verdict::Restart => {
                running = match restart_child(&mut running, spec, &found, &mut signals).await {
                    Ok(restarted) => restarted,
                    Err(code) => return code,
                };
                Found { token, held } = found;
                misses = u32::from(!held.is_fresh(plan, now));
            }
        }
    }
}

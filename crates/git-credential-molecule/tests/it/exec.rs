//! `exec --restart`: the supervisor's timing as pure decisions at fixed instants (fixed clock,
//! fixed dice: 0.5 puts every full-jitter backoff at half its ceiling), then real processes:
//! a child kept supplied with live tokens against the GitHub Enterprise stand-in, signals,
//! the grace, process groups and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use git_credential_molecule::exec::restart::{Held, Next, Plan, Verdict, next, verdict};
use git_credential_molecule::exec::{
    Deps, Found, Look, Received, Spec, state_and_group, supervise,
};
use httpmock::prelude::*;
use molecule_credential::Secret;
use molecule_credential::alarm::RealtimeAlarm;
use molecule_credential::clock::SystemClock;
use molecule_credential::clock::parse_rfc3339;
use molecule_credential::config::Config;
use molecule_credential::schedule::{FixedDice, MIN_WAIT, Policy};
use molecule_credential::store::current_uid;
use molecule_tests::deadline::Guard;
use molecule_tests::{GheServer, PlatformOptions, PlatformStandIn, TestCa, TokenAuthority};
use time::OffsetDateTime;

use crate::support::{ADMIN_PATH, BEARER, Sandbox, long_token, token_body};

// ---------------------------------------------------------------------------------------
// Pure timing.

/// DESIGN.md's defaults: a 300 s margin, the 2 s lead, the daemon's backoff series.
fn plan() -> Plan {
    Plan {
        margin: Duration::from_secs(300),
        lead: Duration::from_secs(2),
        backoff: Policy::from_config(&Config::load(|_| None).config),
    }
}

fn t0() -> OffsetDateTime {
    parse_rfc3339("2026-12-01T12:00:00Z").unwrap()
}

/// `t0` plus `secs` (fractions and negatives allowed).
fn at(secs: f64) -> OffsetDateTime {
    t0() + time::Duration::seconds_f64(secs)
}

fn expires(secs: f64) -> Held {
    Held::Expires(at(secs))
}

fn decide(held: Held, misses: u32, now: f64) -> Next {
    next(&plan(), held, misses, at(now), &mut FixedDice(0.5))
}

#[test]
fn a_fresh_token_is_replaced_two_seconds_before_it_enters_the_margin() {
    // Expires at t0+3600: the margin begins at 3300, the restart at 3298.
    let held = expires(3600.0);
    assert_eq!(decide(held, 0, 0.0), Next::At(at(3298.0)));
    assert_eq!(decide(held, 0, 3297.5), Next::At(at(3298.0)));
    assert_eq!(decide(held, 0, 3298.0), Next::Now);
    // The platform's usual answer: its cached token, 20 minutes left.
    assert_eq!(decide(expires(1200.0), 0, 0.0), Next::At(at(898.0)));
}

#[test]
fn the_child_is_restarted_only_for_a_fresh_token_while_its_own_is_due() {
    let p = plan();
    let held = expires(3600.0);
    let fresh = expires(7198.0);
    // Before its time, not even a fresh token restarts it: never more often than required.
    assert_eq!(verdict(&p, held, fresh, false, at(3297.0)), Verdict::Keep);
    assert_eq!(
        verdict(&p, held, fresh, false, at(3298.0)),
        Verdict::Restart
    );
    // Due, but what the look found is no better.
    let due = at(3298.0);
    assert_eq!(
        verdict(&p, held, held, true, due),
        Verdict::Keep,
        "same token"
    );
    let degraded = expires(3599.0);
    assert_eq!(verdict(&p, held, degraded, false, due), Verdict::Keep);
    assert_eq!(verdict(&p, held, Held::Unknown, false, due), Verdict::Keep);
    // A "fresh" token that is itself due at once would only mean another restart: not fresh.
    assert_eq!(
        verdict(&p, held, expires(3298.0 + 302.0), false, due),
        Verdict::Keep
    );
    assert_eq!(
        verdict(&p, held, expires(3298.0 + 302.5), false, due),
        Verdict::Restart
    );
}

#[test]
fn a_look_that_finds_no_fresh_token_backs_off_on_the_daemons_series() {
    let held = expires(3600.0);
    // Half of 15, 30, 60, 120, 240, 300 s.
    let series: Vec<Next> = (1..=7).map(|n| decide(held, n, 3298.0)).collect();
    let secs = |s: f64| Next::After(Duration::from_secs_f64(s));
    assert_eq!(
        series,
        [
            secs(7.5),
            secs(15.0),
            secs(30.0),
            secs(60.0),
            secs(120.0),
            secs(150.0),
            secs(150.0)
        ]
    );
    // One last look two seconds before the token dies, however long the backoff has grown.
    assert_eq!(decide(held, 6, 3550.0), secs(48.0));
    // Past that point the backoff alone (never under a second): the child's token is dead
    // either way, and only a fresh one can help.
    assert_eq!(decide(held, 6, 3599.0), secs(150.0));
    assert_eq!(decide(held, 6, 4000.0), secs(150.0));
    assert_eq!(
        next(&plan(), held, 1, at(3598.5), &mut FixedDice(0.0)),
        Next::After(MIN_WAIT)
    );
}

#[test]
fn a_degraded_start_is_retried_at_once_on_the_backoff_then_restarted_for_a_fresh_token() {
    let p = plan();
    // The source failed at start and the cache held a token with 4 minutes left: the child
    // gets it (better than nothing), and the look that found it counts as the first miss.
    let held = expires(240.0);
    assert_eq!(
        decide(held, 1, 0.0),
        Next::After(Duration::from_millis(7500))
    );
    // The source is still down: the same token again, then nothing at all.
    assert_eq!(verdict(&p, held, held, true, at(7.5)), Verdict::Keep);
    assert_eq!(
        decide(held, 2, 7.5),
        Next::After(Duration::from_secs(15)),
        "doubling"
    );
    // Back: a fresh token restarts the child at once.
    assert_eq!(
        verdict(&p, held, expires(22.5 + 3600.0), false, at(22.5)),
        Verdict::Restart
    );
}

#[test]
fn the_fallback_is_kept_until_a_real_token_arrives() {
    let p = plan();
    // Expiry unknown: never due by the clock, but the boot-time token may die any moment, so
    // the supervisor keeps looking on the backoff series.
    assert_eq!(
        decide(Held::Unknown, 1, 0.0),
        Next::After(Duration::from_millis(7500))
    );
    assert_eq!(
        decide(Held::Unknown, 0, 0.0),
        Next::After(Duration::from_millis(7500)),
        "a fallback start always counts one miss"
    );
    assert_eq!(
        decide(Held::Unknown, 9, 0.0),
        Next::After(Duration::from_secs(150))
    );
    // Another fallback (or the same), or a degraded token: no restart for those.
    for found in [Held::Unknown, expires(200.0)] {
        assert_eq!(
            verdict(&p, Held::Unknown, found, false, t0()),
            Verdict::Keep
        );
    }
    assert_eq!(
        verdict(&p, Held::Unknown, expires(3600.0), false, t0()),
        Verdict::Restart
    );
}

#[test]
fn a_dying_token_gives_way_to_anything_that_may_outlive_it() {
    let p = plan();
    // Inside the margin and failing to refresh for minutes: not yet dying, so a degraded token
    // that lives longer is still no reason to restart.
    let held = expires(60.0);
    assert_eq!(
        verdict(&p, held, expires(200.0), false, t0()),
        Verdict::Keep
    );
    // Two seconds before it dies (or after): a later degraded token, or the fallback, may
    // still work where the child's token certainly will not.
    for now in [58.0, 61.0] {
        assert_eq!(
            verdict(&p, held, expires(200.0), false, at(now)),
            Verdict::Restart
        );
        assert_eq!(
            verdict(&p, held, Held::Unknown, false, at(now)),
            Verdict::Restart
        );
        // One dying sooner, or already dead, is no better.
        assert_eq!(
            verdict(&p, held, expires(59.0), false, at(now)),
            Verdict::Keep
        );
    }
}

#[test]
fn the_wall_clock_is_read_at_every_wake() {
    let p = plan();
    let held = expires(3600.0);
    // Asleep until 3298 when the clock jumps two hours ahead (a resumed VM): the token is
    // dead by the new reading; the supervisor looks at once and takes any fresh token.
    assert_eq!(decide(held, 0, 600.0 + 7200.0), Next::Now);
    assert_eq!(
        verdict(&p, held, expires(7800.0 + 3600.0), false, at(7800.0)),
        Verdict::Restart
    );
    // Backing off when the clock jumps back an hour: the token is fresh again by the new
    // reading, so the supervisor sleeps until it is due, and would not restart for a fresh
    // token meanwhile.
    assert_eq!(decide(held, 4, 3300.0 - 3600.0), Next::At(at(3298.0)));
    assert_eq!(
        verdict(&p, held, expires(3600.0 + 1000.0), false, at(-300.0)),
        Verdict::Keep
    );
}

/// A day of the real platform: one-hour tokens, each cached by the platform and re-minted
/// only when less than 5 minutes remain. The supervisor's look at 302 s before expiry gets
/// the same token back; the retry 7.5 s later gets a new one. Returns the restart instants.
fn a_day_with_the_platform(plan: &Plan) -> Vec<f64> {
    let mut dice = FixedDice(0.5);
    let mut platform_expiry = 3600.0;
    let mut held = expires(platform_expiry);
    let mut misses = 0;
    let mut now = 0.0;
    let mut restarts = Vec::new();
    while now < 86_400.0 {
        now = match next(plan, held, misses, at(now), &mut dice) {
            Next::At(when) => (when - t0()).as_seconds_f64(),
            Next::Now => now,
            Next::After(wait) => now + wait.as_secs_f64(),
        };
        if platform_expiry - now < 300.0 {
            platform_expiry = now + 3600.0;
        }
        let found = expires(platform_expiry);
        match verdict(plan, held, found, found == held, at(now)) {
            Verdict::Restart => {
                restarts.push(now);
                held = found;
                misses = 0;
            }
            Verdict::Keep => misses += 1,
        }
    }
    restarts
}

#[test]
fn a_day_of_hourly_tokens_costs_one_restart_per_token() {
    let restarts = a_day_with_the_platform(&plan());
    // Each token is used until 5.5 s into its margin (the platform's own re-mint threshold
    // decides that), so a new one every 3305.5 s: 26 in 24 hours, never two for one token.
    assert_eq!(restarts.len(), 26);
    assert_eq!(restarts[0], 3305.5);
    for pair in restarts.windows(2) {
        assert_eq!(pair[1] - pair[0], 3305.5);
    }
}

#[test]
fn proc_stat_lines_give_state_and_group() {
    assert_eq!(
        state_and_group("4242 (sh) S 4200 4242 4200 0 -1 4194560 ..."),
        Some(('S', 4242))
    );
    // The command name may hold spaces and parentheses.
    assert_eq!(state_and_group("77 (a) b (c) Z 1 70 70 0"), Some(('Z', 70)));
    assert_eq!(state_and_group("garbage"), None);
}

// ---------------------------------------------------------------------------------------
// The supervisor's loop in process: scripted looks, a real child, real (short) time.

/// A plan on a seconds scale: margin 1 s, lead 1 s, backoff from 200 ms (100 ms at dice 0.5).
fn quick_plan() -> Plan {
    Plan {
        margin: Duration::from_secs(1),
        lead: Duration::from_secs(1),
        backoff: Policy {
            interval: Duration::from_secs(10),
            jitter: Duration::ZERO,
            initial_delay: Duration::ZERO,
            margin: Duration::from_secs(1),
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(1),
            min_wait: Duration::from_millis(50),
        },
    }
}

/// A token the scripted look hands out: `ghs_` and a tag, living `secs` from now (`None`: the
/// fallback).
fn found(tag: &str, secs: Option<f64>) -> Found {
    Found {
        token: Secret::new(format!("ghs_{tag}")),
        held: secs.map_or(Held::Unknown, |s| {
            Held::Expires(OffsetDateTime::now_utc() + time::Duration::seconds_f64(s))
        }),
    }
}

/// Runs the supervisor over a child that records the tag of each token it is started with,
/// starting with `first` and answering each look with the next of `looks` (the last one
/// repeats; lifetimes count from the look), until SIGTERM (as a value) after `run_for`.
/// Returns the exit code, the tags the child saw, and how many looks were made.
fn supervise_scripted(
    first: Found,
    looks: &[(&'static str, Option<f64>)],
    run_for: Duration,
) -> (u8, Vec<String>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    let looks = looks.to_vec();
    let calls = Arc::new(Mutex::new(0usize));
    let calls_in = calls.clone();
    let look: Look = Arc::new(move || {
        let mut n = calls_in.lock().unwrap();
        let (tag, life) = looks[(*n).min(looks.len() - 1)];
        *n += 1;
        Ok(found(tag, life))
    });
    let spec = Spec {
        program: "sh".into(),
        args: vec![
            "-c".into(),
            "echo \"${GH_TOKEN#ghs_}\" >> \"$1\"; exec sleep 30".into(),
            "child".into(),
            seen.clone().into_os_string(),
        ],
        vars: git_credential_molecule::exec::token_vars("github.com"),
        grace: Duration::from_secs(2),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let code = runtime.block_on(async {
        let (tx, signals) = tokio::sync::mpsc::channel(1);
        let deps = Deps {
            clock: Arc::new(SystemClock),
            alarm: RealtimeAlarm::new(),
            dice: FixedDice(0.5),
            look,
            signals,
        };
        let stop = async {
            tokio::time::sleep(run_for).await;
            tx.send(Received::Terminate).await.unwrap();
            std::future::pending::<()>().await;
        };
        let plan = quick_plan();
        tokio::select! {
            code = supervise(&plan, &spec, first, deps) => code,
            () = stop => unreachable!(),
        }
    });
    let tags = std::fs::read_to_string(&seen)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let n = *calls.lock().unwrap();
    (code, tags, n)
}

#[test]
fn the_loop_retries_a_degraded_start_and_restarts_once_for_the_fresh_token() {
    // Started with 1.5 s left (inside margin + lead): looks after 100 ms and 200 ms more find
    // the same token, the third a fresh one (10 s), which is not due before the stop at 2 s.
    let (code, tags, looks) = supervise_scripted(
        found("one", Some(1.5)),
        &[("one", Some(1.4)), ("one", Some(1.2)), ("two", Some(10.0))],
        Duration::from_secs(2),
    );
    assert_eq!(tags, ["one", "two"]);
    assert_eq!(looks, 3);
    assert_eq!(code, 128 + 15, "sleep, ended by the forwarded SIGTERM");
}

#[test]
fn the_loop_keeps_the_fallback_until_a_real_token_and_never_restarts_a_fresh_one_early() {
    let (code, tags, looks) = supervise_scripted(
        found("boot", None),
        &[("boot", None), ("real", Some(10.0))],
        Duration::from_secs(2),
    );
    assert_eq!(tags, ["boot", "real"]);
    // 100 ms, then 200 ms: two looks; then the real token is not due for 8 s.
    assert_eq!(looks, 2);
    assert_eq!(code, 128 + 15);
}

#[test]
fn the_loop_restarts_at_the_due_time_for_each_new_token() {
    // Tokens living 3.5 s with margin + lead = 2 s: each is due 1.5 s after it was handed out,
    // so looks at 1.5, 3 and 4.5 s, and then none: "d" lives 30 s.
    let (code, tags, looks) = supervise_scripted(
        found("a", Some(3.5)),
        &[("b", Some(3.5)), ("c", Some(3.5)), ("d", Some(30.0))],
        Duration::from_millis(5500),
    );
    assert_eq!(tags, ["a", "b", "c", "d"]);
    assert_eq!(looks, 3, "one look per due time, none in between");
    assert_eq!(code, 128 + 15);
}

// ---------------------------------------------------------------------------------------
// Real processes.

/// Sends `signal` (e.g. "TERM") to process `pid`.
fn kill(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

/// Whether process `pid` is running: it exists and is not a zombie (this machine's init does
/// not reap orphans, so a dead grandchild may linger as one).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| state_and_group(&stat))
        .is_some_and(|(state, _)| !matches!(state, 'Z' | 'X'))
}

/// Polls `cond` every 20 ms for up to `limit`.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// The number in file `path`, once something has written it.
fn pid_in(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The first 12 hex digits of the token's SHA-256, as the test children compute it (the token
/// goes to sha256sum on stdin, never in argv).
fn fingerprint(token: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(token.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)[..12].to_owned()
}

/// Writes a child script into the sandbox.
fn script(sb: &Sandbox, name: &str, body: &str) -> PathBuf {
    let path = sb.path(name);
    std::fs::write(&path, body).unwrap();
    path
}

/// Starts `exec ARGS` under guard (SIGKILLed with its process group if the test fails), its
/// stderr going to `exec.err` in the sandbox.
fn start_exec(sb: &Sandbox, args: &[&str]) -> Guard {
    let err = std::fs::File::create(sb.path("exec.err")).unwrap();
    let mut command = sb.command(args);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    Guard::spawn(&mut command)
}

/// What `exec` wrote on stderr, checked for secrets.
fn exec_stderr(sb: &Sandbox) -> String {
    let text = std::fs::read_to_string(sb.path("exec.err")).unwrap_or_default();
    sb.assert_no_secret(&text);
    text
}

/// A platform answering one token that lives an hour.
fn hour_platform(sb: &mut Sandbox) -> MockServer {
    let server = MockServer::start();
    let token = sb.secret(&long_token("exec-hour"));
    server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200).body(token_body(&token, 3600));
    });
    sb.platform(&server.base_url());
    server
}

#[test]
fn a_child_exiting_on_its_own_gives_exec_its_status() {
    let mut sb = Sandbox::new();
    let _platform = hour_platform(&mut sb);
    let deadline = Duration::from_secs(30);
    for restart in [false, true] {
        let mut args = vec!["exec"];
        if restart {
            args.push("--restart");
        }
        let run = |extra: &[&str]| {
            let all: Vec<&str> = args.iter().chain(extra).copied().collect();
            sb.run_within(&all.join(" "), &all, "", deadline).0
        };
        let r = run(&["--", "sh", "-c", "exit 3"]);
        assert_eq!(r.code, 3, "restart {restart}: {}", r.stderr);
        // A crash is the child's own exit too, never restarted. Plain exec is the child, so it
        // dies of the signal itself (no code); the supervisor reports it as a shell does.
        let r = run(&["--", "sh", "-c", "kill -SEGV $$"]);
        let crashed = if restart { 128 + 11 } else { -1 };
        assert_eq!(r.code, crashed, "restart {restart}: {}", r.stderr);
        assert!(!r.stderr.contains("restarting"), "{}", r.stderr);
        let r = run(&["--", "/nonexistent/cmd"]);
        assert_eq!(r.code, 127, "restart {restart}");
        assert!(
            r.stderr.contains("cannot run /nonexistent/cmd"),
            "{}",
            r.stderr
        );
    }
    // --grace-sec belongs to --restart.
    let r = sb.run(&["exec", "--grace-sec", "3", "--", "true"], "");
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn signals_reach_the_childs_whole_group_and_sigterm_ends_within_the_grace() {
    let mut sb = Sandbox::new();
    let _platform = hour_platform(&mut sb);
    let dir = sb.path("");
    // A launcher-like child: a grandchild that ignores SIGHUP (so it survives the forwarded
    // one), a trap that records SIGHUP, and SIGTERM left at its default.
    let child = script(
        &sb,
        "child.sh",
        r#"dir=$1
(trap '' HUP; exec sleep 60) &
echo $! > "$dir/grandchild"
trap 'echo hup >> "$dir/events"' HUP
echo $$ > "$dir/child"
while kill -0 "$PPID" 2>/dev/null; do sleep 0.1; done
"#,
    );
    let args = [
        "exec",
        "--restart",
        "--grace-sec",
        "5",
        "--",
        "sh",
        child.to_str().unwrap(),
        dir.to_str().unwrap(),
    ];
    let mut exec = start_exec(&sb, &args);
    assert!(
        wait_for(Duration::from_secs(10), || pid_in(&dir.join("grandchild"))
            .is_some()
            && pid_in(&dir.join("child")).is_some()),
        "the child did not start: {}",
        exec_stderr(&sb)
    );
    let (child_pid, grandchild) = (
        pid_in(&dir.join("child")).unwrap(),
        pid_in(&dir.join("grandchild")).unwrap(),
    );

    kill(exec.id(), "HUP");
    assert!(
        wait_for(Duration::from_secs(5), || std::fs::read_to_string(
            dir.join("events")
        )
        .is_ok_and(|e| e == "hup\n")),
        "SIGHUP was not forwarded"
    );
    assert_eq!(
        exec.exit_within(Duration::from_millis(300)),
        None,
        "SIGHUP does not end supervision"
    );
    assert!(running(child_pid) && running(grandchild));

    let sent = Instant::now();
    kill(exec.id(), "TERM");
    let code = exec
        .exit_within(Duration::from_secs(8))
        .expect("exec exits within the grace after SIGTERM");
    let took = sent.elapsed();
    assert_eq!(code, Some(128 + 15), "{}", exec_stderr(&sb));
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(!running(child_pid), "the child is stopped");
    assert!(
        !running(grandchild),
        "the grandchild is stopped with its group"
    );
}

/// A platform minting tokens that live 5 s, and `sb` pointed at it with a 1 s margin: a token
/// is due 3 s before expiry (up to 4 s with the cache's whole-second expiry), so exec's first
/// restart comes within about 2 s of the start.
fn five_second_platform(sb: &mut Sandbox) -> PlatformStandIn {
    let platform = PlatformStandIn::start(
        ([127, 0, 0, 1], 0).into(),
        PlatformOptions {
            ttl: Duration::from_secs(5),
            remint_below: Duration::from_secs(5),
            bearer: BEARER.to_owned(),
            workspace_id: None,
        },
        TokenAuthority::new(),
    );
    sb.platform(&platform.url())
        .env("TOKEN_REFRESH_MARGIN_SEC", "1");
    platform
}

#[test]
fn a_restart_stops_a_child_that_ignores_sigterm_within_the_grace() {
    let mut sb = Sandbox::new();
    let _platform = five_second_platform(&mut sb);
    sb.env("MOLECULE_LOG", "info");
    let dir = sb.path("");
    let child = script(
        &sb,
        "stubborn.sh",
        r#"dir=$1
trap '' TERM
echo "$(date +%s.%N) $$" >> "$dir/starts"
while kill -0 "$PPID" 2>/dev/null; do sleep 0.1; done
"#,
    );
    let args = [
        "exec",
        "--restart",
        "--grace-sec",
        "1",
        "--",
        "sh",
        child.to_str().unwrap(),
        dir.to_str().unwrap(),
    ];
    let mut exec = start_exec(&sb, &args);
    let starts = || -> Vec<(f64, i32)> {
        std::fs::read_to_string(dir.join("starts"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (t, pid) = l.split_once(' ')?;
                Some((t.parse().ok()?, pid.parse().ok()?))
            })
            .collect()
    };
    assert!(
        wait_for(Duration::from_secs(15), || starts().len() >= 2),
        "no restart: {}",
        exec_stderr(&sb)
    );
    let s = starts();
    let gap = s[1].0 - s[0].0;
    // Due after 1 to 2 s, then the whole grace (1 s) before SIGKILL.
    assert!((2.0..4.0).contains(&gap), "{gap} s between starts");
    assert!(!running(s[0].1), "the first child was killed");
    assert_eq!(exec_stderr(&sb).matches("restarting sh").count(), 1);

    // SIGTERM to exec: the child ignores it, so SIGKILL after the grace, and exec reports it.
    let last = starts().last().copied().unwrap();
    let sent = Instant::now();
    kill(exec.id(), "TERM");
    let code = exec.exit_within(Duration::from_secs(5)).expect("bounded");
    let took = sent.elapsed();
    assert_eq!(code, Some(128 + 9));
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(!running(last.1));
}

/// A child that never ends by itself: it records its pid at each start and each SIGTERM,
/// and exits on SIGTERM. It does not watch its parent: only a signal ends it.
const DEATHLESS: &str = r#"dir=$1
trap 'echo "term $$" >> "$dir/events"; exit 0' TERM
echo "start $$" >> "$dir/events"
while :; do sleep 0.1; done
"#;

/// The pids the deathless child recorded for `what` (`start` or `term`).
fn events(dir: &Path, what: &str) -> Vec<i32> {
    std::fs::read_to_string(dir.join("events"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix(what)?.trim().parse().ok())
        .collect()
}

/// SIGKILLs exec once its child has started `starts` times; the last child must get SIGTERM
/// from the kernel and be gone within a few seconds.
fn sigkill_exec_after_starts(sb: &Sandbox, grace: &str, starts: usize) {
    let dir = sb.path("");
    let child = script(sb, "deathless.sh", DEATHLESS);
    let args = [
        "exec",
        "--restart",
        "--grace-sec",
        grace,
        "--",
        "sh",
        child.to_str().unwrap(),
        dir.to_str().unwrap(),
    ];
    let mut exec = start_exec(sb, &args);
    assert!(
        wait_for(Duration::from_secs(20), || events(&dir, "start").len()
            >= starts),
        "{} starts: {}",
        events(&dir, "start").len(),
        exec_stderr(sb)
    );
    let last = *events(&dir, "start").last().unwrap();
    assert!(running(last));
    kill(exec.id(), "KILL");
    assert_eq!(
        exec.exit_within(Duration::from_secs(5)),
        Some(None),
        "exec died of SIGKILL"
    );
    let stopped = wait_for(Duration::from_secs(5), || !running(last));
    if !stopped {
        // Not ours to leave behind, whatever the outcome.
        let _ = Command::new("kill")
            .args(["-KILL", &last.to_string()])
            .status();
    }
    assert!(stopped, "the child outlived exec's SIGKILL");
    assert!(
        events(&dir, "term").contains(&last),
        "the child was ended by SIGTERM: {:?}",
        std::fs::read_to_string(dir.join("events"))
    );
}

/// DESIGN.md, "The container story": a supervisor that dies, even by SIGKILL, takes its child
/// down (the child gets SIGTERM). The child is in a process group of its own, so nothing else
/// would reach it. Both the first child and one started later by a restart: the death signal
/// belongs to the thread that forked, and every child is forked by the supervisor's loop.
#[test]
fn a_supervisor_killed_by_sigkill_takes_its_child_down() {
    let mut sb = Sandbox::new();
    let _platform = hour_platform(&mut sb);
    sigkill_exec_after_starts(&sb, "5", 1);

    let mut sb = Sandbox::new();
    let _platform = five_second_platform(&mut sb);
    sigkill_exec_after_starts(&sb, "5", 2);
    let dir = sb.path("");
    let first = events(&dir, "start")[0];
    assert!(
        events(&dir, "term").contains(&first),
        "the restart stopped the first child with SIGTERM"
    );
}

/// How long the platform's tokens live in the must-show run.
const TTL: Duration = Duration::from_secs(6);
/// `TOKEN_REFRESH_MARGIN_SEC` for it.
const MARGIN: f64 = 2.0;
/// `--grace-sec` for it.
const GRACE: Duration = Duration::from_secs(3);

/// The child of the must-show run: it reads its token once, at start (as an MCP server or an
/// SDK client does), records a fingerprint of it, and then calls `GET /api/v3/user` on the
/// GitHub Enterprise stand-in with it every half second. The token goes to curl on stdin
/// (`-H @-`), never in argv. It ends itself when exec is gone or after two minutes.
const CALLER: &str = r#"log=$1 ca=$2
sup=$PPID
fp=$(printf %s "$GH_TOKEN" | sha256sum | cut -c1-12)
vars=same
[ "$GITHUB_TOKEN" = "$GH_TOKEN" ] && [ "$GH_ENTERPRISE_TOKEN" = "$GH_TOKEN" ] &&
  [ "$GITHUB_ENTERPRISE_TOKEN" = "$GH_TOKEN" ] || vars=differ
echo "start $(date +%s.%N) $fp $$ $vars" >> "$log"
end=$(( $(date +%s) + 120 ))
while kill -0 "$sup" 2>/dev/null && [ "$(date +%s)" -lt "$end" ]; do
  code=$(printf 'Authorization: token %s\n' "$GH_TOKEN" |
    curl -sS -o /dev/null -w '%{http_code}' --max-time 5 --noproxy '*' --cacert "$ca" \
      -H @- https://localhost/api/v3/user)
  echo "call $(date +%s.%N) $fp $code" >> "$log"
  sleep 0.5
done
"#;

/// One line of the caller's log.
#[derive(Debug)]
enum Line {
    Start {
        at: f64,
        fp: String,
        pid: i32,
        vars: String,
    },
    Call {
        at: f64,
        fp: String,
        code: String,
    },
}

fn caller_log(path: &Path) -> Vec<Line> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            match f.as_slice() {
                ["start", at, fp, pid, vars] => Some(Line::Start {
                    at: at.parse().ok()?,
                    fp: (*fp).to_owned(),
                    pid: pid.parse().ok()?,
                    vars: (*vars).to_owned(),
                }),
                ["call", at, fp, code] => Some(Line::Call {
                    at: at.parse().ok()?,
                    fp: (*fp).to_owned(),
                    code: (*code).to_owned(),
                }),
                _ => None,
            }
        })
        .collect()
}

fn unix(t: OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

/// The number of child starts in the caller's log.
fn starts(path: &Path) -> usize {
    caller_log(path)
        .iter()
        .filter(|l| matches!(l, Line::Start { .. }))
        .count()
}

const MUST_SHOW: &str = "exec::restart_keeps_a_child_supplied_with_live_tokens";

/// Issue 13, must-show 1: tokens live 6 s, the margin is 2 s, no daemon runs. For 30 s a
/// child that reads its token once calls `/user` every half second; exec restarts it before
/// each token enters the margin, and only then. Then SIGTERM to exec stops the child within
/// the grace.
#[test]
fn restart_keeps_a_child_supplied_with_live_tokens() {
    if current_uid() != 0 {
        return molecule_tests::skip::skip(
            MUST_SHOW,
            "needs root: the GitHub Enterprise stand-in owns port 443 in a private network namespace",
        );
    }
    if !molecule_tests::netns::in_private_netns(MUST_SHOW) {
        return;
    }
    let mut sb = Sandbox::new();
    let ca = TestCa::generate(&sb.path("ca"));
    let authority = TokenAuthority::new();
    let ghe = GheServer::start(([127, 0, 0, 1], 443).into(), &ca, authority.clone());
    // Every request mints (re-mint below the whole lifetime): each token the child sees was
    // minted for exactly one look of exec's.
    let platform = PlatformStandIn::start(
        ([127, 0, 0, 1], 0).into(),
        PlatformOptions {
            ttl: TTL,
            remint_below: TTL,
            bearer: BEARER.to_owned(),
            workspace_id: None,
        },
        authority,
    );
    let minted: Arc<Mutex<Vec<(String, OffsetDateTime)>>> = Arc::default();
    let record = minted.clone();
    platform.on_mint(Box::new(move |_, issued| {
        record
            .lock()
            .unwrap()
            .push((issued.token.clone(), issued.expires_at));
    }));
    // An enterprise host, so gh's enterprise variables are set too.
    sb.platform(&platform.url())
        .env("MOLECULE_GIT_HOSTS", "localhost")
        .env("TOKEN_REFRESH_MARGIN_SEC", "2")
        .env("MOLECULE_LOG", "info");
    let log = sb.path("calls.log");
    let caller = script(&sb, "caller.sh", CALLER);
    let grace = GRACE.as_secs().to_string();
    let args = [
        "exec",
        "--restart",
        "--grace-sec",
        &grace,
        "--",
        "sh",
        caller.to_str().unwrap(),
        log.to_str().unwrap(),
        ca.ca_pem_path().to_str().unwrap(),
    ];
    let mut exec = start_exec(&sb, &args);
    assert_eq!(
        exec.exit_within(Duration::from_secs(30)),
        None,
        "exec ended early: {}",
        exec_stderr(&sb)
    );
    // SIGTERM just after a restart, so it meets a running child rather than a restart in
    // flight (that case has its own test above).
    let seen = starts(&log);
    assert!(wait_for(Duration::from_secs(5), || starts(&log) > seen));
    let sent = Instant::now();
    kill(exec.id(), "TERM");
    let code = exec.exit_within(GRACE + Duration::from_secs(2));
    let stop_took = sent.elapsed();
    let code = code.expect("exec exits after SIGTERM");
    assert!(stop_took < GRACE, "{stop_took:?}");
    // The child, a shell, has no trap: SIGTERM ends it, and exec reports that as a shell does.
    assert_eq!(code, Some(128 + 15), "{}", exec_stderr(&sb));

    let lines = caller_log(&log);
    let minted = minted.lock().unwrap().clone();
    for (token, _) in &minted {
        sb.secret(token);
    }
    let stderr = exec_stderr(&sb);
    sb.assert_no_secret(&std::fs::read_to_string(&log).unwrap());
    let expiry_of: std::collections::HashMap<String, f64> = minted
        .iter()
        .map(|(token, at)| (fingerprint(token), unix(*at)))
        .collect();

    let child_starts: Vec<(f64, &str, i32)> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Start { at, fp, pid, vars } => {
                assert_eq!(vars, "same", "all four variables carry the token");
                Some((*at, fp.as_str(), *pid))
            }
            Line::Call { .. } => None,
        })
        .collect();
    let calls: Vec<(f64, &str, &str)> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Call { at, fp, code } => Some((*at, fp.as_str(), code.as_str())),
            Line::Start { .. } => None,
        })
        .collect();
    let restarts = child_starts.len() - 1;
    let distinct: std::collections::HashSet<&str> =
        child_starts.iter().map(|(_, fp, _)| *fp).collect();

    // Every call succeeded: no child ever used a dead token.
    let failed: Vec<_> = calls.iter().filter(|(_, _, code)| *code != "200").collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(ghe.unauthorized(), 0);
    // One token per child, every minted token used by one, one stderr line per restart.
    assert_eq!(
        distinct.len(),
        child_starts.len(),
        "a new token at each start"
    );
    assert_eq!(minted.len(), child_starts.len(), "no token minted in vain");
    assert_eq!(
        stderr.matches("restarting sh with a new token").count(),
        restarts
    );
    // Each restart came when the old token was due, and only then: between its due time
    // (margin + lead = 4 s before expiry; up to a second earlier for an expiry read back from
    // tokens.json, which keeps whole seconds) and the margin.
    let mut left_at_restart = Vec::new();
    for pair in child_starts.windows(2) {
        let (old, new) = (pair[0], pair[1]);
        let left = expiry_of[old.1] - new.0;
        assert!(
            (MARGIN..=MARGIN + 2.0 + 1.0).contains(&left),
            "restarted with {left:.2} s left on the old token"
        );
        left_at_restart.push(left);
    }
    // What 30 s of 6-second tokens require: at least one restart per (lifetime − margin).
    assert!(restarts >= 7, "{restarts} restarts");
    assert!(
        !running(child_starts.last().unwrap().2),
        "the last child is stopped"
    );
    let first = child_starts[0].0;
    let last_call = calls.last().map_or(first, |c| c.0);
    let min_left = left_at_restart.iter().copied().fold(f64::MAX, f64::min);
    let max_left = left_at_restart.iter().copied().fold(0.0, f64::max);
    report(&format!(
        "exec --restart over {:.1} s: {} /user calls, all 200; {} tokens minted, {} child starts, \
         {restarts} restarts; old token had {min_left:.2}–{max_left:.2} s left at each restart; \
         SIGTERM stopped it in {:.0} ms",
        last_call - first,
        calls.len(),
        minted.len(),
        child_starts.len(),
        stop_took.as_secs_f64() * 1000.0
    ));
}

/// A line in the test's output (shown with --nocapture): the numbers the issue asks for.
#[expect(
    clippy::print_stderr,
    reason = "the run's numbers, where cargo test shows them"
)]
fn report(line: &str) {
    eprintln!("{line}");
}

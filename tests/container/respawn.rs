//! scripts/respawn.sh: restarts with a delay that doubles on quick crashes and resets after a
//! healthy run; a clean exit stops it; SIGTERM stops both; the log file stays bounded.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

fn respawn(t: &tempfile::TempDir, child_script: &str, env: &[(&str, &str)]) -> std::process::Child {
    let mut c = Command::new(script("respawn.sh"));
    c.args(["sh", "-c", child_script])
        .env("T", t.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(t.path().join("respawn.log")).unwrap());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

/// Start times (seconds since the first) the child recorded.
fn starts(t: &tempfile::TempDir) -> Vec<f64> {
    let text = std::fs::read_to_string(t.path().join("starts")).unwrap_or_default();
    let ts: Vec<f64> = text.lines().map(|l| l.parse::<f64>().unwrap()).collect();
    ts.iter().map(|x| x - ts[0]).collect()
}

const RECORD_START: &str = "date +%s.%N >> \"$T/starts\"";

#[test]
fn quick_crashes_double_the_delay_up_to_the_cap() {
    let t = tempfile::tempdir().unwrap();
    let mut r = respawn(
        &t,
        &format!("{RECORD_START}; exit 3"),
        &[
            ("MOLECULE_RESPAWN_MIN_DELAY_SEC", "1"),
            ("MOLECULE_RESPAWN_MAX_DELAY_SEC", "4"),
            ("MOLECULE_RESPAWN_HEALTHY_SEC", "30"),
        ],
    );
    assert!(wait_for(Duration::from_secs(20), || starts(&t).len() >= 5));
    r.kill().unwrap();
    r.wait().unwrap();
    let s = starts(&t);
    let gaps: Vec<f64> = s.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, want) in gaps.iter().zip([1.0, 2.0, 4.0, 4.0]) {
        assert!((gap - want).abs() < 0.6, "gaps {gaps:?}");
    }
    let log = std::fs::read_to_string(t.path().join("respawn.log")).unwrap();
    assert!(
        log.contains("exited with status 3") && log.contains("restarting in 4s"),
        "{log}"
    );
}

#[test]
fn a_healthy_run_resets_the_delay() {
    let t = tempfile::tempdir().unwrap();
    // Crash at once twice (delays 1 then 2), then run 3 s (healthy at 2 s), then crash at once.
    let child =
        format!("{RECORD_START}; n=$(wc -l < \"$T/starts\"); [ \"$n\" -eq 3 ] && sleep 3; exit 1");
    let mut r = respawn(
        &t,
        &child,
        &[
            ("MOLECULE_RESPAWN_MIN_DELAY_SEC", "1"),
            ("MOLECULE_RESPAWN_MAX_DELAY_SEC", "8"),
            ("MOLECULE_RESPAWN_HEALTHY_SEC", "2"),
        ],
    );
    assert!(wait_for(Duration::from_secs(20), || starts(&t).len() >= 5));
    r.kill().unwrap();
    r.wait().unwrap();
    let s = starts(&t);
    let gaps: Vec<f64> = s.windows(2).map(|w| w[1] - w[0]).collect();
    // 1, 2; then the 3 s run plus the reset delay of 1; then the minimum again, not 4 or 8.
    for (gap, want) in gaps.iter().zip([1.0, 2.0, 4.0, 1.0]) {
        assert!((gap - want).abs() < 0.6, "gaps {gaps:?}");
    }
}

#[test]
fn a_clean_exit_is_not_restarted() {
    let t = tempfile::tempdir().unwrap();
    let mut r = respawn(&t, &format!("{RECORD_START}; exit 0"), &[]);
    assert_eq!(wait_exit(&mut r, Duration::from_secs(10)), Some(0));
    assert_eq!(starts(&t).len(), 1);
    assert!(
        std::fs::read_to_string(t.path().join("respawn.log"))
            .unwrap()
            .contains("not restarting")
    );
}

#[test]
fn sigterm_stops_the_child_and_the_loop_and_sighup_is_passed_on() {
    let t = tempfile::tempdir().unwrap();
    let child = format!(
        "{RECORD_START}; trap 'echo hup >> \"$T/hups\"' HUP; trap 'echo term >> \"$T/terms\"; exit 0' TERM; while :; do sleep 0.1; done"
    );
    let mut r = respawn(&t, &child, &[]);
    assert!(wait_for(Duration::from_secs(5), || starts(&t).len() == 1));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        Command::new("kill")
            .args(["-HUP", &r.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(wait_for(Duration::from_secs(5), || t
        .path()
        .join("hups")
        .exists()));
    assert!(
        Command::new("kill")
            .args(["-TERM", &r.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(wait_exit(&mut r, Duration::from_secs(5)), Some(0));
    assert!(t.path().join("terms").exists(), "the child got SIGTERM");
    assert_eq!(starts(&t).len(), 1, "no restart after a stop");
}

#[test]
fn the_log_file_is_rotated_not_grown() {
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("daemon.log");
    let child = format!("{RECORD_START}; head -c 3000 /dev/zero | tr '\\0' x; echo; exit 1");
    let log_s = log.display().to_string();
    let mut r = respawn(
        &t,
        &child,
        &[
            ("MOLECULE_RESPAWN_LOG_FILE", log_s.as_str()),
            ("MOLECULE_RESPAWN_LOG_MAX_BYTES", "1000"),
            ("MOLECULE_RESPAWN_MIN_DELAY_SEC", "1"),
            ("MOLECULE_RESPAWN_MAX_DELAY_SEC", "1"),
        ],
    );
    assert!(wait_for(Duration::from_secs(15), || starts(&t).len() >= 4));
    r.kill().unwrap();
    r.wait().unwrap();
    let size = std::fs::metadata(&log).unwrap().len();
    assert!(size <= 3001 * 2, "the log kept growing: {size} bytes");
    assert!(
        std::fs::metadata(t.path().join("daemon.log.1"))
            .unwrap()
            .len()
            > 1000,
        "one old file is kept"
    );
}

#[test]
fn sigterm_during_the_delay_leaves_nothing_behind() {
    use std::os::unix::process::CommandExt;
    let t = tempfile::tempdir().unwrap();
    let mut c = Command::new(script("respawn.sh"));
    c.args(["sh", "-c", &format!("{RECORD_START}; exit 1")])
        .env("T", t.path())
        .env("MOLECULE_RESPAWN_MIN_DELAY_SEC", "30")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut r = c.spawn().unwrap();
    assert!(wait_for(Duration::from_secs(5), || starts(&t).len() == 1));
    // Inside the 30 s delay.
    std::thread::sleep(Duration::from_millis(300));
    signal(r.id(), "TERM");
    assert_eq!(wait_exit(&mut r, Duration::from_secs(5)), Some(0));
    // The delay's sleep went with the loop: nothing of the loop's group runs on.
    assert!(
        wait_for(Duration::from_secs(2), || group_members(r.id()).is_empty()),
        "the delay's sleep outlived the loop"
    );
}

/// A SIGTERM that comes as the loop starts its child, before the loop knows the child's pid or
/// before the child has exec'd (a forked copy of the shell would swallow it), still stops the
/// child: the loop exits at once and leaves nothing behind. Forty starts, stopped 0 to 20 ms
/// in.
#[test]
fn sigterm_as_the_child_starts_still_stops_it() {
    use std::os::unix::process::CommandExt;
    let t = tempfile::tempdir().unwrap();
    let mut slow = Vec::new();
    for i in 0..40u64 {
        let mut c = Command::new(script("respawn.sh"));
        c.args(["sleep", "30"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut r = c.spawn().unwrap();
        std::thread::sleep(Duration::from_micros(500 * i));
        // The loop may not have set its trap yet: then SIGTERM ends it before any child.
        let _ = Command::new("kill")
            .args(["-TERM", &r.id().to_string()])
            .status();
        let started = std::time::Instant::now();
        let exited = wait_for(Duration::from_secs(3), || r.try_wait().unwrap().is_some());
        let left = wait_for(Duration::from_secs(1), || group_members(r.id()).is_empty());
        if !exited || !left {
            slow.push((i, started.elapsed()));
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", r.id())])
                .status();
            let _ = r.wait();
        }
    }
    drop(t);
    assert!(
        slow.is_empty(),
        "stopped (start number, time taken) but not at once, or leaving a child: {slow:?}"
    );
}

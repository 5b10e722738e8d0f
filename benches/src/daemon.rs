//! (e) The daemon at rest: after its first refresh it should sleep until the next scheduled
//! event, with what it watches and serves (the cache directory's inotify watch, the metrics
//! textfile; and, measured apart, an unscraped `/metrics` listener and three sinks). Reads /proc before and after the idle period (so the measurement wakes nothing):
//! resident memory, CPU time and context switches of every thread.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use molecule_tests::{PlatformOptions, PlatformStandIn, TokenAuthority};

use crate::helper::Bed;

pub struct Idle {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub threads: usize,
    pub cpu_ms: f64,
    pub switches: u64,
    pub secs: u64,
}

fn status_field(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// (switches, cpu ticks, threads) over all threads.
fn snapshot(pid: u32) -> (u64, u64, usize) {
    let mut switches = 0;
    let mut ticks = 0;
    let mut threads = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task") {
        let dir = task.expect("a task").path();
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        switches += status
            .lines()
            .filter(|l| {
                l.starts_with("voluntary_ctxt_switches")
                    || l.starts_with("nonvoluntary_ctxt_switches")
            })
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: utime and stime are the 12th and 13th.
        let after = stat.rsplit_once(") ").map_or("", |(_, r)| r);
        let f: Vec<&str> = after.split_whitespace().collect();
        ticks += f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        threads += 1;
    }
    (switches, ticks, threads)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// What the daemon serves and writes besides the cache while it is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outputs {
    /// As configured by default: the cache directory's watch and the metrics textfile.
    Default,
    /// Also the `/metrics` listener (never scraped while measured) and three sinks.
    ListenerAndSinks,
}

/// Runs the daemon, waits for its first refresh, lets start-up settle, then measures `secs`.
pub fn idle(daemon_bin: &Path, secs: u64, outputs: Outputs) -> Idle {
    let platform = PlatformStandIn::start(
        "127.0.0.1:0".parse().expect("addr"),
        PlatformOptions {
            bearer: "bench-bearer".into(),
            ..PlatformOptions::default()
        },
        TokenAuthority::new(),
    );
    let bed = Bed::new(None);
    let mut child = bed
        .command(daemon_bin, None)
        // No gh on PATH: this measures the daemon itself, and a real gh would try to reach
        // github.com with a fake token.
        .env("PATH", "/nonexistent")
        .env("PLATFORM_URL", platform.url())
        .envs(match outputs {
            Outputs::Default => Vec::new(),
            Outputs::ListenerAndSinks => {
                let dir = bed.cache().with_file_name("sinks");
                std::fs::create_dir_all(&dir).expect("the sinks' directory");
                let sinks = ["json", "raw", "env"]
                    .map(|f| format!("{f}:{}", dir.join(f).display()))
                    .join(",");
                let addr = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("a free port");
                vec![
                    ("MOLECULE_TOKEN_SINKS", sinks),
                    ("MOLECULE_METRICS_LISTEN", addr.to_string()),
                ]
            }
        })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the daemon");
    let pid = child.id();
    let status = bed.cache().join("daemon.status.json");
    for _ in 0..200 {
        if std::fs::read_to_string(&status).is_ok_and(|s| s.contains("\"next_wake_at\": \"")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Blocking-pool threads from the first DNS lookup retire after 10 s idle.
    std::thread::sleep(Duration::from_secs(12));
    let (s0, t0, _) = snapshot(pid);
    std::thread::sleep(Duration::from_secs(secs));
    let (s1, t1, threads) = snapshot(pid);
    let idle = Idle {
        rss_kib: status_field(pid, "VmRSS:"),
        hwm_kib: status_field(pid, "VmHWM:"),
        threads,
        cpu_ms: (t1 - t0) as f64 * 1000.0 / clock_ticks(),
        switches: s1 - s0,
        secs,
    };
    let _ = child.kill();
    let _ = child.wait();
    idle
}

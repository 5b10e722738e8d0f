//! Running a process and measuring it: wall time from spawn to reaping, and that process's own
//! peak resident memory (from `wait4`'s rusage, which `std` does not expose).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One finished run.
#[derive(Debug, Clone)]
pub struct Sample {
    pub wall: Duration,
    /// Peak RSS in KiB.
    pub max_rss_kib: u64,
    pub status: i32,
    pub stdout: Vec<u8>,
}

/// Reaps `pid`, returning its wait status and resource usage.
#[expect(
    unsafe_code,
    reason = "wait4 is the only interface to one child's peak RSS"
)]
fn wait4(pid: u32) -> std::io::Result<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain data, valid when zeroed; wait4 writes both out-parameters and
    // reads nothing else. The pid is our own child, reaped exactly once here.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok((status, usage))
    }
}

/// Spawns `cmd` with `stdin`, waits, measures.
#[expect(
    clippy::zombie_processes,
    reason = "reaped by wait4 below, which also returns its rusage"
)]
pub fn run(cmd: &mut Command, stdin: &[u8]) -> Sample {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    if let Some(mut pipe) = child.stdin.take() {
        let _ = pipe.write_all(stdin);
    }
    let mut stdout = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        use std::io::Read;
        let _ = out.read_to_end(&mut stdout);
    }
    let (status, usage) = wait4(child.id()).expect("wait4 on our own child");
    Sample {
        wall: start.elapsed(),
        max_rss_kib: usage.ru_maxrss as u64,
        status: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
        stdout,
    }
}

/// The median of `xs` (sorted copy).
pub fn median(xs: &[Duration]) -> Duration {
    percentile(xs, 50.0)
}

/// The `p`th percentile (nearest rank).
pub fn percentile(xs: &[Duration], p: f64) -> Duration {
    let mut v = xs.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

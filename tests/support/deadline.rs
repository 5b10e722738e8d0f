//! Every child under a deadline: a test that proves "no wait is unbounded" must not itself
//! wait forever when the product does.
//!
//! - [`run_within`] runs a command to completion with its stdin fed and its output drained,
//!   and kills it (its whole process group) when the deadline fires, saying so.
//! - [`Guard`] owns a long-running child (a daemon, a stand-in): SIGKILL and reap on drop,
//!   also when the test panics.
//!
//! Children run in their own process group, so whatever they start (gh, a shell) goes with
//! them.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// One run that ended, on its own or by the deadline.
#[derive(Debug)]
pub struct Finished {
    /// The exit code; `None` when killed by a signal (the deadline's or another).
    pub code: Option<i32>,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
    /// Wall time from spawn to exit (or to the kill).
    pub took: Duration,
    /// Whether the deadline fired and the process was killed.
    pub timed_out: bool,
}

impl Finished {
    /// What to say about a run the deadline ended; `None` when it ended on its own.
    pub fn hang(&self) -> Option<String> {
        self.timed_out.then(|| {
            format!(
                "the deadline fired after {:.1} s and the process was killed (it hung); \
                 stderr so far: {:?}",
                self.took.as_secs_f64(),
                self.stderr
            )
        })
    }

    /// Panics, labelled, when the deadline fired: the process hung.
    #[track_caller]
    pub fn assert_in_time(&self, what: &str) -> &Self {
        if let Some(hang) = self.hang() {
            panic!("{what}: {hang}");
        }
        self
    }
}

/// Runs `command` with `stdin` on its standard input, stdout and stderr captured, killing its
/// process group if it has not exited within `deadline`.
pub fn run_within(command: &mut Command, stdin: &[u8], deadline: Duration) -> Finished {
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn the command under test");
    let input = stdin.to_vec();
    let mut pipe = child.stdin.take().expect("stdin is piped");
    // A process that exits without reading (or hangs before reading) must not block us.
    let feeder = thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            break status;
        }
        if start.elapsed() >= deadline {
            timed_out = true;
            kill_group(child.id(), "KILL");
            break child.wait().expect("reap the killed child");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let took = start.elapsed();
    // The group is gone or exited: its pipes close, and the readers end.
    kill_group(child.id(), "KILL");
    let _ = feeder.join();
    Finished {
        code: status.code(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        took,
        timed_out,
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Sends `signal` (e.g. "KILL", "STOP") to the process group `pgid` leads. A group already
/// gone is not an error.
pub fn kill_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A long-running child that is SIGKILLed (with its process group) and reaped when dropped.
#[derive(Debug)]
pub struct Guard {
    child: Child,
}

impl Guard {
    /// Spawns `command` in its own process group, under guard.
    pub fn spawn(command: &mut Command) -> Guard {
        let child = command
            .process_group(0)
            .spawn()
            .expect("spawn the guarded child");
        Guard { child }
    }

    /// The process ID (also its process group ID).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child, for signals and `try_wait`.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Waits at most `deadline` for the child to exit: `Some(code)` (`None` inside when a
    /// signal ended it), or `None` when it is still running at the deadline (it keeps running;
    /// the guard kills it on drop).
    pub fn exit_within(&mut self, deadline: Duration) -> Option<Option<i32>> {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                return Some(status.code());
            }
            if Instant::now() >= end {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        kill_group(self.child.id(), "KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! What a cache directory looks like when something else gets stuck in it (DESIGN.md, "Files
//! in the cache directory": no read or wait anywhere is unbounded):
//!
//! - [`StoppedHolder`]: `flock(2)` locks held by a process that was then SIGSTOPped, as a
//!   frozen or ptrace-stopped peer holds them. Made with util-linux `flock`.
//! - [`NotRegular`]: a FIFO, a unix socket or a directory where a regular file belongs. A FIFO
//!   blocks a plain `open` until a writer comes, which never happens here.

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::deadline::Guard;

/// Why a [`StoppedHolder`] cannot be made here (tests skip with this), if it cannot.
fn flock_missing() -> Option<&'static str> {
    let ok = Command::new("flock")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!ok).then_some("util-linux flock is not installed")
}

/// Exclusive `flock(2)` locks on some files, held by a process group that is stopped
/// (SIGSTOP) once it holds them all. Dropping it SIGKILLs and reaps the group, also when the
/// test panics.
#[derive(Debug)]
pub struct StoppedHolder {
    _group: Guard,
    _ready: tempfile::TempDir,
}

impl StoppedHolder {
    /// Locks each of the files `names` in `dir` (creating a missing one with mode 0600, as the
    /// product creates its lock files, so the only thing wrong is that someone holds it), then
    /// stops. `Err` says why it cannot be done on this machine: the test should skip.
    pub fn hold(dir: &Path, names: &[&str]) -> Result<StoppedHolder, &'static str> {
        assert!(!names.is_empty(), "nothing to hold");
        if let Some(why) = flock_missing() {
            return Err(why);
        }
        let paths: Vec<PathBuf> = names.iter().map(|name| dir.join(name)).collect();
        for path in &paths {
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        }
        let ready = tempfile::tempdir().expect("a temp dir for the ready marker");
        let marker = ready.path().join("locked");
        // flock A flock B … sh -c 'touch MARKER; exec sleep 600'
        let mut command = Command::new("flock");
        command.arg("--exclusive").arg(&paths[0]);
        for path in &paths[1..] {
            command.arg("flock").arg("--exclusive").arg(path);
        }
        command
            .args(["sh", "-c", "touch \"$0\" && exec sleep 600"])
            .arg(&marker)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut group = Guard::spawn(&mut command);
        let end = Instant::now() + Duration::from_secs(10);
        while !marker.exists() {
            assert!(
                group.child().try_wait().expect("poll flock").is_none(),
                "flock exited before holding {paths:?}"
            );
            assert!(
                Instant::now() < end,
                "flock did not take {paths:?} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        crate::deadline::kill_group(group.id(), "STOP");
        let stopped = || {
            std::fs::read_to_string(format!("/proc/{}/stat", group.id()))
                .ok()
                .and_then(|s| Some(s.rsplit_once(") ")?.1.starts_with('T')))
                .unwrap_or(false)
        };
        let end = Instant::now() + Duration::from_secs(5);
        while !stopped() {
            assert!(Instant::now() < end, "the lock holder did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
        // The holder is stopped, not gone: each lock is still taken.
        for path in &paths {
            let free = Command::new("flock")
                .args(["--nonblock", "--exclusive"])
                .arg(path)
                .arg("true")
                .status()
                .expect("run flock --nonblock");
            assert!(!free.success(), "{} is not held", path.display());
        }
        Ok(StoppedHolder {
            _group: group,
            _ready: ready,
        })
    }
}

/// A kind of file that is not a regular file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotRegular {
    /// A named pipe: `open(O_RDONLY)` blocks until a writer opens it.
    Fifo,
    /// A bound unix socket: `open` fails with ENXIO.
    Socket,
    /// A directory.
    Directory,
}

impl NotRegular {
    /// Every kind, for table-driven tests.
    pub const ALL: [NotRegular; 3] = [NotRegular::Fifo, NotRegular::Socket, NotRegular::Directory];

    /// How failure messages name it.
    pub fn name(self) -> &'static str {
        match self {
            NotRegular::Fifo => "FIFO",
            NotRegular::Socket => "socket",
            NotRegular::Directory => "directory",
        }
    }

    /// Puts one at `path`, replacing any regular file there. It is private to the current
    /// user (0600, a directory 0700), so its type is the only thing wrong with it. Keep the
    /// returned value alive for as long as the file should stay (a socket keeps listening).
    pub fn place(self, path: &Path) -> Placed {
        if path.is_file() {
            std::fs::remove_file(path).expect("remove the regular file being replaced");
        }
        let listener = match self {
            NotRegular::Fifo => {
                let ok = Command::new("mkfifo")
                    .args(["-m", "600"])
                    .arg(path)
                    .status()
                    .expect("run mkfifo")
                    .success();
                assert!(ok, "mkfifo {}", path.display());
                None
            }
            NotRegular::Socket => {
                let listener = UnixListener::bind(path)
                    .unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod 600 the socket");
                Some(listener)
            }
            NotRegular::Directory => {
                std::fs::create_dir(path)
                    .unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                    .expect("chmod 700 the directory");
                None
            }
        };
        Placed {
            path: path.to_owned(),
            _listener: listener,
        }
    }
}

/// A non-regular file in place; a socket's listener stays open while this lives.
#[derive(Debug)]
pub struct Placed {
    /// Where it is.
    pub path: PathBuf,
    _listener: Option<UnixListener>,
}

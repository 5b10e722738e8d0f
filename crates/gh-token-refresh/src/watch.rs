//! Watching the cache directory: a token any process writes into `tokens.json` (the helper
//! after an `erase`, another daemon, `refresh`) reaches the sinks and the metrics within
//! moments, without polling (DESIGN.md, "Token files for readers that poll").
//!
//! One inotify descriptor on the directory, registered with the runtime's epoll: idle, it
//! costs no wakeup. `tokens.json` is replaced by a rename, so the events that matter are a
//! file moved onto that name, written in place, or removed; events for the directory's other
//! files (the daemon's own status and metrics) are read and dropped.

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::Path;

use molecule_credential::cache::TOKENS_FILE;
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use tokio::io::unix::AsyncFd;

/// A watch on one cache directory.
#[derive(Debug)]
pub struct CacheWatch {
    fd: AsyncFd<OwnedFd>,
}

impl CacheWatch {
    /// Watches `dir` (inside a tokio runtime with I/O enabled).
    pub fn new(dir: &Path) -> io::Result<Self> {
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
        inotify::add_watch(
            &fd,
            dir,
            WatchFlags::MOVED_TO | WatchFlags::CLOSE_WRITE | WatchFlags::DELETE,
        )?;
        Ok(Self {
            fd: molecule_credential::alarm::register(fd)?,
        })
    }

    /// Resolves when `tokens.json` has changed since the last call (several changes in a row
    /// are one). Events for other files are consumed without resolving.
    pub async fn changed(&mut self) -> io::Result<()> {
        loop {
            let mut ready = self.fd.readable().await?;
            let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
            let mut reader = inotify::Reader::new(ready.get_inner(), &mut buf);
            let mut tokens = false;
            loop {
                match reader.next() {
                    Ok(event) => tokens |= event.file_name().is_some_and(is_tokens_file),
                    Err(rustix::io::Errno::WOULDBLOCK) => {
                        ready.clear_ready();
                        break;
                    }
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if tokens {
                return Ok(());
            }
        }
    }
}

fn is_tokens_file(name: &CStr) -> bool {
    name.to_bytes() == TOKENS_FILE.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_rename_onto_tokens_json_is_seen_and_other_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut watch = CacheWatch::new(dir.path()).unwrap();
        std::fs::write(dir.path().join("metrics.prom"), "x").unwrap();
        std::fs::write(dir.path().join(".tmp-1.partial"), "{}").unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(200), watch.changed()).await;
        assert!(quiet.is_err(), "other files must not count");
        std::fs::rename(
            dir.path().join(".tmp-1.partial"),
            dir.path().join(TOKENS_FILE),
        )
        .unwrap();
        tokio::time::timeout(Duration::from_secs(2), watch.changed())
            .await
            .expect("the rename is seen")
            .unwrap();
        std::fs::remove_file(dir.path().join(TOKENS_FILE)).unwrap();
        tokio::time::timeout(Duration::from_secs(2), watch.changed())
            .await
            .expect("the removal is seen")
            .unwrap();
    }
}

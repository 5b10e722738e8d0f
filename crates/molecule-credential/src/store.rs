//! The token cache on disk: the cache directory, its files and its locks (DESIGN.md, "Files in
//! the cache directory"). What the document means is [`crate::cache`]'s; this module keeps it.
//!
//! - Readers need no lock: writers replace `tokens.json` by renaming a fsynced temp file over
//!   it, so a reader sees the old document or the new one, never a torn one.
//! - `tokens.lock` guards read-modify-write, waited for at most [`TOKENS_LOCK_WAIT`].
//!   [`TokensLock`] is the only way to write, and [`TokensLock::write`] consumes it: holding the
//!   guard is the permission to write. Every write is compare-and-swap through
//!   [`should_replace`].
//! - `refresh.lock` makes minting single-flight across processes; `daemon.lock` keeps one
//!   daemon per directory.
//! - Every wait is [`poll_within`]: bounded, and a stopped holder never hangs a waiter.
//! - Like ssh, we refuse a cache directory or file that is a symlink, is not owned by us, or is
//!   accessible by group or others; and a FIFO, socket, device or directory where a file
//!   should be is refused at once, without blocking ([`crate::files::open_regular`]).
//!
//! This module is the only one that touches `File::lock`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::atomic::{self, Replace, TEMP_PREFIX, TEMP_SUFFIX};
use crate::cache::{Document, Entry, TOKENS_FILE, should_replace};
use crate::error::{Class, Error, Result};
use crate::files::{check_private, local, not_regular, open_private, read_capped};
use crate::secret::Secret;

/// Kept here too: the cache directory's ownership check is where callers look for it.
pub use crate::files::current_uid;

/// Guards read-modify-write of [`TOKENS_FILE`].
pub const TOKENS_LOCK: &str = "tokens.lock";
/// Single-flight minting.
pub const REFRESH_LOCK: &str = "refresh.lock";
/// One daemon per cache directory.
pub const DAEMON_LOCK: &str = "daemon.lock";
/// The daemon's last outcome, for `status` and health checks.
pub const DAEMON_STATUS_FILE: &str = "daemon.status.json";
/// Every file this project keeps in the cache directory.
pub const FILES: [&str; 5] = [
    TOKENS_FILE,
    TOKENS_LOCK,
    REFRESH_LOCK,
    DAEMON_LOCK,
    DAEMON_STATUS_FILE,
];
/// How long `tokens.lock` is waited for: git's own `credentialStore.lockTimeoutMS`. It is held
/// for microseconds, so a holder past this is stopped or frozen.
pub const TOKENS_LOCK_WAIT: Duration = Duration::from_secs(1);
/// The longest pause between two attempts of [`poll_within`].
pub const POLL_MAX: Duration = Duration::from_millis(10);

/// The one way this project waits for what another process holds: `attempt` now, then again
/// after 1, 2, 4 … ms (never more than [`POLL_MAX`] apart) until `wait` has passed.
/// `Ok(None)` when it never succeeded.
///
/// Bounded by construction and thread-free: a stopped or frozen holder costs a waiter `wait`
/// and nothing after it (a thread blocked in `flock` would stay blocked as long as the holder
/// does, and a long-lived daemon would pile them up).
pub fn poll_within<T>(
    wait: Duration,
    mut attempt: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(done) = attempt()? {
            return Ok(Some(done));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(POLL_MAX);
    }
}

/// A checked cache directory.
#[derive(Clone, Debug)]
pub struct CacheDir {
    path: PathBuf,
    uid: u32,
}

impl CacheDir {
    /// Opens `path`, creating it with mode 0700 when missing (whatever the umask), and refuses
    /// it when it is a symlink, not a directory, not ours, or group/world accessible.
    pub fn open(path: &Path) -> Result<Self> {
        let uid = current_uid();
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Self::create(path)?;
                fs::symlink_metadata(path).map_err(|e| local("inspecting", path, &e))?
            }
            Err(e) => return Err(local("inspecting", path, &e)),
        };
        if meta.file_type().is_symlink() {
            return Err(Error::new(
                Class::LocalConfig,
                format!(
                    "cache directory {} is a symlink; refusing to follow it",
                    path.display()
                ),
            ));
        }
        if !meta.is_dir() {
            return Err(Error::new(
                Class::LocalConfig,
                format!("cache directory {} is not a directory", path.display()),
            ));
        }
        check_private(path, &meta, "cache directory", uid)?;
        Ok(Self {
            path: path.to_owned(),
            uid,
        })
    }

    /// Like [`CacheDir::open`] but never creates: `Ok(None)` when the directory is missing
    /// (for commands that only report).
    pub fn open_existing(path: &Path) -> Result<Option<Self>> {
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            _ => Self::open(path).map(Some),
        }
    }

    fn create(path: &Path) -> Result<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| local("creating", parent, &e))?;
        }
        match fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            // Another process created it meanwhile: its checks apply below.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => return Err(local("creating", path, &e)),
        }
        // The umask may have taken owner bits away; 0700 is what we promise.
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .map_err(|e| local("setting mode 0700 on", path, &e))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Checks, without opening anything, that each of [`FILES`] is missing or a regular file:
    /// for the daemon, which should say at start what would otherwise fail at every wake.
    pub fn check_files(&self) -> Result<()> {
        for name in FILES {
            let path = self.file(name);
            match fs::symlink_metadata(&path) {
                Ok(m) if !m.is_file() => return Err(not_regular(&path, m.file_type())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(local("inspecting", &path, &e)),
            }
        }
        Ok(())
    }

    /// Reads `tokens.json` without a lock. A missing file is an empty document; a corrupt,
    /// insecure, non-regular or future-version one is an error (never silently replaced).
    pub fn read(&self) -> Result<Document> {
        let path = self.file(TOKENS_FILE);
        let Some(file) = open_private(&path, OpenOptions::new().read(true), self.uid)? else {
            return Ok(Document::default());
        };
        let bytes = read_capped(file, &path)?;
        Document::parse(&bytes, &path)
    }

    /// The entry for `key`, if any.
    pub fn entry(&self, key: &str) -> Result<Option<Entry>> {
        Ok(self.read()?.entries.remove(key))
    }

    /// Takes `tokens.lock` for a read-modify-write, waiting at most [`TOKENS_LOCK_WAIT`]; past
    /// that the write is abandoned with class transient. Held for microseconds: never across
    /// a network call.
    pub fn lock_tokens(&self) -> Result<TokensLock<'_>> {
        let file = self.lock_file(TOKENS_LOCK)?;
        match poll_within(TOKENS_LOCK_WAIT, || self.try_lock(&file, TOKENS_LOCK))? {
            Some(()) => Ok(TokensLock {
                dir: self,
                _lock: file,
            }),
            None => Err(Error::new(
                Class::Transient,
                format!(
                    "another process held {} for more than {}s; the write was abandoned",
                    self.file(TOKENS_LOCK).display(),
                    TOKENS_LOCK_WAIT.as_secs()
                ),
            )),
        }
    }

    fn try_lock(&self, file: &File, name: &str) -> Result<Option<()>> {
        match file.try_lock() {
            Ok(()) => Ok(Some(())),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(local("locking", &self.file(name), &e)),
        }
    }

    fn lock_file(&self, name: &str) -> Result<File> {
        let path = self.file(name);
        let mut rw = OpenOptions::new();
        rw.read(true).write(true).create(true).mode(0o600);
        match open_private(&path, &mut rw, self.uid) {
            Ok(Some(f)) => Ok(f),
            Ok(None) => Err(Error::new(
                Class::LocalConfig,
                format!("{} vanished while opening it", path.display()),
            )),
            // A read-only directory still lets us lock an existing lock file; anything else
            // (insecure, not a regular file) is the answer.
            Err(e) => match fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() => {
                    match open_private(&path, OpenOptions::new().read(true), self.uid) {
                        Ok(Some(f)) => Ok(f),
                        _ => Err(e),
                    }
                }
                _ => Err(e),
            },
        }
    }

    /// Offers `entry` for `key` under the compare-and-swap rule of [`should_replace`].
    /// Returns the entry the cache holds afterwards and whether it is the one offered.
    pub fn offer(&self, key: &str, entry: Entry) -> Result<(Entry, bool)> {
        let lock = self.lock_tokens()?;
        let mut doc = lock.read()?;
        let old = doc.entries.get(key);
        if !should_replace(old, &entry) {
            let kept = old
                .cloned()
                .expect("should_replace only refuses when an entry exists");
            return Ok((kept, false));
        }
        doc.entries.insert(key.to_owned(), entry.clone());
        lock.write(&doc)?;
        Ok((entry, true))
    }

    /// `erase`: marks the entry for `key` suspect when its token equals `password`.
    /// Returns whether anything changed; any other password leaves the file untouched.
    pub fn mark_suspect(&self, key: &str, password: &Secret<String>) -> Result<bool> {
        // Cheap check first, without the lock: most erases are for tokens we do not hold.
        match self.entry(key)? {
            Some(e) if !e.suspect && e.token == *password => {}
            _ => return Ok(false),
        }
        let lock = self.lock_tokens()?;
        let mut doc = lock.read()?;
        match doc.entries.get_mut(key) {
            Some(e) if !e.suspect && e.token == *password => e.suspect = true,
            _ => return Ok(false),
        }
        lock.write(&doc)?;
        Ok(true)
    }

    /// Takes `refresh.lock` if it is free, without waiting. `Ok(None)` when another process
    /// holds it.
    pub fn try_refresh_lock(&self) -> Result<Option<RefreshLock>> {
        let file = self.lock_file(REFRESH_LOCK)?;
        Ok(self
            .try_lock(&file, REFRESH_LOCK)?
            .map(|()| RefreshLock { _lock: file }))
    }

    /// Takes `refresh.lock`, waiting at most `wait` ([`poll_within`]). `Ok(None)` when the
    /// wait ran out.
    pub fn refresh_lock(&self, wait: Duration) -> Result<Option<RefreshLock>> {
        let file = self.lock_file(REFRESH_LOCK)?;
        Ok(poll_within(wait, || self.try_lock(&file, REFRESH_LOCK))?
            .map(|()| RefreshLock { _lock: file }))
    }

    /// Takes `daemon.lock` without waiting. `Ok(None)` when another daemon holds it.
    pub fn try_daemon_lock(&self) -> Result<Option<DaemonLock>> {
        let file = self.lock_file(DAEMON_LOCK)?;
        Ok(self
            .try_lock(&file, DAEMON_LOCK)?
            .map(|()| DaemonLock { _lock: file }))
    }

    /// Reads a private file of the cache directory by name. `Ok(None)` when missing.
    pub fn read_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.file(name);
        match open_private(&path, OpenOptions::new().read(true), self.uid)? {
            Some(f) => read_capped(f, &path).map(Some),
            None => Ok(None),
        }
    }

    /// Atomically replaces a file of the cache directory that needs no lock (only the daemon
    /// writes it, under `daemon.lock`).
    pub fn write_file(&self, name: &str, bytes: &[u8], _daemon: &DaemonLock) -> Result<()> {
        self.replace(name, bytes)
    }

    /// Writes `bytes` to a 0600 temp file in the directory, fsyncs it, renames it over `name`
    /// and fsyncs the directory, so the rename itself survives a crash.
    fn replace(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let target = self.file(name);
        let how = Replace {
            mode: 0o600,
            gid: None,
            sync_dir: true,
        };
        atomic::replace(&target, bytes, how).map_err(|e| local("replacing", &target, &e))
    }

    /// Removes temp files a killed writer left behind (older than `age`, so a live writer's
    /// file is never touched). Returns how many were removed.
    pub fn remove_stale_temp_files(&self, age: Duration) -> usize {
        let Ok(dir) = fs::read_dir(&self.path) else {
            return 0;
        };
        let now = SystemTime::now();
        dir.flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)
            })
            .filter(|e| {
                e.metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| now.duration_since(m).unwrap_or_default() >= age)
            })
            .filter(|e| fs::remove_file(e.path()).is_ok())
            .count()
    }
}

/// Permission to read-modify-write `tokens.json`. Dropping it unlocks.
#[derive(Debug)]
pub struct TokensLock<'a> {
    dir: &'a CacheDir,
    _lock: File,
}

impl TokensLock<'_> {
    /// Reads the document under the lock.
    pub fn read(&self) -> Result<Document> {
        self.dir.read()
    }

    /// Replaces the document atomically and releases the lock.
    pub fn write(self, doc: &Document) -> Result<()> {
        self.dir.replace(TOKENS_FILE, &doc.to_vec()?)
    }
}

/// Held while minting; dropping it lets the next minter in.
#[derive(Debug)]
pub struct RefreshLock {
    _lock: File,
}

/// Held for the daemon's whole life.
#[derive(Debug)]
pub struct DaemonLock {
    _lock: File,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::SOURCE_PLATFORM;
    use crate::cache::tests::{CORRUPT, entry, t};
    use serde_json::Value;

    fn private_dir() -> (tempfile::TempDir, CacheDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CacheDir::open(&tmp.path().join("cache")).unwrap();
        (tmp, dir)
    }

    #[test]
    fn creates_a_private_directory_whatever_the_umask() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b/cache");
        let dir = CacheDir::open(&path).unwrap();
        let mode = fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn round_trip_keeps_unknown_fields() {
        let (_tmp, dir) = private_dir();
        let raw = r#"{"version":1,"future":{"x":1},"entries":{"github.com":{"token":"ghs_a","expires_at":"2026-11-22T20:00:00+01:00","fetched_at":"2026-11-22T18:00:00.5Z","source":"platform","suspect":false,"owner_hint":"acme"}}}"#;
        fs::write(dir.path().join(TOKENS_FILE), raw).unwrap();
        fs::set_permissions(
            dir.path().join(TOKENS_FILE),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let doc = dir.read().unwrap();
        assert_eq!(
            doc.entries["github.com"].expires_at,
            t("2026-11-22T19:00:00Z")
        );
        dir.offer("other", entry("b", "2026-11-22T19:00:00Z", SOURCE_PLATFORM))
            .unwrap();
        let text = fs::read_to_string(dir.path().join(TOKENS_FILE)).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["future"]["x"], 1);
        assert_eq!(v["entries"]["github.com"]["owner_hint"], "acme");
        assert_eq!(
            v["entries"]["github.com"]["expires_at"],
            "2026-11-22T19:00:00Z"
        );
        assert_eq!(v["entries"]["other"]["suspect"], false);
        let mode = fs::metadata(dir.path().join(TOKENS_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn offer_keeps_the_later_expiry() {
        let (_tmp, dir) = private_dir();
        let (_, wrote) = dir
            .offer("h", entry("late", "2026-11-22T19:30:00Z", SOURCE_PLATFORM))
            .unwrap();
        assert!(wrote);
        let (held, wrote) = dir
            .offer("h", entry("early", "2026-11-22T19:00:00Z", SOURCE_PLATFORM))
            .unwrap();
        assert!(!wrote);
        assert!(held.token.eq_str("late"));
        assert!(dir.entry("h").unwrap().unwrap().token.eq_str("late"));
    }

    #[test]
    fn erase_marks_only_the_matching_token() {
        let (_tmp, dir) = private_dir();
        dir.offer("h", entry("tok", "2026-11-22T19:30:00Z", SOURCE_PLATFORM))
            .unwrap();
        let before = fs::read(dir.path().join(TOKENS_FILE)).unwrap();
        assert!(!dir.mark_suspect("h", &Secret::new("other".into())).unwrap());
        assert!(
            !dir.mark_suspect("nohost", &Secret::new("tok".into()))
                .unwrap()
        );
        assert_eq!(fs::read(dir.path().join(TOKENS_FILE)).unwrap(), before);
        assert!(dir.mark_suspect("h", &Secret::new("tok".into())).unwrap());
        assert!(dir.entry("h").unwrap().unwrap().suspect);
        // The same token fetched again clears the flag.
        let (_, wrote) = dir
            .offer("h", entry("tok", "2026-11-22T19:30:00Z", SOURCE_PLATFORM))
            .unwrap();
        assert!(wrote);
        assert!(!dir.entry("h").unwrap().unwrap().suspect);
    }

    #[test]
    fn refuses_insecure_directories_and_files() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        let e = CacheDir::open(&open).unwrap_err();
        assert_eq!(e.class(), Class::LocalConfig);
        assert!(e.message().contains("mode 755"), "{e}");

        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path().join("target"), &link).unwrap();
        fs::create_dir(tmp.path().join("target")).unwrap();
        fs::set_permissions(tmp.path().join("target"), fs::Permissions::from_mode(0o700)).unwrap();
        assert!(
            CacheDir::open(&link)
                .unwrap_err()
                .message()
                .contains("symlink")
        );

        let (_tmp, dir) = private_dir();
        let file = dir.path().join(TOKENS_FILE);
        fs::write(&file, r#"{"version":1,"entries":{}}"#).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(dir.read().unwrap_err().message().contains("mode 644"));
        fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &file).unwrap();
        assert!(dir.read().unwrap_err().message().contains("symlink"));
    }

    #[test]
    fn corrupt_or_future_documents_are_errors_without_content() {
        let (_tmp, dir) = private_dir();
        let file = dir.path().join(TOKENS_FILE);
        for (raw, want) in CORRUPT {
            fs::write(&file, raw).unwrap();
            fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
            let e = dir.read().unwrap_err();
            assert!(e.message().contains(want), "{e}");
            assert!(!e.message().contains("SECRET"), "{e}");
        }
    }

    #[test]
    fn refresh_lock_is_exclusive_and_bounded() {
        let (_tmp, dir) = private_dir();
        let held = dir
            .refresh_lock(Duration::ZERO)
            .unwrap()
            .expect("free lock");
        let start = std::time::Instant::now();
        assert!(
            dir.refresh_lock(Duration::from_millis(100))
                .unwrap()
                .is_none()
        );
        assert!(start.elapsed() >= Duration::from_millis(100));
        let dir2 = dir.clone();
        let waiter = std::thread::spawn(move || {
            dir2.refresh_lock(Duration::from_secs(5)).unwrap().is_some()
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        assert!(waiter.join().unwrap());
        // The abandoned waiter from the timed-out call must not keep the lock.
        assert!(dir.refresh_lock(Duration::from_secs(2)).unwrap().is_some());
    }

    #[test]
    fn daemon_lock_is_exclusive() {
        let (_tmp, dir) = private_dir();
        let first = dir.try_daemon_lock().unwrap();
        assert!(first.is_some());
        assert!(dir.try_daemon_lock().unwrap().is_none());
        drop(first);
        assert!(dir.try_daemon_lock().unwrap().is_some());
    }

    #[test]
    fn stale_temp_files_are_removed() {
        let (_tmp, dir) = private_dir();
        let stale = dir.path().join(".tmp-abc.partial");
        fs::write(&stale, "x").unwrap();
        assert_eq!(dir.remove_stale_temp_files(Duration::from_secs(3600)), 0);
        assert_eq!(dir.remove_stale_temp_files(Duration::ZERO), 1);
        assert!(!stale.exists());
    }
}

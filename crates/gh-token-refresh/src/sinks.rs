//! The token files the daemon keeps fresh for readers that poll (DESIGN.md, "Token files for
//! readers that poll (sinks)"): what each must hold is [`molecule_credential::sink::holds`];
//! this module writes it.
//!
//! - A sink is rewritten only when what it must hold changes (another token, expiry or
//!   source), atomically (temp file, fsync, rename: [`molecule_credential::atomic`]), mode
//!   0600, or 0640 with `MOLECULE_TOKEN_SINK_GROUP`.
//! - When nothing can be served it is removed, so a reader fails loudly instead of replaying
//!   a dead token; it comes back with the next token.
//! - A symlink, FIFO, directory or anything but a regular file at a sink's path is refused
//!   without touching it and without blocking anything else (the check is an `lstat`, never
//!   an open); the daemon keeps refreshing and reports the sink's failure in `status` and the
//!   metrics. So is a missing directory: sinks never create directories.
//! - The work is blocking file I/O: the daemon runs [`Sinks::update`] on a blocking thread.

use std::fs;
use std::io;
use std::path::Path;

use molecule_credential::atomic::{self, Replace};
use molecule_credential::cache::Document;
use molecule_credential::config::{Config, vars};
use molecule_credential::fallback::Fallback;
use molecule_credential::output::{Handout, render};
use molecule_credential::sink::{Sink, holds};
use molecule_credential::status::{Outcomes, SinkStatus};
use time::OffsetDateTime;

/// What a sink holds, as far as deciding whether to rewrite it goes (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Held {
    fingerprint: String,
    expires_at: Option<OffsetDateTime>,
    source: String,
}

impl Held {
    fn of(handout: &Handout<'_>) -> Self {
        Self {
            fingerprint: handout.token.fingerprint(),
            expires_at: handout.expires_at,
            source: handout.source.to_owned(),
        }
    }
}

/// One sink and what it holds.
#[derive(Debug)]
struct SinkFile {
    sink: Sink,
    /// `Some(Some(_))` written, `Some(None)` removed, `None` unknown (start, or a failure:
    /// the next update tries again).
    held: Option<Option<Held>>,
    status: SinkStatus,
}

/// Every configured sink.
#[derive(Debug, Default)]
pub struct Sinks {
    files: Vec<SinkFile>,
    gid: Option<u32>,
}

impl Sinks {
    /// The sinks `config` names, with the group resolved and each path checked (a path that
    /// cannot work is logged now, and reported as failed until it can).
    pub fn new(config: &Config) -> Self {
        let gid = config
            .sink_group
            .as_deref()
            .and_then(|g| match group_id(g) {
                Some(gid) => Some(gid),
                None => {
                    tracing::error!(
                        "{} names no group this system knows; the sinks stay 0600",
                        vars::MOLECULE_TOKEN_SINK_GROUP
                    );
                    None
                }
            });
        let files = config
            .sinks
            .iter()
            .map(|sink| {
                let mut status = SinkStatus {
                    spec: format!("{}@{}", sink.format, sink.target.key()),
                    state: "pending".to_owned(),
                    ..SinkStatus::default()
                };
                if let Err(e) = check_path(&sink.path) {
                    tracing::error!(sink = %sink, "{e}; this sink is not written until that is fixed");
                    status.state = "failed".to_owned();
                    status.error = Some(e.to_string());
                }
                SinkFile {
                    sink: sink.clone(),
                    held: None,
                    status,
                }
            })
            .collect();
        Self { files, gid }
    }

    /// Whether any sink is configured.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Brings every sink to what it must hold at `now`, given the cache `doc` and the
    /// `fallback` token. Returns the writes and removals made (success or failure), for the
    /// metrics; a sink already holding the right thing is not touched.
    pub fn update(
        &mut self,
        doc: &Document,
        fallback: Option<&Fallback>,
        now: OffsetDateTime,
    ) -> Outcomes {
        let mut outcomes = Outcomes::default();
        let how = Replace {
            mode: if self.gid.is_some() { 0o640 } else { 0o600 },
            gid: self.gid,
            sync_dir: false,
        };
        for file in &mut self.files {
            let handout = holds(doc.entries.get(&file.sink.target.key()), fallback, now);
            let want = handout.as_ref().map(Held::of);
            if file.held.as_ref() == Some(&want) {
                continue;
            }
            // Ok(true): a file changed on disk (written, or one that was there removed).
            let result = match &handout {
                Some(h) => render(file.sink.format, h, now)
                    .map_err(|e| io::Error::other(e.to_string()))
                    .and_then(|text| write(&file.sink.path, text.expose().as_bytes(), how))
                    .map(|()| true),
                None => remove(&file.sink.path),
            };
            // A removal of a file that was not there changed nothing: not counted.
            if !matches!(result, Ok(false)) {
                outcomes.add(result.is_ok());
            }
            file.status.changed_at = Some(now);
            match result {
                Ok(changed) => {
                    file.status.state =
                        if want.is_some() { "written" } else { "removed" }.to_owned();
                    file.status.source = want.as_ref().map(|h| h.source.clone());
                    file.status.error = None;
                    if want.is_none() && changed {
                        tracing::warn!(sink = %file.sink, "nothing can be served: removed the token file until a token comes back");
                    } else if want.is_some() {
                        tracing::debug!(sink = %file.sink, source = ?file.status.source, "token file written");
                    }
                    file.held = Some(want);
                }
                Err(e) => {
                    if file.status.error.as_deref() != Some(&e.to_string()) {
                        tracing::error!(sink = %file.sink, "cannot update the token file: {e}");
                    }
                    file.status.state = "failed".to_owned();
                    file.status.error = Some(e.to_string());
                    file.held = None;
                }
            }
        }
        outcomes
    }

    /// Each sink's state, by path, for the status file.
    pub fn statuses(&self) -> impl Iterator<Item = (String, SinkStatus)> + '_ {
        self.files
            .iter()
            .map(|f| (f.sink.path.display().to_string(), f.status.clone()))
    }
}

/// Refuses a path where a token file cannot safely be: a missing directory, or anything but a
/// regular file already there. An `lstat`: it never opens (a FIFO would block an open).
fn check_path(path: &Path) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    if !dir.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{}: its directory does not exist", path.display()),
        ));
    }
    match fs::symlink_metadata(path) {
        Ok(m) if !m.is_file() => {
            let what = if m.file_type().is_symlink() {
                "a symlink"
            } else if m.is_dir() {
                "a directory"
            } else if std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()) {
                "a FIFO"
            } else {
                "not a regular file"
            };
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is {what}; refusing to replace it", path.display()),
            ))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

fn write(path: &Path, bytes: &[u8], how: Replace) -> io::Result<()> {
    check_path(path)?;
    atomic::replace(path, bytes, how)
        .map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
}

/// Removes the token file; `Ok(false)` when there was none.
fn remove(path: &Path) -> io::Result<bool> {
    check_path(path)?;
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("removing {}: {e}", path.display()),
        )),
    }
}

/// A group name or a numeric gid, as the system's group database knows it.
fn group_id(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse() {
        return Some(gid);
    }
    let name = std::ffi::CString::new(group).ok()?;
    lookup_group(&name)
}

/// `getgrnam_r`: the C library's group database (with NSS in a dynamic build; `/etc/group`
/// in a static one).
#[expect(
    unsafe_code,
    reason = "getgrnam_r through libc: std has no group lookup"
)]
fn lookup_group(name: &std::ffi::CStr) -> Option<u32> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero `group` is a valid value of this plain C struct.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, `buf` is writable for its length, and
    // `result` is only read after the call returns.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(grp.gr_gid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use molecule_credential::Secret;
    use molecule_credential::cache::Entry;
    use molecule_credential::clock::parse_rfc3339;
    use molecule_tests::stuck::NotRegular;
    use std::os::unix::fs::MetadataExt;

    fn now() -> OffsetDateTime {
        parse_rfc3339("2026-12-06T20:00:00Z").unwrap()
    }

    fn config(dir: &Path, sinks: &str, group: Option<&str>) -> Config {
        let sinks = sinks.replace("DIR", &dir.display().to_string());
        Config::load(|k| match k {
            "MOLECULE_TOKEN_SINKS" => Some(sinks.clone()),
            "MOLECULE_TOKEN_SINK_GROUP" => group.map(str::to_owned),
            _ => None,
        })
        .config
    }

    fn doc(token: &str, minutes: i64) -> Document {
        let mut d = Document::default();
        d.entries.insert(
            "github.com".into(),
            Entry::new(
                Secret::new(token.into()),
                now() + time::Duration::minutes(minutes),
                now(),
                "platform",
            ),
        );
        d
    }

    #[test]
    fn written_when_changed_removed_when_nothing_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut sinks = Sinks::new(&config(
            dir.path(),
            "raw:DIR/raw,json:DIR/t.json,env:DIR/t.env",
            Some("0"),
        ));
        let o = sinks.update(&doc("ghs_one", 30), None, now());
        assert_eq!((o.success, o.failure), (3, 0));
        assert_eq!(
            fs::read_to_string(dir.path().join("raw")).unwrap(),
            "ghs_one\n"
        );
        let meta = fs::metadata(dir.path().join("t.env")).unwrap();
        assert_eq!((meta.mode() & 0o777, meta.gid()), (0o640, 0));
        // Nothing changed: nothing rewritten, even a minute later (expires_in is as of the write).
        let o = sinks.update(
            &doc("ghs_one", 30),
            None,
            now() + time::Duration::minutes(1),
        );
        assert_eq!((o.success, o.failure), (0, 0));
        // Expired, no fallback: removed.
        let o = sinks.update(
            &doc("ghs_one", 30),
            None,
            now() + time::Duration::minutes(30),
        );
        assert_eq!((o.success, o.failure), (3, 0));
        assert!(!dir.path().join("raw").exists());
        // The fallback, the way `token` prints it.
        let fb = Fallback {
            token: Secret::new("ghs_fb".into()),
            origin: "GH_TOKEN",
        };
        sinks.update(&Document::default(), Some(&fb), now());
        assert_eq!(
            fs::read_to_string(dir.path().join("t.json")).unwrap(),
            "{\"token\":\"ghs_fb\",\"expires_at\":null,\"expires_in\":null,\"source\":\"fallback\"}\n"
        );
        let statuses: Vec<_> = sinks.statuses().map(|(_, s)| s.state).collect();
        assert_eq!(statuses, ["written", "written", "written"]);
    }

    #[test]
    fn what_is_not_a_regular_file_is_refused_and_blocks_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // A FIFO (an open would block), a socket, a directory; then a symlink and a missing
        // directory; then a plain path that works.
        let placed: Vec<_> = NotRegular::ALL
            .iter()
            .map(|kind| kind.place(&dir.path().join(kind.name())))
            .collect();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let mut sinks = Sinks::new(&config(
            dir.path(),
            "raw:DIR/FIFO,raw:DIR/socket,raw:DIR/directory,raw:DIR/link,raw:DIR/none/x,raw:DIR/ok",
            None,
        ));
        let started = std::time::Instant::now();
        let o = sinks.update(&doc("ghs_one", 30), None, now());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!((o.success, o.failure), (1, 5));
        assert_eq!(
            fs::read_to_string(dir.path().join("ok")).unwrap(),
            "ghs_one\n"
        );
        for p in &placed {
            assert!(
                !fs::symlink_metadata(&p.path).unwrap().is_file(),
                "left as it was"
            );
        }
        assert_eq!(
            fs::read_link(dir.path().join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
        let errors: Vec<_> = sinks.statuses().filter_map(|(_, s)| s.error).collect();
        for (e, want) in errors.iter().zip([
            "is a FIFO",
            "is not a regular file",
            "is a directory",
            "is a symlink",
            "directory does not exist",
        ]) {
            assert!(e.contains(want), "{e}: {want}");
            assert!(!e.contains("ghs_"));
        }
    }
}

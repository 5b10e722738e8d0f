//! Token files for readers that poll (DESIGN.md, "Token files for readers that poll
//! (sinks)"), end to end: `gh-token-refresh` keeping `json`, `raw` and `env` sinks while the
//! platform stand-in hands out tokens that live 4 seconds, a reader polling them every 5 ms as
//! an egress proxy would, and `git-credential-molecule` as the other processes that write the
//! cache (`refresh`, git's `erase`) and as the reference for what each file must hold
//! (`token --format F`).
//!
//! - Through several rotations the reader never sees an empty, partial, mixed, unknown or
//!   expired file, and never finds one missing; each file equals `token --format F` (JSON:
//!   `expires_in` within the bounds of when each was printed).
//! - A token another process writes (`refresh`) reaches every sink within 2 s (the daemon
//!   watches the cache directory); after git's `erase` the rejected token leaves every sink
//!   and the next one arrives within 2 s.
//! - With the platform failing and no fallback, the sinks are removed within 2 s of the
//!   token's expiry (not before: until then `token` still prints it) and come back with the
//!   next token. A FIFO at one sink's path blocks nothing, and `status` names it. With
//!   `MOLECULE_TOKEN_SINK_GROUP` the files are 0640 and that group's.
//!
//! Neither test needs root or a network namespace: the stand-in listens on a free port of
//! 127.0.0.1 and gh is not on the daemon's PATH. What they measured goes to
//! `target/test-reports/sinks-*.txt`.

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use molecule_tests::Fault;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::harness::{Env, Expiries, Platform, assert_exhausted, cached, git_reject, now, within};
use crate::support::{report, signal};

/// Each token lives 4 s; the stand-in re-mints below 3 s; the margin is 2 s: a rotation every
/// 2 s, the new token reaching the sinks with 2 s of the old one left.
const TTL: Duration = Duration::from_secs(4);
const REMINT_BELOW: Duration = Duration::from_secs(3);
const MARGIN: &str = "2";
/// The contract's bound for a token in the cache to reach (or leave) every sink.
const REACH: Duration = Duration::from_secs(2);
/// How often the reader polls.
const POLL: Duration = Duration::from_millis(5);
/// The iron-proxy recipe, compressed: its `file` source re-reads after `ttl`, which must be
/// shorter than the margin (2 m against 5 m in docs/consumers.md; 1 s against 2 s here).
const PROXY_TTL: Duration = Duration::from_secs(1);

/// One sink: its format and path.
#[derive(Clone, Debug)]
struct Sink {
    format: &'static str,
    path: PathBuf,
}

fn sinks(dir: &Path) -> Vec<Sink> {
    std::fs::create_dir_all(dir).unwrap();
    [
        ("json", "github.json"),
        ("raw", "github.token"),
        ("env", "github.env"),
    ]
    .into_iter()
    .map(|(format, name)| Sink {
        format,
        path: dir.join(name),
    })
    .collect()
}

fn spec(sinks: &[Sink]) -> String {
    sinks
        .iter()
        .map(|s| format!("{}:{}", s.format, s.path.display()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The token a sink's text holds, if the text is whole and well formed for its format (the
/// reason otherwise; never the token itself).
fn parse(format: &str, text: &[u8]) -> Result<(String, Option<Value>), String> {
    let text = std::str::from_utf8(text).map_err(|_| "not UTF-8".to_owned())?;
    if text.is_empty() {
        return Err("empty".into());
    }
    let body = text
        .strip_suffix('\n')
        .ok_or_else(|| format!("partial: {} bytes, no final newline", text.len()))?;
    match format {
        "raw" if !body.is_empty() && !body.contains('\n') => Ok((body.to_owned(), None)),
        "env" => {
            let lines: Vec<&str> = body.split('\n').collect();
            match lines.as_slice() {
                [gh, github] => match (
                    gh.strip_prefix("GH_TOKEN="),
                    github.strip_prefix("GITHUB_TOKEN="),
                ) {
                    (Some(a), Some(b)) if a == b && !a.is_empty() => Ok((a.to_owned(), None)),
                    _ => Err("mixed or malformed env lines".into()),
                },
                _ => Err(format!("{} env lines", lines.len())),
            }
        }
        "json" => {
            let v: Value = serde_json::from_str(body).map_err(|e| format!("bad JSON: {e}"))?;
            let keys: BTreeSet<&str> = v
                .as_object()
                .ok_or("not an object")?
                .keys()
                .map(String::as_str)
                .collect();
            if keys != BTreeSet::from(["token", "expires_at", "expires_in", "source"]) {
                return Err(format!("JSON keys {keys:?}"));
            }
            let token = v["token"]
                .as_str()
                .ok_or("token is not a string")?
                .to_owned();
            Ok((token, Some(v)))
        }
        _ => Err(format!("malformed {format} text")),
    }
}

fn rfc3339(v: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(v.as_str()?, &Rfc3339).ok()
}

/// What the reader saw, per sink in the order of [`sinks`].
#[derive(Default)]
struct Seen {
    reads: [u64; 3],
    missing: [u64; 3],
    tokens: [BTreeSet<String>; 3],
    problems: Vec<String>,
    proxy_uses: u64,
    proxy_reads: u64,
}

/// Whether a sink may be missing: not while tokens rotate normally; yes right after an
/// `erase` (nothing can be served until the next token: the contract removes the file).
const STRICT: u8 = 0;
const MAY_VANISH: u8 = 1;

/// A thread reading every sink every 5 ms, checking each read, until stopped.
struct Reader {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicU8>,
    handle: JoinHandle<Seen>,
}

impl Reader {
    fn start(sinks: Vec<Sink>, expiries: Expiries) -> Reader {
        let (stop, phase) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU8::new(0)));
        let (s, p) = (stop.clone(), phase.clone());
        let handle = std::thread::spawn(move || {
            let mut seen = Seen::default();
            // The iron-proxy recipe's view of the json sink: the token it read, and when.
            let mut proxy: Option<(String, Instant)> = None;
            while !s.load(Ordering::SeqCst) {
                let strict = p.load(Ordering::SeqCst) == STRICT;
                for (i, sink) in sinks.iter().enumerate() {
                    let read = std::fs::read(&sink.path);
                    let at = now();
                    seen.reads[i] += 1;
                    let bytes = match read {
                        Ok(b) => b,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            seen.missing[i] += 1;
                            if strict {
                                seen.problems
                                    .push(format!("{}: missing while tokens rotate", sink.format));
                            }
                            continue;
                        }
                        Err(e) => {
                            seen.problems.push(format!("{}: {e}", sink.format));
                            continue;
                        }
                    };
                    match check(sink.format, &bytes, &expiries, at) {
                        Ok(token) => {
                            if i == 0
                                && strict
                                && proxy.as_ref().is_none_or(|(_, t)| t.elapsed() >= PROXY_TTL)
                            {
                                seen.proxy_reads += 1;
                                proxy = Some((token.clone(), Instant::now()));
                            }
                            seen.tokens[i].insert(token);
                        }
                        Err(problem) => seen.problems.push(format!("{}: {problem}", sink.format)),
                    }
                }
                // The proxy injects what it cached: it must still be alive.
                if strict && let Some((token, _)) = &proxy {
                    seen.proxy_uses += 1;
                    if expiries.of(token).is_none_or(|exp| now() >= exp) {
                        seen.problems
                            .push("the proxy's cached token (ttl < margin) is dead".into());
                    }
                }
                if !strict {
                    proxy = None;
                }
                std::thread::sleep(POLL);
            }
            seen
        });
        Reader {
            stop,
            phase,
            handle,
        }
    }

    fn phase(&self, phase: u8) {
        self.phase.store(phase, Ordering::SeqCst);
    }

    fn finish(self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap()
    }
}

/// One read of a sink at `at`: whole, well formed, a token the platform minted, not expired.
fn check(
    format: &str,
    bytes: &[u8],
    expiries: &Expiries,
    at: OffsetDateTime,
) -> Result<String, String> {
    let (token, json) = parse(format, bytes)?;
    let expiry = expiries
        .of(&token)
        .ok_or("a token the platform never minted")?;
    if at >= expiry {
        return Err(format!(
            "expired: read {} ms after its expiry",
            (at - expiry).whole_milliseconds()
        ));
    }
    if let Some(v) = json {
        let said = rfc3339(&v["expires_at"]).ok_or("expires_at is not RFC 3339")?;
        if (said - expiry).abs() >= time::Duration::SECOND {
            return Err("expires_at is not the token's".into());
        }
        if v["source"] != "platform" || !v["expires_in"].is_u64() {
            return Err("source or expires_in wrong".into());
        }
    }
    Ok(token)
}

/// `expires_in` as `output::render` counts it at `at`: whole seconds, never negative.
fn expires_in(expiry: OffsetDateTime, at: OffsetDateTime) -> i64 {
    (expiry - at).whole_seconds().max(0)
}

/// How long the cache must have been still before a sample: the sink follows the cache
/// within moments (the contract allows 2 s), so right after a write the two may differ.
const SETTLED: Duration = Duration::from_millis(100);

/// Compares `sink` with `token --format F` printed meanwhile, when neither the sink nor the
/// cache changed around the call and the cache had been still for [`SETTLED`] before it:
/// `None` otherwise (no sample: `token` itself may mint inside the margin, the daemon may
/// rotate meanwhile), else the verdict.
fn sample(env: &Env, cache: &Path, sink: &Sink) -> Option<Result<(), String>> {
    let tokens = cache.join("tokens.json");
    let cache_meta = std::fs::metadata(&tokens).ok()?;
    let cache_before = std::fs::read(&tokens).ok()?;
    let still = cache_meta.modified().ok()?.elapsed().ok()? >= SETTLED;
    let meta = std::fs::metadata(&sink.path).ok()?;
    let before = std::fs::read(&sink.path).ok()?;
    let t0 = now();
    let out = env.helper(&["token", "--format", sink.format], "");
    let t1 = now();
    let after = std::fs::read(&sink.path).ok()?;
    let meta_after = std::fs::metadata(&sink.path).ok()?;
    if before != after
        || meta.ino() != meta_after.ino()
        || std::fs::read(&tokens).ok()? != cache_before
        || !still
    {
        return None;
    }
    if out.code != Some(0) {
        return Some(Err(format!(
            "token --format {}: exit {:?}",
            sink.format, out.code
        )));
    }
    if sink.format != "json" {
        return Some(if out.stdout.as_bytes() == before.as_slice() {
            Ok(())
        } else {
            Err(format!(
                "{} sink differs from token --format {0}",
                sink.format
            ))
        });
    }
    let (file, printed): (Value, Value) = (
        serde_json::from_slice(&before).ok()?,
        serde_json::from_str(&out.stdout).ok()?,
    );
    for key in ["token", "expires_at", "source"] {
        if file[key] != printed[key] {
            return Some(Err(format!(
                "json sink differs from token --format json in {key}"
            )));
        }
    }
    let expiry = rfc3339(&file["expires_at"])?;
    let written = OffsetDateTime::from(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH));
    let (in_file, in_print) = (
        file["expires_in"].as_i64()?,
        printed["expires_in"].as_i64()?,
    );
    // Printed between t0 and t1; the file rendered before it was written, by far less than
    // a second.
    let printed_ok = (expires_in(expiry, t1)..=expires_in(expiry, t0)).contains(&in_print);
    // File times come from the kernel's coarse clock, a tick (a few ms) behind.
    let file_ok = (expires_in(expiry, written + time::Duration::milliseconds(50))
        ..=expires_in(expiry, written - time::Duration::SECOND))
        .contains(&in_file);
    Some(if printed_ok && file_ok && in_file >= in_print {
        Ok(())
    } else {
        Err(format!(
            "expires_in out of bounds: file {in_file} (in bounds: {file_ok}), printed \
             {in_print} (in bounds: {printed_ok})"
        ))
    })
}

/// Whether every sink holds `token`.
fn all_hold(sinks: &[Sink], token: &str) -> bool {
    sinks.iter().all(|s| {
        std::fs::read(&s.path)
            .ok()
            .and_then(|b| parse(s.format, &b).ok())
            .is_some_and(|(t, _)| t == token)
    })
}

/// Whether no sink holds `token`.
fn none_holds(sinks: &[Sink], token: &str) -> bool {
    sinks.iter().all(|s| {
        std::fs::read(&s.path)
            .ok()
            .and_then(|b| parse(s.format, &b).ok())
            .is_none_or(|(t, _)| t != token)
    })
}

/// How long ago `tokens.json` was written: once every sink holds its token, a bound on how
/// long the token took to reach them.
fn since_written(cache: &Path) -> Duration {
    std::fs::metadata(cache.join("tokens.json"))
        .and_then(|m| m.modified())
        .map(|t| t.elapsed().unwrap_or_default())
        .unwrap()
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[test]
fn a_reader_polling_three_sinks_never_sees_a_torn_or_dead_token() {
    // The iron-proxy recipe this reader stands for, as docs/consumers.md shows it.
    for line in [
        "gh-token-refresh --sink json:/run/molecule/github.json",
        "json_key: token",
        "ttl: 2m",
    ] {
        crate::recipes::assert_documented(line);
    }
    let t = tempfile::tempdir().unwrap();
    let world = Platform::start(t.path(), TTL, REMINT_BELOW);
    let sinks = sinks(&t.path().join("sinks"));
    let mut env = world.env.clone();
    env.set("TOKEN_REFRESH_MARGIN_SEC", MARGIN)
        .set("TOKEN_REFRESH_INTERVAL_SEC", "60");
    let log = t.path().join("daemon.log");
    let mut daemon_env = env.clone();
    daemon_env.set("MOLECULE_TOKEN_SINKS", spec(&sinks));
    let mut daemon = daemon_env.daemon(&[], &log);
    let show = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for_sinks(&sinks, &show);
    let euid = molecule_tests::skip::euid();
    for s in &sinks {
        let m = std::fs::metadata(&s.path).unwrap();
        assert_eq!((m.mode() & 0o777, m.uid()), (0o600, euid), "{}", s.format);
    }

    // Rotations, with the reader polling and `token` compared against each file.
    let reader = Reader::start(sinks.clone(), world.expiries.clone());
    let started = Instant::now();
    let first = world.stand_in.minted();
    let (mut compared, mut changed) = ([0u32; 3], 0u32);
    while world.stand_in.minted() < first + 5 {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "too few rotations:\n{}",
            show()
        );
        for (i, s) in sinks.iter().enumerate() {
            match sample(&env, &world.cache, s) {
                Some(Ok(())) => compared[i] += 1,
                Some(Err(e)) => panic!("{e}\n{}", show()),
                None => changed += 1,
            }
        }
    }
    let rotations = world.stand_in.minted() - first;
    let rotating_for = started.elapsed();
    let status = env
        .command("gh-token-refresh")
        .arg("status")
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );

    // Another process mints: `refresh` writes a new token into the cache. Right after a
    // rotation, so the daemon has no reason of its own to mint for the next 2 s.
    let just_rotated = || {
        cached(&world.cache, "github.com")
            .is_some_and(|c| now() - c.fetched_at < time::Duration::milliseconds(300))
    };
    assert!(within(Duration::from_secs(10), just_rotated).is_some());
    let own_refreshes = || show().matches("token refreshed").count();
    let (held, refreshes) = (
        cached(&world.cache, "github.com").unwrap().token,
        own_refreshes(),
    );
    world.stand_in.remint_on_next_request();
    let refreshed = env.helper(&["refresh"], "");
    assert_eq!(refreshed.code, Some(0), "{}", refreshed.stderr);
    let other = cached(&world.cache, "github.com").unwrap().token;
    assert_ne!(other, held, "refresh wrote no new token");
    within(REACH, || all_hold(&sinks, &other)).unwrap_or_else(|| {
        panic!(
            "another process's token did not reach every sink in 2 s:\n{}",
            show()
        )
    });
    let by_watch = since_written(&world.cache);
    // The daemon did not mint it: it followed the cache.
    assert_eq!(own_refreshes(), refreshes, "{}", show());

    // git's erase of the current token, and a new one minted by the next process to ask.
    assert!(within(Duration::from_secs(10), just_rotated).is_some());
    reader.phase(MAY_VANISH);
    let rejected = cached(&world.cache, "github.com").unwrap().token;
    world.stand_in.remint_on_next_request();
    world.authority.revoke(&rejected);
    git_reject(&env, "github.com", &rejected, t.path());
    let erased = Instant::now();
    let got = env.helper(&["get"], "protocol=https\nhost=github.com\n\n");
    let minted = Instant::now();
    assert_eq!(got.code, Some(0), "{}", got.stderr);
    let next = got
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("password="))
        .unwrap()
        .to_owned();
    assert_ne!(next, rejected, "the rejected token was served again");
    let left = within(REACH, || none_holds(&sinks, &rejected))
        .unwrap_or_else(|| panic!("the rejected token stayed in a sink:\n{}", show()))
        + minted.duration_since(erased);
    within(REACH, || all_hold(&sinks, &next))
        .unwrap_or_else(|| panic!("the new token did not reach every sink in 2 s:\n{}", show()));
    let arrived = since_written(&world.cache);
    let seen = reader.finish();
    assert!(
        seen.problems.is_empty(),
        "{} bad reads, first: {:?}\n{}",
        seen.problems.len(),
        &seen.problems[..seen.problems.len().min(5)],
        show()
    );
    for (i, s) in sinks.iter().enumerate() {
        assert!(
            compared[i] >= 5,
            "{}: only {} samples compared",
            s.format,
            compared[i]
        );
        assert!(
            seen.tokens[i].len() as u64 >= rotations,
            "{}: saw {} tokens over {rotations} rotations",
            s.format,
            seen.tokens[i].len()
        );
    }
    assert!(seen.proxy_reads >= 3 && seen.proxy_uses > 100);

    signal(daemon.id(), "TERM");
    assert_eq!(daemon.exit_within(Duration::from_secs(10)), Some(Some(0)));
    let text = show();
    assert!(
        !text.contains(&rejected) && !text.contains(&next),
        "a token in the log"
    );
    report(
        "sinks-rotation",
        &format!(
            "sinks (json, raw, env) polled every 5 ms for {:.1}s through {rotations} rotations \
             (tokens living {}s, margin {MARGIN}s): {} reads per sink, none empty, partial, \
             mixed or expired, none missing before the erase; `token --format F` equal to the file in \
             {}/{}/{} samples (json/raw/env; {changed} skipped: the file or the cache changed around the call); \
             a token another process wrote (`refresh`) in every sink at most {} ms after its \
             cache write; after git's erase: the rejected token out of every sink {} ms after \
             the erase, the next token (minted by `get` {} ms after the erase) in every sink at \
             most {} ms after its cache write; {} reads found a sink missing meanwhile; the iron-proxy reading (ttl {}s < margin): {} \
             re-reads, {} uses, none with a dead token",
            rotating_for.as_secs_f64(),
            TTL.as_secs(),
            seen.reads[0],
            compared[0],
            compared[1],
            compared[2],
            ms(by_watch),
            ms(left),
            ms(minted.duration_since(erased)),
            ms(arrived),
            seen.missing.iter().sum::<u64>(),
            PROXY_TTL.as_secs(),
            seen.proxy_reads,
            seen.proxy_uses,
        ),
    );
}

/// A group the sinks can be given: as root any group, so one that is not ours (`daemon`, or
/// the first other one in /etc/group); else our own.
fn sink_group() -> (String, u32) {
    let ours = std::fs::metadata("/proc/self").unwrap().gid();
    if molecule_tests::skip::euid() == 0 {
        let groups = std::fs::read_to_string("/etc/group").unwrap();
        for line in groups.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if let [name, _, gid, ..] = fields.as_slice()
                && let Ok(gid) = gid.parse::<u32>()
                && gid != ours
            {
                return ((*name).to_owned(), gid);
            }
        }
    }
    (ours.to_string(), ours)
}

/// Waits (at most 10 s) for the daemon to write every sink.
fn wait_for_sinks(sinks: &[Sink], log: &dyn Fn() -> String) {
    let written = within(Duration::from_secs(10), || {
        sinks.iter().all(|s| s.path.exists())
    });
    assert!(written.is_some(), "the daemon wrote no sinks:\n{}", log());
}

/// Every sink is 0640 and group `gid`.
fn assert_group(sinks: &[Sink], gid: u32, group: &str) {
    for s in sinks {
        let m = std::fs::metadata(&s.path).unwrap();
        let got = (m.mode() & 0o777, m.gid());
        assert_eq!(got, (0o640, gid), "{} (group {group})", s.format);
    }
}

#[test]
fn without_a_source_the_sinks_go_and_come_back_and_a_fifo_blocks_nothing() {
    let t = tempfile::tempdir().unwrap();
    let world = Platform::start(t.path(), TTL, REMINT_BELOW);
    let sinks = sinks(&t.path().join("sinks"));
    let fifo = t.path().join("sinks/proxy.fifo");
    let _fifo = molecule_tests::stuck::NotRegular::Fifo.place(&fifo);
    let (group, gid) = sink_group();
    let mut env = world.env.clone();
    // Retries at most a second apart once the platform fails.
    env.set("TOKEN_REFRESH_MARGIN_SEC", MARGIN)
        .set("TOKEN_REFRESH_INTERVAL_SEC", "1");
    let log = t.path().join("daemon.log");
    let mut args: Vec<String> = sinks
        .iter()
        .map(|s| format!("--sink={}:{}", s.format, s.path.display()))
        .collect();
    args.push(format!("--sink=raw:{}", fifo.display()));
    args.push(format!("--sink-group={group}"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut daemon = env.daemon(&args, &log);
    let show = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for_sinks(&sinks, &show);
    assert_group(&sinks, gid, &group);
    // The FIFO is refused at start, named in the log and in `status`, and left as it is; the
    // other sinks and the refreshing go on: two rotations.
    assert!(show().contains(&format!("{}", fifo.display())) && show().contains("is a FIFO"));
    let first = world.stand_in.minted();
    assert!(
        within(Duration::from_secs(15), || world.stand_in.minted()
            >= first + 2)
        .is_some(),
        "refreshing stopped beside the FIFO:\n{}",
        show()
    );
    let current = cached(&world.cache, "github.com").unwrap().token;
    assert!(within(REACH, || all_hold(&sinks, &current)).is_some());
    let status = env
        .command("gh-token-refresh")
        .arg("status")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&status.stdout).into_owned();
    assert_eq!(status.status.code(), Some(1), "{said}");
    assert!(
        said.lines()
            .any(|l| l.contains(&fifo.display().to_string()) && l.contains("FIFO")),
        "status does not name the FIFO sink:\n{said}"
    );
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );

    // The platform fails; no fallback anywhere. The sinks stay while the token lives (until
    // then `token` still prints it), and are gone within 2 s of its expiry.
    world.stand_in.set_fault(Fault::Status(503));
    // A mint already in flight may still land: read what is held once it would have.
    std::thread::sleep(Duration::from_millis(200));
    let held = cached(&world.cache, "github.com").unwrap();
    let mut gone: Vec<Option<OffsetDateTime>> = vec![None; sinks.len()];
    let deadline = held.expires_at + time::Duration::seconds(5);
    while gone.iter().any(Option::is_none) && now() < deadline {
        for (i, s) in sinks.iter().enumerate() {
            if gone[i].is_none() && !s.path.exists() {
                gone[i] = Some(now());
            }
        }
        std::thread::sleep(POLL);
    }
    let mut late_ms = Vec::new();
    for (i, s) in sinks.iter().enumerate() {
        let at = gone[i]
            .unwrap_or_else(|| panic!("{} stayed after the token expired:\n{}", s.format, show()));
        let late = at - held.expires_at;
        assert!(
            late >= -time::Duration::milliseconds(50),
            "{} removed {} ms before the token expired",
            s.format,
            -late.whole_milliseconds()
        );
        assert!(
            late <= time::Duration::seconds(2),
            "{} removed {} ms after expiry",
            s.format,
            late.whole_milliseconds()
        );
        late_ms.push(late.whole_milliseconds());
    }
    let out = env.helper(&["token"], "");
    assert_exhausted(&out);

    // The platform is back: the next retry mints, and the sinks come back with that token.
    world.stand_in.set_fault(Fault::None);
    let mut next = None;
    let retried = within(Duration::from_secs(10), || {
        next = cached(&world.cache, "github.com").filter(|c| c.token != held.token);
        next.is_some()
    })
    .unwrap_or_else(|| panic!("no retry after the platform came back:\n{}", show()));
    let next = next.unwrap();
    let back = within(REACH, || all_hold(&sinks, &next.token)).unwrap_or_else(|| {
        panic!(
            "the sinks did not come back with the next token:\n{}",
            show()
        )
    });
    assert_group(&sinks, gid, &group);
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    signal(daemon.id(), "TERM");
    assert_eq!(daemon.exit_within(Duration::from_secs(10)), Some(Some(0)));
    report(
        "sinks-outage",
        &format!(
            "platform failing (503), no fallback: the sinks (json, raw, env) removed {late_ms:?} ms \
             after the token's expiry (bound 2000); `token` exit 69; platform back: the next \
             retry minted after {} ms, the sinks held its token {} ms later, mode 0640 group \
             {group}; a FIFO sink beside them: refused (log, `status` exit 1 naming it), left a \
             FIFO, and two rotations went on meanwhile",
            ms(retried),
            ms(back),
        ),
    );
}

/// A platform that hangs (reads the request, never answers) while the held token expires: the
/// daemon is inside a mint that lasts up to `MOLECULE_HTTP_TIMEOUT_SEC`, and the sinks must
/// still go within 2 s of the expiry, not when the call gives up.
#[test]
fn a_hanging_platform_does_not_keep_a_dead_token_in_the_sinks() {
    let t = tempfile::tempdir().unwrap();
    let world = Platform::start(t.path(), TTL, REMINT_BELOW);
    let sinks = sinks(&t.path().join("sinks"));
    let mut env = world.env.clone();
    env.set("TOKEN_REFRESH_MARGIN_SEC", MARGIN)
        .set("TOKEN_REFRESH_INTERVAL_SEC", "60")
        .set("MOLECULE_HTTP_TIMEOUT_SEC", "10")
        .set("MOLECULE_TOKEN_SINKS", spec(&sinks));
    let log = t.path().join("daemon.log");
    let mut daemon = env.daemon(&[], &log);
    let show = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for_sinks(&sinks, &show);
    // Right after a rotation: the next refresh, at the margin (2 s before the expiry), hangs
    // for 10 s, across the expiry.
    assert!(
        within(Duration::from_secs(10), || cached(
            &world.cache,
            "github.com"
        )
        .is_some_and(
            |c| now() - c.fetched_at < time::Duration::milliseconds(300)
        ))
        .is_some()
    );
    world.stand_in.set_fault(Fault::Hang);
    let held = cached(&world.cache, "github.com").unwrap();
    let gone = within(Duration::from_secs(15), || {
        sinks.iter().all(|s| !s.path.exists())
    })
    .map(|_| now());
    let late = gone.map(|at| (at - held.expires_at).whole_milliseconds());
    assert!(
        late.is_some_and(|ms| (-50..=2000).contains(&ms)),
        "sinks removed {late:?} ms after the token's expiry (bound 2000):\n{}",
        show()
    );
    world.stand_in.set_fault(Fault::None);
    signal(daemon.id(), "TERM");
    assert_eq!(daemon.exit_within(Duration::from_secs(15)), Some(Some(0)));
    report(
        "sinks-hang",
        &format!(
            "platform hanging across the token's expiry (HTTP budget 10 s): the sinks removed \
             {} ms after the expiry (bound 2000)",
            late.unwrap()
        ),
    );
}

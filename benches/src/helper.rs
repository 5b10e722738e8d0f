//! (a)–(d): the credential helper on a cache hit through git beside git's own helpers and gh,
//! run directly, on a cold cache against a loopback platform, and under a 64-process stampede.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use molecule_tests::{PlatformOptions, PlatformStandIn, TokenAuthority};

use crate::proc::{self, Sample, median, percentile};

const REQUEST: &[u8] = b"protocol=https\nhost=github.com\n\n";
const BEARER: &str = "bench-bearer";

/// A private home, cache and configs for the helper and its peers.
pub struct Bed {
    pub dir: tempfile::TempDir,
    pub token: String,
}

impl Bed {
    pub fn new(parent: Option<&Path>) -> Self {
        let dir = match parent {
            Some(p) => tempfile::tempdir_in(p).expect("a temp dir"),
            None => tempfile::tempdir().expect("a temp dir"),
        };
        let token = format!("ghs_{}", "Bench0123456789abcdef".repeat(2));
        std::fs::create_dir_all(dir.path().join("configs")).expect("configs");
        molecule_tests::write_secret(&dir.path().join("configs/.auth_token"), BEARER);
        Self { dir, token }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn cache(&self) -> PathBuf {
        self.path("cache")
    }

    /// A warm cache holding `self.token` for github.com, 50 minutes to go.
    pub fn warm(&self) {
        let cache = self.cache();
        std::fs::create_dir_all(&cache).expect("cache");
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let now = time::OffsetDateTime::now_utc();
        let fmt = |t: time::OffsetDateTime| molecule_credential::clock::format_rfc3339(t);
        let doc = serde_json::json!({"version": 1, "entries": {"github.com": {
            "token": self.token, "expires_at": fmt(now + time::Duration::minutes(50)),
            "fetched_at": fmt(now), "source": "platform", "suspect": false}}});
        let file = cache.join("tokens.json");
        std::fs::write(&file, serde_json::to_vec(&doc).expect("json")).expect("tokens.json");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    /// The same token in a `git credential-store` file, for the peer: its path.
    pub fn store_file(&self) -> PathBuf {
        let store = self.path("store");
        std::fs::write(
            &store,
            format!("https://x-access-token:{}@github.com\n", self.token),
        )
        .expect("store");
        store
    }

    /// A command with only this bed's environment.
    pub fn command(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        path_prefix: Option<&Path>,
    ) -> Command {
        let mut c = Command::new(program);
        let path = match path_prefix {
            Some(p) => format!("{}:/usr/local/bin:/usr/bin:/bin", p.display()),
            None => "/usr/local/bin:/usr/bin:/bin".to_owned(),
        };
        c.env_clear()
            .env("PATH", path)
            .env("HOME", self.dir.path())
            .env("XDG_CACHE_HOME", self.path("xdg-cache"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GH_CONFIG_DIR", self.path("gh"))
            .env("GH_NO_UPDATE_NOTIFIER", "1")
            .env("MOLECULE_TOKEN_CACHE_DIR", self.cache())
            .env("CONFIGS_DIR", self.path("configs"))
            .env("MOLECULE_LOG", "warn");
        c
    }
}

/// A git-credential peer: its name and the `credential.helper` value.
struct Peer {
    name: &'static str,
    helper: String,
}

/// (a) results: median per peer.
pub struct FillResult {
    pub rows: Vec<(&'static str, Duration)>,
}

impl FillResult {
    pub fn get(&self, name: &str) -> Option<Duration> {
        self.rows.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
    }
}

/// The `credential.helper` value `configure` writes for `helper_bin` by default: what users
/// get, measured as they get it.
fn configured_value(bed: &Bed, helper_bin: &Path) -> String {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = bed.path(&format!("gitconfig-{n}"));
    let out = proc::run(
        bed.command(helper_bin, None).args([
            "configure",
            "--file",
            file.to_str().expect("a UTF-8 temp path"),
            "--host",
            "github.com",
        ]),
        b"",
    );
    assert_eq!(out.status, 0, "configure failed");
    let values = proc::run(
        bed.command("git", None).args([
            "config",
            "--file",
            file.to_str().expect("a UTF-8 temp path"),
            "--get-all",
            "credential.https://github.com.helper",
        ]),
        b"",
    );
    String::from_utf8_lossy(&values.stdout)
        .lines()
        .last()
        .expect("configure wrote a helper")
        .to_owned()
}

/// (a) `git credential fill` on a cache hit through each helper, round-robin: ours as
/// `configure` writes it by default (the binary's absolute path), for the plain
/// `cargo build --release` binary and each of `others` (a peer name, and another build of the
/// helper: the released one, a static musl one).
pub fn git_fill(helper_bin: &Path, others: &[(&'static str, &Path)], runs: usize) -> FillResult {
    let bed = Bed::new(None);
    bed.warm();
    let store = bed.store_file();
    // `molecule` resolves through PATH to git-credential-molecule: a directory holding it.
    let pathdir = bed.path("pathbin");
    std::fs::create_dir_all(&pathdir).expect("pathbin");
    std::fs::copy(helper_bin, pathdir.join("git-credential-molecule")).expect("copy helper");
    let mut peers = vec![
        Peer {
            name: "git credential-store",
            helper: format!("store --file={}", store.display()),
        },
        Peer {
            name: "git credential-cache",
            helper: "cache --timeout=3600".into(),
        },
    ];
    let approve = format!(
        "protocol=https\nhost=github.com\nusername=x-access-token\npassword={}\n\n",
        bed.token
    );
    let primed = proc::run(
        bed.command("git", None).args([
            "-c",
            "credential.helper=cache --timeout=3600",
            "credential",
            "approve",
        ]),
        approve.as_bytes(),
    );
    assert_eq!(primed.status, 0, "priming credential-cache");
    if Command::new("gh")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        std::fs::create_dir_all(bed.path("gh")).expect("gh dir");
        std::fs::write(
            bed.path("gh/hosts.yml"),
            format!("github.com:\n    oauth_token: {}\n    user: x-access-token\n    git_protocol: https\n", bed.token),
        )
        .expect("hosts.yml");
        peers.push(Peer {
            name: "gh auth git-credential",
            helper: "!gh auth git-credential".into(),
        });
    }
    peers.push(Peer {
        name: "ours, as configured",
        helper: configured_value(&bed, helper_bin),
    });
    for (name, bin) in others {
        peers.push(Peer {
            name,
            helper: configured_value(&bed, bin),
        });
    }
    peers.push(Peer {
        name: "ours, as `molecule`",
        helper: "molecule".into(),
    });

    let fill = |p: &Peer| -> Sample {
        proc::run(
            bed.command("git", Some(&pathdir)).args([
                "-c",
                "credential.helper=",
                "-c",
                &format!("credential.helper={}", p.helper),
                "credential",
                "fill",
            ]),
            REQUEST,
        )
    };
    for p in &peers {
        let s = fill(p);
        let out = String::from_utf8_lossy(&s.stdout);
        assert!(
            out.contains(&format!("password={}\n", bed.token)),
            "{} did not return the token",
            p.name
        );
    }
    let mut times = vec![Vec::with_capacity(runs); peers.len()];
    // Round-robin in a fresh random order each round: whoever runs right after gh (a 30 ms Go
    // program) or the credential-cache daemon's socket dance starts with cold CPU caches, and
    // a fixed order would always hand that to the same peer.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(11);
    let mut order: Vec<usize> = (0..peers.len()).collect();
    for i in 0..runs + 20 {
        rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut rng);
        for &k in &order {
            let s = fill(&peers[k]);
            if i >= 20 {
                times[k].push(s.wall);
            }
        }
    }
    let _ = proc::run(
        bed.command("git", None).args(["credential-cache", "exit"]),
        b"",
    );
    FillResult {
        rows: peers
            .iter()
            .zip(&times)
            .map(|(p, t)| (p.name, median(t)))
            .collect(),
    }
}

/// (b) results.
pub struct DirectResult {
    pub ours: Duration,
    pub ours_rss_kib: u64,
    pub truth: Duration,
    pub store: Duration,
    pub store_rss_kib: u64,
}

/// (b) `get` run directly on a hit, beside `/bin/true` (the floor of starting a process) and
/// `git credential-store get`, round-robin.
pub fn direct(helper_bin: &Path, runs: usize) -> DirectResult {
    let bed = Bed::new(None);
    bed.warm();
    let store = bed.store_file();
    let store_arg = format!("--file={}", store.display());
    let (mut ours, mut truth, mut st) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ours_rss, mut store_rss) = (0, 0);
    for i in 0..runs + 50 {
        let a = proc::run(bed.command(helper_bin, None).arg("get"), REQUEST);
        let b = proc::run(&mut bed.command("/bin/true", None), REQUEST);
        let c = proc::run(
            bed.command("git", None)
                .args(["credential-store", &store_arg, "get"]),
            REQUEST,
        );
        assert!(
            String::from_utf8_lossy(&a.stdout).contains(&bed.token),
            "the helper did not answer"
        );
        if i >= 50 {
            ours.push(a.wall);
            truth.push(b.wall);
            st.push(c.wall);
            ours_rss = ours_rss.max(a.max_rss_kib);
            store_rss = store_rss.max(c.max_rss_kib);
        }
    }
    DirectResult {
        ours: median(&ours),
        ours_rss_kib: ours_rss,
        truth: median(&truth),
        store: median(&st),
        store_rss_kib: store_rss,
    }
}

fn platform() -> PlatformStandIn {
    PlatformStandIn::start(
        "127.0.0.1:0".parse().expect("addr"),
        PlatformOptions {
            bearer: BEARER.into(),
            ..PlatformOptions::default()
        },
        TokenAuthority::new(),
    )
}

/// The file system type of `path` (`stat -f`), for the report.
pub fn fs_type(path: &Path) -> String {
    Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(path)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

/// (c) a cold `get` (empty cache) against a loopback platform: the median, with the cache in
/// `parent` (None: the default temp dir).
pub fn cold(helper_bin: &Path, runs: usize, parent: Option<&Path>) -> (Duration, String) {
    let platform = platform();
    let bed = Bed::new(parent);
    let fs = fs_type(bed.dir.path());
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs + 10 {
        let _ = std::fs::remove_file(bed.cache().join("tokens.json"));
        let s = proc::run(
            bed.command(helper_bin, None)
                .arg("get")
                .env("PLATFORM_URL", platform.url()),
            REQUEST,
        );
        assert!(
            String::from_utf8_lossy(&s.stdout).contains("password=ghs_"),
            "a cold get failed"
        );
        if i >= 10 {
            times.push(s.wall);
        }
    }
    (median(&times), fs)
}

/// (d) results.
pub struct Stampede {
    pub requests_per_trial: Vec<u64>,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// (d) `n` concurrent `get`s on an empty cache, `trials` times.
pub fn stampede(helper_bin: &Path, n: usize, trials: usize) -> Stampede {
    let platform = platform();
    let mut lat = Vec::with_capacity(n * trials);
    let mut reqs = Vec::with_capacity(trials);
    for _ in 0..trials {
        let bed = Bed::new(None);
        let before = platform.requests();
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let mut cmd = bed.command(helper_bin, None);
                cmd.arg("get").env("PLATFORM_URL", platform.url());
                std::thread::spawn(move || proc::run(&mut cmd, REQUEST))
            })
            .collect();
        for h in handles {
            let s = h.join().expect("a runner thread");
            assert!(
                String::from_utf8_lossy(&s.stdout).contains("password=ghs_"),
                "a stampede get failed"
            );
            lat.push(s.wall);
        }
        reqs.push(platform.requests() - before);
    }
    Stampede {
        requests_per_trial: reqs,
        p50: median(&lat),
        p99: percentile(&lat, 99.0),
        max: percentile(&lat, 100.0),
    }
}

//! `molecule-bench`: the benchmark suite behind `scripts/bench.sh`. One run, one table: every
//! figure beside its target and its peer.
//!
//! (a) `git credential fill` on a cache hit: ours beside git's credential-store and
//!     credential-cache and `gh auth git-credential`, round-robin, medians, ratio to store;
//! (b) the helper's `get` run directly: median wall time and peak RSS;
//! (c) a cold `get` fetching from a loopback platform stand-in;
//! (d) a stampede of concurrent `get`s on an empty cache: platform requests and p99;
//! (e) the daemon idle: RSS and wakeups;
//! (f) the fleet: the schedule code driving 10,000 daemons through 24 hours with a 10-minute
//!     outage, beside a naive fixed-interval retry.

#![expect(clippy::print_stdout, reason = "a benchmark prints its table")]

mod daemon;
mod fleet;
mod helper;
mod proc;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::proc::ms;

#[derive(Parser)]
#[command(
    name = "molecule-bench",
    about = "The molecule benchmark suite: one table"
)]
struct Args {
    /// The helper binary to measure
    #[arg(long)]
    helper: PathBuf,
    /// The daemon binary to measure
    #[arg(long)]
    daemon: PathBuf,
    /// A static musl build of the helper (what install.sh and the Dockerfile build when musl is
    /// installed), measured beside
    #[arg(long)]
    static_helper: Option<PathBuf>,
    /// The helper from the release archive (scripts/release.sh), measured beside
    #[arg(long)]
    released_helper: Option<PathBuf>,
    /// Runs per latency measurement
    #[arg(long, default_value_t = 300)]
    runs: usize,
    /// Seconds the daemon is watched idle
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Concurrent gets in the stampede
    #[arg(long, default_value_t = 64)]
    stampede: usize,
    /// Stampede trials
    #[arg(long, default_value_t = 20)]
    trials: usize,
}

struct Row {
    id: &'static str,
    what: String,
    ours: String,
    peer: String,
    target: &'static str,
    met: Option<bool>,
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Copies `bin` into `dir`, as install.sh and the Dockerfile install it. Every measurement
/// runs the copies: a file the linker has just written sits in the page cache in small pieces
/// until it is evicted, and starting it faults more (measured here: ~0.1 ms per start); a copy,
/// or the same file read back from disk after a reboot, does not.
fn installed(dir: &std::path::Path, bin: &std::path::Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::create_dir_all(to.parent().expect("a file in a directory")).expect("install dir");
    std::fs::copy(bin, &to).expect("install a binary");
    to
}

fn main() {
    let mut a = Args::parse();
    let install_dir = tempfile::tempdir().expect("a temp dir");
    a.helper = installed(install_dir.path(), &a.helper, "bin/git-credential-molecule");
    a.daemon = installed(install_dir.path(), &a.daemon, "bin/gh-token-refresh");
    a.static_helper = a
        .static_helper
        .as_deref()
        .map(|s| installed(install_dir.path(), s, "static/git-credential-molecule"));
    // The archive it came from names the release: molecule-credential-VERSION-TARGET/bin/….
    let released_name = a.released_helper.as_deref().and_then(|p| {
        Some(
            p.parent()?
                .parent()?
                .file_name()?
                .to_string_lossy()
                .into_owned(),
        )
    });
    a.released_helper = a
        .released_helper
        .as_deref()
        .map(|s| installed(install_dir.path(), s, "released/git-credential-molecule"));
    // Other builds, measured beside the plain one in (a) and (b): (peer name, row label, path).
    let mut others: Vec<(&'static str, String, PathBuf)> = Vec::new();
    if let (Some(bin), Some(name)) = (&a.released_helper, &released_name) {
        others.push((
            "ours, released, as configured",
            format!("… the released binary ({name}, scripts/release.sh)"),
            bin.clone(),
        ));
    }
    if let Some(bin) = &a.static_helper {
        others.push((
            "ours, static musl, as configured",
            "… the static musl build (install.sh, the Dockerfile)".to_owned(),
            bin.clone(),
        ));
    }
    let mut rows = Vec::new();
    let mut row = |id, what: String, ours: String, peer: String, target, met| {
        rows.push(Row {
            id,
            what,
            ours,
            peer,
            target,
            met,
        });
    };

    eprintln_progress("(a) git credential fill through each helper");
    let fill_others: Vec<(&'static str, &std::path::Path)> =
        others.iter().map(|(n, _, p)| (*n, p.as_path())).collect();
    let fill = helper::git_fill(&a.helper, &fill_others, a.runs);
    let store = fill
        .get("git credential-store")
        .expect("store is always measured");
    let peers_text = fill
        .rows
        .iter()
        .filter(|(n, _)| !n.starts_with("ours"))
        .map(|(n, d)| {
            format!(
                "{n} {} ({:.2}×)",
                ms(*d),
                d.as_secs_f64() / store.as_secs_f64()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let abs = fill.get("ours, as configured").expect("measured");
    let named = fill.get("ours, as `molecule`").expect("measured");
    row(
        "a",
        "git credential fill, cache hit: the helper as `configure` writes it (its absolute path), plain `cargo build --release`".into(),
        format!(
            "{} ({:.2}× store)",
            ms(abs),
            abs.as_secs_f64() / store.as_secs_f64()
        ),
        peers_text,
        "≤ 1.0× store",
        Some(abs <= store),
    );
    for (peer, label, _) in &others {
        let t = fill.get(peer).expect("measured");
        row(
            "a",
            label.clone(),
            format!(
                "{} ({:.2}× store)",
                ms(t),
                t.as_secs_f64() / store.as_secs_f64()
            ),
            String::new(),
            "(for reference)",
            None,
        );
    }
    row(
        "a",
        "… helper registered as `molecule` (git's PATH lookup spawns a 2nd git)".into(),
        format!(
            "{} ({:.2}× store)",
            ms(named),
            named.as_secs_f64() / store.as_secs_f64()
        ),
        String::new(),
        "(for reference)",
        None,
    );

    eprintln_progress("(b) get run directly");
    let d = helper::direct(&a.helper, a.runs);
    row(
        "b",
        "helper `get` run directly, cache hit, plain `cargo build --release`: median".into(),
        ms(d.ours),
        format!(
            "/bin/true {} (process floor); git credential-store get {}",
            ms(d.truth),
            ms(d.store)
        ),
        "≤ 1 ms",
        Some(d.ours <= Duration::from_millis(1)),
    );
    for (_, label, bin) in &others {
        let s = helper::direct(bin, a.runs);
        row(
            "b",
            label.clone(),
            ms(s.ours),
            format!("/bin/true {} in the same run", ms(s.truth)),
            "(for reference)",
            None,
        );
    }
    row(
        "b",
        "… peak RSS".into(),
        mib(d.ours_rss_kib),
        format!("git credential-store get {}", mib(d.store_rss_kib)),
        "≤ 4 MiB",
        Some(d.ours_rss_kib <= 4096),
    );

    eprintln_progress("(c) cold get");
    let (cold_disk, fs_disk) = helper::cold(&a.helper, a.runs.min(200), None);
    row(
        "c",
        format!("cold `get` from a loopback platform (cache on {fs_disk}, fsync'd)"),
        ms(cold_disk),
        "shell+curl helper per get: ~45 ms (peer-latency.sh)".into(),
        "≤ 5 ms",
        Some(cold_disk <= Duration::from_millis(5)),
    );
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        let (cold_shm, fs_shm) = helper::cold(&a.helper, a.runs.min(200), Some(shm));
        row(
            "c",
            format!("… cache on {fs_shm}"),
            ms(cold_shm),
            String::new(),
            "(for reference)",
            None,
        );
    }

    eprintln_progress("(d) stampede");
    let s = helper::stampede(&a.helper, a.stampede, a.trials);
    let max_reqs = s.requests_per_trial.iter().copied().max().unwrap_or(0);
    row(
        "d",
        format!(
            "{} concurrent `get`s on an empty cache: platform requests ({} trials)",
            a.stampede, a.trials
        ),
        format!(
            "{max_reqs} per trial (all: {:?})",
            dedup(&s.requests_per_trial)
        ),
        "shell helper: one request per get".into(),
        "1",
        Some(s.requests_per_trial.iter().all(|r| *r == 1)),
    );
    row(
        "d",
        "… latency p99".into(),
        ms(s.p99),
        format!("p50 {}, max {}", ms(s.p50), ms(s.max)),
        "≤ 50 ms",
        Some(s.p99 <= Duration::from_millis(50)),
    );

    eprintln_progress("(e) idle daemon");
    let i = daemon::idle(&a.daemon, a.idle_secs, daemon::Outputs::Default);
    row(
        "e",
        format!("daemon idle {} s: RSS", i.secs),
        mib(i.rss_kib),
        format!("peak {}, {} thread(s)", mib(i.hwm_kib), i.threads),
        "≤ 10 MiB",
        Some(i.rss_kib <= 10 * 1024),
    );
    row(
        "e",
        "… wakeups (context switches) and CPU while idle (cache watch and metrics textfile on, as by default)".into(),
        format!("{} wakeups, {:.1} ms CPU", i.switches, i.cpu_ms),
        String::new(),
        "0 between scheduled events",
        Some(i.switches == 0),
    );
    eprintln_progress("(e) idle daemon, /metrics listener and three sinks on");
    let l = daemon::idle(&a.daemon, a.idle_secs, daemon::Outputs::ListenerAndSinks);
    row(
        "e",
        "… with the /metrics listener (unscraped) and three sinks: wakeups, CPU".into(),
        format!("{} wakeups, {:.1} ms CPU", l.switches, l.cpu_ms),
        format!(
            "RSS {} ({:+} KiB against the default), {} thread(s)",
            mib(l.rss_kib),
            l.rss_kib as i64 - i.rss_kib as i64,
            l.threads
        ),
        "0 wakeups",
        Some(l.switches == 0),
    );

    eprintln_progress("(f) fleet simulation");
    let sc = fleet::Scenario::default();
    let ours = fleet::simulate(&sc, fleet::Retry::Schedule);
    let naive = fleet::simulate(&sc, fleet::Retry::Fixed(Duration::from_secs(15)));
    let doubling = fleet::simulate(&sc, fleet::Retry::DoublingOnly);
    let ratio = |r: &fleet::Report| r.peak_after_recovery_rps / ours.mean_rps;
    row(
        "f",
        format!(
            "fleet: {} daemons, {} h, {}-min outage: peak req/s after recovery ({} s windows) / mean",
            sc.daemons,
            sc.hours,
            sc.outage.1 / 60,
            sc.window
        ),
        format!(
            "{:.1} / {:.2} = {:.1}× (peak second {}; {} requests during the outage; {} tokens expired)",
            ours.peak_after_recovery_rps,
            ours.mean_rps,
            ratio(&ours),
            ours.peak_second_after_recovery,
            ours.requests_during_outage,
            ours.expired_tokens
        ),
        format!(
            "{}: {:.1}× (peak second {}; {} during the outage)",
            fleet::Retry::Fixed(Duration::from_secs(15)),
            ratio(&naive),
            naive.peak_second_after_recovery,
            naive.requests_during_outage
        ),
        "≤ 2.5× mean (2× is the floor)",
        Some(ratio(&ours) <= 2.5 && ours.expired_tokens == 0),
    );
    row(
        "f",
        format!("… for comparison, {}", fleet::Retry::DoublingOnly),
        format!(
            "{:.1}× (peak second {}; {} during the outage; {} tokens expired)",
            ratio(&doubling),
            doubling.peak_second_after_recovery,
            doubling.requests_during_outage,
            doubling.expired_tokens
        ),
        format!(
            "no outage: peak {:.1} req/s ({} s windows), peak second {} (Poisson noise at {:.2}/s)",
            ours.peak_normal_rps, sc.window, ours.peak_second_normal, ours.mean_rps
        ),
        "(for reference)",
        None,
    );

    println!("| | measure | ours | peer / baseline | target | met |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        println!(
            "| {} | {} | {} | {} | {} | {met} |",
            r.id, r.what, r.ours, r.peer, r.target
        );
    }
}

fn dedup(xs: &[u64]) -> Vec<u64> {
    let mut v = xs.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

#[expect(
    clippy::print_stderr,
    reason = "progress goes to stderr, the table to stdout"
)]
fn eprintln_progress(what: &str) {
    eprintln!("molecule-bench: {what}…");
}

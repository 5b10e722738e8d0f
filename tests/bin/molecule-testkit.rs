//! `molecule-testkit serve`: runs the token platform stand-in, the HTTPS git server and
//! optionally the GitHub Enterprise stand-in as one long-lived process, sharing one token
//! authority, for demo scripts and container tests that cannot link the library.
//!
//! Once everything listens it writes `STATE_DIR/ready.env` (shell-sourceable:
//! `TESTKIT_PLATFORM_URL`, `TESTKIT_GIT_URL`, `TESTKIT_GIT_HOST`, `TESTKIT_GHE_ADDR`,
//! `TESTKIT_CA_PEM`, `TESTKIT_PID`, so scripts need no JSON parser) and then
//! `STATE_DIR/ready.json` (atomically; its appearance means ready):
//! `{"platform_url", "git_url", "git_host", "ghe_addr" (or null), "ca_pem", "pid"}`.
//! Stdout is a timeline with one line per minted token (never the token itself). It runs
//! until SIGTERM or SIGINT, then stops every server and exits 0.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use molecule_tests::{
    GheServer, GitServer, Issued, PlatformOptions, PlatformStandIn, TestCa, TokenAuthority,
    init_bare_repo,
};
use time::OffsetDateTime;
use time::macros::format_description;

#[derive(Parser)]
#[command(
    name = "molecule-testkit",
    about = "Local stand-ins for the molecule tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the platform, git and (optionally) GitHub Enterprise stand-ins until SIGTERM.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Directory for ca.pem, ready.json and the repositories (under repos/).
    #[arg(long)]
    state_dir: PathBuf,
    /// Address of the plain-HTTP platform stand-in.
    #[arg(long, default_value = "127.0.0.1:0")]
    platform_addr: SocketAddr,
    /// Address of the HTTPS git server.
    #[arg(long, default_value = "127.0.0.1:0")]
    git_addr: SocketAddr,
    /// The git server also answers the GitHub API under /api/, like a GitHub Enterprise host
    /// (with --git-addr 127.0.0.1:443 it is host `localhost` for git and gh alike).
    #[arg(long)]
    git_api: bool,
    /// Address of the GitHub Enterprise stand-in (e.g. 127.0.0.1:443); none if absent.
    #[arg(long)]
    ghe_addr: Option<SocketAddr>,
    /// Lifetime of each minted token, in seconds.
    #[arg(long, default_value_t = 6)]
    ttl_secs: u64,
    /// Re-mint once less than this many seconds remain (default: half the TTL).
    #[arg(long)]
    remint_below_secs: Option<u64>,
    /// File holding the workspace bearer token callers must present.
    #[arg(long, conflicts_with = "bearer")]
    bearer_file: Option<PathBuf>,
    /// The workspace bearer token (default: the library's test bearer).
    #[arg(long)]
    bearer: Option<String>,
    /// Only this workspace's route answers; others get 404.
    #[arg(long)]
    workspace_id: Option<String>,
    /// Create a bare repository of this name (e.g. acme/widgets.git); repeatable.
    #[arg(long = "repo")]
    repos: Vec<String>,
}

fn main() -> ExitCode {
    let Cli {
        command: Command::Serve(args),
    } = Cli::parse();
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "molecule-testkit: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let bearer = match (&args.bearer_file, args.bearer) {
        (Some(file), _) => std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?
            .trim()
            .to_owned(),
        (None, Some(bearer)) => bearer,
        (None, None) => PlatformOptions::default().bearer,
    };
    let ttl = Duration::from_secs(args.ttl_secs);
    let remint_below = args.remint_below_secs.map_or(ttl / 2, Duration::from_secs);

    let state_dir = &args.state_dir;
    std::fs::create_dir_all(state_dir)
        .map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
    let ready_path = state_dir.join("ready.json");
    let env_path = state_dir.join("ready.env");
    // A ready file left by an earlier run must not announce this one before it listens.
    let _ = std::fs::remove_file(&ready_path);
    let _ = std::fs::remove_file(&env_path);
    let ca = TestCa::generate(state_dir);
    let repos_root = state_dir.join("repos");
    std::fs::create_dir_all(&repos_root)
        .map_err(|e| format!("cannot create {}: {e}", repos_root.display()))?;
    for name in &args.repos {
        if !repos_root.join(name).join("HEAD").exists() {
            init_bare_repo(&repos_root, name);
        }
    }

    let authority = TokenAuthority::new();
    let platform = PlatformStandIn::start(
        args.platform_addr,
        PlatformOptions {
            ttl,
            remint_below,
            bearer,
            workspace_id: args.workspace_id,
        },
        authority.clone(),
    );
    platform.on_mint(Box::new(print_mint));
    let git = if args.git_api {
        GitServer::start_with_api(args.git_addr, &repos_root, &ca, authority.clone())
    } else {
        GitServer::start_on(args.git_addr, &repos_root, &ca, authority.clone())
    };
    // On the default https port the certificate's name is the host: git and gh both say
    // `localhost` (gh refuses a host with a port).
    let (git_url, git_host) = if git.port() == 443 {
        ("https://localhost".to_owned(), "localhost".to_owned())
    } else {
        (git.url(), git.host())
    };
    let ghe = args
        .ghe_addr
        .map(|addr| GheServer::start(addr, &ca, authority.clone()));

    let ready = serde_json::json!({
        "platform_url": platform.url(),
        "git_url": git_url,
        "git_host": git_host,
        "ghe_addr": ghe.as_ref().map(|ghe| ghe.addr().to_string()),
        "ca_pem": ca.ca_pem_path(),
        "pid": std::process::id(),
    });
    let env = [
        ("TESTKIT_PLATFORM_URL", platform.url()),
        ("TESTKIT_GIT_URL", git_url.clone()),
        ("TESTKIT_GIT_HOST", git_host.clone()),
        (
            "TESTKIT_GHE_ADDR",
            ghe.as_ref()
                .map(|g| g.addr().to_string())
                .unwrap_or_default(),
        ),
        ("TESTKIT_CA_PEM", ca.ca_pem_path().display().to_string()),
        ("TESTKIT_PID", std::process::id().to_string()),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}\n", shell_quote(v)))
    .collect::<String>();
    write_atomically(&env_path, &env)?;
    write_atomically(&ready_path, &format!("{ready:#}\n"))?;
    let _ = writeln!(
        std::io::stderr(),
        "molecule-testkit: ready ({}), platform {}, git {}",
        ready_path.display(),
        platform.url(),
        git_url
    );

    wait_for_signal()?;

    drop(ghe);
    drop(git);
    drop(platform);
    let _ = std::fs::remove_file(&ready_path);
    let _ = std::fs::remove_file(&env_path);
    Ok(())
}

/// Single-quotes `value` for POSIX sh.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// One timeline line per mint, never the token itself.
fn print_mint(n: u64, issued: &Issued) {
    let now = OffsetDateTime::now_utc();
    let line = format!(
        "{} minted token#{n} (len {}) expires {}",
        now.format(format_description!(
            "[hour]:[minute]:[second].[subsecond digits:3]"
        ))
        .unwrap_or_default(),
        issued.token.len(),
        issued
            .expires_at
            .format(format_description!("[hour]:[minute]:[second]"))
            .unwrap_or_default(),
    );
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (the demo script went away) must not take the servers down.
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

fn write_atomically(path: &Path, contents: &str) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename to {}: {e}", path.display()))
}

fn wait_for_signal() -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term =
            signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
        let mut int =
            signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch SIGINT: {e}"))?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    })
}

//! `gh-token-refresh`: the sidecar that keeps the token cache warm and `gh` logged in
//! (DESIGN.md, "Components"). `main` parses flags, installs logging and signal handlers, and
//! calls [`run`]; everything else is reachable from tests without a process.

// Every function of src/ fits on a screen (threshold in clippy.toml); integration tests,
// whose stories read top to bottom, are crates of their own and not held to it.
#![warn(clippy::too_many_lines)]

use std::sync::Arc;

use clap::{Parser, Subcommand};
use molecule_credential::alarm::Alarm;
use molecule_credential::cli::{ConfigArgs, ScheduleArgs};
use molecule_credential::clock::Clock;
use molecule_credential::config::Config;
use molecule_credential::config::setting::Flags;
use molecule_credential::schedule::Dice;

pub mod daemon;
pub mod gh;
pub mod health;
pub mod listener;
pub mod metrics;
pub mod sinks;
pub mod watch;

use daemon::{Daemon, Minter, Mode, Signals};

use gh::Gh;

/// The binary's name, as messages say it.
pub const NAME: &str = "gh-token-refresh";

/// Keeps GitHub installation tokens fresh in the cache and gh logged in.
#[derive(Parser, Debug)]
#[command(
    name = NAME,
    version = molecule_credential::version::LINE,
    about,
    long_about = None,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Configuration flags; each overrides the environment variable of the same meaning.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Schedule flags.
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    /// Refresh once now (forced), log gh in, exit with the outcome's code
    #[arg(long)]
    pub once: bool,
    /// Not the daemon: a report.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Health check: exit 1 when a token is expired, the daemon is not running, or the last
    /// refresh failed inside the margin
    Status {
        /// Print JSON
        #[arg(long)]
        json: bool,
        /// Only whether the daemon is running and waking on schedule, whatever its tokens'
        /// state: for a liveness probe (restarting the daemon cannot repair a failing source)
        #[arg(long)]
        alive: bool,
    },
    /// Print the daemon's Prometheus metrics, read from daemon.status.json and the cache (no
    /// source configuration, no network): for one-shot setups, cron and probes
    Metrics,
    /// Print the completion script for SHELL (the release artifacts install it)
    #[command(hide = true)]
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: molecule_credential::completions::Shell,
    },
}

impl Cli {
    /// The values the flags give, shared and the daemon's own.
    pub fn flags(&self) -> Flags {
        let mut flags = self.config.flags.clone();
        flags.extend(&self.schedule.flags);
        flags
    }
}

/// Says once, at start, what an exported token does to everyone who inherits it.
pub fn warn_about_inherited_tokens(config: &Config) {
    for token in config.exported_tokens() {
        let remedy = if token.fallback {
            "Save it as the fallback and unset it before starting the agent \
             (scripts/entrypoint.sh does)"
        } else {
            "Unset it before starting the agent"
        };
        tracing::warn!(
            "{} is set in this daemon's environment: {}. {remedy}, or run env-only tools \
             through `git-credential-molecule exec --`",
            token.name,
            token.effect
        );
    }
}

/// What the daemon is given rather than reaching for: time, randomness, the token source, a
/// wall-clock alarm, gh, and the signals as values.
pub struct Deps<M, D, A> {
    /// The wall clock.
    pub clock: Arc<dyn Clock>,
    /// Randomness for jitter.
    pub dice: D,
    /// Where tokens come from.
    pub minter: M,
    /// Wakes the loop at a wall-clock time, or when the wall clock changes.
    pub alarm: A,
    /// gh, or `None` to leave gh alone.
    pub gh: Option<Gh>,
    /// Shutdown and refresh-now.
    pub signals: Signals,
}

/// Runs the daemon, or with `--once` one forced refresh. Returns the exit code. (`status` is
/// not run here: it needs none of these dependencies, see [`health::run`].)
pub async fn run<M: Minter, D: Dice, A: Alarm>(
    cli: &Cli,
    config: Arc<Config>,
    deps: Deps<M, D, A>,
) -> u8 {
    let Deps {
        clock,
        dice,
        minter,
        alarm,
        gh,
        signals,
    } = deps;
    let mode = if cli.once { Mode::Once } else { Mode::Daemon };
    if mode == Mode::Daemon {
        warn_about_inherited_tokens(&config);
    }
    let daemon = match Daemon::start(config.clone(), clock, dice, minter, alarm, gh, mode).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            tracing::info!(
                cache = %config.cache_dir.display(),
                "another gh-token-refresh holds daemon.lock for this cache directory; exiting"
            );
            return 0;
        }
        Err(e) => {
            tracing::error!(class = %e.class(), "{e}");
            return e.class().exit_code();
        }
    };
    if mode == Mode::Daemon
        && let Some(addr) = config.metrics_listen
    {
        // A listener that cannot bind (an address in use) is said once; refreshing goes on.
        match listener::bind(addr).await {
            Ok(l) => {
                tracing::info!(%addr, "serving /metrics");
                tokio::spawn(listener::serve(l, daemon.metrics()));
            }
            Err(e) => {
                tracing::error!(%addr, "cannot serve /metrics: {e}; the textfile and refreshing go on")
            }
        }
    }
    match mode {
        Mode::Once => daemon.once(signals.shutdown).await,
        Mode::Daemon => match daemon.run(signals).await {
            Ok(code) => code,
            Err(e) => {
                tracing::error!(class = %e.class(), "{e}");
                e.class().exit_code()
            }
        },
    }
}

//! `gh-token-refresh`: parse flags, install logging and signal handlers, run the library.
//! `status` (the health probe) and `metrics` run before anything else is built: they read two
//! files and need no token source, no runtime and no key.

// Every function of src/ fits on a screen (threshold in clippy.toml); integration tests,
// whose stories read top to bottom, are crates of their own and not held to it.
#![warn(clippy::too_many_lines)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use gh_token_refresh::daemon::{Signals, SourceMinter};
use gh_token_refresh::gh::Gh;
use gh_token_refresh::health::Scope;
use gh_token_refresh::{Cli, Command, Deps, NAME};
use molecule_credential::alarm::RealtimeAlarm;
use molecule_credential::clock::{Clock, SystemClock};
use molecule_credential::config::Config;
use molecule_credential::logging::{self, Style};
use molecule_credential::schedule::RandomDice;
use molecule_credential::{Class, Error};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    logging::install_panic_hook(NAME);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(molecule_credential::cli::print_clap_error(&e)),
    };
    if let Some(Command::Completions { shell }) = cli.command {
        let stdout = std::io::stdout();
        let code = molecule_credential::completions::write(
            shell,
            Cli::command(),
            NAME,
            &mut stdout.lock(),
        );
        return ExitCode::from(code);
    }
    let loaded = Config::from_env(&cli.flags());
    if let Some(w) = logging::init(&loaded.config, Style::Timestamped) {
        tracing::warn!("{w}");
    }
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let config = Arc::new(loaded.config);
    match cli.command {
        Some(Command::Status { json, alive }) => {
            let stdout = std::io::stdout();
            let scope = if alive { Scope::Alive } else { Scope::Health };
            return ExitCode::from(gh_token_refresh::health::run(
                &config,
                scope,
                json,
                SystemClock.now(),
                &mut stdout.lock(),
            ));
        }
        Some(Command::Metrics) => {
            let stdout = std::io::stdout();
            return ExitCode::from(gh_token_refresh::health::print_metrics(
                &config,
                SystemClock.now(),
                &mut stdout.lock(),
            ));
        }
        // Completions were printed before any configuration was read.
        Some(Command::Completions { .. }) | None => {}
    }
    // One thread: the daemon spends its life asleep, and a single-threaded runtime parks in
    // one epoll_wait until the next timer, alarm or signal. File work goes to the blocking
    // pool, whose threads retire when idle.
    let runtime = match molecule_credential::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(class = %e.class(), "{e}");
            return ExitCode::from(e.class().exit_code());
        }
    };
    let code = runtime.block_on(async {
        let signals = match install_signals() {
            Ok(s) => s,
            Err(e) => {
                let e = Error::new(
                    Class::LocalConfig,
                    format!("cannot install signal handlers: {e}"),
                )
                .with_source(e);
                tracing::error!(class = %e.class(), "{e}");
                return e.class().exit_code();
            }
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let minter = match SourceMinter::new(config.clone(), clock.clone()) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(class = %e.class(), "{e}");
                return e.class().exit_code();
            }
        };
        let deps = Deps {
            clock,
            dice: RandomDice,
            minter,
            alarm: RealtimeAlarm::new(),
            gh: Some(Gh::new("gh")),
            signals,
        };
        gh_token_refresh::run(&cli, config, deps).await
    });
    // A lock wait abandoned at shutdown may still be polling on a blocking thread (it ends by
    // its own deadline): exit now rather than wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    ExitCode::from(code)
}
/// SIGTERM and SIGINT end the daemon; SIGHUP asks for a refresh now.
fn install_signals() -> std::io::Result<Signals> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, refresh_now) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // A refresh already queued covers this one too.
            let _ = tx.try_send(());
        }
    });
    Ok(Signals {
        shutdown: Box::pin(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }),
        refresh_now,
    })
}

//! `git-credential-molecule`: git's credential helper for GitHub installation tokens, and the
//! human commands around it (`configure`, `status`, `refresh`, `token`, `exec`).
//!
//! The protocol actions (`get`, `store`, `erase`) follow DESIGN.md, "The credential protocol".
//! On a cache hit `get` reads one file and prints three lines: no async runtime, no HTTP client
//! and no TLS configuration is built unless a token must be minted.

// Every function of src/ fits on a screen (threshold in clippy.toml); integration tests,
// whose stories read top to bottom, are crates of their own and not held to it.
#![warn(clippy::too_many_lines)]

use std::ffi::OsString;
use std::io::{self, Write};

use clap::{CommandFactory, Parser, Subcommand};
use molecule_credential::cli::ConfigArgs;
use molecule_credential::completions::{self, Shell};
use molecule_credential::config::Config;
use molecule_credential::logging::{self, Style, redact};
use molecule_credential::{Class, Error};

pub mod commands;
pub mod configure;
pub mod doctor;
pub mod exec;
pub mod gitconfig;
pub mod helper;
pub mod report;

/// The binary's name, as messages say it.
pub const NAME: &str = "git-credential-molecule";

/// git credential helper serving fresh GitHub installation tokens.
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
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The helper's commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// git protocol: print a credential for the host on stdin
    Get,
    /// git protocol: a credential worked (nothing to do: the cache is ours)
    Store,
    /// git protocol: a credential was rejected; stop serving it
    Erase,
    /// Make git use this helper, and only this helper, for each host
    Configure(configure::Args),
    /// Show the cached tokens' state and the daemon's last outcome (never a token)
    Status(report::Args),
    /// Fetch a new token from the platform now; exit code by outcome
    Refresh,
    /// Print a valid token, for scripts
    Token(commands::TokenCommand),
    /// Run a command with GH_TOKEN and GITHUB_TOKEN set to a fresh token
    Exec(exec::ExecArgs),
    /// Check the setup end to end; name the command that fixes each problem
    Doctor(doctor::Args),
    /// Print the completion script for SHELL (the release artifacts install it)
    #[command(hide = true)]
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: Shell,
    },
    /// Any other action git may send in the future: ignored, as git asks
    #[command(external_subcommand)]
    Other(Vec<OsString>),
}

/// The protocol action when `args` is exactly `PROGRAM get|store|erase`, the way git runs a
/// helper configured as `molecule`. Those skip clap: building clap's command tree (the global
/// flags cloned into every subcommand) costs more than answering from the cache. Anything else,
/// including flags before the action, goes through clap.
fn bare_protocol_action(args: &[OsString]) -> Option<Command> {
    match args {
        [_, action] => match action.to_str()? {
            "get" => Some(Command::Get),
            "store" => Some(Command::Store),
            "erase" => Some(Command::Erase),
            _ => None,
        },
        _ => None,
    }
}

/// Parses `args`, runs, and returns the exit code. Bad input or failure: one line on stderr,
/// nothing on stdout.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> u8 {
    logging::install_panic_hook(NAME);
    let args: Vec<OsString> = args.into_iter().collect();
    let (command, flags) = match bare_protocol_action(&args) {
        Some(command) => (command, Default::default()),
        None => match Cli::try_parse_from(&args) {
            Ok(Cli {
                command: Some(mut command),
                config,
            }) => {
                if let Command::Configure(a) = &mut command {
                    a.invoked_as = args.first().cloned();
                }
                (command, config.flags)
            }
            Ok(Cli { command: None, .. }) => {
                report_error(&Error::new(
                    Class::BadInput,
                    "no action given: git runs this helper with get, store or erase (see --help)",
                ));
                return 2;
            }
            Err(e) => return molecule_credential::cli::print_clap_error(&e),
        },
    };
    let loaded = Config::from_env(&flags);
    let logging = std::sync::Once::new();
    let start_logging = || {
        logging.call_once(|| {
            if let Some(w) = logging::init(&loaded.config, Style::Terse) {
                tracing::warn!("{w}");
            }
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
        })
    };
    // Configuration problems are always reported, hot path or not.
    if !loaded.warnings.is_empty() {
        start_logging();
    }
    let stdin = io::stdin();
    let stdout = io::stdout();
    // Only `token` asks (a cache hit spares the ioctl).
    let is_terminal =
        matches!(command, Command::Token(_)) && std::io::IsTerminal::is_terminal(&stdout);
    let out = Output {
        is_terminal,
        stream: &mut stdout.lock(),
    };
    match run(
        command,
        &loaded.config,
        &mut stdin.lock(),
        out,
        &start_logging,
    ) {
        Ok(code) => code,
        Err(e) => {
            report_error(&e);
            e.class().exit_code()
        }
    }
}

/// Prints the one-line error, redacted.
pub fn report_error(e: &Error) {
    let line = format!("{NAME}: {e}\n");
    let _ = io::stderr().write_all(redact(&line).as_bytes());
}

/// Where a command's output goes.
pub struct Output<'a> {
    /// The stream.
    pub stream: &'a mut dyn Write,
    /// Whether it is a terminal (commands that print a token refuse one).
    pub is_terminal: bool,
}

/// Runs one command with I/O passed in. Returns the exit code on success.
///
/// `start_logging` installs the log subscriber (idempotent). `get` calls it only once it knows
/// the cache cannot answer, so a cache hit never pays for it; every other command calls it
/// first.
pub fn run(
    command: Command,
    config: &Config,
    stdin: &mut dyn io::BufRead,
    out: Output<'_>,
    start_logging: &dyn Fn(),
) -> Result<u8, Error> {
    let Output {
        stream: stdout,
        is_terminal,
    } = out;
    if !matches!(command, Command::Get) {
        start_logging();
    }
    match command {
        Command::Get => helper::get(config, stdin, stdout, start_logging).map(|()| 0),
        Command::Store => helper::store(stdin).map(|()| 0),
        Command::Erase => helper::erase(config, stdin).map(|()| 0),
        // git: "If a helper receives any other operation, it should silently ignore the
        // request." Nothing is read, nothing printed, nothing changed.
        Command::Other(_) => Ok(0),
        Command::Configure(args) => configure::run(config, &args, stdout),
        Command::Status(args) => report::run(config, &args, stdout),
        Command::Refresh => commands::refresh(config, stdout),
        Command::Token(args) => commands::token(config, &args, stdout, is_terminal),
        Command::Exec(args) => exec::run(config, &args),
        Command::Doctor(args) => doctor::run(config, &args, stdout),
        Command::Completions { shell } => {
            Ok(completions::write(shell, Cli::command(), NAME, stdout))
        }
    }
}

/// Maps an I/O error on stdout (git went away) to an error of class `BadInput`.
pub(crate) fn write_error(e: &io::Error) -> Error {
    Error::new(Class::BadInput, format!("writing to stdout: {e}"))
        .with_source(molecule_credential::error::copy_io(e))
}

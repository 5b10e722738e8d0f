//! `exec -- CMD…`: run a command with a fresh token in its environment (DESIGN.md, "Tokens for
//! tools that do not ask git"), for tools that read the token once at start.
//!
//! CMD gets the token in `GH_TOKEN` and `GITHUB_TOKEN`, and for a host other than github.com
//! also in `GH_ENTERPRISE_TOKEN` and `GITHUB_ENTERPRISE_TOKEN` (gh reads those, not
//! `GH_TOKEN`, for an enterprise host); nothing else in its environment changes, and the token
//! is never in anyone's argv. The token comes through [`crate::helper::obtain`], the whole
//! source order through the single-flight broker, so this works with or without the daemon.
//! This process is replaced with CMD (127 when CMD is not found, 126 when it cannot be run, as
//! a shell says).

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;

use molecule_credential::config::{Config, vars};
use molecule_credential::route::Target;
use molecule_credential::{Class, Error};

use crate::commands::TokenArgs;
use crate::helper::{Token, obtain};
use crate::report_error;

pub mod restart;

/// `exec` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ExecArgs {
    /// Which token
    #[command(flatten)]
    pub token: TokenArgs,
    /// The command and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

/// The variables CMD gets the token in: `GH_TOKEN` and `GITHUB_TOKEN`, and for a host other
/// than github.com also `GH_ENTERPRISE_TOKEN` and `GITHUB_ENTERPRISE_TOKEN`, which gh reads
/// instead for an enterprise host.
pub fn token_vars(host: &str) -> &'static [&'static str] {
    const DOTCOM: &[&str] = &[vars::GH_TOKEN, vars::GITHUB_TOKEN];
    const ENTERPRISE: &[&str] = &[
        vars::GH_TOKEN,
        vars::GITHUB_TOKEN,
        vars::GH_ENTERPRISE_TOKEN,
        vars::GITHUB_ENTERPRISE_TOKEN,
    ];
    if host == "github.com" {
        DOTCOM
    } else {
        ENTERPRISE
    }
}

/// `exec`. Exits 69 only when every token source failed, like `token`.
pub fn run(config: &Config, args: &ExecArgs) -> Result<u8, Error> {
    let target = args.token.target(config)?;
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    exec_once(config, &target, program, rest)
}

/// Replaces this process with CMD; returns only when that failed.
fn exec_once(
    config: &Config,
    target: &Target,
    program: &OsString,
    rest: &[OsString],
) -> Result<u8, Error> {
    let Token { token, .. } = obtain(config, target)?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest);
    for name in token_vars(&target.host) {
        cmd.env(name, token.expose());
    }
    let e = cmd.exec();
    Ok(cannot_run(program, &e))
}

/// Says why CMD could not be started; the shell's exit code for it: 127 not found, 126 found
/// but not runnable.
fn cannot_run(program: &OsString, e: &io::Error) -> u8 {
    report_error(&Error::new(
        Class::LocalConfig,
        format!("cannot run {}: {e}", program.to_string_lossy()),
    ));
    if e.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

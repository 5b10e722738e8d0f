//! How to run the gh CLI so that it reads its stored login: the one recipe for the daemon,
//! which keeps gh logged in, and for `doctor`, which asks gh what it holds.
//!
//! gh refuses to log in while `GH_TOKEN` or `GITHUB_TOKEN` is set, prefers either over its
//! stored login, and on an enterprise host reads `GH_ENTERPRISE_TOKEN`/`GITHUB_ENTERPRISE_TOKEN`
//! instead; so all four are removed from gh's environment (the first shell version's silent
//! failure). `GH_HOST` is removed too, since every call names its host; prompts, the update
//! notifier and colour are off.

use std::ffi::OsStr;
use std::process::Command;

use crate::config::vars;

/// Variables that make gh ignore (or refuse to write) its stored login.
pub const TOKEN_VARS: [&str; 4] = [
    vars::GH_TOKEN,
    vars::GITHUB_TOKEN,
    vars::GH_ENTERPRISE_TOKEN,
    vars::GITHUB_ENTERPRISE_TOKEN,
];

/// `program args…` with the environment described above.
pub fn command(program: &OsStr, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    for var in TOKEN_VARS {
        cmd.env_remove(var);
    }
    // GH_HOST would redirect a command without --hostname; we always pass one.
    cmd.env_remove("GH_HOST")
        .env("GH_PROMPT_DISABLED", "1")
        .env("GH_NO_UPDATE_NOTIFIER", "1")
        .env("NO_COLOR", "1");
    cmd
}

/// Whether gh can hold a login for `host`: gh 2.23 rejects a `--hostname` with a port.
pub fn supports_host(host: &str) -> bool {
    !host.contains(':')
}

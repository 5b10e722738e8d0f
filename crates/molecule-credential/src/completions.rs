//! `completions SHELL`, hidden on both binaries: the shell completion script for a binary,
//! generated from the same clap definition that parses its command line (so it cannot drift
//! from `--help`). The release artifacts ship what this prints (DESIGN.md, "Releases").

use std::io::Write;

pub use clap_complete::Shell;

/// Writes `shell`'s completion script for `command`, named `name`, to `out`. Returns the exit
/// code: 0, or 74 (EX_IOERR) when `out` would not take it (a closed pipe).
pub fn write(shell: Shell, mut command: clap::Command, name: &str, out: &mut dyn Write) -> u8 {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    match out.write_all(&script).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(_) => 74,
    }
}

//! `git-credential-molecule`: parse arguments, hand over to the library, exit with its code.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(git_credential_molecule::main_with_args(std::env::args_os()))
}

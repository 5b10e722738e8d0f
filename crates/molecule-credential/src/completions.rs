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
    if shell == Shell::Bash {
        script = bash_state_labels(&String::from_utf8_lossy(&script), name).into_bytes();
    }
    match out.write_all(&script).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(_) => 74,
    }
}

/// clap_complete 4.6's bash script for a binary whose name has a hyphen completes nothing
/// after a subcommand (clap-rs/clap#6421, open as of 4.6.12): the loop that walks the words
/// names the state `git__credential__molecule__subcmd__configure`, the `case` arms spell it
/// `git__subcmd__credential__subcmd__molecule__subcmd__configure`. The arms are respelt the
/// loop's way; once clap_complete agrees with itself there is nothing left to respell.
fn bash_state_labels(script: &str, name: &str) -> String {
    let loop_spelling = format!("{}__subcmd__", name.replace('-', "__"));
    let arm_spelling = format!("{}__subcmd__", name.replace('-', "__subcmd__"));
    script.replace(&arm_spelling, &loop_spelling)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bash(command: clap::Command, name: &str) -> String {
        let mut out = Vec::new();
        assert_eq!(write(Shell::Bash, command, name, &mut out), 0);
        String::from_utf8(out).expect("a script is text")
    }

    #[test]
    fn a_hyphenated_binary_s_subcommand_arm_is_the_state_the_loop_names() {
        let command = clap::Command::new("my-app").subcommand(
            clap::Command::new("thunder").arg(clap::Arg::new("lightning").long("lightning")),
        );
        let script = bash(command, "my-app");
        // What the loop sets on seeing the subcommand, and the arm that must match it.
        assert!(
            script.contains("cmd=\"my__app__subcmd__thunder\""),
            "{script}"
        );
        assert!(
            script.contains("        my__app__subcmd__thunder)\n"),
            "{script}"
        );
        assert!(!script.contains("my__subcmd__app"), "{script}");
    }

    #[test]
    fn a_name_without_a_hyphen_is_left_as_generated() {
        let command = clap::Command::new("tool").subcommand(clap::Command::new("run"));
        let mut raw = Vec::new();
        clap_complete::generate(Shell::Bash, &mut command.clone(), "tool", &mut raw);
        assert_eq!(bash(command, "tool"), String::from_utf8(raw).expect("text"));
    }
}

//! A `git` command isolated from the machine it runs on: no system or user config, no
//! inherited CA settings or tokens, no prompts. The machine presets several of these
//! (`GIT_SSL_CAINFO`, `SSL_CERT_FILE`, …), so tests must never inherit them.

use std::path::Path;
use std::process::Command;

/// Variables that would let the machine's setup leak into a test's git: where git looks
/// for config, repositories and credentials, which CAs it trusts, and tokens some tools
/// pick up on their own. Removed by name, because the list of what the environment holds
/// is not read anywhere in this crate.
const SCRUBBED: &[&str] = &[
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_ASKPASS",
    "GIT_AUTHOR_DATE",
    "GIT_AUTHOR_EMAIL",
    "GIT_AUTHOR_NAME",
    "GIT_CEILING_DIRECTORIES",
    "GIT_COMMITTER_DATE",
    "GIT_COMMITTER_EMAIL",
    "GIT_COMMITTER_NAME",
    "GIT_COMMON_DIR",
    "GIT_CONFIG",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_NOSYSTEM",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_SYSTEM",
    "GIT_CURL_VERBOSE",
    "GIT_DIR",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    "GIT_EDITOR",
    "GIT_EXEC_PATH",
    "GIT_HTTP_LOW_SPEED_LIMIT",
    "GIT_HTTP_LOW_SPEED_TIME",
    "GIT_HTTP_PROXY_AUTHMETHOD",
    "GIT_HTTP_USER_AGENT",
    "GIT_INDEX_FILE",
    "GIT_NAMESPACE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_OBJECT_DIRECTORY",
    "GIT_PAGER",
    "GIT_PROTOCOL",
    "GIT_PROTOCOL_FROM_USER",
    "GIT_PROXY_COMMAND",
    "GIT_PROXY_SSL_CAINFO",
    "GIT_PROXY_SSL_CERT",
    "GIT_PROXY_SSL_KEY",
    "GIT_SEQUENCE_EDITOR",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "GIT_SSL_CERT",
    "GIT_SSL_CERT_PASSWORD_PROTECTED",
    "GIT_SSL_CIPHER_LIST",
    "GIT_SSL_KEY",
    "GIT_SSL_NO_VERIFY",
    "GIT_SSL_VERSION",
    "GIT_TERMINAL_PROMPT",
    "GIT_TRACE",
    "GIT_TRACE_CURL",
    "GIT_TRACE_PACKET",
    "GIT_TRACE_PERFORMANCE",
    "GIT_TRACE_SETUP",
    "GIT_WORK_TREE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "CURL_CA_BUNDLE",
    "SSH_ASKPASS",
    "GH_TOKEN",
    "GITHUB_TOKEN",
    "GH_ENTERPRISE_TOKEN",
    "GITHUB_ENTERPRISE_TOKEN",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    // Loopback test servers must never go through a proxy; clear any exclusion list too,
    // then state ours below.
    "NO_PROXY",
    "no_proxy",
];

/// A `git` command (found on the inherited PATH) whose configuration lives in `home`:
/// the system config is ignored, `HOME` and `XDG_CONFIG_HOME` point into `home`, prompts
/// are off, messages are in English, and commits get a fixed test identity.
pub fn git(home: &Path) -> Command {
    let mut command = Command::new("git");
    isolate(&mut command, home);
    command
}

/// Applies the same isolation as [`git`] to any command (e.g. `gh`, `curl`, or the
/// credential helper under test) so that it sees the same clean environment.
pub fn isolate(command: &mut Command, home: &Path) {
    for name in SCRUBBED {
        command.env_remove(name);
    }
    command
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .env("SSH_ASKPASS", "")
        .env("LC_ALL", "C")
        .env("NO_PROXY", "127.0.0.1,localhost,::1")
        .env("GIT_AUTHOR_NAME", "Molecule Test")
        .env("GIT_AUTHOR_EMAIL", "test@molecule.invalid")
        .env("GIT_COMMITTER_NAME", "Molecule Test")
        .env("GIT_COMMITTER_EMAIL", "test@molecule.invalid");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_config_does_not_leak() {
        let home = tempfile::tempdir().expect("tempdir");
        // From inside home: the crate's own directory is in the project's repository.
        let output = git(home.path())
            .current_dir(home.path())
            .args(["config", "--show-origin", "--list"])
            .output()
            .expect("run git config");
        // No config files at all: only the environment-provided entries could show.
        let listed = String::from_utf8_lossy(&output.stdout);
        assert!(
            !listed.contains("file:"),
            "git read a config file: {listed}"
        );
        let output = git(home.path())
            .args(["var", "GIT_COMMITTER_IDENT"])
            .output()
            .expect("run git var");
        assert!(String::from_utf8_lossy(&output.stdout).starts_with("Molecule Test"));
    }
}

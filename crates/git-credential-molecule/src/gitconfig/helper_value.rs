//! The grammar of a `credential.helper` value, as git's `credential_do` reads it:
//!
//! - empty: resets the list of helpers collected so far (git's `credential_config_callback`);
//! - `!COMMAND`: a shell command; git runs `sh -c "COMMAND get"`;
//! - an absolute path (`/…`): git runs `sh -c "PATH get"`, so sh splits and expands it;
//! - anything else, `NAME [ARGS]`: git runs `git credential-NAME [ARGS] get`, a second git
//!   process that looks the helper up on git's exec path and PATH.
//!
//! And the other way round: [`helper_value`] writes a path so that sh gives it back unchanged.

use std::borrow::Cow;
use std::path::PathBuf;

/// What git runs for a helper value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperProgram {
    /// `NAME [ARGS]`: git starts `git credential-NAME`.
    Lookup(String),
    /// An absolute path, bare or as the program of a `!` command.
    Path(PathBuf),
    /// The program of a `!` command that sh looks up on PATH.
    Shell(String),
}

/// The program a helper value runs, or `None` for a value that runs nothing: the empty value
/// (a reset), or a `!` with no command.
pub fn helper_program(value: &str) -> Option<HelperProgram> {
    if let Some(command) = value.strip_prefix('!') {
        let word = first_shell_word(command)?;
        return Some(if word.starts_with('/') {
            HelperProgram::Path(word.into())
        } else {
            HelperProgram::Shell(word)
        });
    }
    if value.starts_with('/') {
        // git appends ` get` and hands the whole line to sh, which splits it into words.
        return first_shell_word(value).map(|w| HelperProgram::Path(w.into()));
    }
    value
        .split_whitespace()
        .next()
        .map(|name| HelperProgram::Lookup(name.to_owned()))
}

/// Whether a helper value resets the helper list: git's rule is the empty value, exactly.
pub fn is_reset(value: &str) -> bool {
    value.is_empty()
}

/// Whether a helper value runs the binary called `binary` (`git-credential-NAME`): the lookup
/// form `NAME`, or a path (bare or in a `!` command, quoted or not) whose file name is
/// `binary`, or a `!` command whose program is called `binary`. A `!NAME` shell command is
/// not the lookup form: sh runs `NAME`, not `git credential-NAME`.
pub fn runs(value: &str, binary: &str) -> bool {
    match helper_program(value) {
        Some(HelperProgram::Lookup(name)) => binary.strip_prefix("git-credential-") == Some(&name),
        Some(HelperProgram::Path(path)) => path.file_name() == Some(binary.as_ref()),
        Some(HelperProgram::Shell(word)) => word.rsplit('/').next() == Some(binary),
        None => false,
    }
}

/// The first word of a shell command line, quotes and backslashes removed: enough of sh's
/// grammar for the program of a helper command. `None` when there is none.
fn first_shell_word(line: &str) -> Option<String> {
    let mut word = String::new();
    let mut chars = line.trim_start().chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => word.extend(chars.by_ref().take_while(|&c| c != '\'')),
            '"' => double_quoted(&mut chars, &mut word),
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() || ";&|<>()".contains(c) => break,
            c => word.push(c),
        }
    }
    (!word.is_empty()).then_some(word)
}

/// The rest of a double-quoted string, up to its closing quote: a backslash escapes only
/// `"`, `\`, `$` and `` ` `` there.
fn double_quoted(chars: &mut std::str::Chars<'_>, word: &mut String) {
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some(n @ ('"' | '\\' | '$' | '`')) => word.push(n),
                Some(n) => {
                    word.push('\\');
                    word.push(n);
                }
                None => break,
            },
            c => word.push(c),
        }
    }
}

/// Characters that make git hand a helper command to sh instead of running it as one word
/// (git's `prepare_shell_cmd`): a path holding any of them must be quoted for sh.
const SHELL_META: &str = "|&;<>()$`\\\"' \t\n*?[#~=%";

/// The helper value that runs the binary at `path`: the path itself, or, when sh would split
/// or expand it, a `!` command with the path quoted for sh.
pub fn helper_value(path: &str) -> String {
    if path.contains(|c| SHELL_META.contains(c)) {
        format!("!{}", shell_quote(path))
    } else {
        path.to_owned()
    }
}

/// `s` as one sh word: as it is when it needs no quoting, else in single quotes.
pub fn shell_quote(s: &str) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b);
    if !s.is_empty() && s.bytes().all(plain) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("'{}'", s.replace('\'', r"'\''")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_git_runs_for_a_helper_value() {
        use HelperProgram::*;
        let p = |v| helper_program(v);
        assert_eq!(p("molecule"), Some(Lookup("molecule".into())));
        assert_eq!(p("molecule --log debug"), Some(Lookup("molecule".into())));
        assert_eq!(
            p("/usr/local/bin/git-credential-molecule"),
            Some(Path("/usr/local/bin/git-credential-molecule".into()))
        );
        assert_eq!(
            p("!'/opt/my tools/git-credential-molecule' --x"),
            Some(Path("/opt/my tools/git-credential-molecule".into()))
        );
        assert_eq!(
            p(r#"!"/opt/a\"b/x" get"#),
            Some(Path(r#"/opt/a"b/x"#.into()))
        );
        assert_eq!(
            p(r"!/opt/my\ tools/x"),
            Some(Path("/opt/my tools/x".into()))
        );
        assert_eq!(p("!gh auth git-credential"), Some(Shell("gh".into())));
        assert_eq!(p("!f() { echo x; }; f"), Some(Shell("f".into())));
        assert_eq!(p(""), None);
        assert_eq!(p("!"), None);
        assert!(is_reset(""));
        assert!(!is_reset(" "), "git resets on the empty value only");
    }

    #[test]
    fn which_values_run_a_binary() {
        let ours = "git-credential-molecule";
        assert!(runs("molecule", ours));
        assert!(runs("molecule --cache-dir /x", ours));
        assert!(runs("/usr/local/bin/git-credential-molecule", ours));
        assert!(runs("!/opt/bin/git-credential-molecule --log debug", ours));
        assert!(runs("!'/opt/my tools/git-credential-molecule'", ours));
        assert!(
            runs("!git-credential-molecule", ours),
            "found on PATH by sh"
        );
        assert!(runs("!./bin/git-credential-molecule", ours));
        assert!(!runs("store", ours));
        assert!(!runs("!molecule-impostor", ours));
        // A shell command named `molecule` is not git's lookup form.
        assert!(!runs("!molecule", ours));
        assert!(!runs("/opt/bin/git-credential-molecule-impostor", ours));
        assert!(!runs("", ours));
    }

    #[test]
    fn helper_values_survive_sh() {
        assert_eq!(
            helper_value("/usr/local/bin/git-credential-molecule"),
            "/usr/local/bin/git-credential-molecule"
        );
        for path in [
            "/opt/my tools/git-credential-molecule",
            "/opt/it's/git-credential-molecule",
            "/opt/$HOME/*/git-credential-molecule",
        ] {
            let value = helper_value(path);
            assert!(value.starts_with('!'), "{value}");
            assert_eq!(
                helper_program(&value),
                Some(HelperProgram::Path(path.into())),
                "{value}"
            );
        }
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("--file=/x/y.z"), "--file=/x/y.z");
    }
}

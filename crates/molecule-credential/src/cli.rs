//! Command-line flags that override configuration variables, shared by both binaries so a
//! flag means the same everywhere. They are built from the table of typed settings
//! ([`crate::config::setting`]): each flag's id is the variable it overrides and its value
//! parser is that variable's, so a flag arrives typed, and a bad value is a usage error
//! (exit 2) that names the flag and never echoes the value.

use std::io::Write;

use clap::builder::ValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::config::setting::{self, FlagKind, Flags, Group, Setting, Visit};
use crate::logging::redact;

/// Prints clap's message (help, version, or a usage error) and returns the exit code clap
/// would use. An error about a value is worded here without the value (clap would quote it,
/// and a misplaced value may be a secret); every other message has token-shaped arguments
/// redacted (argv may hold a token).
pub fn print_clap_error(e: &clap::Error) -> u8 {
    let text = match value_error(e) {
        Some(text) => text,
        None => redact(&e.render().to_string()).into_owned(),
    };
    if e.use_stderr() {
        let _ = std::io::stderr().write_all(text.as_bytes());
        2
    } else {
        let _ = std::io::stdout().write_all(text.as_bytes());
        0
    }
}

/// The message of an error that would quote a value, without the value.
fn value_error(e: &clap::Error) -> Option<String> {
    e.get(ContextKind::InvalidValue)?;
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => format!("'{arg}'"),
        _ => "an argument".to_owned(),
    };
    let why = match (e.kind(), e.get(ContextKind::ValidValue)) {
        (ErrorKind::ValueValidation, _) => std::error::Error::source(e).map_or_else(
            || format!("invalid value for {arg}"),
            |cause| format!("invalid value for {arg}: {cause}"),
        ),
        (ErrorKind::InvalidValue, Some(ContextValue::Strings(valid))) => {
            format!("invalid value for {arg}: not one of {}", valid.join(", "))
        }
        (ErrorKind::InvalidValue, _) => format!("invalid value for {arg}"),
        _ => format!("unexpected value for {arg}"),
    };
    Some(format!(
        "error: {why} (the value is not shown)\n\nFor more information, try '--help'.\n"
    ))
}

/// The `--help` heading of a group: each command lists its own options first, then these
/// groups (as cargo and uv do).
fn heading(group: Group) -> &'static str {
    match group {
        Group::Platform => "Platform",
        Group::App => "GitHub App",
        Group::Cache => "Cache and hosts",
        Group::Logging => "Logging",
        Group::Schedule => "Schedule",
        Group::Outputs => "Token files and metrics",
    }
}

/// The clap argument of `setting`'s flag: its id is the variable, its value parser the
/// variable's (an empty value means unset, as in the environment).
fn arg<T: Clone + Send + Sync + 'static>(setting: &'static Setting<T>) -> Option<Arg> {
    let flag = setting.flag?;
    let parse = setting.parse;
    let parser = ValueParser::new(move |v: &str| -> Result<Option<T>, setting::Problem> {
        if v.is_empty() {
            return Ok(None);
        }
        parse(v).strict().map(Some)
    });
    let arg = Arg::new(setting.var)
        .long(flag.long)
        .global(true)
        .help_heading(heading(flag.group))
        .help(format!("{} [env: {}]", flag.help, setting.var))
        .value_parser(parser);
    Some(match flag.kind {
        FlagKind::Value => arg.value_name(flag.value_name).action(ArgAction::Set),
        FlagKind::Repeated => arg.value_name(flag.value_name).action(ArgAction::Append),
        // Given alone, the flag means what the variable's `1` means.
        FlagKind::Switch => arg
            .num_args(0)
            .default_missing_value("1")
            .action(ArgAction::Set),
    })
}

/// The value `setting`'s flag gave in `matches` (all its values joined, when it repeats).
fn value_of<T: Clone + Send + Sync + 'static>(
    matches: &ArgMatches,
    setting: &'static Setting<T>,
) -> Option<T> {
    // `try_`: an id this command never defined is absent, not a panic.
    let values: Vec<T> = match matches.try_get_many::<Option<T>>(setting.var) {
        Ok(Some(values)) => values.flatten().cloned().collect(),
        _ => Vec::new(),
    };
    match setting.join {
        Some(join) if !values.is_empty() => Some(join(values)),
        _ => values.into_iter().last(),
    }
}

/// Which flags a set holds: the shared ones, or the daemon's own.
#[derive(Clone, Copy)]
struct Selection {
    daemon_only: bool,
}

impl Selection {
    fn holds<T>(self, setting: &Setting<T>) -> bool {
        setting
            .flag
            .is_some_and(|f| f.group.daemon_only() == self.daemon_only)
    }

    fn augment(self, cmd: Command) -> Command {
        struct AddArgs {
            cmd: Command,
            selection: Selection,
        }
        impl Visit for AddArgs {
            fn visit<T: Clone + Send + Sync + 'static>(&mut self, setting: &'static Setting<T>) {
                if !self.selection.holds(setting) {
                    return;
                }
                if let Some(arg) = arg(setting) {
                    self.cmd = std::mem::take(&mut self.cmd).arg(arg);
                }
            }
        }
        let mut add = AddArgs {
            cmd,
            selection: self,
        };
        setting::visit_all(&mut add);
        add.cmd
    }

    fn collect(self, matches: &ArgMatches, flags: &mut Flags) {
        struct Collect<'a> {
            matches: &'a ArgMatches,
            flags: &'a mut Flags,
            selection: Selection,
        }
        impl Visit for Collect<'_> {
            fn visit<T: Clone + Send + Sync + 'static>(&mut self, setting: &'static Setting<T>) {
                if !self.selection.holds(setting) {
                    return;
                }
                if let Some(value) = value_of(self.matches, setting) {
                    self.flags.set(setting, value);
                }
            }
        }
        setting::visit_all(&mut Collect {
            matches,
            flags,
            selection: self,
        });
    }
}

/// A set of flags drawn from the settings table: the shared ones (`DAEMON_ONLY = false`) or
/// the daemon's own.
#[derive(Clone, Debug, Default)]
pub struct FlagSet<const DAEMON_ONLY: bool> {
    /// The values given, typed.
    pub flags: Flags,
}

/// The shared flags, one per variable of DESIGN.md that has one; a flag beats its variable.
pub type ConfigArgs = FlagSet<false>;

/// The daemon's own flags (its schedule).
pub type ScheduleArgs = FlagSet<true>;

impl<const DAEMON_ONLY: bool> clap::FromArgMatches for FlagSet<DAEMON_ONLY> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut set = Self::default();
        set.update_from_arg_matches(matches)?;
        Ok(set)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        Selection {
            daemon_only: DAEMON_ONLY,
        }
        .collect(matches, &mut self.flags);
        Ok(())
    }
}

impl<const DAEMON_ONLY: bool> clap::Args for FlagSet<DAEMON_ONLY> {
    fn augment_args(cmd: Command) -> Command {
        Selection {
            daemon_only: DAEMON_ONLY,
        }
        .augment(cmd)
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use clap::{Args as _, FromArgMatches as _};

    use super::*;
    use crate::config::{Config, TokenSourceKind};

    fn parse(args: &[&str]) -> Result<Flags, clap::Error> {
        let cmd = ScheduleArgs::augment_args(ConfigArgs::augment_args(
            Command::new("t").subcommand(Command::new("sub")),
        ));
        let matches = cmd.try_get_matches_from(std::iter::once("t").chain(args.iter().copied()))?;
        let mut flags = ConfigArgs::from_arg_matches(&matches)?.flags;
        flags.extend(&ScheduleArgs::from_arg_matches(&matches)?.flags);
        Ok(flags)
    }

    #[test]
    fn flags_arrive_typed_and_beat_the_environment() {
        let flags = parse(&[
            "--platform-url=http://flag:1/",
            "--interval-sec",
            "30",
            "--token-source=github-app",
            "--hosts=GitHub.com,ghe.example:8443",
            "--revoke-on-exit",
            "sub",
            "--cache-dir=/c",
        ])
        .unwrap();
        let env = |var: &str| match var {
            "PLATFORM_URL" => Some("http://env:2".to_owned()),
            "TOKEN_REFRESH_JITTER_SEC" => Some("7".to_owned()),
            _ => None,
        };
        let c = Config::load_with(&flags, env).config;
        assert_eq!(c.platform_url, "http://flag:1");
        assert_eq!(c.refresh_interval, Duration::from_secs(30));
        assert_eq!(
            c.refresh_jitter,
            Duration::from_secs(7),
            "from the environment"
        );
        assert_eq!(c.token_source, TokenSourceKind::GithubApp);
        assert_eq!(c.hosts, ["github.com", "ghe.example:8443"]);
        assert!(c.revoke_on_exit);
        assert_eq!(
            c.cache_dir,
            PathBuf::from("/c"),
            "a global flag after the command"
        );
    }

    #[test]
    fn an_empty_flag_means_unset() {
        let flags = parse(&["--platform-url", "", "--interval-sec="]).unwrap();
        let c = Config::load_with(&flags, |var| {
            (var == "PLATFORM_URL").then(|| "http://env:2".to_owned())
        })
        .config;
        assert_eq!(c.platform_url, "http://env:2");
        assert_eq!(c.refresh_interval, Duration::from_secs(2700));
    }

    #[test]
    fn a_bad_value_names_the_flag_and_not_the_value() {
        for (args, why) in [
            (
                &["--margin-sec=ghs_SECRET1"][..],
                "invalid value for '--margin-sec <SECS>': not a whole number of seconds from 0 to 3000",
            ),
            (
                &["--hosts", "github.com,ghs_SECRET2/x"],
                "invalid value for '--hosts <HOSTS>': entry 2 is not a host name (host or host:port)",
            ),
            (
                &["--revoke-on-exit=ghs_SECRET3"],
                "unexpected value for '--revoke-on-exit'",
            ),
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            let text = value_error(&e).expect("an error about a value");
            assert_eq!(
                text,
                format!(
                    "error: {why} (the value is not shown)\n\nFor more information, try '--help'.\n"
                )
            );
        }
        // Errors about no value are clap's own, redacted as ever.
        assert!(value_error(&parse(&["--nonsense"]).unwrap_err()).is_none());
    }

    #[test]
    fn a_repeated_flag_joins_its_values() {
        fn items(v: &str) -> setting::Parsed<Vec<String>> {
            setting::Parsed::ok(v.split(',').map(str::to_owned).collect())
        }
        const LIST: Setting<Vec<String>> =
            Setting::env("TEST_LIST", items).repeated(Group::Cache, "item", "ITEMS", "items");
        let cmd = Command::new("t").arg(arg(&LIST).unwrap());
        let m = cmd
            .try_get_matches_from(["t", "--item", "a,b", "--item=", "--item", "c"])
            .unwrap();
        assert_eq!(value_of(&m, &LIST).unwrap(), ["a", "b", "c"]);
        let m = Command::new("t")
            .arg(arg(&LIST).unwrap())
            .try_get_matches_from(["t"])
            .unwrap();
        assert_eq!(value_of(&m, &LIST), None);
    }
}

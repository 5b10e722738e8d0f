//! Bad values for every configuration flag, drawn from the settings table itself
//! (`molecule_credential::config::setting`), so a flag added there is tested here without a
//! new line: each binary's test runs every flag it has with a token-shaped value the flag's
//! parser refuses, and the same value through the variable.

use molecule_credential::config::setting::{self, FlagKind, Setting, Visit};

use crate::leak::piece;
use crate::table::Case;

/// One flag, and a token-shaped value it refuses.
#[derive(Clone, Debug)]
pub struct BadFlag {
    /// The variable the flag overrides.
    pub var: &'static str,
    /// `--long`.
    pub flag: String,
    /// The refused value: a token followed by what makes it bad for this flag.
    pub value: String,
    /// Whether the flag is one only the daemon has.
    pub daemon_only: bool,
    /// Whether the flag takes no value (`--flag=VALUE` is then the mistake).
    pub switch: bool,
}

impl BadFlag {
    /// The argument that gives the bad value to the flag.
    pub fn arg(&self) -> String {
        format!("{}={}", self.flag, self.value)
    }
}

/// A token of GitHub's newest shape (about 520 characters of letters, digits, `.`, `_`, `-`),
/// tagged so a leak can be traced to its test. The logging layer's redaction catches these.
pub fn token_shaped(tag: &str) -> String {
    let mut t = format!("ghs_{tag}_");
    while t.len() < 520 {
        t.push_str("aZ09.-_x");
    }
    t
}

/// A secret of no known shape (a platform bearer, a password), which no redaction catches:
/// only never echoing a value keeps it out of the output.
pub fn shapeless(tag: &str) -> String {
    format!("{tag}-Zq8r7Xk2Lm4Np6Rt9Vw3Yb5Cd1Fg0Hj")
}

/// Every flag of the table, each with a value its parser refuses, made from `secret` (see
/// [`token_shaped`] and [`shapeless`]); and the variables whose flags accept every value
/// (paths), which have no bad value to test.
pub fn bad_flags(secret: &str) -> (Vec<BadFlag>, Vec<&'static str>) {
    struct Walk {
        secret: String,
        bad: Vec<BadFlag>,
        any_value: Vec<&'static str>,
    }
    impl Visit for Walk {
        fn visit<T: Clone + Send + Sync + 'static>(&mut self, s: &'static Setting<T>) {
            let Some(flag) = s.flag else { return };
            // What makes a secret bad for the parsers that would accept it as such (a name, a
            // host, a header value, a log target).
            let candidates = ["", "/x", "[", "\u{1}"].map(|tail| format!("{}{tail}", self.secret));
            match candidates
                .into_iter()
                .find(|c| (s.parse)(c).strict().is_err())
            {
                Some(value) => self.bad.push(BadFlag {
                    var: s.var,
                    flag: format!("--{}", flag.long),
                    value,
                    daemon_only: flag.group.daemon_only(),
                    switch: flag.kind == FlagKind::Switch,
                }),
                None => self.any_value.push(s.var),
            }
        }
    }
    let mut walk = Walk {
        secret: secret.to_owned(),
        bad: Vec::new(),
        any_value: Vec::new(),
    };
    setting::visit_all(&mut walk);
    (walk.bad, walk.any_value)
}

/// Checks the output of a run given `bad` as a flag: exit 2, nothing on stdout, the flag
/// named on stderr, and no piece of the value anywhere.
pub fn check_usage_error(case: &mut Case<'_>, bad: &BadFlag, code: Option<i32>, out: &Output) {
    case.check(code == Some(2), || format!("exit {code:?} (want 2)"));
    case.check(out.stdout.is_empty(), || "stdout not empty".into());
    case.check(out.stderr.contains(&format!("'{}", bad.flag)), || {
        format!("stderr does not name the flag: {:?}", out.stderr)
    });
    check_not_echoed(case, bad, out);
}

/// Checks the output of a run given `bad.value` in `bad.var`: a warning naming the variable,
/// and no piece of the value anywhere.
pub fn check_warning(case: &mut Case<'_>, bad: &BadFlag, out: &Output) {
    case.check(
        out.stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains(bad.var)),
        || format!("no warning naming the variable: {:?}", out.stderr),
    );
    check_not_echoed(case, bad, out);
}

fn check_not_echoed(case: &mut Case<'_>, bad: &BadFlag, out: &Output) {
    let all = format!("{}{}", out.stdout, out.stderr);
    case.check(piece(&bad.value, &all).is_none(), || {
        format!("the value was echoed: {:?}", piece(&bad.value, &all))
    });
}

/// What a run printed.
#[derive(Debug)]
pub struct Output {
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

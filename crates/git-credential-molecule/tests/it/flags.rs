//! DESIGN.md, "Configuration": a bad flag value is a usage error (exit 2) naming the flag and
//! never echoing the value; a bad environment value is a warning naming the variable, never
//! the value, and the default is used. Every shared flag of the settings table, each with a
//! token-shaped value (a value in the wrong place may be a secret).

use molecule_tests::flags::{
    Output, bad_flags, check_usage_error, check_warning, shapeless, token_shaped,
};
use molecule_tests::table::Failures;

use crate::support::{Run, Sandbox};

fn output(r: Run) -> Output {
    Output {
        stdout: r.stdout,
        stderr: r.stderr,
    }
}

#[test]
fn every_flag_with_a_bad_value_is_a_usage_error_that_names_it_and_not_the_value() {
    let (mut bad, any_value) = bad_flags(&token_shaped("flagvalue"));
    bad.extend(bad_flags(&shapeless("flagvalue")).0);
    let sb = Sandbox::new();
    let mut failures = Failures::default();
    let shared: Vec<_> = bad.iter().filter(|b| !b.daemon_only).collect();
    for b in &shared {
        let arg = b.arg();
        // Before the command and after it: the shared flags are global.
        for (args, place) in [([&*arg, "status"], "before"), (["status", &*arg], "after")] {
            let r = sb.run(&args, "");
            let code = r.code;
            let mut case = failures.case(format!("{} {place} the command", b.flag));
            check_usage_error(&mut case, b, Some(code), &output(r));
        }
    }
    failures.assert_none();
    assert!(
        shared.len() >= 16,
        "only {} shared flags tested",
        shared.len()
    );
    // Only paths and the signer's command take any value; everything else has one to refuse.
    for var in any_value {
        assert!(
            var.ends_with("_DIR") || var.ends_with("_FILE") || var.ends_with("_SIGNER"),
            "{var}: no refused value found"
        );
    }
}

#[test]
fn a_bad_environment_value_warns_by_name_without_the_value_and_is_not_used() {
    let (mut bad, _) = bad_flags(&token_shaped("envvalue"));
    bad.extend(bad_flags(&shapeless("envvalue")).0);
    let mut failures = Failures::default();
    for b in bad.iter().filter(|b| !b.daemon_only) {
        let mut sb = Sandbox::new();
        sb.env(b.var, &b.value);
        let r = sb.run(&["status"], "");
        let mut case = failures.case(b.var.to_owned());
        // status ran (0: nothing wrong, 1: a problem to report), with a default in place.
        case.check(matches!(r.code, 0 | 1), || {
            format!("exit {}: {:?}", r.code, r.stderr)
        });
        check_warning(&mut case, b, &output(r));
    }
    failures.assert_none();
}

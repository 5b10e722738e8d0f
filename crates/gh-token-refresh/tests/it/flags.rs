//! DESIGN.md, "Configuration", on the daemon: every flag it has (the shared ones and its
//! schedule's) refuses a bad value with a usage error (exit 2) that names the flag and never
//! echoes the value; the same value in the variable is a warning by name, and the default
//! is used.

use std::time::Duration;

use molecule_tests::deadline::{Finished, run_within};
use molecule_tests::flags::{
    Output, bad_flags, check_usage_error, check_warning, shapeless, token_shaped,
};
use molecule_tests::table::Failures;

use crate::support::{BIN, Proc};

fn output(r: Finished) -> Output {
    Output {
        stdout: r.stdout,
        stderr: r.stderr,
    }
}

#[test]
fn every_flag_with_a_bad_value_is_a_usage_error_that_names_it_and_not_the_value() {
    let (mut bad, _) = bad_flags(&token_shaped("daemonflag"));
    bad.extend(bad_flags(&shapeless("daemonflag")).0);
    let p = Proc::new("http://127.0.0.1:9");
    let mut failures = Failures::default();
    for b in &bad {
        let arg = b.arg();
        // `status` is the one command: before it, and after it (the flags are global).
        for (args, place) in [([&*arg, "status"], "before"), (["status", &*arg], "after")] {
            let r = run_within(&mut p.command(BIN, &args), b"", Duration::from_secs(10));
            r.assert_in_time(&b.flag);
            let code = r.code;
            let mut case = failures.case(format!("{} {place} status", b.flag));
            check_usage_error(&mut case, b, code, &output(r));
        }
    }
    failures.assert_none();
    assert!(
        bad.iter().any(|b| b.daemon_only && b.switch),
        "--revoke-on-exit=VALUE is among them"
    );
}

#[test]
fn a_bad_environment_value_warns_by_name_without_the_value_and_is_not_used() {
    let (mut bad, _) = bad_flags(&token_shaped("daemonenv"));
    bad.extend(bad_flags(&shapeless("daemonenv")).0);
    let mut failures = Failures::default();
    for b in &bad {
        let mut p = Proc::new("http://127.0.0.1:9");
        p.set(b.var, &b.value);
        let r = run_within(
            &mut p.command(BIN, &["status"]),
            b"",
            Duration::from_secs(10),
        );
        r.assert_in_time(b.var);
        let mut case = failures.case(b.var.to_owned());
        // The health check ran (1: no daemon has run here), with the default in place.
        case.check(r.code == Some(1), || {
            format!("exit {:?}: {:?}", r.code, r.stderr)
        });
        check_warning(&mut case, b, &output(r));
    }
    failures.assert_none();
}

//! Runs one test in its own network namespace, where it may bind `127.0.0.1:443` without
//! colliding with other tests or the machine. Needed because gh 2.23 refuses a hostname
//! with a port, so the GitHub Enterprise stand-in must answer on 443 for `localhost`.
//!
//! The test re-runs itself: the outer run starts the same test binary under
//! `unshare -n`, filtered to this one test, and the inner run (recognised by an
//! environment switch) brings up loopback and executes the body.
//!
//! ```no_run
//! #[test]
//! fn gh_login_rotation() {
//!     if !molecule_tests::netns::in_private_netns("gh_login_rotation") { return; }
//!     // body runs in a fresh network namespace where 127.0.0.1:443 is free
//! }
//! ```
//!
//! `test_name` is the name libtest knows the test by: the bare function name in an
//! integration test file, `module::tests::name` for a unit test inside a module.
//! Requires root, `unshare` and `ip` (CI runs as root and has them). Without them the test is
//! skipped through [`crate::skip`]: named, with the reason, in the run's summary.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::thread;

/// Set to the test name in the inner run; its presence marks "already inside".
pub const SWITCH: &str = "MOLECULE_TEST_NETNS";

/// Returns `true` inside the private namespace (run the test body), `false` in the outer
/// run after the inner run passed, or when the test is skipped because this is not root or
/// `unshare`/`ip` are missing (return from the test). Panics if the inner run fails, or if
/// root cannot create the namespace.
pub fn in_private_netns(test_name: &str) -> bool {
    in_private_netns_with(test_name, &[])
}

/// As [`in_private_netns`], and the inner run also gets `env`: what the outer run prepared
/// with the network the namespace lacks (an image built from Debian's packages, say).
pub fn in_private_netns_with(test_name: &str, env: &[(&str, &str)]) -> bool {
    match switch().as_deref() {
        Some(name) if name == OsStr::new(test_name) => {
            bring_up_loopback();
            true
        }
        // Inside another test's namespace, run only because its filter matched this
        // one too: never nest namespaces, and leave this test to its own outer run.
        Some(_) => false,
        None => {
            if crate::skip::require_root(test_name)
                && crate::skip::require_tools(test_name, &["unshare", "ip"])
            {
                run_outside(test_name, env);
            }
            false
        }
    }
}

/// Whether this process is `test_name`'s inner run, inside its namespace.
pub fn is_inner(test_name: &str) -> bool {
    switch().as_deref() == Some(OsStr::new(test_name))
}

fn switch() -> Option<std::ffi::OsString> {
    #[expect(
        clippy::disallowed_methods,
        reason = "test support reads its own switch"
    )]
    std::env::var_os(SWITCH)
}

fn bring_up_loopback() {
    let output = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .output()
        .expect("run `ip link set lo up` (is iproute2 installed?)");
    assert!(
        output.status.success(),
        "`ip link set lo up` failed in the private network namespace: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

fn run_outside(test_name: &str, env: &[(&str, &str)]) {
    let probe = Command::new("unshare")
        .args(["-n", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match probe {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "test `{test_name}` needs its own network namespace, but `unshare -n` failed as \
             root ({})",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(e) => panic!(
            "test `{test_name}` needs `unshare` (util-linux) to create a network \
             namespace: {e}"
        ),
    }

    let exe = std::env::current_exe().expect("locate the running test binary");
    let mut child = Command::new("unshare")
        .arg("-n")
        .arg(&exe)
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(SWITCH, test_name)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the test binary under `unshare -n`");
    // Relayed through print!/eprint! (not inherited) so libtest captures the inner run's
    // output like any other test output: shown on failure or with --nocapture.
    let stdout = relay(child.stdout.take(), false);
    let stderr = relay(child.stderr.take(), true);
    let status = child.wait().expect("wait for the inner test run");
    let stdout = stdout.join().unwrap_or_default();
    let _ = stderr.join();
    assert!(
        status.success(),
        "test `{test_name}` failed inside its network namespace ({status})"
    );
    // libtest exits 0 when the filter matched nothing: that would be a silent pass.
    assert!(
        stdout.contains("1 passed"),
        "the inner run did not execute `{test_name}`: pass the name libtest lists for it \
         (`cargo test -- --list`), e.g. `module::tests::{test_name}` for a unit test"
    );
}

fn relay(pipe: Option<impl Read + Send + 'static>, to_stderr: bool) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut all = String::new();
        let Some(pipe) = pipe else {
            return all;
        };
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            emit(&line, to_stderr);
            all.push_str(&line);
            all.push('\n');
        }
        all
    })
}

#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "relaying the inner test run into libtest's output capture"
)]
fn emit(line: &str, to_stderr: bool) {
    if to_stderr {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

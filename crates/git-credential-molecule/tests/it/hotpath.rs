//! The cache-hit path does only what a hit needs: no async runtime (no epoll, no threads), no
//! HTTP client or TLS (no sockets). Proven on the real binary with strace; a miss, for
//! contrast, shows all three.

use std::process::Stdio;

use httpmock::prelude::*;

use crate::support::{ADMIN_PATH, Sandbox, long_token, token_body};

/// Syscalls `get` made, as strace names them.
fn syscalls_of_get(sb: &Sandbox) -> String {
    let trace = sb.path("strace.out");
    let mut cmd = sb.command(&["get"]);
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let envs: Vec<_> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    cmd = std::process::Command::new("strace");
    cmd.args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg(program)
        .args(args)
        .env_clear()
        .envs(envs);
    let child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strace is installed (.ci/run installs it)");
    let run = sb.finish(child, b"protocol=https\nhost=github.com\n\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.password().is_some());
    std::fs::read_to_string(trace).unwrap()
}

fn uses(trace: &str, syscall: &str) -> bool {
    trace.lines().any(|l| {
        let l = l.split_once(' ').map_or(l, |(_, rest)| rest).trim_start();
        l.starts_with(&format!("{syscall}("))
    })
}

#[test]
fn a_cache_hit_opens_no_socket_starts_no_runtime_and_no_thread() {
    if !molecule_tests::skip::require_tools(
        "hotpath::a_cache_hit_opens_no_socket_starts_no_runtime_and_no_thread",
        &["strace"],
    ) {
        return;
    }
    let sb = Sandbox::new();
    sb.write_cache(&[("github.com", &long_token("hot"), 3000, false)]);
    let trace = syscalls_of_get(&sb);
    for forbidden in [
        "socket",
        "connect",
        "epoll_create1",
        "epoll_create",
        "clone",
        "clone3",
        "eventfd2",
    ] {
        assert!(!uses(&trace, forbidden), "a cache hit called {forbidden}");
    }
}

#[test]
fn a_miss_does_use_the_network_for_contrast() {
    if !molecule_tests::skip::require_tools(
        "hotpath::a_miss_does_use_the_network_for_contrast",
        &["strace"],
    ) {
        return;
    }
    let server = MockServer::start();
    server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200).body(token_body(&long_token("miss"), 3600));
    });
    let mut sb = Sandbox::new();
    sb.platform(&server.base_url());
    let trace = syscalls_of_get(&sb);
    assert!(
        uses(&trace, "socket") && uses(&trace, "connect"),
        "the check above would be vacuous"
    );
}

/// Regression: building the HTTP client loaded and parsed every system root certificate (443
/// files here, ~10 ms), even for the default plain-http platform, which made a cold get take
/// 14 ms instead of 2.4.
#[test]
fn a_miss_against_an_http_platform_reads_no_certificates() {
    if !molecule_tests::skip::require_tools(
        "hotpath::a_miss_against_an_http_platform_reads_no_certificates",
        &["strace"],
    ) {
        return;
    }
    let server = MockServer::start();
    server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200)
            .body(token_body(&long_token("nocerts"), 3600));
    });
    let mut sb = Sandbox::new();
    sb.platform(&server.base_url());
    let trace = syscalls_of_get(&sb);
    let opened_certs: Vec<&str> = trace
        .lines()
        .filter(|l| {
            l.contains("open")
                && (l.contains("/etc/ssl") || l.contains("certs") || l.contains(".pem"))
        })
        .collect();
    assert!(opened_certs.is_empty(), "{opened_certs:?}");
}

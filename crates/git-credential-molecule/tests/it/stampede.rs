//! Single flight across processes: concurrent misses make exactly one platform call.

use std::process::Stdio;
use std::time::Duration;

use httpmock::prelude::*;

use crate::support::{ADMIN_PATH, Sandbox, long_token, token_body};

#[test]
fn thirty_two_concurrent_gets_on_an_empty_cache_make_one_request() {
    let server = MockServer::start();
    let token = long_token("stampede");
    // Slow enough that every process arrives while the first is still minting.
    let mock = server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200)
            .delay(Duration::from_millis(500))
            .body(token_body(&token, 3600));
    });
    let mut sb = Sandbox::new();
    sb.platform(&server.base_url()).env("MOLECULE_LOG", "debug");
    sb.secret(&token);
    let children: Vec<_> = (0..32)
        .map(|_| {
            sb.command(&["get"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let runs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = children
            .into_iter()
            .map(|c| s.spawn(|| sb.finish(c, b"protocol=https\nhost=github.com\n\n")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &runs {
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.password(), Some(token.as_str()));
    }
    assert_eq!(
        mock.calls(),
        1,
        "one platform request for 32 concurrent misses"
    );
}

//! No token, bearer or response body on stderr, at trace level, in text and JSON, on success
//! and on every error path. (Every test's runs are also checked by the sandbox.)

use httpmock::prelude::*;

use crate::support::{ADMIN_PATH, Sandbox, long_token, token_body};

#[test]
fn every_command_at_trace_in_text_and_json_keeps_tokens_off_stderr() {
    for format in ["text", "json"] {
        let server = MockServer::start();
        let token = long_token("trace");
        let mut mock = server.mock(|when, then| {
            when.path(ADMIN_PATH);
            then.status(200).body(token_body(&token, 3600));
        });
        let mut sb = Sandbox::new();
        sb.platform(&server.base_url())
            .env("MOLECULE_LOG", "trace")
            .env("MOLECULE_LOG_FORMAT", format);
        sb.secret(&token);
        let fallback = sb.secret(&long_token("fallbk"));
        let req = "protocol=https\nhost=github.com\n\n";
        let erase = format!("protocol=https\nhost=github.com\npassword={token}\n\n");
        let mut saw_logs = false;
        for (args, input) in [
            (&["get"][..], req.to_owned()),
            (&["status"][..], String::new()),
            (&["status", "--json"][..], String::new()),
            (&["refresh"][..], String::new()),
            (&["erase"][..], erase.clone()),
            (&["get"][..], req.to_owned()),
            (&["exec", "--", "true"][..], String::new()),
        ] {
            let r = sb.run(args, &input);
            assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
            saw_logs |= !r.stderr.is_empty();
            if format == "json" {
                for line in r.stderr.lines() {
                    serde_json::from_str::<serde_json::Value>(line)
                        .unwrap_or_else(|_| panic!("{args:?}: not a JSON line: {line}"));
                }
            }
        }
        assert!(
            saw_logs,
            "trace level produced no logs at all: the check would be empty"
        );
        // Error paths: the platform fails, the fallback is served, then nothing is left.
        mock.delete();
        server.mock(|when, then| {
            when.path(ADMIN_PATH);
            then.status(500).body(format!(r#"{{"error":"{token}"}}"#));
        });
        sb.run(&["erase"], &erase);
        sb.env("GH_TOKEN", &fallback);
        let r = sb.run(&["get"], req);
        assert_eq!(r.password(), Some(fallback.as_str()));
        sb.unset("GH_TOKEN");
        let r = sb.run(&["get"], req);
        assert_eq!(r.code, 69);
        let r = sb.run(&["refresh"], "");
        assert_eq!(r.code, 75);
    }
}

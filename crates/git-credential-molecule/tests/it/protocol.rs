//! The credential protocol as git speaks it, and hostile input: CR, NUL, a line without `=`,
//! a 1 MiB value, an unknown action, no action. Rejected input gets one clear line on stderr,
//! nothing on stdout, and the cache is not touched.

use crate::support::{Sandbox, long_token};

fn sandbox_with_cache() -> (Sandbox, Vec<u8>) {
    let mut sb = Sandbox::new();
    sb.env("MOLECULE_LOG", "info");
    sb.write_cache(&[("github.com", &long_token("cached"), 3000, false)]);
    let before = sb.tokens_json().unwrap();
    (sb, before)
}

#[test]
fn hostile_input_is_rejected_with_one_line() {
    let mut huge = String::from("protocol=https\nhost=github.com\npath=");
    huge.push_str(&"a".repeat(1 << 20));
    huge.push('\n');
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "CR in a value",
            "protocol=https\nhost=github.com\rhost=evil.test\n\n".into(),
            "carriage return",
        ),
        (
            "CRLF line end",
            "protocol=https\r\nhost=github.com\r\n\r\n".into(),
            "carriage return",
        ),
        (
            "NUL in a value",
            "protocol=https\nhost=github.com\0.evil.test\n\n".into(),
            "NUL",
        ),
        (
            "line without =",
            "protocol=https\nhost github.com\n\n".into(),
            "no '='",
        ),
        ("1 MiB value", huge, "exceeds"),
        (
            "not UTF-8",
            "protocol=https\nhost=gith\u{fffd}b.com\n".replace('\u{fffd}', "\u{ff}"),
            "",
        ),
    ];
    for action in ["get", "store", "erase"] {
        for (name, input, want) in &cases {
            let (sb, before) = sandbox_with_cache();
            let r = sb.run(&[action], input);
            if *name == "not UTF-8" {
                // \u{ff} is valid UTF-8 as written by Rust; bytes are checked in the unit tests.
                continue;
            }
            r.assert_one_line_error(65, want);
            assert!(
                r.stderr.starts_with("git-credential-molecule: bad-input: "),
                "{action} {name}: {}",
                r.stderr
            );
            assert_eq!(
                sb.tokens_json().unwrap(),
                before,
                "{action} {name}: cache changed"
            );
        }
    }
}

#[test]
fn raw_invalid_utf8_is_rejected() {
    let (sb, before) = sandbox_with_cache();
    let r = sb.run_bytes(&["get"], b"protocol=https\nhost=git\xffhub.com\n\n");
    r.assert_one_line_error(65, "not UTF-8");
    assert_eq!(sb.tokens_json().unwrap(), before);
}

#[test]
fn unknown_action_is_silently_ignored_as_git_asks() {
    // gitcredentials(7): "If a helper receives any other operation, it should silently ignore
    // the request." Nothing printed, exit 0, cache untouched.
    let (sb, before) = sandbox_with_cache();
    for action in ["frobnicate", "capabilities", "list"] {
        let r = sb.run(&[action], "protocol=https\nhost=github.com\n\n");
        assert_eq!(
            (r.code, r.stdout.as_str(), r.stderr.as_str()),
            (0, "", ""),
            "{action}"
        );
    }
    assert_eq!(sb.tokens_json().unwrap(), before);
}

#[test]
fn no_action_is_a_one_line_usage_error() {
    let (sb, before) = sandbox_with_cache();
    let r = sb.run(&[], "protocol=https\nhost=github.com\n\n");
    r.assert_one_line_error(2, "no action given");
    assert_eq!(sb.tokens_json().unwrap(), before);
}

#[test]
fn requests_not_ours_get_nothing_and_touch_nothing() {
    let sb = Sandbox::new();
    for input in [
        "protocol=http\nhost=github.com\n\n",
        "protocol=https\nhost=github.com.evil.test\n\n",
        "protocol=https\nhost=evilgithub.com\n\n",
        "protocol=https\nhost=github.com.\n\n",
        "protocol=https\nhost=github.com:8443\n\n",
        "protocol=https\n\n",
        "host=github.com\n\n",
        "url=https:///acme/repo.git\n\n",
        "url=https://github.com@evil.test/x\n\n",
        "url=https://evil.test%2fgithub.com/\n\n",
        "",
    ] {
        let r = sb.run(&["get"], input);
        assert_eq!(
            (r.code, r.stdout.as_str()),
            (0, ""),
            "{input:?}: {}",
            r.stderr
        );
    }
    assert!(
        !sb.cache.exists(),
        "an unanswered request created the cache"
    );
}

#[test]
fn url_attribute_and_case_insensitive_host_are_answered() {
    let sb = Sandbox::new();
    let token = long_token("url");
    sb.write_cache(&[("github.com", &token, 3000, false)]);
    for input in [
        "url=https://github.com/acme/repo.git\n\n",
        "protocol=https\nhost=GitHub.COM\n\n",
        "protocol=https\nhost=github.com:443\n\n",
        "capability[]=state\nprotocol=https\nhost=github.com\nwwwauth[]=Basic realm=\"GitHub\"\nquit=0\n\n",
    ] {
        let r = sb.run(&["get"], input);
        assert_eq!(r.code, 0, "{input:?}: {}", r.stderr);
        assert_eq!(r.password(), Some(token.as_str()), "{input:?}");
        assert!(
            r.stdout.starts_with("username=x-access-token\npassword="),
            "{input:?}"
        );
    }
}

#[test]
fn git_that_announces_authtype_gets_an_ephemeral_basic_credential() {
    // git >= 2.46 announces capability[]=authtype; the answer then keeps storage helpers from
    // persisting the token (see tests/it/git.rs for the end-to-end check with real git).
    let sb = Sandbox::new();
    let token = long_token("eph");
    sb.write_cache(&[("github.com", &token, 3000, false)]);
    let r = sb.run(
        &["get"],
        "capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=github.com\n\n",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(&lines[..2], ["capability[]=authtype", "authtype=Basic"]);
    let credential = lines[2].strip_prefix("credential=").unwrap();
    let decoded = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, credential).unwrap(),
    )
    .unwrap();
    assert_eq!(decoded, format!("x-access-token:{token}"));
    assert_eq!(lines[3], "ephemeral=1");
    assert!(lines[4].starts_with("password_expiry_utc="));
    assert!(
        !r.stdout.contains("password="),
        "no plain password alongside"
    );
    // erase with that credential marks the token suspect.
    let r = sb.run(&["erase"], &format!("capability[]=authtype\nprotocol=https\nhost=github.com\nauthtype=Basic\ncredential={credential}\nephemeral=1\n\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sb.entry("github.com").unwrap()["suspect"], true);
}

#[test]
fn store_changes_nothing() {
    let (sb, before) = sandbox_with_cache();
    let r = sb.run(
        &["store"],
        "protocol=https\nhost=github.com\nusername=x-access-token\npassword=ghs_other\n\n",
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, ""));
    assert_eq!(sb.tokens_json().unwrap(), before);
}

//! Named regression tests for the known classes of credential-protocol leaks, through the real
//! git binary where git is involved. In each, a token for github.com is cached; the assertion
//! is that it never comes out for anything but `https://github.com`.

use std::io::Write;
use std::process::{Command, Stdio};

use molecule_tests::gitcmd;

use crate::support::{BIN, Sandbox, long_token};

/// A sandbox with a github.com token, and git wired to the helper only.
fn sandbox() -> (Sandbox, String) {
    let mut sb = Sandbox::new();
    sb.env("MOLECULE_LOG", "warn");
    let token = long_token("cve");
    sb.write_cache(&[("github.com", &token, 3000, false)]);
    (sb, token)
}

fn git(sb: &Sandbox) -> Command {
    let mut c = gitcmd::git(&sb.home);
    c.args(["-c", "credential.helper=", "-c"])
        .arg(format!("credential.helper=!{BIN}"))
        .env("CONFIGS_DIR", &sb.configs)
        .env("PLATFORM_URL", "http://127.0.0.1:9")
        .env("MOLECULE_LOG", "warn");
    c
}

/// `git credential fill` with raw `input`; everything git and the helper printed.
fn fill(sb: &Sandbox, input: &[u8]) -> (bool, String) {
    let mut child = git(sb)
        .args(["credential", "fill"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `git credential fill` for a URL, as git would be asked by a remote that names it.
fn fill_url(sb: &Sandbox, url: &str) -> (bool, String) {
    fill(sb, format!("url={url}\n\n").as_bytes())
}

fn assert_no_token(sb: &Sandbox, token: &str, what: &str, (ok, text): (bool, String)) {
    assert!(!text.contains(token), "{what}: the token came out");
    assert!(
        !(ok && text.contains("password=")),
        "{what}: git found a credential: {text}"
    );
    sb.assert_no_secret(&text);
}

/// The helper answers the real thing (so the refusals below are not vacuous).
fn assert_answers(sb: &Sandbox, token: &str, url: &str) {
    let (ok, text) = fill_url(sb, url);
    assert!(
        ok && text.contains(&format!("password={token}\n")),
        "{url} should be answered: {text}"
    );
}

#[test]
fn cve_2020_5260_newline_in_url_cannot_inject_a_host() {
    let (sb, token) = sandbox();
    assert_answers(&sb, &token, "https://github.com/acme/app.git");
    for url in [
        "https://evil.test/?%0ahost=github.com",
        "https://evil.test%0ahost=github.com/",
        "https://evil.test/x%0aprotocol=https%0ahost=github.com",
    ] {
        assert_no_token(&sb, &token, url, fill_url(&sb, url));
        // And git clone with such a URL (git refuses it before any request).
        let out = git(&sb)
            .args(["clone", "-q", url])
            .arg(sb.path("x"))
            .output()
            .unwrap();
        assert_no_token(
            &sb,
            &token,
            url,
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ),
        );
    }
}

#[test]
fn cve_2020_11008_missing_host_or_protocol_is_never_a_wildcard() {
    let (sb, token) = sandbox();
    for url in [
        "https:///acme/app.git",
        "https://",
        "https:///",
        "https://:443/",
        "///github.com/",
        "https://@/",
    ] {
        assert_no_token(&sb, &token, url, fill_url(&sb, url));
    }
    // Straight to the helper, as a malicious caller could: no host, no protocol, empty values.
    for input in [
        "protocol=https\n\n",
        "host=github.com\n\n",
        "protocol=https\nhost=\n\n",
        "protocol=\nhost=github.com\n\n",
        "url=https:///\n\n",
        "\n",
    ] {
        let r = sb.run(&["get"], input);
        assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{input:?}");
    }
}

#[test]
fn cve_2024_52006_and_50338_a_lone_carriage_return_is_rejected() {
    let (sb, token) = sandbox();
    for url in [
        "https://github.com%0d.evil.test/",
        "https://evil.test/%0dhost=github.com",
    ] {
        assert_no_token(&sb, &token, url, fill_url(&sb, url));
    }
    // A raw CR reaching the helper (a git without the fix, or another caller): refused outright.
    for input in [
        "protocol=https\nhost=evil.test\rhost=github.com\n\n",
        "protocol=https\rhost=github.com\n\n",
        "url=https://evil.test/\r\nhost=github.com\n\n",
    ] {
        let r = sb.run(&["get"], input);
        assert_eq!(r.stdout, "", "{input:?}");
        assert_eq!(r.code, 65, "{input:?}: {}", r.stderr);
        assert!(r.stderr.contains("carriage return"), "{}", r.stderr);
    }
}

#[test]
fn cve_2024_53263_git_lfs_style_injected_lines_do_not_override_the_url() {
    let (sb, _token) = sandbox();
    // What git-lfs sent before its fix: a url whose decoded newline became a second line.
    for input in [
        "protocol=https\nhost=evil.test\nurl=https://evil.test/\nhost=github.com\n\n",
        "url=https://evil.test/repo.git\nhost=github.com\n\n",
        "url=https://evil.test/repo.git\nprotocol=https\nhost=github.com\npath=acme/app.git\n\n",
        "protocol=https\nhost=evil.test\nhost=github.com\n\n",
    ] {
        let r = sb.run(&["get"], input);
        assert_eq!(r.stdout, "", "{input:?}");
        assert_eq!(r.code, 65, "{input:?}");
        assert!(r.stderr.contains("two different values"), "{}", r.stderr);
    }
}

#[test]
fn hosts_that_only_look_like_github_com_get_nothing() {
    let (sb, token) = sandbox();
    // The same host, spelled differently: answered (case, default port, userinfo). In
    // `evil.test\@github.com` git and curl both read `evil.test\` as the user name, and both
    // decode `github%2ecom`: each connects to github.com (checked with curl -v), so the token
    // goes where it belongs.
    for url in [
        "https://GitHub.COM/acme/app.git",
        "https://github.com:443/acme/app.git",
        "https://someone@github.com/x",
        "https://evil.test\\@github.com/",
        "https://github%2ecom/",
    ] {
        assert_answers(&sb, &token, url);
    }
    for url in [
        "https://github.com.evil.test/acme/app.git",   // suffix
        "https://evil-github.com/acme/app.git",        // prefix
        "https://evilgithub.com/",                     // glued prefix
        "https://github.com./acme/app.git",            // trailing dot
        "https://github.com:8443/acme/app.git",        // another port
        "https://github.com:0/",                       // a bogus port
        "https://x-access-token@evil.test/github.com", // userinfo naming the host
        "https://github.com@evil.test/",               // host in userinfo
        "https://evil.test#@github.com/",              // fragment trick (curl goes to evil.test)
        "https://gíthub.com/",                         // IDN lookalike (í)
        "https://xn--gthub-2ra.com/",                  // its punycode
        "https://github%2ecom.evil.test/",             // percent-encoded lookalike
        "https://www.github.com/",                     // a subdomain
        "http://github.com/acme/app.git",              // not https
        "ftp://github.com/",                           // not https
    ] {
        assert_no_token(&sb, &token, url, fill_url(&sb, url));
    }
}

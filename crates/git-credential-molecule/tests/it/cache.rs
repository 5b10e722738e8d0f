//! The cache under hostile conditions and the `erase`/margin rules of DESIGN.md.

use std::os::unix::fs::PermissionsExt;

use httpmock::prelude::*;

use crate::support::{ADMIN_PATH, Sandbox, long_token, mode, token_body};

/// A mock on `server` that answers anything; its call count must stay 0.
fn forbid(server: &MockServer) -> httpmock::Mock<'_> {
    server.mock(|when, then| {
        when.any_request();
        then.status(200).body(token_body("ghs_never", 3600));
    })
}

#[test]
fn hostile_cache_is_refused_and_left_untouched() {
    // Chowns files to another uid.
    if !molecule_tests::skip::require_root("cache::hostile_cache_is_refused_and_left_untouched") {
        return;
    }
    type Spoil = fn(&Sandbox);
    let cases: Vec<(&str, Spoil, &str)> = vec![
        (
            "0644 file",
            |sb| {
                std::fs::set_permissions(
                    sb.cache.join("tokens.json"),
                    std::fs::Permissions::from_mode(0o644),
                )
                .unwrap()
            },
            "mode 644",
        ),
        (
            "0755 dir",
            |sb| {
                std::fs::set_permissions(&sb.cache, std::fs::Permissions::from_mode(0o755)).unwrap()
            },
            "mode 755",
        ),
        (
            "symlinked tokens.json",
            |sb| {
                let elsewhere = sb.path("elsewhere.json");
                std::fs::rename(sb.cache.join("tokens.json"), &elsewhere).unwrap();
                std::os::unix::fs::symlink(&elsewhere, sb.cache.join("tokens.json")).unwrap();
            },
            "symlink",
        ),
        (
            "symlinked directory",
            |sb| {
                let real = sb.path("real-cache");
                std::fs::rename(&sb.cache, &real).unwrap();
                std::os::unix::fs::symlink(&real, &sb.cache).unwrap();
            },
            "symlink",
        ),
        (
            "corrupt JSON",
            |sb| {
                std::fs::write(
                    sb.cache.join("tokens.json"),
                    b"{\"version\":1,\"entries\":{\"github.com\":{\"token\":\"ghs_tr",
                )
                .unwrap()
            },
            "not a valid token cache",
        ),
        (
            "file of another owner",
            |sb| {
                std::os::unix::fs::chown(sb.cache.join("tokens.json"), Some(65534), Some(65534))
                    .unwrap()
            },
            "owned by uid 65534",
        ),
        (
            "directory of another owner",
            |sb| std::os::unix::fs::chown(&sb.cache, Some(65534), Some(65534)).unwrap(),
            "owned by uid 65534",
        ),
    ];
    for (name, spoil, want) in cases {
        let server = MockServer::start();
        let mock = forbid(&server);
        let mut sb = Sandbox::new();
        sb.env("MOLECULE_LOG", "info").platform(&server.base_url());
        sb.write_cache(&[("github.com", &long_token("victim"), 3000, false)]);
        spoil(&sb);
        let snapshot = snapshot(&sb);
        for action in ["get", "erase"] {
            let input = format!(
                "protocol=https\nhost=github.com\npassword={}\n\n",
                long_token("victim")
            );
            let r = sb.run(&[action], &input);
            r.assert_one_line_error(78, want);
            assert_eq!(
                snapshot,
                self::snapshot(&sb),
                "{name}/{action}: cache changed"
            );
        }
        assert_eq!(mock.calls(), 0, "{name}: the platform was called");
    }
}

/// Everything observable about the cache: each file's bytes, mode and link target.
fn snapshot(sb: &Sandbox) -> Vec<(String, u32, Option<std::path::PathBuf>, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(sb.dir.path())
        .unwrap()
        .chain(std::fs::read_dir(&sb.cache).unwrap())
    {
        let p = entry.unwrap().path();
        let link = std::fs::read_link(&p).ok();
        let bytes = if p.is_file() {
            std::fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        out.push((p.display().to_string(), mode(&p), link, bytes));
    }
    out.sort();
    out
}

#[test]
fn missing_cache_directory_is_created_0700_whatever_the_umask() {
    let server = MockServer::start();
    server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200).body(token_body("ghs_umask", 3600));
    });
    let mut sb = Sandbox::new();
    sb.platform(&server.base_url());
    let bin = crate::support::BIN;
    let r = sb.run(&["exec", "--", "true"], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    std::fs::remove_dir_all(&sb.cache).unwrap();
    let mut c = sb.command(&[]);
    c.env("MOLECULE_LOG", "warn");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000; printf 'protocol=https\\nhost=github.com\\n\\n' | {bin} get"
        ))
        .env_clear()
        .envs(c.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(mode(&sb.cache), 0o700);
    assert_eq!(mode(&sb.cache.join("tokens.json")), 0o600);
    for lock in ["tokens.lock", "refresh.lock"] {
        assert_eq!(mode(&sb.cache.join(lock)), 0o600, "{lock}");
    }
}

#[test]
fn erase_of_the_served_token_makes_the_next_get_fetch() {
    let server = MockServer::start();
    let first = long_token("first");
    let second = long_token("second");
    let mut mock = server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200).body(token_body(&first, 3600));
    });
    let mut sb = Sandbox::new();
    sb.platform(&server.base_url());
    sb.secret(&first);
    sb.secret(&second);
    assert_eq!(sb.get().password(), Some(first.as_str()));

    // Another password: nothing changes, byte for byte.
    let before = sb.tokens_json().unwrap();
    let r = sb.run(
        &["erase"],
        &format!("protocol=https\nhost=github.com\nusername=x-access-token\npassword={second}\n\n"),
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, ""));
    assert_eq!(sb.tokens_json().unwrap(), before);
    // The right password for another host: nothing changes.
    sb.run(
        &["erase"],
        &format!("protocol=https\nhost=evil.test\npassword={first}\n\n"),
    );
    assert_eq!(sb.tokens_json().unwrap(), before);

    // The served token: marked suspect, and the next get fetches.
    let r = sb.run(
        &["erase"],
        &format!("protocol=https\nhost=github.com\nusername=x-access-token\npassword={first}\n\n"),
    );
    assert_eq!(r.code, 0);
    assert_eq!(sb.entry("github.com").unwrap()["suspect"], true);
    mock.delete();
    let mock = server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200).body(token_body(&second, 3600));
    });
    assert_eq!(sb.get().password(), Some(second.as_str()));
    mock.assert_calls(1);
    assert_eq!(sb.entry("github.com").unwrap()["suspect"], false);
}

#[test]
fn a_suspect_token_is_never_served_even_degraded() {
    let mut sb = Sandbox::new();
    sb.env("MOLECULE_LOG", "info");
    let bad = long_token("rejected");
    sb.write_cache(&[("github.com", &bad, 3000, true)]);
    let r = sb.get();
    r.assert_one_line_error(69, "transient");
}

#[test]
fn same_token_fetched_again_clears_the_suspect_flag() {
    let server = MockServer::start();
    let token = long_token("same");
    server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200).body(token_body(&token, 3000));
    });
    let mut sb = Sandbox::new();
    sb.platform(&server.base_url());
    sb.write_cache(&[("github.com", &token, 3000, true)]);
    assert_eq!(sb.get().password(), Some(token.as_str()));
    assert_eq!(sb.entry("github.com").unwrap()["suspect"], false);
}

#[test]
fn four_minutes_left_with_a_five_minute_margin_is_refreshed_not_served() {
    let server = MockServer::start();
    let new = long_token("new");
    let mock = server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200).body(token_body(&new, 3600));
    });
    let mut sb = Sandbox::new();
    sb.platform(&server.base_url())
        .env("TOKEN_REFRESH_MARGIN_SEC", "300");
    sb.secret(&new);
    sb.write_cache(&[("github.com", &long_token("old"), 240, false)]);
    let r = sb.get();
    assert_eq!(r.password(), Some(new.as_str()));
    mock.assert_calls(1);
    assert!(
        !r.stderr.contains("WARN"),
        "a successful refresh is not a warning: {}",
        r.stderr
    );
}

#[test]
fn expired_token_is_not_served() {
    let mut sb = Sandbox::new();
    sb.env("MOLECULE_LOG", "info");
    sb.write_cache(&[("github.com", &long_token("dead"), -5, false)]);
    sb.get().assert_one_line_error(69, "no token");
}

#[test]
fn a_fresh_cache_hit_never_contacts_the_platform() {
    let server = MockServer::start();
    let mock = forbid(&server);
    let mut sb = Sandbox::new();
    sb.platform(&server.base_url());
    let token = long_token("hit");
    sb.write_cache(&[("github.com", &token, 3000, false)]);
    for _ in 0..3 {
        assert_eq!(sb.get().password(), Some(token.as_str()));
    }
    assert_eq!(mock.calls(), 0);
}

//! The human commands: `configure`, `status`, `token`, `exec`.

use std::collections::BTreeSet;
use std::process::Command;

use httpmock::prelude::*;

use crate::support::{ADMIN_PATH, BIN, Sandbox, long_token, token_body};

fn helpers(sb: &Sandbox, file: &std::path::Path, host: &str) -> Vec<String> {
    let out = Command::new("git")
        .env("HOME", &sb.home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["config", "--file"])
        .arg(file)
        .args(["--get-all", &format!("credential.https://{host}.helper")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn configure_resets_other_helpers_and_is_idempotent() {
    let mut sb = Sandbox::new();
    sb.env("MOLECULE_GIT_HOSTS", "github.com,ghe.example.com:8443");
    let file = sb.path("gitconfig");
    // Helpers a machine may already have for the host: they must not survive.
    std::fs::write(
        &file,
        "[credential \"https://github.com\"]\n\thelper = store\n\thelper = !gh auth git-credential\n",
    )
    .unwrap();
    let file_arg = file.to_str().unwrap();
    let r = sb.run(&["configure", "--file", file_arg], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        format!(
            "credential.https://github.com.helper: configured (--file {file_arg})\n\
             credential.https://ghe.example.com:8443.helper: configured (--file {file_arg})\n"
        )
    );
    // The default is the absolute path of the binary that ran (DESIGN.md: git starts it
    // without a second git process).
    for host in ["github.com", "ghe.example.com:8443"] {
        assert_eq!(helpers(&sb, &file, host), ["", BIN], "{host}");
    }
    let before = std::fs::read(&file).unwrap();
    let r = sb.run(&["configure", "--file", file_arg], "");
    assert!(
        r.stdout.contains("github.com.helper: already configured"),
        "{}",
        r.stdout
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "a second run changes nothing"
    );

    let r = sb.run(
        &[
            "configure",
            "--file",
            file_arg,
            "--host",
            "GitHub.com",
            "--helper",
            "/opt/bin/git-credential-molecule",
        ],
        "",
    );
    assert_eq!(r.code, 0);
    assert_eq!(
        helpers(&sb, &file, "github.com"),
        ["", "/opt/bin/git-credential-molecule"]
    );

    // The lookup form on request, and a later default run migrates it to the path.
    let r = sb.run(
        &["configure", "--file", file_arg, "--helper", "molecule"],
        "",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    for host in ["github.com", "ghe.example.com:8443"] {
        assert_eq!(helpers(&sb, &file, host), ["", "molecule"], "{host}");
    }
    let r = sb.run(&["configure", "--file", file_arg], "");
    assert_eq!(
        r.stdout,
        format!(
            "credential.https://github.com.helper: configured (--file {file_arg})\n\
             credential.https://ghe.example.com:8443.helper: configured (--file {file_arg})\n"
        )
    );
    for host in ["github.com", "ghe.example.com:8443"] {
        assert_eq!(helpers(&sb, &file, host), ["", BIN], "{host}");
    }

    let r = sb.run(
        &["configure", "--file", file_arg, "--host", "evil test"],
        "",
    );
    assert_eq!(r.code, 78);
}

#[test]
fn configure_global_writes_the_users_gitconfig() {
    let sb = Sandbox::new();
    let r = sb.run(&["configure"], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        helpers(&sb, &sb.home.join(".gitconfig"), "github.com"),
        ["", BIN]
    );
}

/// Without git, `configure` fails as a missing program (exit 69, one line), not as a
/// configuration error; `doctor` reports it as a problem with its fix and goes on.
#[test]
fn configure_and_doctor_without_git_name_the_missing_program() {
    let mut sb = Sandbox::new();
    let empty = sb.path("no-git-here");
    std::fs::create_dir_all(&empty).unwrap();
    sb.env("PATH", empty.to_str().unwrap());
    let r = sb.run(&["configure", "--helper", "molecule"], "");
    r.assert_one_line_error(
        69,
        "missing-program: cannot start git config: git not found",
    );

    let r = sb.run(&["doctor", "--json"], "");
    assert_eq!(r.code, 1, "{}", r.stderr);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let git = &report["findings"][0];
    assert_eq!(git["check"], "git");
    assert_eq!(git["level"], "problem");
    assert_eq!(
        git["detail"],
        "git is not installed (cannot start git: git not found)"
    );
    assert_eq!(git["fix"], "install git (apt-get install git)");
    assert_eq!(report["git_version"], serde_json::Value::Null);
    // The other checks still ran.
    let checks: BTreeSet<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert!(
        checks.contains("helpers") && checks.contains("source"),
        "{checks:?}"
    );
}

/// Installed behind a symlink in a directory whose name sh would split, and started by name
/// from PATH: `configure` registers the symlink (it survives an upgrade that repoints it), in
/// the `!'…'` form sh needs, and real git runs it.
#[test]
fn configure_registers_the_installed_path_in_a_form_git_runs() {
    let sb = Sandbox::new();
    let token = long_token("installed");
    sb.write_cache(&[("github.com", &token, 3000, false)]);
    let bin = sb.path("my tools/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let link = bin.join("git-credential-molecule");
    std::os::unix::fs::symlink(BIN, &link).unwrap();

    let mut by_name = sb.command(&["configure"]);
    // Found on PATH by name, as a shell or the entrypoint starts it.
    let path = format!("{}:/usr/bin:/bin", bin.display());
    by_name.env("PATH", &path);
    let out = Command::new("git-credential-molecule")
        .args(by_name.get_args())
        .env_clear()
        .envs(by_name.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value = format!("!'{}'", link.display());
    assert_eq!(
        helpers(&sb, &sb.home.join(".gitconfig"), "github.com"),
        ["".to_owned(), value]
    );

    let mut fill = molecule_tests::gitcmd::git(&sb.home);
    fill.args(["credential", "fill"])
        .env("CONFIGS_DIR", &sb.configs)
        .env("PLATFORM_URL", "http://127.0.0.1:9")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = fill.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"url=https://github.com/acme/app.git\n\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("password={token}\n")),
        "git did not run the registered helper: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn status_reports_without_the_token() {
    let mut sb = Sandbox::new();
    sb.env("MOLECULE_GIT_HOSTS", "github.com,ghe.example.com");
    let r = sb.run(&["status"], "");
    assert_eq!(r.code, 1, "nothing cached yet: {}", r.stdout);
    assert!(r.stdout.contains("(not created yet)"));
    assert!(!sb.cache.exists(), "status must not create the cache");

    let token = long_token("status");
    sb.write_cache(&[
        ("github.com", &token, 1800, false),
        ("ghe.example.com", &long_token("s2"), 120, false),
    ]);
    let r = sb.run(&["status", "--json"], "");
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(!r.stdout.contains(&token));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["hosts"][0]["host"], "github.com");
    assert_eq!(v["hosts"][0]["state"], "fresh");
    assert_eq!(v["hosts"][0]["source"], "platform");
    assert_eq!(v["hosts"][0]["token_length"], token.len());
    let left = v["hosts"][0]["expires_in_sec"].as_i64().unwrap();
    assert!((1795..=1800).contains(&left), "{left}");
    assert_eq!(v["hosts"][1]["state"], "expiring");
    assert_eq!(v["daemon"], serde_json::Value::Null);

    let r = sb.run(&["status"], "");
    let line = format!(
        "github.com: fresh: platform token ({} bytes), expires ",
        token.len()
    );
    assert!(r.stdout.contains(&line), "{}", r.stdout);
    assert!(!r.stdout.contains(&token));

    sb.write_cache(&[("github.com", &token, 1800, true)]);
    let r = sb.run(&["status", "--json"], "");
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["hosts"][0]["state"], "suspect");
}

#[test]
fn token_prints_a_valid_token_and_falls_back() {
    let mut sb = Sandbox::new();
    let cached = long_token("cli");
    sb.write_cache(&[("github.com", &cached, 1800, false)]);
    let r = sb.run(&["token"], "");
    assert_eq!((r.code, r.stdout.clone()), (0, format!("{cached}\n")));

    let r = sb.run(&["token", "--host", "other.example"], "");
    assert_eq!(r.code, 78, "only configured hosts");

    // Platform down, nothing cached: the fallback, with exit 0 (the whole source order).
    let fallback = sb.secret(&long_token("fb"));
    std::fs::remove_file(sb.cache.join("tokens.json")).unwrap();
    sb.env("GITHUB_TOKEN", &fallback);
    let r = sb.run(&["token"], "");
    assert_eq!((r.code, r.stdout.clone()), (0, format!("{fallback}\n")));
    sb.unset("GITHUB_TOKEN");
    let r = sb.run(&["token"], "");
    assert_eq!((r.code, r.stdout.as_str()), (69, ""));
}

#[test]
fn token_formats_print_exactly() {
    let mut sb = Sandbox::new();
    let cached = long_token("fmt");
    sb.write_cache(&[("github.com", &cached, 1800, false)]);
    let expires_at = sb.entry("github.com").unwrap()["expires_at"]
        .as_str()
        .unwrap()
        .to_owned();
    for (format, want) in [
        ("raw", format!("{cached}\n")),
        (
            "header",
            format!("{{\"Authorization\":\"Bearer {cached}\"}}\n"),
        ),
        ("env", format!("GH_TOKEN={cached}\nGITHUB_TOKEN={cached}\n")),
    ] {
        let r = sb.run(&["token", "--format", format], "");
        assert_eq!((r.code, r.stderr.as_str()), (0, ""), "{format}");
        assert!(r.stdout == want, "--format {format} printed something else");
    }
    // json: expires_in is counted when printed (whole seconds of the 1800 left).
    let r = sb.run(&["token", "--format", "json"], "");
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let head = format!("{{\"token\":\"{cached}\",\"expires_at\":\"{expires_at}\",\"expires_in\":");
    let tail = ",\"source\":\"platform\"}\n";
    assert!(
        r.stdout.starts_with(&head) && r.stdout.ends_with(tail),
        "--format json printed something else"
    );
    let expires_in: i64 = r.stdout[head.len()..r.stdout.len() - tail.len()]
        .parse()
        .expect("expires_in is a whole number");
    assert!(
        (1790..=1800).contains(&expires_in),
        "expires_in {expires_in}"
    );
    // The fallback: its expiry is unknown, and its source says what it is.
    let fallback = sb.secret(&long_token("fbfmt"));
    std::fs::remove_file(sb.cache.join("tokens.json")).unwrap();
    sb.env("GITHUB_TOKEN", &fallback);
    let r = sb.run(&["token", "--format", "json"], "");
    assert_eq!(r.code, 0);
    assert!(
        r.stdout
            == format!(
                "{{\"token\":\"{fallback}\",\"expires_at\":null,\"expires_in\":null,\"source\":\"fallback\"}}\n"
            ),
        "the fallback's json"
    );
    let r = sb.run(&["token", "--format", "yaml"], "");
    assert_eq!((r.code, r.stdout.as_str()), (2, ""));
}

#[test]
fn help_lists_a_commands_own_options_first_then_the_shared_ones_by_heading() {
    let sb = Sandbox::new();
    let r = sb.run(&["token", "-h"], "");
    assert_eq!(r.code, 0);
    let at = |needle: &str| {
        r.stdout
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from:\n{}", r.stdout))
    };
    let order = [
        "Options:",
        "--host <HOST>",
        "--format <FORMAT>",
        "--reveal",
        "\nPlatform:\n",
        "--platform-url <URL>",
        "\nGitHub App:\n",
        "--app-id <ID>",
        "\nCache and hosts:\n",
        "--cache-dir <DIR>",
        "\nLogging:\n",
        "--log <FILTER>",
    ];
    let positions: Vec<usize> = order.iter().map(|n| at(n)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "out of order: {order:?} at {positions:?}"
    );
}

#[test]
fn token_refuses_a_terminal_without_reveal() {
    // `script` runs the command on a real pseudo-terminal and copies what it wrote.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        molecule_tests::skip::skip(
            "commands::token_refuses_a_terminal_without_reveal",
            "util-linux `script` (for a pseudo-terminal) is not installed",
        );
        return;
    }
    let sb = Sandbox::new();
    let cached = long_token("tty");
    sb.write_cache(&[("github.com", &cached, 1800, false)]);
    let on_a_terminal = |args: &str| {
        let helper = sb.command(&[]);
        let mut script = std::process::Command::new("script");
        script
            .args(["--quiet", "--return", "--command"])
            .arg(format!("{} {args}", crate::support::BIN))
            .arg("/dev/null")
            .env_clear()
            .stdin(std::process::Stdio::null());
        for (key, value) in helper.get_envs() {
            if let Some(value) = value {
                script.env(key, value);
            }
        }
        let o = script.output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (code, shown) = on_a_terminal("token");
    assert_eq!(code, Some(64));
    assert!(!shown.contains(&cached), "the token reached the terminal");
    assert_eq!(
        shown.trim_end(),
        "git-credential-molecule: usage: refusing to print a token to a terminal; pipe or redirect it, or pass --reveal"
    );
    let (code, shown) = on_a_terminal("token --reveal");
    assert_eq!(code, Some(0));
    assert_eq!(shown.trim_end(), cached);
}

#[test]
fn exec_passes_a_fresh_token_in_the_environment_only() {
    let server = MockServer::start();
    let token = long_token("exec");
    server.mock(|when, then| {
        when.path(ADMIN_PATH);
        then.status(200).body(token_body(&token, 3600));
    });
    let mut sb = Sandbox::new();
    sb.platform(&server.base_url())
        .env("GH_TOKEN", "ghs_stale_boot_token");
    sb.secret(&token);
    let r = sb.run(
        &["exec", "--", "sh", "-c", "[ \"$GH_TOKEN\" = \"$GITHUB_TOKEN\" ] && printf %s \"$GH_TOKEN\" | wc -c && echo \"args:$*\"", "x", "--flag"],
        "",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, format!("{}\nargs:--flag\n", token.len()));
    let r = sb.run(&["exec", "--", "sh", "-c", "exit 7"], "");
    assert_eq!(
        r.code, 7,
        "exec replaces the process: the command's exit code is ours"
    );
    let r = sb.run(&["exec", "--", "/nonexistent/cmd"], "");
    assert_eq!(r.code, 127);
    assert!(r.stderr.contains("cannot run /nonexistent/cmd"));
}

//! The redaction proof: every binary and subcommand, at trace level, in text and in JSON, on
//! success and on every error path we can provoke (platform errors that echo the token, a
//! corrupt cache holding it, hostile input carrying it, gh failing with it on its stderr,
//! clap rejecting it as an argument, a panic mentioning it), with a token of GitHub's newest
//! shape: `ghs_` and 500 characters including `.` and `-`. It never appears where it must not.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{bin_dir, wait_for};

/// The known token: 500 characters after `ghs_`, with `.`, `_` and `-`.
fn token() -> String {
    let mut t = String::from("ghs_");
    let alphabet = b"AbCdEf0123456789.-_xYz";
    for i in 0..500 {
        t.push(alphabet[(i * 7 + 3) % alphabet.len()] as char);
    }
    t
}

/// A fixed slice of the token's body, long enough to be unmistakable in any output.
fn fingerprint(t: &str) -> &str {
    &t[100..160]
}

struct Stage {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Stage {
    fn new(platform_url: &str, format: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("configs")).unwrap();
        molecule_tests::write_secret(&dir.path().join("configs/.auth_token"), "redaction-bearer");
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        let p = |r: &str| dir.path().join(r).display().to_string();
        let env = vec![
            ("HOME".into(), p("")),
            ("PATH".into(), format!("{}:/bin:/usr/bin", p("bin"))),
            ("MOLECULE_TOKEN_CACHE_DIR".into(), p("cache")),
            ("CONFIGS_DIR".into(), p("configs")),
            ("PLATFORM_URL".into(), platform_url.into()),
            ("MOLECULE_LOG".into(), "trace".into()),
            ("MOLECULE_LOG_FORMAT".into(), format.into()),
            ("MOLECULE_HTTP_TIMEOUT_SEC".into(), "2".into()),
            ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ];
        Self { dir, env }
    }

    fn run(
        &self,
        bin: &str,
        args: &[&str],
        stdin: &str,
        extra: &[(&str, &str)],
    ) -> (i32, String, String) {
        let mut c = Command::new(bin_dir().join(bin));
        c.args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(extra.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn write_cache(&self, raw: &str) {
        let cache = self.dir.path().join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(cache.join("tokens.json"), raw).unwrap();
        std::fs::set_permissions(
            cache.join("tokens.json"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
}

fn cache_doc(t: &str, expires: &str) -> String {
    format!(
        r#"{{"version":1,"entries":{{"github.com":{{"token":"{t}","expires_at":"{expires}","fetched_at":"2026-01-01T00:00:00Z","source":"platform","suspect":false}}}}}}"#
    )
}

/// A platform answering `status` with `body` (which may carry the token).
fn platform(
    status: u16,
    body: String,
) -> (
    std::thread::JoinHandle<()>,
    String,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let h = std::thread::spawn(move || {
        use std::io::Read;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf);
                    let reason = if status == 200 { "OK" } else { "Error" };
                    let _ = write!(
                        s,
                        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    (h, url, stop)
}

fn expires_in(secs: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::seconds(secs))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn no_binary_or_subcommand_lets_the_token_out() {
    let t = token();
    let fp = fingerprint(&t).to_owned();
    let ok_body = format!(r#"{{"token":"{t}","expires_at":"{}"}}"#, expires_in(3600));
    let err_body = format!(r#"{{"error":"token refresh failed for {t}"}}"#);
    let (h_ok, ok_url, stop_ok) = platform(200, ok_body);
    let (h_err, err_url, stop_err) = platform(500, err_body);
    let mut checked = 0;
    for format in ["text", "json"] {
        let check =
            |what: &str, (code, stdout, stderr): (i32, String, String), stdout_may: bool| {
                assert!(
                    !stderr.contains(&fp),
                    "{format}/{what}: the token reached stderr (exit {code})"
                );
                if !stdout_may {
                    assert!(
                        !stdout.contains(&fp),
                        "{format}/{what}: the token reached stdout (exit {code})"
                    );
                }
                if format == "json" {
                    for line in stderr.lines().filter(|l| l.starts_with('{')) {
                        serde_json::from_str::<serde_json::Value>(line)
                            .unwrap_or_else(|_| panic!("{what}: not JSON: {line}"));
                    }
                }
            };
        let req = "protocol=https\nhost=github.com\n\n";

        // The helper, happy paths: a miss (mint), a hit, each command.
        let s = Stage::new(&ok_url, format);
        check(
            "get (miss, mint)",
            s.run("git-credential-molecule", &["get"], req, &[]),
            true,
        );
        check(
            "get (hit)",
            s.run("git-credential-molecule", &["get"], req, &[]),
            true,
        );
        check(
            "store",
            s.run(
                "git-credential-molecule",
                &["store"],
                &format!("protocol=https\nhost=github.com\npassword={t}\n\n"),
                &[],
            ),
            false,
        );
        check(
            "status",
            s.run("git-credential-molecule", &["status"], "", &[]),
            false,
        );
        check(
            "status --json",
            s.run("git-credential-molecule", &["status", "--json"], "", &[]),
            false,
        );
        check(
            "refresh",
            s.run("git-credential-molecule", &["refresh"], "", &[]),
            false,
        );
        check(
            "token",
            s.run("git-credential-molecule", &["token"], "", &[]),
            true,
        );
        check(
            "exec",
            s.run(
                "git-credential-molecule",
                &["exec", "--", "sh", "-c", "exit 3"],
                "",
                &[],
            ),
            false,
        );
        check(
            "configure",
            s.run(
                "git-credential-molecule",
                &[
                    "configure",
                    "--file",
                    &s.dir.path().join("gc").display().to_string(),
                ],
                "",
                &[],
            ),
            false,
        );
        check(
            "erase",
            s.run(
                "git-credential-molecule",
                &["erase"],
                &format!("protocol=https\nhost=github.com\npassword={t}\n\n"),
                &[],
            ),
            false,
        );

        // The helper, error paths.
        let s = Stage::new(&err_url, format);
        check(
            "get (platform echoes it, fallback is it)",
            s.run(
                "git-credential-molecule",
                &["get"],
                req,
                &[("GH_TOKEN", &t)],
            ),
            true,
        );
        check(
            "get (exhausted)",
            s.run("git-credential-molecule", &["get"], req, &[]),
            false,
        );
        check(
            "refresh (platform echoes it)",
            s.run("git-credential-molecule", &["refresh"], "", &[]),
            false,
        );
        s.write_cache(&cache_doc(&t, &expires_in(200)));
        check(
            "get (degraded)",
            s.run("git-credential-molecule", &["get"], req, &[]),
            true,
        );
        s.write_cache(
            &cache_doc(&t, &expires_in(3000)).replace("\"version\":1", "\"version\":\"x"),
        );
        check(
            "get (corrupt cache holding it)",
            s.run("git-credential-molecule", &["get"], req, &[]),
            false,
        );
        s.write_cache(&format!(r#"{{"version":1,"entries":{{"github.com":{{"token":"{t}\nhost=x","expires_at":"2099-01-01T00:00:00Z","fetched_at":"2026-01-01T00:00:00Z","source":"platform"}}}}}}"#));
        check(
            "get (malformed token in the cache)",
            s.run("git-credential-molecule", &["get"], req, &[]),
            false,
        );
        check(
            "get (hostile input carrying it)",
            s.run(
                "git-credential-molecule",
                &["get"],
                &format!("protocol=https\nhost={t}\r\n\n"),
                &[],
            ),
            false,
        );
        check(
            "get (token as a conflicting host)",
            s.run(
                "git-credential-molecule",
                &["get"],
                &format!("host=github.com\nhost={t}\n\n"),
                &[],
            ),
            false,
        );
        check(
            "clap: token as a flag value",
            s.run("git-credential-molecule", &["--bogus", &t, "get"], "", &[]),
            false,
        );
        check(
            "clap: token as a flag",
            s.run(
                "git-credential-molecule",
                &[&format!("--{t}"), "get"],
                "",
                &[],
            ),
            false,
        );
        check(
            "token as an env value that does not parse",
            s.run(
                "git-credential-molecule",
                &["status"],
                "",
                &[("TOKEN_REFRESH_MARGIN_SEC", &t), ("MOLECULE_LOG", &t)],
            ),
            false,
        );

        // The daemon: --once, status, the loop (with a gh that fails and echoes the token),
        // clap, all with the stale token exported to it.
        let s = Stage::new(&ok_url, format);
        let gh = s.dir.path().join("bin/gh");
        std::fs::write(
            &gh,
            format!("#!/bin/sh\necho \"error validating token {t}\" >&2\nexit 1\n"),
        )
        .unwrap();
        std::fs::set_permissions(&gh, std::fs::Permissions::from_mode(0o755)).unwrap();
        check(
            "daemon --once",
            s.run("gh-token-refresh", &["--once"], "", &[("GH_TOKEN", &t)]),
            false,
        );
        check(
            "daemon status",
            s.run("gh-token-refresh", &["status"], "", &[]),
            false,
        );
        check(
            "daemon status --json",
            s.run("gh-token-refresh", &["status", "--json"], "", &[]),
            false,
        );
        check(
            "daemon clap error",
            s.run("gh-token-refresh", &[&t], "", &[]),
            false,
        );
        let log = s.dir.path().join("daemon.log");
        let mut d = Command::new(bin_dir().join("gh-token-refresh"))
            .env_clear()
            .envs(s.env.iter().map(|(k, v)| (k, v)))
            .env("GH_TOKEN", &t)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        assert!(wait_for(Duration::from_secs(10), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("gh login failed")
        }));
        let _ = Command::new("kill")
            .args(["-HUP", &d.id().to_string()])
            .status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill")
            .args(["-TERM", &d.id().to_string()])
            .status();
        d.wait().unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        check("daemon loop", (0, String::new(), text.clone()), false);
        assert!(
            text.contains("[REDACTED]"),
            "{format}: gh's echo was redacted, not dropped"
        );
        let (_, _, failing) = {
            let s = Stage::new(&err_url, format);
            s.run("gh-token-refresh", &["--once"], "", &[])
        };
        check(
            "daemon --once (platform echoes it)",
            (0, String::new(), failing),
            false,
        );

        // A panic.
        let probe = bin_dir().join("examples/panic_probe");
        let out = Command::new(&probe)
            .env("PROBE_TOKEN", &t)
            .output()
            .expect("the panic probe is built by cargo test");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            stderr.contains("internal error") && stderr.contains("ghs_[REDACTED]"),
            "{stderr}"
        );
        check("panic", (0, String::new(), stderr), false);
        checked += 1;
    }
    assert_eq!(checked, 2);
    for (h, stop) in [(h_ok, stop_ok), (h_err, stop_err)] {
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        h.join().unwrap();
    }
    let _ = Path::new("");
}

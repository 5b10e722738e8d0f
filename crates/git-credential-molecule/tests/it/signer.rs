//! DESIGN.md, "GitHub App without a key on disk": `MOLECULE_GITHUB_APP_SIGNER` signs the
//! App's JWT with a real signer command (openssl) against the GitHub API stand-in, which
//! verifies the signature with the App's public key and the `iss` (the client ID). As root,
//! the key is one the helper cannot read at all: it runs as another user, and only a setuid
//! copy of openssl can open the key. Then the failures, each with its class: timeout,
//! oversize, garbage, a non-zero exit, and a signer beside a key file.

use std::os::unix::fs::{PermissionsExt, chown};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use molecule_tests::github_api::{APP_CLIENT_ID, GithubApi, GithubApiOptions, test_app_key_path};
use molecule_tests::{TokenAuthority, skip};

use crate::support::{Run, Sandbox};

/// The user the helper runs as when root can arrange it (nobody), and the one that owns the
/// key (no user of this machine).
const HELPER_UID: u32 = 65_534;
const KEY_UID: u32 = 4_242;

fn api(authority: &TokenAuthority) -> GithubApi {
    GithubApi::start(
        "127.0.0.1:0".parse().unwrap(),
        GithubApiOptions::one_org(11, "acme", &[]),
        authority.clone(),
        None,
    )
}

/// A sandbox minting from `api` with `signer`, and no key file anywhere in its settings.
fn signed_sandbox(api: &GithubApi, signer: &str) -> Sandbox {
    let mut sb = Sandbox::new();
    sb.env("MOLECULE_TOKEN_SOURCE", "github-app")
        .env("MOLECULE_GITHUB_APP_CLIENT_ID", APP_CLIENT_ID)
        .env("MOLECULE_GITHUB_APP_SIGNER", signer)
        .env("MOLECULE_GITHUB_APP_INSTALLATION_ID", "11")
        .env("MOLECULE_GITHUB_API_URL", &api.url())
        .env("MOLECULE_LOG", "info");
    sb
}

/// Asserts a `refresh` minted a token the stand-in issued, from a JWT it verified.
fn assert_minted(sb: &Sandbox, r: &Run, authority: &TokenAuthority, api: &GithubApi) {
    assert_eq!(r.code, 0, "{}", r.stderr);
    let entry = sb.entry("github.com").expect("a cached token");
    let token = entry["token"].as_str().unwrap();
    sb.secret(token);
    assert!(authority.is_valid(token), "the stand-in issued it");
    assert!(
        api.jwt_rejections().is_empty(),
        "{:?}",
        api.jwt_rejections()
    );
}

#[test]
fn an_openssl_signer_signs_the_jwt_and_its_key_file_is_never_named_to_the_helper() {
    const NAME: &str =
        "signer::an_openssl_signer_signs_the_jwt_and_its_key_file_is_never_named_to_the_helper";
    if !skip::require_tools(NAME, &["openssl", "base64"]) {
        return;
    }
    let authority = TokenAuthority::new();
    let api = api(&authority);
    let key = test_app_key_path();
    let sign = format!("openssl dgst -sha256 -sign '{}' -binary", key.display());
    // Raw bytes, then base64 URL-safe without padding, then Vault's form.
    for signer in [
        sign.clone(),
        format!("{sign} | base64 -w0 | tr '+/' '-_' | tr -d '='"),
        format!("printf vault:v3:; {sign} | base64 -w 76"),
    ] {
        let sb = signed_sandbox(&api, &signer);
        let r = sb.run(&["refresh"], "");
        assert_minted(&sb, &r, &authority, &api);
    }
    // MOLECULE_GITHUB_APP_ID takes the client ID as well.
    let mut sb = signed_sandbox(&api, &sign);
    sb.unset("MOLECULE_GITHUB_APP_CLIENT_ID")
        .env("MOLECULE_GITHUB_APP_ID", APP_CLIENT_ID);
    let r = sb.run(&["refresh"], "");
    assert_minted(&sb, &r, &authority, &api);
    assert_eq!(api.issued().len(), 4);
    assert!(
        api.jwt_issuers().iter().all(|iss| iss == APP_CLIENT_ID),
        "iss is the client ID: {:?}",
        api.jwt_issuers()
    );
}

/// A setuid copy of openssl owned by [`KEY_UID`], and the App key readable by that user
/// alone, in `dir`.
fn private_signer(dir: &Path) -> (String, std::path::PathBuf) {
    let openssl = dir.join("openssl");
    std::fs::copy(skip::which("openssl").expect("openssl on PATH"), &openssl).unwrap();
    chown(&openssl, Some(KEY_UID), Some(KEY_UID)).unwrap();
    std::fs::set_permissions(&openssl, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let keys = dir.join("keys");
    std::fs::create_dir(&keys).unwrap();
    let key = keys.join("app.pem");
    std::fs::copy(test_app_key_path(), &key).unwrap();
    for (path, mode) in [(&key, 0o400), (&keys, 0o700)] {
        chown(path, Some(KEY_UID), Some(KEY_UID)).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let signer = format!(
        "'{}' dgst -sha256 -sign '{}' -binary",
        openssl.display(),
        key.display()
    );
    (signer, key)
}

/// `args` run by the helper as [`HELPER_UID`], with the sandbox's environment.
fn run_as_helper_user(sb: &Sandbox, args: &[&str]) -> Run {
    let own = sb.command(args);
    let mut cmd = Command::new("setpriv");
    cmd.args([
        format!("--reuid={HELPER_UID}"),
        format!("--regid={HELPER_UID}"),
        "--clear-groups".into(),
    ])
    .arg(own.get_program())
    .args(own.get_args())
    .env_clear()
    .envs(own.get_envs().filter_map(|(k, v)| Some((k, v?))));
    let child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sb.finish(child, b"")
}

#[test]
fn the_key_can_be_one_the_helper_cannot_read() {
    const NAME: &str = "signer::the_key_can_be_one_the_helper_cannot_read";
    if !skip::require_root(NAME) || !skip::require_tools(NAME, &["openssl", "setpriv"]) {
        return;
    }
    let authority = TokenAuthority::new();
    let api = api(&authority);
    let keydir = tempfile::tempdir().unwrap();
    let (signer, key) = private_signer(keydir.path());
    let sb = signed_sandbox(&api, &signer);
    chown_tree(sb.dir.path(), HELPER_UID);
    // The helper's user cannot open the key; only the signer (setuid to its owner) can.
    let cat = Command::new("setpriv")
        .args([
            format!("--reuid={HELPER_UID}"),
            format!("--regid={HELPER_UID}"),
        ])
        .args(["--clear-groups", "cat"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        !cat.status.success(),
        "the key must be out of the helper's reach"
    );
    let r = run_as_helper_user(&sb, &["refresh"]);
    assert_minted(&sb, &r, &authority, &api);
    assert_eq!(api.jwt_issuers(), [APP_CLIENT_ID]);
    // The token is served from there on, as ever.
    let r = run_as_helper_user(&sb, &["get"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

fn chown_tree(root: &Path, uid: u32) {
    chown(root, Some(uid), Some(uid)).unwrap();
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.is_symlink() {
            chown_tree(&path, uid);
        } else {
            chown(&path, Some(uid), Some(uid)).unwrap();
        }
    }
}

#[test]
fn signer_failures_are_transient_name_the_signer_and_send_nothing() {
    let authority = TokenAuthority::new();
    let api = api(&authority);
    let cases = [
        (
            "echo 'vault: permission denied' >&2; exit 2",
            "exited with status 2: vault: permission denied",
        ),
        (
            "echo not-a-signature",
            "printed 16 bytes that are no RS256 signature",
        ),
        ("head -c 100000 /dev/zero", "printed more than 4096 bytes"),
        ("sleep 30", "did not finish within 10s"),
    ];
    for (signer, says) in cases {
        let sb = signed_sandbox(&api, signer);
        let start = Instant::now();
        let (r, _) = sb.run_within(signer, &["refresh"], "", Duration::from_secs(30));
        assert_eq!(r.code, 75, "{signer}: {}", r.stderr);
        assert_eq!(r.stdout, "", "{signer}");
        let line = r
            .stderr
            .lines()
            .find(|l| l.contains("MOLECULE_GITHUB_APP_SIGNER"))
            .unwrap_or_else(|| panic!("{signer}: {}", r.stderr));
        assert!(
            line.contains("transient") && line.contains(says),
            "{signer}: {line}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{signer}: {:?}",
            start.elapsed()
        );
    }
    assert!(api.requests().is_empty(), "no JWT left without a signature");
}

#[test]
fn a_signer_beside_a_key_file_is_a_configuration_error_naming_both() {
    let authority = TokenAuthority::new();
    let api = api(&authority);
    let mut sb = signed_sandbox(&api, "false");
    sb.env(
        "MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE",
        &test_app_key_path().display().to_string(),
    );
    let r = sb.run(&["refresh"], "");
    r.assert_one_line_error(
        78,
        "MOLECULE_GITHUB_APP_SIGNER and MOLECULE_GITHUB_APP_PRIVATE_KEY_FILE are both set",
    );
    assert!(api.requests().is_empty());
}

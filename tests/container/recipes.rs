//! The recipes of docs/consumers.md ("Recipes"), each tried against the behaviour it relies
//! on, with the configuration the recipe shows. The third-party tools themselves (Docker
//! Sandboxes, nono, Vault Agent, External Secrets Operator, iron-proxy) are not run here: each
//! test does what the tool does with our side (runs the command the way it runs it, reads the
//! file the way it reads it, mounts the Secret the way the kubelet does) and checks that the
//! recipe's text is the one tested. The iron-proxy recipe (a `json` sink re-read on a `ttl`)
//! is checked by `sinks::a_reader_polling_three_sinks_never_sees_a_torn_or_dead_token`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use molecule_tests::deadline::run_within;
use molecule_tests::{Fault, TokenAuthority};
use serde_json::Value;

use crate::harness::{Platform, cached, file_source, now};
use crate::secret_volume::SecretVolume;
use crate::support::{bin_dir, report, root};

/// The recipes as docs/consumers.md shows them.
const SBX: &str = "sbx secret set github --command 'git-credential-molecule token' --refresh 4m";
const NONO_COMMAND: &str = r#""command": ["git-credential-molecule", "token"]"#;
const NONO_TTL: &str = r#""cache_ttl_secs": 240"#;
const VAULT: &str =
    r#"{{ with secret "github/token" "installation_id=7890" }}{{ .Data | toJSON }}{{ end }}"#;
const ESO_MANIFEST: &str = "docker/kubernetes/agent-with-external-secret.yaml";

/// docs/consumers.md must show `line` exactly: the recipe a reader copies is the one tested.
pub fn assert_documented(line: &str) {
    let doc = std::fs::read_to_string(root().join("docs/consumers.md")).unwrap();
    assert!(
        doc.contains(line),
        "docs/consumers.md no longer shows the tested recipe line {line}"
    );
}

/// Runs `command` as a credential hook runs it: no terminal (stdin closed, stdout a pipe),
/// at most 10 s.
fn hook(command: &mut Command) -> (Option<i32>, String) {
    let done = run_within(command, b"", Duration::from_secs(10));
    done.assert_in_time("a credential hook");
    (done.code, done.stdout)
}

#[test]
fn command_hooks_print_a_token_with_at_least_the_margin_left() {
    for line in [SBX, NONO_COMMAND, NONO_TTL] {
        assert_documented(line);
    }
    // Tokens live 6 s and the margin is 2 s: a rotation every 4 s. The recipes cache what
    // the command printed for less than the margin (4 min, 240 s against 5 min).
    let t = tempfile::tempdir().unwrap();
    let world = Platform::start(t.path(), Duration::from_secs(6), Duration::from_secs(3));
    let mut env = world.env.clone();
    env.set("TOKEN_REFRESH_MARGIN_SEC", "2")
        .set("PATH", format!("{}:/usr/bin:/bin", bin_dir().display()));
    let margin = 2;
    let (mut calls, mut least) = (0u32, i64::MAX);
    let started = Instant::now();
    let first = world.stand_in.minted();
    while world.stand_in.minted() < first + 3 {
        assert!(started.elapsed() < Duration::from_secs(30), "no rotations");
        // Docker Sandboxes runs the command through the host's shell and trims the output.
        let mut sbx = Command::new("/bin/sh");
        sbx.env_clear()
            .envs(env.0.iter().map(|(k, v)| (k, v)))
            .args(["-c", "git-credential-molecule token"]);
        let (code, out) = hook(&mut sbx);
        assert_eq!(code, Some(0));
        let token = out.trim().to_owned();
        // nono runs the argv itself and strips trailing CR and LF.
        let (code, out) = hook(env.command("git-credential-molecule").arg("token"));
        assert_eq!(code, Some(0));
        let nono = out.trim_end_matches(['\r', '\n']);
        // A hook that reads a TTL gets it from `--format json`.
        let (code, out) = hook(
            env.command("git-credential-molecule")
                .args(["token", "--format", "json"]),
        );
        assert_eq!(code, Some(0));
        let json: Value = serde_json::from_str(&out).unwrap();
        for t in [token.as_str(), nono, json["token"].as_str().unwrap()] {
            let expiry = world.expiries.of(t).expect("a token the platform minted");
            let left = (expiry - now()).whole_seconds();
            assert!(left >= margin - 1, "a hook got a token with {left}s left");
        }
        let expires_in = json["expires_in"].as_i64().unwrap();
        assert!(
            expires_in >= margin,
            "expires_in {expires_in} inside the margin"
        );
        least = least.min(expires_in);
        calls += 1;
    }
    // Nothing to serve: the hook fails loudly (non-zero, nothing on stdout), so the sandbox
    // reports it rather than injecting an empty or dead credential.
    world.stand_in.set_fault(Fault::Status(503));
    let mut empty = env.clone();
    empty.set("MOLECULE_TOKEN_CACHE_DIR", t.path().join("empty-cache"));
    let mut sbx = Command::new("/bin/sh");
    sbx.env_clear()
        .envs(empty.0.iter().map(|(k, v)| (k, v)))
        .args(["-c", "git-credential-molecule token"]);
    assert_eq!(hook(&mut sbx), (Some(69), String::new()));
    report(
        "recipes-hooks",
        &format!(
            "command hooks (sbx: sh -c, output trimmed; nono: argv, CR/LF stripped; --format \
             json): {calls} rounds through 3 rotations (tokens living 6s, margin 2s), every \
             token printed had at least the margin left (least expires_in {least}s), so a cache \
             shorter than the margin never holds a dead one; nothing to serve: exit 69, empty \
             stdout"
        ),
    );
}

#[test]
fn a_vault_agent_template_renders_what_the_file_source_reads() {
    assert_documented(VAULT);
    // `{{ .Data | toJSON }}` of the GitHub secrets engine's answer: GitHub's token response
    // (token, expires_at, permissions, repository_selection) plus the installation_id the
    // plugin adds, keys sorted as Go's encoding/json sorts a map's.
    let t = tempfile::tempdir().unwrap();
    let issued = TokenAuthority::new().issue(Duration::from_secs(3600));
    let expires_at = issued
        .expires_at
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let rendered = serde_json::json!({
        "expires_at": expires_at,
        "installation_id": 7890,
        "permissions": {"contents": "write", "metadata": "read"},
        "repository_selection": "all",
        "token": issued.token,
    })
    .to_string();
    let file = t.path().join("github-token.json");
    // The recipe's `perms = "0600"`.
    molecule_tests::write_secret(&file, &rendered);
    let env = file_source(t.path(), &file);
    let out = env.helper(&["token", "--format", "json"], "");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["token"], issued.token.as_str());
    assert_eq!(v["expires_at"], expires_at.as_str());
    assert_eq!(v["source"], "file");
    assert!(
        out.stderr.is_empty(),
        "a 0600 file needs no warning: {}",
        out.stderr
    );
    report(
        "recipes-vault",
        "Vault Agent template ({{ .Data | toJSON }} of the GitHub secrets engine's answer, \
         0600): the file source serves its token with its expires_at",
    );
}

/// The documents of a multi-document YAML file.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("{ESO_MANIFEST} has no {kind}"))
}

/// A volume's `defaultMode`, read as Kubernetes reads YAML 1.1 (a leading 0 is octal).
fn mode(v: &Value) -> u32 {
    match v {
        Value::Number(n) => u32::try_from(n.as_u64().unwrap()).unwrap(),
        Value::String(s) => u32::from_str_radix(s, 8).unwrap(),
        other => panic!("defaultMode {other}"),
    }
}

#[test]
fn the_external_secrets_manifest_mounts_what_the_file_source_reads() {
    let docs = documents(&root().join(ESO_MANIFEST));
    let (generator, external, pod) = (
        find(&docs, "GithubAccessToken"),
        find(&docs, "ExternalSecret"),
        find(&docs, "Pod"),
    );
    // The ExternalSecret takes the generator's output into the Secret the pod mounts.
    let source = &external["spec"]["dataFrom"][0]["sourceRef"]["generatorRef"];
    assert_eq!(source["kind"], "GithubAccessToken");
    assert_eq!(source["name"], generator["metadata"]["name"]);
    let secret = external["spec"]["target"]["name"].as_str().unwrap();
    let volume = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == secret)
        .expect("the pod mounts the Secret");
    let default_mode = mode(&volume["secret"]["defaultMode"]);
    // Both containers read the generator's one key, `token`, where they mount the Secret.
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|list| pod["spec"][list].as_array().unwrap())
        // Those with an environment: the cache directory's init container has none.
        .filter(|c| c.get("env").is_some())
        .collect();
    assert_eq!(containers.len(), 2, "the sidecar and the agent");
    let mut mount = String::new();
    for c in &containers {
        let env = |name: &str| {
            c["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .and_then(|e| e["value"].as_str())
                .unwrap_or_else(|| panic!("{}: no {name}", c["name"]))
                .to_owned()
        };
        let at = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume["name"])
            .unwrap_or_else(|| panic!("{} does not mount the Secret", c["name"]));
        assert_eq!(env("MOLECULE_TOKEN_SOURCE"), "file");
        mount = at["mountPath"].as_str().unwrap().to_owned();
        assert_eq!(env("MOLECULE_TOKEN_SOURCE_FILE"), format!("{mount}/token"));
    }

    // The Secret as the kubelet mounts it, with the manifest's defaultMode: a bare token
    // (the generator writes no expiry), then the next one ESO brings.
    let t = tempfile::tempdir().unwrap();
    let authority = TokenAuthority::new();
    let mut mounted = SecretVolume::new(&t.path().join("secret"));
    let first = authority.issue(Duration::from_secs(3600));
    mounted.publish(&[("token", first.token.as_bytes())], default_mode, None);
    let env = file_source(t.path(), &mounted.path("token"));
    let out = env.helper(&["token"], "");
    assert_eq!(
        (out.code, out.stdout.trim()),
        (Some(0), first.token.as_str()),
        "{}",
        out.stderr
    );
    let entry = cached(&t.path().join("cache"), "github.com").unwrap();
    let lifetime = (entry.expires_at - entry.fetched_at).whole_seconds();
    assert!(lifetime <= 600, "a bare token cached for {lifetime}s");
    let next = authority.issue(Duration::from_secs(3600));
    mounted.publish(&[("token", next.token.as_bytes())], default_mode, None);
    let out = env.helper(&["refresh"], "");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        cached(&t.path().join("cache"), "github.com").unwrap().token,
        next.token
    );
    report(
        "recipes-external-secrets",
        &format!(
            "{ESO_MANIFEST}: the ExternalSecret's Secret ({secret}) is mounted at {mount} in both \
             containers, MOLECULE_TOKEN_SOURCE_FILE names its key `token`; mounted with \
             defaultMode {default_mode:o}, its bare token served and cached for {lifetime}s, the \
             next one taken on refresh"
        ),
    );
}

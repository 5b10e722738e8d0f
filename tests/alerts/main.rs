//! docker/prometheus/molecule-alerts.yml exactly as shipped: `promtool check rules` with its
//! lint, `promtool test rules` on the unit tests beside it, and the rules against the
//! contract (DESIGN.md, "Metrics"): its four alerts, each with a severity, a summary, a
//! description and a runbook, each seen firing by some unit test, each explained in
//! docs/metrics.md.
//!
//! In Rust rather than as steps of scripts/test.sh: `cargo test` runs them wherever the tests
//! run, a missing promtool is a named skip like every other tool's, and the cross-checks
//! between the rules, their unit tests and the docs need a YAML reader.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use molecule_tests::deadline::run_within;
use molecule_tests::skip;
use serde_json::Value;

/// DESIGN.md's four alerts, in the order the file has them.
const ALERTS: [&str; 4] = [
    "MoleculeTokenInvalid",
    "MoleculeTokenExpiringSoon",
    "MoleculeTokenRefreshFailing",
    "MoleculeFallbackActive",
];

/// promtool evaluates hours of series at a time: generous, for a loaded machine.
const PROMTOOL_WITHIN: Duration = Duration::from_secs(180);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rules_path() -> PathBuf {
    root().join("docker/prometheus/molecule-alerts.yml")
}

fn tests_path() -> PathBuf {
    root().join("docker/prometheus/molecule-alerts.test.yml")
}

fn yaml(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `promtool ARGS…` in docker/prometheus/; its stdout and stderr on success.
fn promtool(args: &[&str]) -> String {
    let run = run_within(
        Command::new("promtool")
            .args(args)
            .current_dir(root().join("docker/prometheus")),
        b"",
        PROMTOOL_WITHIN,
    );
    run.assert_in_time("promtool");
    assert_eq!(
        run.code,
        Some(0),
        "promtool {args:?}:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    format!("{}{}", run.stdout, run.stderr)
}

#[test]
fn promtool_check_rules_finds_the_four_alerts_and_nothing_to_lint() {
    const NAME: &str = "alerts::promtool_check_rules_finds_the_four_alerts_and_nothing_to_lint";
    if !skip::require_tools(NAME, &["promtool"]) {
        return;
    }
    let out = promtool(&[
        "check",
        "rules",
        "--lint=all",
        "--lint-fatal",
        "molecule-alerts.yml",
    ]);
    assert!(out.contains("SUCCESS: 4 rules found"), "{out}");
}

#[test]
fn promtool_unit_tests_pass() {
    const NAME: &str = "alerts::promtool_unit_tests_pass";
    if !skip::require_tools(NAME, &["promtool"]) {
        return;
    }
    let out = promtool(&["test", "rules", "molecule-alerts.test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The alerts of the rules file: (name, rule).
fn alerts() -> Vec<(String, Value)> {
    yaml(&rules_path())["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .map(|r| {
            let name = r["alert"]
                .as_str()
                .unwrap_or_else(|| panic!("a rule that is no alert: {r}"))
                .to_owned();
            (name, r)
        })
        .collect()
}

#[test]
fn the_rules_are_the_contracts_four_alerts_with_severity_and_text() {
    let alerts = alerts();
    let names: Vec<&str> = alerts.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ALERTS);
    for (name, rule) in &alerts {
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        assert!(rule["for"].is_string(), "{name}: no `for`");
        for key in ["summary", "description", "runbook"] {
            let text = rule["annotations"][key].as_str().unwrap_or_default();
            assert!(text.len() > 20, "{name}: annotation {key} is {text:?}");
        }
        assert!(
            rule["annotations"]["runbook"]
                .as_str()
                .is_some_and(|r| r.contains("gh-token-refresh status")),
            "{name}: the runbook names `gh-token-refresh status`"
        );
    }
}

/// Whether some unit test of `tests` expects `alert` firing: an `alert_rule_test` with
/// alerts expected, or an expression test with an `ALERTS` sample in state firing.
fn expected_firing(tests: &Value, alert: &str) -> bool {
    let groups = tests["tests"].as_array().expect("tests");
    let by_rule = groups
        .iter()
        .flat_map(|g| g["alert_rule_test"].as_array().cloned().unwrap_or_default())
        .any(|t| {
            t["alertname"] == alert && t["exp_alerts"].as_array().is_some_and(|a| !a.is_empty())
        });
    let by_expr = groups
        .iter()
        .flat_map(|g| {
            g["promql_expr_test"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|t| t["exp_samples"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["labels"].as_str().map(str::to_owned))
        .any(|l| {
            l.contains(&format!("alertname=\"{alert}\""))
                && (l.contains("alertstate=\"firing\"") || !l.contains("alertstate"))
        });
    by_rule || by_expr
}

#[test]
fn every_alert_fires_in_some_unit_test_and_is_explained_in_the_docs() {
    let tests = yaml(&tests_path());
    assert_eq!(
        tests["rule_files"],
        serde_json::json!(["molecule-alerts.yml"]),
        "the unit tests test the shipped file"
    );
    let docs_path = root().join("docs/metrics.md");
    let docs = std::fs::read_to_string(&docs_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", docs_path.display()));
    for alert in ALERTS {
        assert!(
            expected_firing(&tests, alert),
            "no unit test sees {alert} fire"
        );
        assert!(
            docs.lines().any(|l| l == format!("### {alert}")),
            "docs/metrics.md has no section \"### {alert}\""
        );
    }
}

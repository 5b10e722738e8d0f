//! A real Prometheus server (Debian's `prometheus` package) for tests: it scrapes one target
//! on loopback every second, optionally evaluates a rules file every second, and answers
//! instant queries through its HTTP API.
//!
//! ```no_run
//! use molecule_tests::prometheus::{self, Prometheus};
//! use molecule_tests::skip;
//! use std::time::Duration;
//!
//! # fn demo(target: std::net::SocketAddr) {
//! const NAME: &str = "metrics::prometheus_scrapes_the_listener";
//! if !skip::require_tools(NAME, &[prometheus::PROGRAM]) {
//!     return;
//! }
//! let server = Prometheus::start(target, Some(&prometheus::alert_rules()));
//! let valid = server.wait_for("molecule_token_valid", Duration::from_secs(15), |s| {
//!     s.iter().any(|s| s.value == 1.0)
//! });
//! assert_eq!(valid[0].labels["host"], "github.com");
//! # }
//! ```
//!
//! Every wait is bounded: the server's readiness, each HTTP call, each poll of a query, and
//! its stop when dropped (SIGKILL, then at most [`STOP_WITHIN`] for it to be reaped). The
//! configuration, the TSDB and the server's log live in a temporary directory removed on
//! drop; a failure quotes the log.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// The server's executable, for [`crate::skip::require_tools`].
pub const PROGRAM: &str = "prometheus";

/// How long the server gets to answer `/-/ready` (about 0.2 s here).
pub const READY_WITHIN: Duration = Duration::from_secs(20);

/// How long a stopped server gets to be reaped after SIGKILL.
pub const STOP_WITHIN: Duration = Duration::from_secs(5);

/// One HTTP call to the server, connect to last body byte.
const CALL_WITHIN: Duration = Duration::from_secs(10);

/// Starts with a port that was free a moment before may lose it to another test: tries again
/// on a new port this many times.
const BIND_ATTEMPTS: u32 = 3;

/// The rules this repository ships, `docker/prometheus/molecule-alerts.yml`.
pub fn alert_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/prometheus/molecule-alerts.yml")
}

/// One sample of an instant vector: its labels (`__name__` included when the result keeps
/// it) and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Every label of the series.
    pub labels: BTreeMap<String, String>,
    /// The value (`NaN` and the infinities included).
    pub value: f64,
}

/// A loaded rule and how its last evaluation went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The alert's or recording's name.
    pub name: String,
    /// `ok`, `err` or `unknown` (not evaluated yet).
    pub health: String,
    /// The last evaluation's error, empty when none.
    pub last_error: String,
}

/// A running Prometheus server; stopped (killed and reaped, bounded) on drop.
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
}

impl Prometheus {
    /// Starts a server on 127.0.0.1 (a free port) whose one job, `molecule`, scrapes
    /// `http://target/metrics` every second, and which evaluates `rules` every second when
    /// given. Returns once `/-/ready` answers 200; panics, quoting the server's log, when it
    /// does not within [`READY_WITHIN`].
    pub fn start(target: SocketAddr, rules: Option<&Path>) -> Prometheus {
        let dir = tempfile::tempdir().expect("a temporary directory for prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_text(target, rules))
            .unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the prometheus client");
        let mut last_log = String::new();
        for _ in 0..BIND_ATTEMPTS {
            let addr = free_port();
            let mut child = spawn(dir.path(), &config, addr);
            match wait_ready(&runtime, &mut child, addr, dir.path()) {
                Ok(()) => {
                    return Prometheus {
                        child,
                        addr,
                        dir,
                        runtime,
                    };
                }
                Err(log) => {
                    stop(&mut child);
                    assert!(
                        log.contains("address already in use"),
                        "prometheus did not become ready: {log}"
                    );
                    last_log = log;
                }
            }
        }
        panic!("prometheus found no free port in {BIND_ATTEMPTS} attempts: {last_log}")
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's log so far (its stderr).
    pub fn log(&self) -> String {
        log_of(self.dir.path())
    }

    /// Evaluates `expr` now (`/api/v1/query`), which must give an instant vector. Panics on
    /// an HTTP or API error, quoting it.
    pub fn query(&self, expr: &str) -> Vec<Sample> {
        let target = format!("/api/v1/query?query={}", encode_query_value(expr));
        let (status, body) = self
            .get(&target)
            .unwrap_or_else(|e| panic!("query {expr:?}: {e}\n{}", self.log()));
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "query {expr:?}: HTTP {status}: {body}");
        parse_vector(&body).unwrap_or_else(|e| panic!("query {expr:?}: {e}: {body}"))
    }

    /// Every loaded rule as `/api/v1/rules` reports it, in file order.
    pub fn rules(&self) -> Vec<Rule> {
        let (status, body) = self
            .get("/api/v1/rules")
            .unwrap_or_else(|e| panic!("/api/v1/rules: {e}\n{}", self.log()));
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "/api/v1/rules: HTTP {status}: {body}");
        parse_rules(&body).unwrap_or_else(|e| panic!("/api/v1/rules: {e}: {body}"))
    }

    /// Evaluates `expr` every 200 ms until `done` accepts the result, and returns that
    /// result; panics with the last result when `within` has passed.
    pub fn wait_for(
        &self,
        expr: &str,
        within: Duration,
        done: impl Fn(&[Sample]) -> bool,
    ) -> Vec<Sample> {
        let end = Instant::now() + within;
        loop {
            let samples = self.query(expr);
            if done(&samples) {
                return samples;
            }
            assert!(
                Instant::now() < end,
                "{expr:?} did not reach the expected state within {within:?}; last: {samples:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `GET target` on the server: the status and the body, or what went wrong.
    fn get(&self, target: &str) -> Result<(u16, Bytes), String> {
        get_within(&self.runtime, self.addr, target)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Polls `/-/ready` until it answers 200. Err with the server's log when the server exits
/// or [`READY_WITHIN`] passes.
fn wait_ready(
    runtime: &tokio::runtime::Runtime,
    child: &mut Child,
    addr: SocketAddr,
    dir: &Path,
) -> Result<(), String> {
    let end = Instant::now() + READY_WITHIN;
    loop {
        if let Ok((200, _)) = get_within(runtime, addr, "/-/ready") {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("it exited ({status}); its log:\n{}", log_of(dir)));
        }
        if Instant::now() >= end {
            return Err(format!(
                "no 200 from /-/ready within {READY_WITHIN:?}; its log:\n{}",
                log_of(dir)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGKILL, then reaped within [`STOP_WITHIN`]; a process already gone is fine.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let end = Instant::now() + STOP_WITHIN;
    while Instant::now() < end {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The server's log (its stderr), kept in its directory.
fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
}

/// One GET within [`CALL_WITHIN`].
fn get_within(
    runtime: &tokio::runtime::Runtime,
    addr: SocketAddr,
    target: &str,
) -> Result<(u16, Bytes), String> {
    runtime.block_on(async {
        tokio::time::timeout(CALL_WITHIN, get(addr, target))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {CALL_WITHIN:?}")))
    })
}

/// The configuration: block-style YAML, every path and address quoted.
fn config_text(target: SocketAddr, rules: Option<&Path>) -> String {
    let rule_files = rules.map_or_else(String::new, |path| {
        format!(
            "rule_files:\n  - {}\n",
            yaml_string(&path.display().to_string())
        )
    });
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         {rule_files}\
         scrape_configs:\n  - job_name: molecule\n    metrics_path: /metrics\n    static_configs:\n      - targets:\n          - {}\n",
        yaml_string(&target.to_string())
    )
}

/// A double-quoted YAML scalar.
fn yaml_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn spawn(dir: &Path, config: &Path, addr: SocketAddr) -> Child {
    let log_path = dir.join("prometheus.log");
    let log = std::fs::File::create(&log_path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", log_path.display()));
    Command::new(PROGRAM)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {PROGRAM}: {e}"))
}

/// A port on 127.0.0.1 that was free when asked (the OS's next ephemeral one).
fn free_port() -> SocketAddr {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port on 127.0.0.1")
}

/// One HTTP/1.1 GET, the whole body collected.
async fn get(addr: SocketAddr, target: &str) -> Result<(u16, Bytes), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get(target)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request {target}: {e}"))?;
    let result = async {
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, body))
    }
    .await
    .map_err(|e| format!("GET {target}: {e}"));
    driver.abort();
    result
}

/// Percent-encodes a query-string value: everything but RFC 3986's unreserved characters.
fn encode_query_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The samples of a `/api/v1/query` answer whose result is an instant vector.
fn parse_vector(body: &str) -> Result<Vec<Sample>, String> {
    let answer: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if answer["status"] != "success" {
        return Err(format!("status {}", answer["status"]));
    }
    if answer["data"]["resultType"] != "vector" {
        return Err(format!(
            "result type {}, not vector",
            answer["data"]["resultType"]
        ));
    }
    let result = answer["data"]["result"]
        .as_array()
        .ok_or("no result array")?;
    result
        .iter()
        .map(|entry| {
            let labels = entry["metric"]
                .as_object()
                .ok_or("a sample without labels")?
                .iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        v.as_str().ok_or("a label that is not a string")?.to_owned(),
                    ))
                })
                .collect::<Result<BTreeMap<_, _>, &str>>()?;
            // [unix time, "value"]; Prometheus writes NaN, +Inf and -Inf as such.
            let value = entry["value"][1]
                .as_str()
                .ok_or("a sample without a value")?
                .parse::<f64>()
                .map_err(|e| format!("a value that is not a number: {e}"))?;
            Ok(Sample { labels, value })
        })
        .collect()
}

/// The rules of a `/api/v1/rules` answer, group by group.
fn parse_rules(body: &str) -> Result<Vec<Rule>, String> {
    let answer: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let groups = answer["data"]["groups"]
        .as_array()
        .ok_or("no groups array")?;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    Ok(groups
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| Rule {
            name: text(&r["name"]),
            health: text(&r["health"]),
            last_error: text(&r["lastError"]),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{Reply, ServerThread, boxed, text};
    use crate::skip;
    use hyper::StatusCode;
    use hyper::header::{CONTENT_TYPE, HeaderValue};
    use std::sync::Arc;

    /// What the target serves: two hosts, a host-wide entry and an owner's, a value that is
    /// not an integer, and a counter, in the exposition format Prometheus scrapes.
    const EXPOSITION: &str = "\
# HELP molecule_token_valid 1 while the cache holds a token that is neither expired nor suspect.
# TYPE molecule_token_valid gauge
molecule_token_valid{host=\"github.com\",owner=\"\"} 1
molecule_token_valid{host=\"ghe.example.com\",owner=\"acme\"} 0
# HELP molecule_fallback_active 1 when no valid token is cached.
# TYPE molecule_fallback_active gauge
molecule_fallback_active{host=\"github.com\"} 0
molecule_fallback_active{host=\"ghe.example.com\"} 1
# HELP molecule_token_refresh_duration_seconds_sum Test value.
# TYPE molecule_token_refresh_duration_seconds_sum gauge
molecule_token_refresh_duration_seconds_sum{host=\"github.com\"} 0.125
# HELP molecule_token_refresh_total This daemon's attempts.
# TYPE molecule_token_refresh_total counter
molecule_token_refresh_total{host=\"github.com\",result=\"failure\",class=\"auth\"} 3
";

    /// A target serving [`EXPOSITION`] at `/metrics`, 404 elsewhere.
    fn target() -> ServerThread {
        ServerThread::spawn(
            "exposition",
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            None,
            Arc::new(|request, _ctx| {
                boxed(async move {
                    if request.uri.path() != "/metrics" {
                        return Reply::Response(text(StatusCode::NOT_FOUND, "not found\n"));
                    }
                    let mut response = text(StatusCode::OK, EXPOSITION);
                    response.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    Reply::Response(response)
                })
            }),
        )
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_real_server_scrapes_the_target_and_answers_with_exact_labels_and_values() {
        const NAME: &str = "prometheus::tests::a_real_server_scrapes_the_target_and_answers_with_exact_labels_and_values";
        if !skip::require_tools(NAME, &[PROGRAM]) {
            return;
        }
        let target = target();
        let server = Prometheus::start(target.addr(), None);
        let instance = target.addr().to_string();
        let at = |pairs: &[(&str, &str)]| {
            let mut l = labels(pairs);
            l.insert("instance".into(), instance.clone());
            l.insert("job".into(), "molecule".into());
            l
        };

        let valid = server.wait_for("molecule_token_valid", Duration::from_secs(15), |s| {
            !s.is_empty()
        });
        // An empty label is no label: the host-wide entry has no `owner`.
        assert_eq!(
            valid,
            vec![
                Sample {
                    labels: at(&[
                        ("__name__", "molecule_token_valid"),
                        ("host", "ghe.example.com"),
                        ("owner", "acme")
                    ]),
                    value: 0.0,
                },
                Sample {
                    labels: at(&[("__name__", "molecule_token_valid"), ("host", "github.com")]),
                    value: 1.0,
                },
            ]
        );
        assert_eq!(
            server.query(r#"molecule_token_refresh_total{class="auth"}"#),
            vec![Sample {
                labels: at(&[
                    ("__name__", "molecule_token_refresh_total"),
                    ("class", "auth"),
                    ("host", "github.com"),
                    ("result", "failure"),
                ]),
                value: 3.0,
            }]
        );
        // An expression: the name goes, the labels and an exact fraction stay.
        assert_eq!(
            server.query("molecule_token_refresh_duration_seconds_sum * 2"),
            vec![Sample {
                labels: at(&[("host", "github.com")]),
                value: 0.25,
            }]
        );
        assert_eq!(
            server.query(r#"up{job="molecule"}"#),
            vec![Sample {
                labels: at(&[("__name__", "up")]),
                value: 1.0,
            }]
        );
        // Scraped every second: several samples within a few seconds.
        server.wait_for("count_over_time(up[10s])", Duration::from_secs(15), |s| {
            s.first().is_some_and(|s| s.value >= 3.0)
        });
        assert_eq!(server.query("absent_nonexistent_series"), vec![]);
    }

    #[test]
    fn the_shipped_alert_rules_load_and_evaluate_in_a_real_server() {
        const NAME: &str =
            "prometheus::tests::the_shipped_alert_rules_load_and_evaluate_in_a_real_server";
        if !skip::require_tools(NAME, &[PROGRAM]) {
            return;
        }
        let target = target();
        let server = Prometheus::start(target.addr(), Some(&alert_rules()));
        // ghe.example.com has no valid token and is on the fallback; github.com's failure
        // counter appeared at 3 with no success: three alerts go pending (each has a `for`),
        // and nothing else. The last one at the next whole minute: its subquery's steps.
        let pending = server.wait_for(
            r#"ALERTS{alertstate="pending"}"#,
            Duration::from_secs(90),
            |s| s.len() >= 3,
        );
        let mut alerts: Vec<String> = pending
            .iter()
            .map(|s| {
                let l = &s.labels;
                let extra = l.get("owner").or(l.get("class")).map_or("", String::as_str);
                format!("{} {} {extra}", l["alertname"], l["host"])
            })
            .collect();
        alerts.sort();
        assert_eq!(
            alerts,
            [
                "MoleculeFallbackActive ghe.example.com ",
                "MoleculeTokenInvalid ghe.example.com acme",
                "MoleculeTokenRefreshFailing github.com auth",
            ],
            "{}",
            server.log()
        );
        // The server loaded the four alerts and evaluated each without an error.
        let rules = server.rules();
        let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "MoleculeTokenInvalid",
                "MoleculeTokenExpiringSoon",
                "MoleculeTokenRefreshFailing",
                "MoleculeFallbackActive"
            ]
        );
        for rule in &rules {
            assert_eq!(
                (rule.health.as_str(), rule.last_error.as_str()),
                ("ok", ""),
                "{}",
                rule.name
            );
        }
    }

    #[test]
    fn query_values_are_percent_encoded_and_answers_parsed() {
        assert_eq!(
            encode_query_value(r#"up{job="a b"} > 0.5"#),
            "up%7Bjob%3D%22a%20b%22%7D%20%3E%200.5"
        );
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"x","a":"1"},"value":[1.5,"NaN"]},
            {"metric":{},"value":[1.5,"+Inf"]},
            {"metric":{},"value":[1.5,"-Inf"]}]}}"#;
        let samples = parse_vector(body).expect("a vector");
        assert!(samples[0].value.is_nan());
        assert_eq!(samples[0].labels, labels(&[("__name__", "x"), ("a", "1")]));
        assert_eq!(samples[1].value, f64::INFINITY);
        assert_eq!(samples[2].value, f64::NEG_INFINITY);
        assert!(
            parse_vector(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}"#)
                .is_err()
        );
        assert!(parse_vector(r#"{"status":"error","error":"bad"}"#).is_err());
    }

    #[test]
    fn the_configuration_is_block_style_yaml_with_quoted_paths() {
        let text = config_text(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 9464)),
            Some(Path::new("/tmp/a b/rules.yml")),
        );
        assert_eq!(
            text,
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - \"/tmp/a b/rules.yml\"\n\
             scrape_configs:\n  - job_name: molecule\n    metrics_path: /metrics\n    static_configs:\n      - targets:\n          - \"127.0.0.1:9464\"\n"
        );
    }
}

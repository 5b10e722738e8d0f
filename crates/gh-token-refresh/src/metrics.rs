//! The daemon's Prometheus metrics (DESIGN.md, "Metrics"): one pure renderer from what the
//! daemon knows (its status, with the counters) and what the cache holds, so the textfile, the
//! `/metrics` listener and `gh-token-refresh metrics` print the same text for the same state.
//!
//! Exposition format 0.0.4, written by a small typed encoder (the text format is a handful of
//! rules: grouped families, `# HELP` and `# TYPE` first, escaped label values); `promtool
//! check metrics` is the judge, in the tests.
//!
//! Labels come only from bounded sets: the configured hosts, the owners the cache holds for
//! them (discovered or mapped installations), the source names and the fixed class and
//! result enums. Never a repository, token, path or message. Every counter series a rule may
//! compare is present from the start at zero (`success` beside `failure`, each class), so an
//! alert such as "failures and no success for 15 minutes" sees a 0, not an absent series.

use std::fmt::Write as _;

use molecule_credential::cache::{Document, Entry};
use molecule_credential::config::Config;
use molecule_credential::route::Target;
use molecule_credential::status::{Counters, DURATION_BUCKETS, DaemonStatus, Histogram, Outcomes};
use time::OffsetDateTime;

/// The exposition's content type, for the listener.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The class labels of `molecule_token_refresh_total`'s failures, in the order printed.
const FAILURE_CLASSES: [&str; 5] = [
    "transient",
    "rate_limited",
    "protocol",
    "auth",
    "not_configured",
];

/// What the build says about itself: `molecule_build_info`'s labels.
#[derive(Clone, Copy, Debug)]
pub struct Build {
    /// The crate version.
    pub version: &'static str,
    /// The commit it was built from, or `unknown`.
    pub commit: &'static str,
}

/// The text for `config`'s hosts at `now`: the gauges from `doc` (the cache, whoever wrote
/// it), the counters from `status` (this daemon's; none when no daemon has written one).
pub fn render(
    config: &Config,
    status: Option<&DaemonStatus>,
    doc: &Document,
    now: OffsetDateTime,
    build: Build,
) -> String {
    let empty = Counters::default();
    let counters = status.map_or(&empty, |s| &s.counters);
    let mut out = Exposition::default();
    gauges(&mut out, config, doc, now);
    refresh_counters(&mut out, config, counters);
    out.family(
        "molecule_gh_login_total",
        "counter",
        "gh auth login attempts by this daemon since it started",
    );
    for host in &config.hosts {
        let seen = counters.gh_login.get(host).copied().unwrap_or_default();
        outcomes(&mut out, "molecule_gh_login_total", &[("host", host)], seen);
    }
    out.family(
        "molecule_sink_write_total",
        "counter",
        "token file (sink) writes and removals by this daemon since it started",
    );
    outcomes(
        &mut out,
        "molecule_sink_write_total",
        &[],
        counters.sink_writes,
    );
    out.family(
        "molecule_build_info",
        "gauge",
        "the running build: always 1, its labels say which",
    );
    out.sample(
        "molecule_build_info",
        &[("version", build.version), ("commit", build.commit)],
        1,
    );
    out.text
}

/// The cached entries of `host`: the host-wide one and each owner's, with the owner label
/// (empty for the host-wide entry).
fn entries_of<'a>(doc: &'a Document, host: &'a str) -> impl Iterator<Item = (String, &'a Entry)> {
    doc.entries.iter().filter_map(move |(key, entry)| {
        let target = Target::from_key(key);
        (target.host == host).then(|| (target.owner.unwrap_or_default(), entry))
    })
}

/// Every cached entry of a configured host, in the configured order: (host, owner, entry).
fn entries<'a>(
    config: &'a Config,
    doc: &'a Document,
) -> impl Iterator<Item = (&'a str, String, &'a Entry)> {
    config.hosts.iter().flat_map(move |host| {
        entries_of(doc, host).map(move |(owner, e)| (host.as_str(), owner, e))
    })
}

fn gauges(out: &mut Exposition, config: &Config, doc: &Document, now: OffsetDateTime) {
    out.family(
        "molecule_token_expiration_timestamp_seconds",
        "gauge",
        "the cached token's expires_at, in unix seconds",
    );
    for (host, owner, e) in entries(config, doc) {
        out.sample(
            "molecule_token_expiration_timestamp_seconds",
            &[("host", host), ("owner", &owner), ("source", &e.source)],
            e.expires_at.unix_timestamp(),
        );
    }
    out.family(
        "molecule_token_valid",
        "gauge",
        "1 while the cache holds a token that is neither expired nor suspect",
    );
    for host in &config.hosts {
        let mut host_wide = false;
        for (owner, e) in entries_of(doc, host) {
            host_wide |= owner.is_empty();
            let labels = [("host", host.as_str()), ("owner", &owner)];
            out.sample("molecule_token_valid", &labels, u8::from(e.is_usable(now)));
        }
        if !host_wide {
            // Nothing cached for the host itself: that is a 0, not an absent series.
            out.sample("molecule_token_valid", &[("host", host), ("owner", "")], 0);
        }
    }
    out.family(
        "molecule_token_last_success_timestamp_seconds",
        "gauge",
        "when the cached token was fetched (by any process), in unix seconds",
    );
    for (host, owner, e) in entries(config, doc) {
        out.sample(
            "molecule_token_last_success_timestamp_seconds",
            &[("host", host), ("owner", &owner)],
            e.fetched_at.unix_timestamp(),
        );
    }
    out.family(
        "molecule_fallback_active",
        "gauge",
        "1 when no valid token is cached for the host: git gets the fallback token or nothing",
    );
    for host in &config.hosts {
        let valid = entries_of(doc, host).any(|(_, e)| e.is_usable(now));
        out.sample(
            "molecule_fallback_active",
            &[("host", host)],
            u8::from(!valid),
        );
    }
}

fn refresh_counters(out: &mut Exposition, config: &Config, counters: &Counters) {
    out.family(
        "molecule_token_refresh_total",
        "counter",
        "token refresh attempts by this daemon since it started, by result and failure class",
    );
    for host in &config.hosts {
        let by_class = counters.refresh.get(host);
        let count = |class: &str| by_class.and_then(|m| m.get(class)).copied().unwrap_or(0);
        out.sample(
            "molecule_token_refresh_total",
            &[("host", host), ("result", "success"), ("class", "ok")],
            count("ok"),
        );
        for class in FAILURE_CLASSES {
            out.sample(
                "molecule_token_refresh_total",
                &[("host", host), ("result", "failure"), ("class", class)],
                count(class),
            );
        }
    }
    out.family(
        "molecule_token_refresh_duration_seconds",
        "histogram",
        "duration of each token refresh attempt, in seconds",
    );
    let none = Histogram::default();
    for host in &config.hosts {
        let h = counters.refresh_seconds.get(host).unwrap_or(&none);
        let cumulative = h.cumulative();
        let bounds = DURATION_BUCKETS
            .iter()
            .map(f64::to_string)
            .chain(["+Inf".to_owned()]);
        for (le, n) in bounds.zip(cumulative) {
            out.sample(
                "molecule_token_refresh_duration_seconds_bucket",
                &[("host", host), ("le", &le)],
                n,
            );
        }
        out.sample(
            "molecule_token_refresh_duration_seconds_sum",
            &[("host", host)],
            h.sum,
        );
        out.sample(
            "molecule_token_refresh_duration_seconds_count",
            &[("host", host)],
            h.count,
        );
    }
}

/// `result="success"` and `result="failure"` samples of `name`, after `labels`.
fn outcomes(out: &mut Exposition, name: &str, labels: &[(&str, &str)], seen: Outcomes) {
    for (result, n) in [("success", seen.success), ("failure", seen.failure)] {
        let mut all = labels.to_vec();
        all.push(("result", result));
        out.sample(name, &all, n);
    }
}

/// The exposition text being built.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// Starts a family: `# HELP` and `# TYPE` lines, before any of its samples.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample line.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use molecule_credential::Secret;
    use molecule_credential::clock::parse_rfc3339;
    use molecule_credential::status::DaemonStatus;
    use molecule_credential::{Class, cache::Entry};

    const BUILD: Build = Build {
        version: "0.1.0",
        commit: "abc1234",
    };

    fn now() -> OffsetDateTime {
        parse_rfc3339("2026-12-06T20:00:00Z").unwrap()
    }

    fn config(hosts: &str) -> Config {
        Config::load(|k| (k == "MOLECULE_GIT_HOSTS").then(|| hosts.to_owned())).config
    }

    fn entry(minutes: i64, source: &str) -> Entry {
        Entry::new(
            Secret::new("ghs_SECRETTOKENVALUE".into()),
            now() + time::Duration::minutes(minutes),
            now() - time::Duration::minutes(5),
            source,
        )
    }

    fn lines<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .collect()
    }

    #[test]
    fn gauges_come_from_the_cache_for_each_configured_host() {
        let mut doc = Document::default();
        doc.entries
            .insert("github.com".into(), entry(50, "platform"));
        doc.entries
            .insert("github.com/acme".into(), entry(-1, "github-app"));
        let mut suspect = entry(30, "platform");
        suspect.suspect = true;
        doc.entries.insert("ghe.example".into(), suspect);
        doc.entries
            .insert("elsewhere.test".into(), entry(50, "platform"));
        let text = render(
            &config("github.com,ghe.example,idle.example"),
            None,
            &doc,
            now(),
            BUILD,
        );
        let expires = (now() + time::Duration::minutes(50)).unix_timestamp();
        assert_eq!(
            lines(&text, "molecule_token_valid"),
            [
                "molecule_token_valid{host=\"github.com\",owner=\"\"} 1",
                "molecule_token_valid{host=\"github.com\",owner=\"acme\"} 0",
                "molecule_token_valid{host=\"ghe.example\",owner=\"\"} 0",
                "molecule_token_valid{host=\"idle.example\",owner=\"\"} 0",
            ]
        );
        assert!(text.contains(&format!(
            "molecule_token_expiration_timestamp_seconds{{host=\"github.com\",owner=\"\",source=\"platform\"}} {expires}\n"
        )));
        assert_eq!(
            lines(&text, "molecule_fallback_active"),
            [
                "molecule_fallback_active{host=\"github.com\"} 0",
                "molecule_fallback_active{host=\"ghe.example\"} 1",
                "molecule_fallback_active{host=\"idle.example\"} 1",
            ]
        );
        // Only configured hosts, and never a token.
        assert!(!text.contains("elsewhere.test"));
        assert!(!text.contains("SECRET"));
    }

    #[test]
    fn counters_are_present_at_zero_and_count_by_class() {
        let c = config("github.com");
        let text = render(&c, None, &Document::default(), now(), BUILD);
        assert_eq!(lines(&text, "molecule_token_refresh_total").len(), 6);
        assert!(text.contains(
            "molecule_token_refresh_total{host=\"github.com\",result=\"success\",class=\"ok\"} 0\n"
        ));
        assert!(text.contains("molecule_sink_write_total{result=\"failure\"} 0\n"));
        assert!(text.contains(
            "molecule_token_refresh_duration_seconds_bucket{host=\"github.com\",le=\"+Inf\"} 0\n"
        ));
        assert!(text.contains("molecule_build_info{version=\"0.1.0\",commit=\"abc1234\"} 1\n"));

        let mut status = DaemonStatus::new(1, now());
        status
            .counters
            .refresh_attempt("github.com", Class::Ok, 0.02);
        status
            .counters
            .refresh_attempt("github.com", Class::Transient, 3.0);
        status
            .counters
            .refresh_attempt("github.com", Class::Auth, 0.2);
        status
            .counters
            .gh_login
            .entry("github.com".into())
            .or_default()
            .add(true);
        status.counters.sink_writes.add(false);
        let text = render(&c, Some(&status), &Document::default(), now(), BUILD);
        for want in [
            "molecule_token_refresh_total{host=\"github.com\",result=\"success\",class=\"ok\"} 1",
            "molecule_token_refresh_total{host=\"github.com\",result=\"failure\",class=\"transient\"} 1",
            "molecule_token_refresh_total{host=\"github.com\",result=\"failure\",class=\"auth\"} 1",
            "molecule_token_refresh_duration_seconds_bucket{host=\"github.com\",le=\"0.01\"} 0",
            "molecule_token_refresh_duration_seconds_bucket{host=\"github.com\",le=\"0.05\"} 1",
            "molecule_token_refresh_duration_seconds_bucket{host=\"github.com\",le=\"0.25\"} 2",
            "molecule_token_refresh_duration_seconds_bucket{host=\"github.com\",le=\"2.5\"} 2",
            "molecule_token_refresh_duration_seconds_bucket{host=\"github.com\",le=\"5\"} 3",
            "molecule_token_refresh_duration_seconds_bucket{host=\"github.com\",le=\"+Inf\"} 3",
            "molecule_token_refresh_duration_seconds_count{host=\"github.com\"} 3",
            "molecule_gh_login_total{host=\"github.com\",result=\"success\"} 1",
            "molecule_sink_write_total{result=\"failure\"} 1",
        ] {
            assert!(
                text.contains(&format!("{want}\n")),
                "missing {want}\n{text}"
            );
        }
    }

    #[test]
    fn families_are_grouped_and_typed_once() {
        let text = render(
            &config("github.com,ghe.example"),
            None,
            &Document::default(),
            now(),
            BUILD,
        );
        let mut seen = std::collections::BTreeSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                assert!(seen.insert(name.clone()), "{name} typed twice");
                current = name;
            } else if !line.starts_with('#') {
                assert!(
                    line.starts_with(&current),
                    "{line} outside its family {current}"
                );
            }
        }
        assert_eq!(seen.len(), 9);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

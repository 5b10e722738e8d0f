//! Parsers of configuration values, one per kind of value, shared by the environment and the
//! flags (see [`super::setting`]). Each takes a non-empty string and says what is wrong
//! without quoting it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::setting::{Parsed, Problem};
use super::{Issuer, LogFormat, TokenSourceKind};
use crate::host::normalize_host;
use crate::secret::Secret;

/// A path, taken as given.
pub fn path(v: &str) -> Parsed<PathBuf> {
    Parsed::ok(PathBuf::from(v))
}

/// An `http://` or `https://` URL, without its trailing slashes.
pub fn url(v: &str) -> Parsed<String> {
    if valid_url(v) {
        Parsed::ok(v.trim_end_matches('/').to_owned())
    } else {
        Parsed::bad("an http:// or https:// URL")
    }
}

/// One segment of a URL path: unreserved characters only, and not `.` or `..`.
pub fn path_segment(v: &str) -> Parsed<String> {
    if v.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
        && v != "."
        && v != ".."
    {
        Parsed::ok(v.to_owned())
    } else {
        Parsed::bad("a URL path segment (letters, digits, -, _, . and ~)")
    }
}

/// A value that can be sent in an HTTP header: visible ASCII and spaces.
pub fn header_value(v: &str) -> Parsed<String> {
    if v.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        Parsed::ok(v.to_owned())
    } else {
        Parsed::bad("an HTTP header value (visible ASCII and spaces)")
    }
}

/// A whole number.
pub fn number(v: &str) -> Parsed<u64> {
    match v.trim().parse::<u64>() {
        Ok(n) => Parsed::ok(n),
        Err(_) => Parsed::bad("a whole number"),
    }
}

/// A GitHub App's numeric ID, or its client ID.
pub fn app_id(v: &str) -> Parsed<Issuer> {
    if let Ok(id) = v.trim().parse::<u64>() {
        Parsed::ok(Issuer::AppId(id))
    } else if is_client_id(v) {
        Parsed::ok(Issuer::ClientId(v.to_owned()))
    } else {
        Parsed::bad("a GitHub App ID (a number) or client ID (Iv…)")
    }
}

/// A GitHub App's client ID: `Iv1.` and 16 hex digits, or `Iv23` and letters and digits.
pub fn client_id(v: &str) -> Parsed<String> {
    if is_client_id(v) {
        Parsed::ok(v.to_owned())
    } else {
        Parsed::bad("a GitHub App client ID (Iv…)")
    }
}

fn is_client_id(v: &str) -> bool {
    v.len() > "Iv".len()
        && v.starts_with("Iv")
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
}

/// A shell command, kept as a secret (it may carry credentials).
pub fn command(v: &str) -> Parsed<Secret<String>> {
    if v.trim().is_empty() {
        Parsed::bad("a command")
    } else {
        Parsed::ok(Secret::new(v.to_owned()))
    }
}

/// A whole number of seconds from `min` to `max`.
pub fn seconds(v: &str, min: u64, max: u64) -> Parsed<Duration> {
    match v.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Parsed::ok(Duration::from_secs(n)),
        _ => Parsed::bad(format!("a whole number of seconds from {min} to {max}")),
    }
}

/// `1`, `true`, `yes`, `on` or their opposites `0`, `false`, `no`, `off`, in any case.
pub fn switch(v: &str) -> Parsed<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Parsed::ok(true),
        "0" | "false" | "no" | "off" => Parsed::ok(false),
        _ => Parsed::bad("1 or 0"),
    }
}

/// A `tracing` filter (`info`, `debug`, `molecule_credential=trace,warn`).
pub fn log_filter(v: &str) -> Parsed<String> {
    match tracing_subscriber::EnvFilter::try_new(v) {
        Ok(_) => Parsed::ok(v.to_owned()),
        Err(_) => Parsed::bad("a log filter (such as info or debug)"),
    }
}

/// `text` or `json`.
pub fn log_format(v: &str) -> Parsed<LogFormat> {
    match v {
        "text" => Parsed::ok(LogFormat::Text),
        "json" => Parsed::ok(LogFormat::Json),
        _ => Parsed::bad("text or json"),
    }
}

/// The name of a token source.
pub fn token_source(v: &str) -> Parsed<TokenSourceKind> {
    match v {
        "platform" => Parsed::ok(TokenSourceKind::Platform),
        "github-app" => Parsed::ok(TokenSourceKind::GithubApp),
        "file" => Parsed::ok(TokenSourceKind::File),
        _ => Parsed::bad("platform, github-app or file"),
    }
}

/// Comma-separated host names (`host` or `host:port`), normalised, without repeats.
pub fn hosts(v: &str) -> Parsed<Vec<String>> {
    let mut parsed = list(v, "a host name (host or host:port)", normalize_host);
    if let Some(hosts) = parsed.value.take() {
        let mut unique = Vec::with_capacity(hosts.len());
        for host in hosts {
            if !unique.contains(&host) {
                unique.push(host);
            }
        }
        parsed.value = Some(unique);
    }
    parsed
}

/// `owner=installation-id,…`, owners lower-cased.
pub fn installations(v: &str) -> Parsed<BTreeMap<String, u64>> {
    pairs(v, "owner=installation-id", is_name, |id| id.parse().ok())
}

/// `host=url,…`: the REST API base of each git host, hosts normalised.
pub fn api_urls(v: &str) -> Parsed<BTreeMap<String, String>> {
    let mut parsed = pairs(
        v,
        "host=url",
        |h| normalize_host(h).is_some(),
        |u| valid_url(u).then(|| u.trim_end_matches('/').to_owned()),
    );
    parsed.value = parsed.value.map(|urls| {
        urls.into_iter()
            .filter_map(|(h, u)| Some((normalize_host(&h)?, u)))
            .collect()
    });
    parsed
}

/// Comma-separated sinks, `FORMAT[@HOST[/OWNER]]:/PATH` each (see [`crate::sink::parse`]).
pub fn sinks(v: &str) -> Parsed<Vec<crate::sink::Spec>> {
    list(
        v,
        "FORMAT[@HOST[/OWNER]]:/PATH (raw, json, header or env, and an absolute path)",
        crate::sink::parse,
    )
}

/// A group: a name (letters, digits, `_`, `-`, `.`) or a gid.
pub fn group(v: &str) -> Parsed<String> {
    if v.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        Parsed::ok(v.to_owned())
    } else {
        Parsed::bad("a group name or gid")
    }
}

/// `ADDR:PORT`: `127.0.0.1:9464`, `0.0.0.0:9464`, `[::1]:9464`.
pub fn socket_addr(v: &str) -> Parsed<std::net::SocketAddr> {
    match v.trim().parse() {
        Ok(a) => Parsed::ok(a),
        Err(_) => Parsed::bad("ADDR:PORT (such as 127.0.0.1:9464)"),
    }
}

/// Comma-separated repository names.
pub fn repositories(v: &str) -> Parsed<Vec<String>> {
    list(v, "a repository name", |r| is_name(r).then(|| r.to_owned()))
}

/// `permission=read|write|admin,…`.
pub fn permissions(v: &str) -> Parsed<BTreeMap<String, String>> {
    pairs(v, "permission=read|write|admin", is_name, |level| {
        matches!(level, "read" | "write" | "admin").then(|| level.to_owned())
    })
}

/// A comma-separated list: empty entries are skipped, a bad one is reported by position and
/// left out.
fn list<T>(v: &str, expected: &'static str, item: impl Fn(&str) -> Option<T>) -> Parsed<Vec<T>> {
    let (mut values, mut problems) = (Vec::new(), Vec::new());
    for (i, entry) in v.split(',').map(str::trim).enumerate() {
        if entry.is_empty() {
            continue;
        }
        match item(entry) {
            Some(value) => values.push(value),
            None => problems.push(Problem::entry(i, expected)),
        }
    }
    Parsed {
        value: Some(values),
        problems,
    }
}

/// `key=value,…` with keys lower-cased, as a [`list`].
fn pairs<V>(
    v: &str,
    expected: &'static str,
    valid_key: impl Fn(&str) -> bool,
    value: impl Fn(&str) -> Option<V>,
) -> Parsed<BTreeMap<String, V>> {
    let parsed = list(v, expected, |entry| {
        let (k, v) = entry.split_once('=')?;
        let k = k.trim();
        valid_key(k).then_some(())?;
        Some((k.to_ascii_lowercase(), value(v.trim())?))
    });
    Parsed {
        value: parsed.value.map(|entries| entries.into_iter().collect()),
        problems: parsed.problems,
    }
}

/// A GitHub owner, repository or permission name.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn valid_url(v: &str) -> bool {
    (v.starts_with("http://") || v.starts_with("https://"))
        && v.len() > "https://".len()
        && v.bytes().all(|b| b.is_ascii_graphic())
}

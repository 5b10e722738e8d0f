//! Token files for readers that poll (DESIGN.md, "Token files for readers that poll (sinks)"):
//! what a sink is (`FORMAT[@HOST[/OWNER]]:PATH`) and what it must hold at a given moment.
//! Pure; the daemon writes them (`gh-token-refresh`'s `sinks` module).
//!
//! A sink holds exactly what `token --host H --owner O --format F` would print: the cached
//! token while it is usable (not expired, not suspect), else the fallback token the way
//! `token` prints it, else nothing at all (the file is removed, so a reader fails loudly
//! instead of replaying a dead token).

use std::fmt;
use std::path::PathBuf;

use time::OffsetDateTime;

use crate::cache::{Entry, SOURCE_FALLBACK};
use crate::fallback::Fallback;
use crate::host::normalize_host;
use crate::output::{Format, Handout};
use crate::route::{Target, is_owner};

/// One sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sink {
    /// What it holds.
    pub format: Format,
    /// Whose token: a configured host, and an owner for the `github-app` source's routing.
    pub target: Target,
    /// Where (absolute).
    pub path: PathBuf,
}

impl fmt::Display for Sink {
    /// `FORMAT@KEY:PATH`, as status and logs name a sink (never its content).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}:{}",
            self.format,
            self.target.key(),
            self.path.display()
        )
    }
}

/// A sink as written, before it is bound to the configured hosts: `FORMAT[@HOST[/OWNER]]:PATH`
/// parsed, HOST normalised, OWNER lower-cased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// What it holds.
    pub format: Format,
    /// The host it names, if any (else the first configured host).
    pub host: Option<String>,
    /// The owner it names, if any.
    pub owner: Option<String>,
    /// Where (absolute).
    pub path: PathBuf,
}

/// Parses one `FORMAT[@HOST[/OWNER]]:PATH`; `None` when it is not one. PATH must be absolute:
/// a daemon's working directory is nobody's business, and requiring `/` tells a host's
/// `:port` from the path.
pub fn parse(spec: &str) -> Option<Spec> {
    let spec = spec.trim();
    let (head, path) = match spec.find('@') {
        // FORMAT@HOST[:PORT][/OWNER]:/PATH: the path starts at the first ":/" after the host.
        Some(at) => {
            let colon = spec[at..].find(":/")? + at;
            (&spec[..colon], &spec[colon + 1..])
        }
        None => spec.split_once(':')?,
    };
    if !path.starts_with('/') {
        return None;
    }
    let (format, target) = match head.split_once('@') {
        Some((format, target)) => (format, Some(target)),
        None => (head, None),
    };
    let format: Format = format.trim().parse().ok()?;
    let (host, owner) = match target.map(|t| t.split_once('/').unwrap_or((t, ""))) {
        None => (None, None),
        Some((host, owner)) => (
            Some(normalize_host(host)?),
            match owner {
                "" => None,
                o if is_owner(o) => Some(o.to_ascii_lowercase()),
                _ => return None,
            },
        ),
    };
    Some(Spec {
        format,
        host,
        owner,
        path: PathBuf::from(path),
    })
}

impl Spec {
    /// The sink, bound to `hosts` (the configured ones): `None` when it names a host that is
    /// not among them, or there is none.
    pub fn resolve(self, hosts: &[String]) -> Option<Sink> {
        let host = match self.host {
            Some(h) => hosts.contains(&h).then_some(h)?,
            None => hosts.first()?.clone(),
        };
        Some(Sink {
            format: self.format,
            target: Target {
                host,
                owner: self.owner,
            },
            path: self.path,
        })
    }
}

/// What a sink must hold at `now`: the cached `entry` while it is usable, else the
/// `fallback`, else nothing (remove the file).
pub fn holds<'a>(
    entry: Option<&'a Entry>,
    fallback: Option<&'a Fallback>,
    now: OffsetDateTime,
) -> Option<Handout<'a>> {
    match entry.filter(|e| e.is_usable(now) && e.source != SOURCE_FALLBACK) {
        Some(e) => Some(Handout {
            token: &e.token,
            expires_at: Some(e.expires_at),
            source: &e.source,
        }),
        None => fallback.map(|f| Handout {
            token: &f.token,
            expires_at: None,
            source: SOURCE_FALLBACK,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;
    use crate::clock::parse_rfc3339;

    fn hosts() -> Vec<String> {
        vec!["github.com".into(), "ghe.example:8443".into()]
    }

    fn sink(spec: &str) -> Option<Sink> {
        parse(spec)?.resolve(&hosts())
    }

    #[test]
    fn specs_parse_with_defaults_ports_and_owners() {
        let s = sink("json:/run/proxy/token.json").unwrap();
        assert_eq!(
            (s.format, s.target.key(), s.path),
            (
                Format::Json,
                "github.com".to_owned(),
                PathBuf::from("/run/proxy/token.json")
            )
        );
        let s = sink(" env@GHE.example:8443/Acme:/run/a:b.env ").unwrap();
        assert_eq!(
            (s.format, s.target.key(), s.path),
            (
                Format::Env,
                "ghe.example:8443/acme".to_owned(),
                PathBuf::from("/run/a:b.env")
            )
        );
        assert_eq!(
            sink("raw@github.com:/t").unwrap().to_string(),
            "raw@github.com:/t"
        );
    }

    #[test]
    fn bad_specs_are_refused() {
        for spec in [
            "json",
            "json:relative/path",
            "json@github.com",
            "yaml:/t",
            "ghs_SECRET:/t",
            "raw@github.com/a b:/t",
            "raw@bad host:/t",
        ] {
            assert_eq!(parse(spec), None, "{spec}");
        }
        // Well formed, but not a configured host.
        for spec in ["raw@evil.example:/t", "raw@github.com:8443:/t"] {
            assert!(parse(spec).is_some(), "{spec}");
            assert_eq!(sink(spec), None, "{spec}");
        }
    }

    #[test]
    fn holds_the_usable_token_else_the_fallback_else_nothing() {
        let now = parse_rfc3339("2026-12-06T20:00:00Z").unwrap();
        let mut e = Entry::new(
            Secret::new("ghs_cached".into()),
            now + time::Duration::minutes(3),
            now,
            "platform",
        );
        let fb = Fallback {
            token: Secret::new("ghs_fallback".into()),
            origin: "GH_TOKEN",
        };
        // Inside the margin but alive: still what `token` prints when the refresh fails.
        let held = holds(Some(&e), Some(&fb), now).unwrap();
        assert_eq!(
            (held.token.expose().as_str(), held.source),
            ("ghs_cached", "platform")
        );
        e.suspect = true;
        let held = holds(Some(&e), Some(&fb), now).unwrap();
        assert_eq!(
            (held.token.expose().as_str(), held.source, held.expires_at),
            ("ghs_fallback", "fallback", None)
        );
        assert!(holds(Some(&e), None, now).is_none());
        e.suspect = false;
        assert!(holds(Some(&e), None, now + time::Duration::minutes(3)).is_none());
    }
}

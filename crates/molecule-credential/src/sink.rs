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

/// Why one sink specification was refused (never quoting it: a misplaced value may be a
/// secret).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecError {
    /// No `:PATH`, or a path that is not absolute.
    Path,
    /// Not one of `raw`, `json`, `header`, `env`.
    Format,
    /// Not a host of `MOLECULE_GIT_HOSTS`, or a malformed owner.
    Target,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpecError::Path => "has no absolute PATH (FORMAT[@HOST[/OWNER]]:/PATH)",
            SpecError::Format => "names a format other than raw, json, header or env",
            SpecError::Target => {
                "names a host that is not in MOLECULE_GIT_HOSTS, or a malformed owner"
            }
        })
    }
}

/// Parses one `FORMAT[@HOST[/OWNER]]:PATH`. HOST defaults to the first of `hosts` (the
/// configured hosts, normalised). PATH must be absolute: a daemon's working directory is
/// nobody's business, and requiring `/` tells a host's `:port` from the path.
pub fn parse(spec: &str, hosts: &[String]) -> Result<Sink, SpecError> {
    let spec = spec.trim();
    let (head, path) = match spec.find('@') {
        // FORMAT@HOST[:PORT][/OWNER]:/PATH: the path starts at the first ":/" after the host.
        Some(at) => {
            let colon = spec[at..].find(":/").ok_or(SpecError::Path)? + at;
            (&spec[..colon], &spec[colon + 1..])
        }
        None => spec.split_once(':').ok_or(SpecError::Path)?,
    };
    if !path.starts_with('/') {
        return Err(SpecError::Path);
    }
    let (format, target) = match head.split_once('@') {
        Some((format, target)) => (format, Some(target)),
        None => (head, None),
    };
    let format: Format = format.trim().parse().map_err(|()| SpecError::Format)?;
    let target = match target {
        None => Target::host(hosts.first().ok_or(SpecError::Target)?),
        Some(t) => {
            let (host, owner) = match t.split_once('/') {
                Some((h, o)) => (h, Some(o)),
                None => (t, None),
            };
            let host = normalize_host(host)
                .filter(|h| hosts.contains(h))
                .ok_or(SpecError::Target)?;
            let owner = match owner {
                Some(o) if is_owner(o) => Some(o.to_ascii_lowercase()),
                Some(_) => return Err(SpecError::Target),
                None => None,
            };
            Target { host, owner }
        }
    };
    Ok(Sink {
        format,
        target,
        path: PathBuf::from(path),
    })
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

    #[test]
    fn specs_parse_with_defaults_ports_and_owners() {
        let s = parse("json:/run/proxy/token.json", &hosts()).unwrap();
        assert_eq!(
            (s.format, s.target.key(), s.path),
            (
                Format::Json,
                "github.com".to_owned(),
                PathBuf::from("/run/proxy/token.json")
            )
        );
        let s = parse(" env@GHE.example:8443/Acme:/run/a:b.env ", &hosts()).unwrap();
        assert_eq!(
            (s.format, s.target.key(), s.path),
            (
                Format::Env,
                "ghe.example:8443/acme".to_owned(),
                PathBuf::from("/run/a:b.env")
            )
        );
        assert_eq!(
            parse("raw@github.com:/t", &hosts()).unwrap().to_string(),
            "raw@github.com:/t"
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (spec, want) in [
            ("json", SpecError::Path),
            ("json:relative/path", SpecError::Path),
            ("json@github.com", SpecError::Path),
            ("yaml:/t", SpecError::Format),
            ("ghs_SECRET:/t", SpecError::Format),
            ("raw@evil.example:/t", SpecError::Target),
            ("raw@github.com/a b:/t", SpecError::Target),
            ("raw@github.com:8443:/t", SpecError::Target),
        ] {
            assert_eq!(parse(spec, &hosts()), Err(want), "{spec}");
        }
        assert!(!SpecError::Format.to_string().contains("SECRET"));
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

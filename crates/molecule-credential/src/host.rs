//! Host names and GitHub's URL layout: how git's `host=` is normalised and matched, and where a
//! host's REST API lives.
//!
//! Matching is exact on the normalised form, so a host that only looks like a configured one
//! (a suffix, a trailing dot, a userinfo, a percent-encoding) never matches.

use std::collections::BTreeMap;

/// The REST API of github.com.
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";

/// Normalises a host as git sends it (`host` or `host:port`): lower-case, `:443` removed.
/// Returns `None` for anything that is not a plain host name or address: empty, whitespace,
/// control characters, `/`, `@`, `%`, `\\`, a trailing dot, a colon outside an IPv6 literal's
/// brackets, or a bad port. Matching is exact on the result, so a host that only looks like a
/// configured one never matches. Idempotent.
pub fn normalize_host(host: &str) -> Option<String> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let ipv6_ok = !inside.is_empty()
            && inside
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
        if !ipv6_ok {
            return None;
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (&host[..inside.len() + 2], port)
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let bracketed = name.starts_with('[');
    let name_ok = bracketed
        || (!name.is_empty()
            && !name.ends_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')));
    if !name_ok {
        return None;
    }
    let name = name.to_ascii_lowercase();
    match port {
        None => Some(name),
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u16>() {
                Ok(443) => Some(name),
                Ok(0) | Err(_) => None,
                Ok(n) => Some(format!("{name}:{n}")),
            }
        }
        Some(_) => None,
    }
}

/// The REST API base for git host `host`: an explicit per-host entry (`MOLECULE_GITHUB_API_URLS`);
/// else the one configured for every host (`MOLECULE_GITHUB_API_URL`); else GitHub's own
/// layout: `api.github.com` for github.com, `api.HOST` for GHE.com (`*.ghe.com`),
/// `https://HOST/api/v3` for GitHub Enterprise Server.
pub fn api_base(
    host: &str,
    per_host: &BTreeMap<String, String>,
    every_host: Option<&str>,
) -> String {
    if let Some(url) = per_host.get(host) {
        return url.clone();
    }
    if let Some(url) = every_host {
        return url.to_owned();
    }
    if host == "github.com" {
        DEFAULT_GITHUB_API_URL.to_owned()
    } else if host.ends_with(".ghe.com") {
        format!("https://api.{host}")
    } else {
        format!("https://{host}/api/v3")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_literals() {
        assert_eq!(normalize_host("[::1]").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("[::1]:8443").as_deref(), Some("[::1]:8443"));
        assert_eq!(normalize_host("[::1]:443").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("[::1"), None);
        assert_eq!(normalize_host("[evil.test]"), None);
        assert_eq!(normalize_host("[::1]x"), None);
    }

    #[test]
    fn github_layout() {
        let none = BTreeMap::new();
        assert_eq!(
            api_base("github.com", &none, None),
            "https://api.github.com"
        );
        assert_eq!(
            api_base("acme.ghe.com", &none, None),
            "https://api.acme.ghe.com"
        );
        assert_eq!(
            api_base("ghe.example.com", &none, None),
            "https://ghe.example.com/api/v3"
        );
        let one = BTreeMap::from([("ghe.corp:8443".to_owned(), "https://x/api/v3".to_owned())]);
        assert_eq!(
            api_base("ghe.corp:8443", &one, Some("http://all")),
            "https://x/api/v3"
        );
        assert_eq!(
            api_base("github.com", &one, Some("http://all")),
            "http://all"
        );
    }
}

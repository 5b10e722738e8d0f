//! Which `credential.<url>.*` and `http.<url>.*` entries apply to a request: git's urlmatch
//! (`urlmatch.c`), and the partial-URL fallback credential keys have (`credential.c`).
//!
//! git builds the request's URL from the credential (`credential_format`: protocol, user,
//! host with its port, and the path, which `useHttpPath` only removes *after* the config has
//! been applied) and normalises it and each subsection the same way: scheme and host
//! lower-cased, the scheme's default port dropped, `.` and `..` path segments resolved,
//! percent-escapes of unreserved characters decoded. A subsection then applies when
//!
//! - its scheme is the request's;
//! - its user, if it names one, is the request's;
//! - its host has as many labels as the request's and each is equal or `*`;
//! - its port is the request's;
//! - its path is the request's path or a prefix of it ending at a `/`.
//!
//! A subsection that is not a URL (`credential.github.com.helper`) is read as a partial
//! credential instead: each of protocol, user, host (with port) and path that it gives must
//! equal the request's, as written. `http.*` keys have no such fallback.

use std::fmt::Write as _;

/// A URL split where git splits it: `scheme://[userinfo@]host[:port][rest]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Url<'a> {
    /// As written.
    pub scheme: &'a str,
    /// `user[:password]`, when there is an `@`.
    pub userinfo: Option<&'a str>,
    /// `host[:port]`, as written.
    pub host: &'a str,
    /// Path, query and fragment, from the first `/`, `?` or `#` on.
    pub rest: &'a str,
}

impl<'a> Url<'a> {
    /// Splits `url`; `None` without `://`.
    pub fn parse(url: &'a str) -> Option<Self> {
        let (scheme, after) = url.split_once("://")?;
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(end);
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        Some(Self {
            scheme,
            userinfo,
            host,
            rest,
        })
    }

    /// The URL with its userinfo shown as `***`.
    pub fn redacted(&self) -> String {
        let hidden = if self.userinfo.is_some() { "***@" } else { "" };
        format!("{}://{hidden}{}{}", self.scheme, self.host, self.rest)
    }

    /// The URL without its userinfo.
    pub fn without_userinfo(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.rest)
    }
}

/// What a credential lookup is for, as git's credential holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup<'a> {
    /// `https`.
    pub protocol: &'a str,
    /// `host[:port]`, as the remote URL wrote it.
    pub host: &'a str,
    /// The repository path without leading or trailing slashes, when git has one.
    pub path: Option<&'a str>,
    /// The user name of the remote URL, if any.
    pub username: Option<&'a str>,
}

impl<'a> Lookup<'a> {
    /// `https://HOST`, with no user and no path: what applies to every repository of a host.
    pub fn https(host: &'a str) -> Self {
        Self {
            protocol: "https",
            host,
            path: None,
            username: None,
        }
    }

    /// The URL git matches config subsections against (`credential_format`).
    fn url(&self) -> String {
        let mut url = format!("{}://", self.protocol);
        if let Some(user) = self.username.filter(|u| !u.is_empty()) {
            let _ = write!(url, "{}@", percent_encode(user, true));
        }
        url.push_str(self.host);
        if let Some(path) = self.path {
            let _ = write!(url, "/{}", percent_encode(path, false));
        }
        url
    }
}

/// Whether the subsection `pattern` of a `credential.<pattern>.*` key applies to `lookup`:
/// urlmatch when it is a URL, else the partial-credential match.
pub fn credential_matches(pattern: &str, lookup: &Lookup<'_>) -> bool {
    match (Normal::of(pattern), Normal::of(&lookup.url())) {
        (Some(pattern), Some(url)) => pattern.matches(&url),
        (None, _) => partial_matches(pattern, lookup),
        (Some(_), None) => false,
    }
}

/// Whether an `http.<pattern>.*` key applies to some request to `lookup`'s host: its scheme,
/// host and port match (its user and path, if any, only narrow it to some repositories).
pub fn http_matches_host(pattern: &str, lookup: &Lookup<'_>) -> bool {
    let host_only = Lookup {
        path: None,
        username: None,
        ..*lookup
    };
    match (Normal::of(pattern), Normal::of(&host_only.url())) {
        (Some(pattern), Some(url)) => Normal {
            user: None,
            path: "/".into(),
            ..pattern
        }
        .matches(&url),
        _ => false,
    }
}

/// A URL normalised as git's `url_normalize` does, for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Normal {
    scheme: String,
    user: Option<String>,
    host: String,
    port: Option<String>,
    path: String,
}

impl Normal {
    /// `None` when git would not take `url` for a URL.
    fn of(url: &str) -> Option<Self> {
        let parts = Url::parse(url)?;
        let mut scheme = parts.scheme.chars();
        let valid_scheme = scheme.next().is_some_and(|c| c.is_ascii_alphabetic())
            && scheme.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !valid_scheme {
            return None;
        }
        let scheme = parts.scheme.to_ascii_lowercase();
        let (host, port) = split_port(parts.host)?;
        if host.is_empty() {
            return None;
        }
        let default_port = match scheme.as_str() {
            "http" => Some("80"),
            "https" => Some("443"),
            _ => None,
        };
        let port = port.filter(|p| !p.is_empty() && Some(*p) != default_port);
        let path_end = parts.rest.find(['?', '#']).unwrap_or(parts.rest.len());
        Some(Self {
            scheme,
            user: parts
                .userinfo
                .map(|u| unescape_unreserved(u.split_once(':').map_or(u, |(user, _)| user))),
            host: host.to_ascii_lowercase(),
            port: port.map(str::to_owned),
            path: normalise_path(&parts.rest[..path_end])?,
        })
    }

    /// git's `match_urls`, with `self` as the config's URL.
    fn matches(&self, url: &Normal) -> bool {
        self.scheme == url.scheme
            && self
                .user
                .as_ref()
                .is_none_or(|u| url.user.as_ref() == Some(u))
            && host_matches(&self.host, &url.host)
            && self.port == url.port
            && path_prefix(&self.path, &url.path)
    }
}

/// `host[:port]`, IPv6 literals in brackets; `None` for a port that is not a number.
fn split_port(authority: &str) -> Option<(&str, Option<&str>)> {
    let colon = match authority.strip_prefix('[') {
        Some(inner) => inner
            .find(']')
            .map(|i| i + 2)
            .filter(|&i| i < authority.len()),
        None => authority.rfind(':'),
    };
    match colon {
        Some(i) if authority.as_bytes().get(i) == Some(&b':') => {
            let port = &authority[i + 1..];
            port.bytes()
                .all(|b| b.is_ascii_digit())
                .then_some((&authority[..i], Some(port)))
        }
        _ => Some((authority, None)),
    }
}

/// Each `.`-separated label equal, or `*` in the pattern (git's `match_host`).
fn host_matches(pattern: &str, host: &str) -> bool {
    let (pattern, host): (Vec<&str>, Vec<&str>) =
        (pattern.split('.').collect(), host.split('.').collect());
    pattern.len() == host.len() && pattern.iter().zip(&host).all(|(p, h)| *p == "*" || p == h)
}

/// `prefix` is `path`, or a prefix of it ending at a `/` (git's `url_match_prefix`).
fn path_prefix(prefix: &str, path: &str) -> bool {
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    prefix.is_empty()
        || path
            .strip_prefix(prefix)
            .is_some_and(|tail| tail.is_empty() || tail.starts_with('/'))
}

/// The path with `.` and `..` segments resolved and unreserved escapes decoded; `/` when
/// empty; `None` when `..` climbs above the root (git refuses such a URL).
fn normalise_path(path: &str) -> Option<String> {
    let mut segments: Vec<String> = Vec::new();
    let raw: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in raw.iter().enumerate() {
        let last = i + 1 == raw.len();
        match *segment {
            "." if last => segments.push(String::new()),
            "." => {}
            ".." => {
                segments.pop()?;
                if last {
                    segments.push(String::new());
                }
            }
            s => segments.push(unescape_unreserved(s)),
        }
    }
    Some(format!("/{}", segments.join("/")))
}

/// `%XX` of an unreserved character decoded, any other `%xx` upper-cased: the form git
/// compares in.
fn unescape_unreserved(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let escape = rest
            .get(i + 1..i + 3)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        match escape.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => out.push(char::from(b)),
            Some(_) => {
                out.push('%');
                out.push_str(&rest[i + 1..i + 3].to_ascii_uppercase());
            }
            None => {
                out.push('%');
                rest = &rest[i + 1..];
                continue;
            }
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    out
}

/// git's `strbuf_add_percentencode`: everything but unreserved characters and `/` (unless
/// `slash`) escaped.
fn percent_encode(s: &str, slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (b == b'/' && !slash) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// git's `%XX` decoding of a partial credential's fields.
fn url_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let hex = s
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A subsection that is not a URL, read as a partial credential
/// (`credential_from_potentially_partial_url`) and matched field by field, as written
/// (`credential_match`).
fn partial_matches(pattern: &str, lookup: &Lookup<'_>) -> bool {
    let (protocol, rest) = match pattern.split_once("://") {
        Some((p, r)) => ((!p.is_empty()).then_some(p), r),
        None => (None, pattern),
    };
    let slash = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(slash);
    let (user, host) = match authority.find('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            (Some(url_decode(user)), url_decode(&authority[at + 1..]))
        }
        None => (None, url_decode(authority)),
    };
    let path = path.trim_matches('/');
    let path = (!path.is_empty()).then(|| url_decode(path));
    protocol.is_none_or(|p| p == lookup.protocol)
        && host == lookup.host
        && path.is_none_or(|p| lookup.path == Some(p.as_str()))
        && user.is_none_or(|u| lookup.username == Some(u.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(pattern: &str, host: &str) -> bool {
        credential_matches(pattern, &Lookup::https(host))
    }

    #[test]
    fn url_patterns_match_like_git() {
        assert!(host("https://github.com", "github.com"));
        assert!(host("https://GitHub.com/", "github.com"));
        assert!(host("HTTPS://github.com", "github.com"));
        assert!(host("https://github.com:443", "github.com"));
        assert!(host("https://*.example.com", "ghe.example.com"));
        assert!(host("https://ghe.*.com", "ghe.example.com"));
        assert!(!host("https://*.example.com", "a.b.example.com"));
        assert!(!host("https://*.example.com", "example.com"));
        assert!(!host("http://github.com", "github.com"));
        assert!(!host("https://github.com:8443", "github.com"));
        assert!(host("https://ghe.corp:8443", "ghe.corp:8443"));
        assert!(!host("https://ghe.corp", "ghe.corp:8443"));
        assert!(!host("https://evilgithub.com", "github.com"));
        assert!(
            !host("https://github.com/acme", "github.com"),
            "a path pattern needs that path"
        );
        assert!(
            !host("https://octocat@github.com", "github.com"),
            "a user pattern needs that user"
        );
    }

    #[test]
    fn paths_and_users_narrow_a_pattern() {
        let repo = Lookup {
            path: Some("acme/app.git"),
            ..Lookup::https("github.com")
        };
        assert!(credential_matches("https://github.com/acme", &repo));
        assert!(credential_matches("https://github.com/acme/", &repo));
        assert!(credential_matches("https://github.com/./x/../acme", &repo));
        assert!(credential_matches("https://github.com/%61cme", &repo));
        assert!(!credential_matches("https://github.com/ac", &repo));
        assert!(!credential_matches("https://github.com/Acme", &repo));
        assert!(credential_matches("https://github.com", &repo));
        let user = Lookup {
            username: Some("octocat"),
            ..repo
        };
        assert!(credential_matches("https://octocat@github.com/acme", &user));
        assert!(credential_matches("https://octocat:pw@github.com", &user));
        assert!(!credential_matches("https://hubot@github.com", &user));
        assert!(credential_matches("https://github.com", &user));
    }

    #[test]
    fn partial_urls_match_field_by_field_as_written() {
        assert!(host("github.com", "github.com"));
        assert!(!host("GitHub.com", "github.com"), "compared as written");
        assert!(host("ghe.corp:8443", "ghe.corp:8443"));
        assert!(!host("ghe.corp", "ghe.corp:8443"));
        assert!(!host("github.com/acme", "github.com"));
        let repo = Lookup {
            path: Some("acme/app.git"),
            ..Lookup::https("github.com")
        };
        assert!(credential_matches("github.com/acme/app.git/", &repo));
        assert!(
            !credential_matches("github.com/acme", &repo),
            "no prefix rule"
        );
        // A URL git cannot normalise (a port that is not a number) falls back too.
        assert!(!host("https://github.com:x", "github.com"));
        assert!(http_matches_host("https://github.com/acme/", &repo));
        assert!(
            !http_matches_host("github.com", &repo),
            "http.* has no fallback"
        );
    }

    #[test]
    fn urls_split_where_git_splits_them() {
        let u = Url::parse("https://x-access-token:ghs_SECRET@github.com/acme/app.git").unwrap();
        assert_eq!(u.userinfo, Some("x-access-token:ghs_SECRET"));
        assert_eq!(u.host, "github.com");
        assert_eq!(u.redacted(), "https://***@github.com/acme/app.git");
        assert_eq!(u.without_userinfo(), "https://github.com/acme/app.git");
        assert_eq!(Url::parse("git@github.com:acme/app.git"), None);
        assert_eq!(split_port("[::1]:8443"), Some(("[::1]", Some("8443"))));
        assert_eq!(split_port("[::1]"), Some(("[::1]", None)));
        assert_eq!(split_port("h:x"), None);
    }
}

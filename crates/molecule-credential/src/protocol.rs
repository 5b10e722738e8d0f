//! git's credential helper protocol (gitcredentials(7), git-credential(1)): the request git
//! writes on our stdin and the answer we print.
//!
//! Tolerant on the wire, strict inside: unknown keys are ignored as git asks, but a value with
//! CR or NUL, a line without `=`, non-UTF-8 bytes or an oversized line is a typed error, so a
//! crafted URL can never smuggle a second `host=` past us (CVE-2020-5260, CVE-2024-52006).

use std::io::{BufRead, Read, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Class, Error, Result};
use crate::secret::Secret;

/// Longest accepted line, in bytes. Tokens are ~500 bytes and `wwwauth[]` headers a few KiB;
/// anything larger is not from git.
pub const MAX_LINE: usize = 64 * 1024;
/// Most input accepted in one request.
pub const MAX_INPUT: usize = 256 * 1024;

/// What git told us about the credential it needs.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// `protocol=`: `https`, `http`, …
    pub protocol: Option<String>,
    /// `host=`: host name, with `:port` when not the default.
    pub host: Option<String>,
    /// `path=`: only sent with `credential.useHttpPath`.
    pub path: Option<String>,
    /// `username=`.
    pub username: Option<String>,
    /// `password=`: sent with `store` and `erase`.
    pub password: Option<Secret<String>>,
    /// `capability[]=`: what this git understands (`authtype`, `state`).
    pub capabilities: Vec<String>,
    /// `authtype=` (git ≥ 2.46): the scheme of `credential`, e.g. `Basic`.
    pub authtype: Option<String>,
    /// `credential=` (git ≥ 2.46): the pre-encoded credential, sent back with `erase`.
    pub credential: Option<Secret<String>>,
}

impl Request {
    /// Whether git announced `capability[]=NAME`.
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.iter().any(|c| c == name)
    }

    /// The token the caller presents: `password=`, or the password inside a
    /// `authtype=Basic` + `credential=` pair (what git ≥ 2.46 sends back with `erase` after we
    /// answered that way).
    pub fn presented_token(&self) -> Option<Secret<String>> {
        if let Some(p) = &self.password {
            return Some(p.clone());
        }
        let basic = self
            .authtype
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case("basic"));
        let credential = self.credential.as_ref().filter(|_| basic)?;
        let decoded = STANDARD.decode(credential.expose().as_bytes()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        Some(Secret::new(password.to_owned()))
    }
}

fn bad(message: impl Into<String>) -> Error {
    Error::new(Class::BadInput, message)
}

/// Reads one request: `key=value` lines until a blank line or end of input.
pub fn read_request(input: impl BufRead) -> Result<Request> {
    let mut input = input.take(MAX_INPUT as u64 + 1);
    let mut request = Request::default();
    let mut line = Vec::with_capacity(256);
    let mut total = 0usize;
    loop {
        line.clear();
        let n = (&mut input)
            .take(MAX_LINE as u64 + 2)
            .read_until(b'\n', &mut line)
            .map_err(|e| bad(format!("reading credential input: {e}")).with_source(e))?;
        if n == 0 {
            break;
        }
        total += n;
        if total > MAX_INPUT {
            return Err(bad(format!("credential input exceeds {MAX_INPUT} bytes")));
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.len() > MAX_LINE {
            return Err(bad(format!(
                "credential input line exceeds {MAX_LINE} bytes"
            )));
        }
        if line.is_empty() {
            break;
        }
        if line.contains(&0) {
            return Err(bad("credential input contains a NUL byte"));
        }
        if line.contains(&b'\r') {
            return Err(bad("credential input contains a carriage return"));
        }
        let text = std::str::from_utf8(&line).map_err(|_| bad("credential input is not UTF-8"))?;
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| bad("credential input line has no '='"))?;
        if key.is_empty() {
            return Err(bad("credential input line has an empty key"));
        }
        apply(&mut request, key, value)?;
    }
    Ok(request)
}

fn apply(request: &mut Request, key: &str, value: &str) -> Result<()> {
    match key {
        "protocol" => set_once(&mut request.protocol, key, value),
        "host" => set_once(&mut request.host, key, value),
        "path" => set_once(&mut request.path, key, value),
        "username" => set_once(&mut request.username, key, value),
        "password" => match &request.password {
            Some(p) if !p.eq_str(value) => Err(conflict(key)),
            _ => {
                request.password = Some(Secret::new(value.to_owned()));
                Ok(())
            }
        },
        "capability[]" => {
            request.capabilities.push(value.to_owned());
            Ok(())
        }
        "authtype" => set_once(&mut request.authtype, key, value),
        "credential" => match &request.credential {
            Some(c) if !c.eq_str(value) => Err(conflict(key)),
            _ => {
                request.credential = Some(Secret::new(value.to_owned()));
                Ok(())
            }
        },
        "url" => apply_url(request, value),
        // wwwauth[], quit, password_expiry_utc, oauth_refresh_token, ephemeral, state[],
        // continue and anything newer: not ours to act on.
        _ => Ok(()),
    }
}

fn conflict(key: &str) -> Error {
    bad(format!("credential input gives {key} two different values"))
}

/// git never sends an attribute twice with different values. A request that does was built
/// by something that let a newline through (CVE-2024-53263, Git LFS: `url=https://evil/`
/// followed by an injected `host=github.com`), and the later line must not win.
fn set_once(slot: &mut Option<String>, key: &str, value: &str) -> Result<()> {
    match slot {
        Some(old) if old != value => Err(conflict(key)),
        _ => {
            *slot = Some(value.to_owned());
            Ok(())
        }
    }
}

/// `url=` stands for its parts (git's `credential_from_url`). The host is kept exactly as
/// written (no percent-decoding), so an encoded host can never decode into one we serve. Parts
/// already given on their own lines must agree with it (see [`set_once`]).
fn apply_url(request: &mut Request, url: &str) -> Result<()> {
    let (protocol, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("credential url has no scheme"))?;
    // The authority ends at the first `/`, `?` or `#`, as git, curl and RFC 3986 end it:
    // `https://evil.test?@github.com/` is evil.test, not github.com.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = match rest[end..].strip_prefix('/') {
        Some(p) => (&rest[..end], Some(p)),
        None if end < rest.len() => (&rest[..end], None),
        None => (rest, None),
    };
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((name, pass)) => (Some(name), Some(pass)),
            None => (Some(u), None),
        },
        None => (None, None),
    };
    set_once(&mut request.protocol, "protocol", protocol)?;
    set_once(&mut request.host, "host", host)?;
    if let Some(path) = path
        .map(|p| p.trim_end_matches('/'))
        .filter(|p| !p.is_empty())
    {
        set_once(&mut request.path, "path", path)?;
    }
    if let Some(name) = username {
        set_once(&mut request.username, "username", name)?;
    }
    if let Some(pass) = password {
        apply(request, "password", pass)?;
    }
    Ok(())
}

/// The credential we hand back to git.
#[derive(Debug)]
pub struct Answer<'a> {
    /// Always `x-access-token` for installation tokens.
    pub username: &'a str,
    /// The token.
    pub password: &'a Secret<String>,
    /// Unix seconds after which git (and any storage helper) must drop the credential.
    pub password_expiry_utc: Option<i64>,
    /// Answer as `authtype=Basic` + `credential=` + `ephemeral=1` (git ≥ 2.46, which announces
    /// `capability[]=authtype`): git then calls no storage helper with it, so `store` or
    /// `cache` configured after us cannot keep a token that dies within the hour. Older git
    /// gets `username`/`password`.
    pub ephemeral: bool,
}

/// Writes an answer in one write, so git never reads half of one.
pub fn write_answer(mut out: impl Write, answer: &Answer<'_>) -> std::io::Result<()> {
    let Answer {
        username,
        password,
        password_expiry_utc,
        ephemeral,
    } = answer;
    let mut buf = String::with_capacity(96 + password.len() * 2);
    if *ephemeral {
        buf.push_str("capability[]=authtype\nauthtype=Basic\ncredential=");
        let pair = format!("{username}:{}", password.expose());
        buf.push_str(&STANDARD.encode(pair.as_bytes()));
        buf.push_str("\nephemeral=1\n");
    } else {
        buf.push_str("username=");
        buf.push_str(username);
        buf.push_str("\npassword=");
        buf.push_str(password.expose());
        buf.push('\n');
    }
    if let Some(expiry) = password_expiry_utc {
        buf.push_str("password_expiry_utc=");
        buf.push_str(&expiry.to_string());
        buf.push('\n');
    }
    out.write_all(buf.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Result<Request> {
        read_request(input)
    }

    fn err(input: &[u8]) -> String {
        let e = parse(input).expect_err("must be rejected");
        assert_eq!(e.class(), Class::BadInput);
        e.message().to_owned()
    }

    #[test]
    fn reads_git_request() {
        let r = parse(b"capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=github.com\npath=acme/repo.git\nusername=x\npassword=p\nwwwauth[]=Basic realm=\"x\"\n\nignored=after-blank\n").unwrap();
        assert_eq!(r.protocol.as_deref(), Some("https"));
        assert_eq!(r.host.as_deref(), Some("github.com"));
        assert_eq!(r.path.as_deref(), Some("acme/repo.git"));
        assert_eq!(r.username.as_deref(), Some("x"));
        assert!(r.password.as_ref().unwrap().eq_str("p"));
        assert!(r.has_capability("authtype"));
        assert!(r.has_capability("state"));
    }

    #[test]
    fn eof_without_blank_line_ends_the_request() {
        let r = parse(b"protocol=https\nhost=github.com").unwrap();
        assert_eq!(r.host.as_deref(), Some("github.com"));
    }

    #[test]
    fn values_may_contain_equals() {
        let r = parse(b"password=a=b==\n").unwrap();
        assert!(r.password.unwrap().eq_str("a=b=="));
    }

    #[test]
    fn url_is_split() {
        let r = parse(b"url=https://user:pw@GitHub.com:443/acme/repo.git/\n").unwrap();
        assert_eq!(r.protocol.as_deref(), Some("https"));
        assert_eq!(r.host.as_deref(), Some("GitHub.com:443"));
        assert_eq!(r.path.as_deref(), Some("acme/repo.git"));
        assert_eq!(r.username.as_deref(), Some("user"));
        assert!(r.password.unwrap().eq_str("pw"));

        let r = parse(b"url=https://github.com\n").unwrap();
        assert_eq!(r.host.as_deref(), Some("github.com"));
        assert_eq!(r.path, None);

        let r = parse(b"url=https:///repo\n").unwrap();
        assert_eq!(r.host.as_deref(), Some(""));
    }

    #[test]
    fn url_authority_ends_at_query_or_fragment() {
        // Found by the property tests: the token of github.com went to `evil.test?@github.com`.
        for url in [
            "https://evil.test?@github.com/",
            "https://evil.test#@github.com/",
            "https://evil.test/@github.com/",
        ] {
            let r = parse(format!("url={url}\n").as_bytes()).unwrap();
            assert_eq!(r.host.as_deref(), Some("evil.test"), "{url}");
            assert_eq!(r.username, None, "{url}");
        }
    }

    #[test]
    fn conflicting_attributes_are_rejected() {
        // CVE-2024-53263 (Git LFS): an injected second host line must not win.
        for input in [
            &b"url=https://evil.test/\nhost=github.com\n"[..],
            b"host=evil.test\nurl=https://github.com/\n",
            b"protocol=https\nhost=evil.test\nhost=github.com\n",
            b"protocol=http\nprotocol=https\nhost=github.com\n",
            b"protocol=https\nhost=github.com\npath=a\npath=b\n",
            b"password=a\npassword=b\n",
        ] {
            let e = parse(input).expect_err("conflict");
            assert!(e.message().contains("two different values"), "{e}");
        }
        // Repeating the same value is harmless.
        let r = parse(
            b"protocol=https\nhost=github.com\nurl=https://github.com/acme/x\nhost=github.com\n",
        )
        .unwrap();
        assert_eq!(r.host.as_deref(), Some("github.com"));
        assert_eq!(r.path.as_deref(), Some("acme/x"));
    }

    #[test]
    fn hostile_input_is_a_typed_error() {
        assert_eq!(
            err(b"host=github.com\rprotocol=https\n"),
            "credential input contains a carriage return"
        );
        assert_eq!(
            err(b"host=github.com\r\n"),
            "credential input contains a carriage return"
        );
        assert_eq!(
            err(b"host=git\0hub.com\n"),
            "credential input contains a NUL byte"
        );
        assert_eq!(
            err(b"protocol=https\nhostgithub.com\n"),
            "credential input line has no '='"
        );
        assert_eq!(err(b"=x\n"), "credential input line has an empty key");
        assert_eq!(err(b"host=\xff\n"), "credential input is not UTF-8");
        assert_eq!(err(b"url=github.com\n"), "credential url has no scheme");
        let mut big = b"path=".to_vec();
        big.extend(std::iter::repeat_n(b'a', 1 << 20));
        assert_eq!(err(&big), "credential input line exceeds 65536 bytes");
        let many: Vec<u8> = std::iter::repeat_n(
            &b"capability[]=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"[..],
            10_000,
        )
        .flatten()
        .copied()
        .collect();
        assert_eq!(err(&many), "credential input exceeds 262144 bytes");
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_accepted() {
        let mut line = b"path=".to_vec();
        line.extend(std::iter::repeat_n(b'a', MAX_LINE - 5));
        line.push(b'\n');
        assert!(parse(&line).is_ok());
    }

    #[test]
    fn answer_format() {
        let token = Secret::new("ghs_x.y-z".to_owned());
        let mut out = Vec::new();
        write_answer(
            &mut out,
            &Answer {
                username: "x-access-token",
                password: &token,
                password_expiry_utc: Some(1_800_000_000),
                ephemeral: false,
            },
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "username=x-access-token\npassword=ghs_x.y-z\npassword_expiry_utc=1800000000\n"
        );
    }

    #[test]
    fn ephemeral_answer_round_trips_through_erase() {
        let token = Secret::new("ghs_x.y-z".to_owned());
        let mut out = Vec::new();
        write_answer(
            &mut out,
            &Answer {
                username: "x-access-token",
                password: &token,
                password_expiry_utc: Some(1_800_000_000),
                ephemeral: true,
            },
        )
        .unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            text,
            "capability[]=authtype\nauthtype=Basic\ncredential=eC1hY2Nlc3MtdG9rZW46Z2hzX3gueS16\nephemeral=1\npassword_expiry_utc=1800000000\n"
        );
        // git sends it back like this with erase.
        let r = parse(format!("protocol=https\nhost=github.com\n{text}").as_bytes()).unwrap();
        assert!(r.presented_token().unwrap().eq_str("ghs_x.y-z"));
        let r = parse(b"authtype=Bearer\ncredential=eC1hY2Nlc3MtdG9rZW46Z2hzX3gueS16\n").unwrap();
        assert!(
            r.presented_token().is_none(),
            "only Basic carries a password"
        );
    }
}

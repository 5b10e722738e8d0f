//! Property tests of `get` as git runs it: with a fresh token cached for github.com, the real
//! binary prints that token for exactly the requests that name `https` and a host that
//! normalises to `github.com`, prints nothing for every other request and every other byte
//! string, and never changes `tokens.json` while answering.
//!
//! Each case spawns the helper, so the case count is modest. Assertion messages never include
//! what the helper printed (it may hold the token).

use molecule_credential::host::normalize_host;
use molecule_credential::protocol::read_request;
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError, TestRunner};

use crate::support::{Run, Sandbox, long_token};

/// Spellings of github.com that git may send and we answer.
const GITHUB: &[&str] = &[
    "github.com",
    "GitHub.COM",
    "github.com:443",
    "GITHUB.COM:443",
    "github.com:0443",
];

/// Hosts that look like github.com and are not, and a few that are nothing.
const NEAR_MISSES: &[&str] = &[
    "github.com.",
    "GITHUB.COM.",
    "github.com:8443",
    "github.com:0",
    "github.com:",
    "github.com:443:443",
    "evilgithub.com",
    "github.com.evil.test",
    "evil.test",
    "xn--github-com",
    "github%2ecom",
    "user@github.com",
    "github.com@evil.test",
    "github.com/evil.test",
    " github.com",
    "github.com ",
    "[github.com]",
    "",
];

const PROTOCOLS: &[&str] = &["http", "HTTPS", "https ", " https", "", "ssh", "https:"];

/// One sandbox for every case: a fresh token cached for github.com, and the cache's bytes.
struct Cached {
    sb: Sandbox,
    token: String,
    before: Vec<u8>,
}

impl Cached {
    fn new() -> Self {
        let mut sb = Sandbox::new();
        sb.env("MOLECULE_LOG", "info");
        let token = long_token("props");
        sb.write_cache(&[("github.com", &token, 3000, false)]);
        let before = sb.tokens_json().unwrap();
        Self { sb, token, before }
    }

    fn get(&self, stdin: &[u8]) -> Run {
        self.sb.run_bytes(&["get"], stdin)
    }

    /// `get` answers as `want` says; the cache file is byte for byte what it was.
    fn check(&self, stdin: &[u8], want: Want) -> Result<(), TestCaseError> {
        let r = self.get(stdin);
        if want == Want::Nothing {
            prop_assert!(
                r.stdout.is_empty(),
                "printed {} bytes for a request that is not ours",
                r.stdout.len()
            );
        } else {
            prop_assert_eq!(r.code, 0, "stderr: {}", r.stderr);
            let answer = read_request(r.stdout.as_bytes());
            prop_assert!(
                answer.is_ok(),
                "the answer does not parse as credential lines"
            );
            let answer = answer.unwrap();
            prop_assert!(
                answer
                    .presented_token()
                    .is_some_and(|t| t.eq_str(&self.token)),
                "the cached token was not printed ({} bytes on stdout)",
                r.stdout.len()
            );
            let lines: Vec<&str> = r.stdout.lines().collect();
            if want == Want::Ephemeral {
                // git >= 2.46 announced authtype: a Basic credential storage helpers skip.
                prop_assert_eq!(&lines[..2], ["capability[]=authtype", "authtype=Basic"]);
                prop_assert!(lines.contains(&"ephemeral=1"));
                prop_assert!(
                    answer.password.is_none(),
                    "a clear-text password beside the ephemeral credential"
                );
            } else {
                prop_assert_eq!(lines[0], "username=x-access-token");
                prop_assert!(answer.credential.is_none());
            }
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            prop_assert!(
                r.expiry().is_some_and(|e| e > now),
                "a cached token is served with an expiry in the future"
            );
        }
        prop_assert!(
            self.sb.tokens_json().as_deref() == Some(self.before.as_slice()),
            "get changed tokens.json"
        );
        Ok(())
    }
}

/// What `get` must print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// Nothing: the request is not ours (or not a request).
    Nothing,
    /// `username=` and `password=`.
    Plain,
    /// git announced `capability[]=authtype`: `authtype=Basic`, `credential=`, `ephemeral=1`.
    Ephemeral,
}

impl Want {
    fn from(served: bool, authtype: bool) -> Self {
        match (served, authtype) {
            (false, _) => Want::Nothing,
            (true, false) => Want::Plain,
            (true, true) => Want::Ephemeral,
        }
    }
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    })
}

fn is_github(host: &str) -> bool {
    normalize_host(host).as_deref() == Some("github.com")
}

fn protocol() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("https".to_owned()),
        2 => prop::sample::select(PROTOCOLS).prop_map(str::to_owned),
        1 => "[^\r\n\x00]{0,8}",
    ]
}

/// A host as it may reach us: tricky near-misses, or random text (no CR, LF or NUL, which the
/// protocol cannot carry; those are the byte-level property's business).
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(GITHUB).prop_map(str::to_owned),
        3 => prop::sample::select(NEAR_MISSES).prop_map(str::to_owned),
        1 => "[A-Za-z0-9.:@%/_\\[\\] -]{0,20}",
        1 => "[^\r\n\x00]{0,20}",
    ]
}

/// A request in one of git's shapes, and whether we must answer it.
#[derive(Clone, Debug)]
enum Shape {
    /// `protocol=` and `host=` lines (in either order), maybe with lines git adds.
    Fields {
        protocol: String,
        host: String,
        protocol_first: bool,
        extras: Vec<&'static str>,
        blank_line: bool,
    },
    /// `url=PROTOCOL://[USERINFO@]AUTHORITY[/PATH]`.
    Url {
        protocol: String,
        userinfo: Option<&'static str>,
        authority: String,
        path: Option<&'static str>,
    },
}

impl Shape {
    fn input(&self) -> String {
        match self {
            Shape::Fields {
                protocol,
                host,
                protocol_first,
                extras,
                blank_line,
            } => {
                let (p, h) = (format!("protocol={protocol}\n"), format!("host={host}\n"));
                let mut s = extras.concat();
                if *protocol_first {
                    s.push_str(&p);
                    s.push_str(&h);
                } else {
                    s.push_str(&h);
                    s.push_str(&p);
                }
                if *blank_line {
                    s.push('\n');
                }
                s
            }
            Shape::Url {
                protocol,
                userinfo,
                authority,
                path,
            } => {
                let user = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
                let path = path.map(|p| format!("/{p}")).unwrap_or_default();
                format!("url={protocol}://{user}{authority}{path}\n\n")
            }
        }
    }

    /// What `get` must print: the token when the request is ours, in the ephemeral form when
    /// git announced `capability[]=authtype`.
    fn want(&self) -> Want {
        let authtype = matches!(self, Shape::Fields { extras, .. } if extras.contains(&"capability[]=authtype\n"));
        Want::from(self.served(), authtype)
    }

    /// Whether `get` must answer: `https` exactly, and a host that normalises to github.com.
    /// For `url=`, the parts are those of RFC 3986 and git's `credential_from_url`: the
    /// scheme ends at the first `://`, the authority at the first `/`, `?` or `#`, and the
    /// host follows the userinfo's `@`.
    fn served(&self) -> bool {
        match self {
            Shape::Fields { protocol, host, .. } => protocol == "https" && is_github(host),
            Shape::Url { .. } => {
                let input = self.input();
                let url = &input["url=".len()..input.len() - 2];
                let Some((scheme, rest)) = url.split_once("://") else {
                    return false;
                };
                let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
                let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                scheme == "https" && is_github(host)
            }
        }
    }
}

const EXTRAS: &[&str] = &[
    "capability[]=authtype\n",
    "capability[]=state\n",
    "wwwauth[]=Basic realm=\"GitHub\"\n",
    "path=acme/app.git\n",
    "username=x-access-token\n",
    "quit=0\n",
];

/// Requests in git's shapes. `url=` authorities leave out `?` and `#`: see
/// `url_authority_ends_at_a_query_or_fragment`.
fn shape(authority: BoxedStrategy<String>) -> impl Strategy<Value = Shape> {
    let fields = (
        protocol(),
        host(),
        any::<bool>(),
        prop::sample::subsequence(EXTRAS, 0..=EXTRAS.len()),
        any::<bool>(),
    )
        .prop_map(
            |(protocol, host, protocol_first, extras, blank_line)| Shape::Fields {
                protocol,
                host,
                protocol_first,
                extras,
                blank_line,
            },
        );
    prop_oneof![2 => fields, 1 => url(authority)]
}

/// `url=` requests with the given authorities.
fn url(authority: BoxedStrategy<String>) -> impl Strategy<Value = Shape> {
    (
        protocol(),
        prop::option::of(prop::sample::select(
            &["x-access-token", "user:pw", "github.com", ""][..],
        )),
        authority,
        prop::option::of(prop::sample::select(
            &["acme/app.git", "", "github.com", "a/b/"][..],
        )),
    )
        .prop_map(|(protocol, userinfo, authority, path)| Shape::Url {
            protocol,
            userinfo,
            authority,
            path,
        })
}

fn authority_without_query() -> BoxedStrategy<String> {
    host().prop_map(|h| h.replace(['?', '#'], "")).boxed()
}

/// The properties take "normalises to github.com" from the library; this pins what that means
/// for the spellings above, so a normaliser that started accepting a near miss fails here.
#[test]
fn the_host_lists_mean_what_they_say() {
    for host in GITHUB {
        assert!(is_github(host), "{host:?} is github.com");
    }
    for host in NEAR_MISSES {
        assert!(!is_github(host), "{host:?} is not github.com");
    }
}

#[test]
fn get_answers_exactly_https_requests_for_github_com() {
    let cached = Cached::new();
    let served = std::cell::Cell::new(0u32);
    let mut runner = runner(64);
    let result = runner.run(&shape(authority_without_query()), |shape| {
        served.set(served.get() + u32::from(shape.served()));
        cached.check(shape.input().as_bytes(), shape.want())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(served.get() > 0, "no generated request was one to answer");
}

/// Fragments that matter to the parser, and raw noise.
fn stdin_bytes() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        Just(b"protocol=https\n".to_vec()),
        Just(b"host=github.com\n".to_vec()),
        Just(b"host=GITHUB.COM:443\n".to_vec()),
        Just(b"host=github.com.evil.test\n".to_vec()),
        Just(b"url=https://github.com/x\n".to_vec()),
        Just(b"url=https://".to_vec()),
        Just(b"capability[]=authtype\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"=".to_vec()),
        Just(b"\xff".to_vec()),
        Just(b"github.com".to_vec()),
        prop::collection::vec(any::<u8>(), 0..12),
    ];
    prop_oneof![
        3 => prop::collection::vec(fragment, 0..10).prop_map(|p| p.concat()),
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

#[test]
fn arbitrary_stdin_gets_nothing_unless_it_is_a_request_for_github_com() {
    let cached = Cached::new();
    let mut runner = runner(64);
    let result = runner.run(&stdin_bytes(), |bytes| {
        let want = match read_request(&bytes[..]) {
            Ok(r) => Want::from(
                r.protocol.as_deref() == Some("https") && r.host.as_deref().is_some_and(is_github),
                r.has_capability("authtype"),
            ),
            Err(_) => Want::Nothing,
        };
        cached.check(&bytes, want)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// `url=` split its authority at the first `/` only, so `url=https://evil.test?@github.com/`
/// (and `#@`) was answered with github.com's token, where git, curl and RFC 3986 all end the
/// authority at `?` or `#` and see `evil.test`. git itself never sends `url=` to a helper
/// (it splits the URL and sends `host=`); a caller feeding the helper directly could.
#[test]
fn url_authority_ends_at_a_query_or_fragment() {
    let cached = Cached::new();
    let authority = (
        host(),
        prop::sample::select(&["?", "#", "?x=", "/?"][..]),
        host(),
    )
        .prop_map(|(a, sep, b)| format!("{a}{sep}@{b}"))
        .boxed();
    let mut runner = runner(64);
    let result = runner.run(&url(authority), |shape| {
        cached.check(shape.input().as_bytes(), shape.want())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

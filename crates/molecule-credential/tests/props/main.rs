//! Property tests of the library's edges: everything that reads bytes someone else wrote
//! (git's request, `tokens.json`, the platform's answer, a host name, a log line) must never
//! panic, must never echo what it read into an error, and must agree with itself when its own
//! output is read back.
//!
//! Generated tokens are synthetic (`ghs_` and random characters); assertion messages name
//! lengths and positions, never a token.

#![expect(
    clippy::unwrap_used,
    reason = "a generated input the library cannot take should fail the case with its location"
)]

mod request_fields;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use molecule_credential::cache::{
    Document, Entry, SOURCE_FALLBACK, SOURCE_PLATFORM, should_replace,
};
use molecule_credential::clock::{format_rfc3339, parse_rfc3339};
use molecule_credential::config::Config;
use molecule_credential::host::normalize_host;
use molecule_credential::http::RawResponse;
use molecule_credential::logging::{REDACTED, TOKEN_PREFIXES, redact};
use molecule_credential::platform::classify;
use molecule_credential::protocol::{Answer, MAX_INPUT, MAX_LINE, read_request, write_answer};
use molecule_credential::token::MAX_LIFETIME;
use molecule_credential::{Class, Secret};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use request_fields::fields;
use serde_json::{Map, Value, json};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// Planted in generated secrets and bodies: an error message containing it echoed its input.
const MARKER: &str = "SECRETMARKER";

/// No regression files next to the sources: a failure is turned into a named test instead.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// A GitHub token of any length the newer formats use.
fn token(min: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("ghs_[A-Za-z0-9._-]{{{min},600}}")).unwrap()
}

/// Bytes git might send, and bytes nobody should: structured lines from fragments that matter
/// to the parser (CR, NUL, `=`, invalid UTF-8, known keys), raw noise, and inputs at the size
/// limits.
fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        Just(b"protocol=https\n".to_vec()),
        Just(b"host=github.com\n".to_vec()),
        Just(b"url=https://".to_vec()),
        Just(b"password=".to_vec()),
        Just(b"capability[]=authtype\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"=".to_vec()),
        Just(b"\xff".to_vec()),
        Just(b"\xc3".to_vec()),
        Just("é\u{2028}".as_bytes().to_vec()),
        Just(format!("ghs_{MARKER}").into_bytes()),
        "[a-z\\[\\]@:/.]{0,12}".prop_map(String::into_bytes),
        vec(any::<u8>(), 0..8),
    ];
    let near_limit = prop_oneof![Just(b'a'), Just(b'='), Just(b'\r'), Just(0u8), Just(0xffu8)];
    prop_oneof![
        4 => vec(fragment, 0..32).prop_map(|parts| parts.concat()),
        2 => vec(any::<u8>(), 0..2048),
        // One line either side of MAX_LINE, its last byte sometimes hostile.
        1 => (MAX_LINE - 8..MAX_LINE + 8, near_limit, any::<bool>()).prop_map(
            |(len, last, newline)| {
                let mut line = b"path=".to_vec();
                line.resize(len - 1, b'a');
                line.push(last);
                if newline {
                    line.push(b'\n');
                }
                line
            }
        ),
        // Many short lines adding up to either side of MAX_INPUT.
        1 => (1usize..200, 0usize..64).prop_map(|(width, spare)| {
            let line = format!("capability[]={}\n", "x".repeat(width));
            let count = MAX_INPUT / line.len() + 1 - spare.min(MAX_INPUT / line.len());
            line.repeat(count).into_bytes()
        }),
    ]
}

/// A value git's line protocol can carry: anything but CR, LF and NUL.
fn line_value() -> impl Strategy<Value = String> {
    "[^\r\n\x00]{0,64}"
}

/// A key of no meaning to us (git adds keys; we must ignore them).
fn unknown_key() -> impl Strategy<Value = String> {
    "[^\r\n\x00=]{1,16}".prop_filter("a key we act on", |k| {
        !matches!(
            k.as_str(),
            "protocol"
                | "host"
                | "path"
                | "username"
                | "password"
                | "url"
                | "capability[]"
                | "authtype"
                | "credential"
        )
    })
}

/// Years, months and days drawn uniformly and from the edges of their ranges, where
/// converting to UTC crosses into the year before or after.
fn edgy<T>(range: std::ops::RangeInclusive<T>) -> impl Strategy<Value = T>
where
    T: Copy + std::fmt::Debug + 'static,
    std::ops::RangeInclusive<T>: Strategy<Value = T>,
{
    let (lo, hi) = (*range.start(), *range.end());
    prop_oneof![3 => range, 1 => Just(lo), 1 => Just(hi)]
}

/// RFC 3339 with any offset (or `Z`), with or without fractional seconds, and the instant it
/// stands for in nanoseconds since the epoch, computed from the parts rather than by parsing
/// (so the expectation exists even where the library's types end).
fn rfc3339(years: std::ops::RangeInclusive<i32>) -> impl Strategy<Value = (String, i128)> {
    (
        edgy(years),
        edgy(1u8..=12),
        edgy(1u8..=31),
        (edgy(0u8..=23), 0u8..60, 0u8..60),
        proptest::option::of((1usize..=9, 0u32..1_000_000_000)),
        proptest::option::of((any::<bool>(), edgy(0u8..=23), 0u8..60)),
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(|(y, mo, d, (h, mi, s), frac, offset, (lower_t, lower_z))| {
            let month = Month::try_from(mo).unwrap();
            let d = d.min(time::util::days_in_month(month, y));
            let (frac_text, nanos) = match frac {
                None => (String::new(), 0),
                Some((digits, n)) => {
                    let text = format!("{n:09}")[..digits].to_owned();
                    let nanos = format!("{text:0<9}").parse::<u32>().unwrap();
                    (format!(".{text}"), nanos)
                }
            };
            let (offset_text, offset_secs) = match offset {
                None => (if lower_z { "z" } else { "Z" }.to_owned(), 0),
                Some((negative, oh, om)) => {
                    let secs = i128::from(oh) * 3600 + i128::from(om) * 60;
                    (
                        format!("{}{oh:02}:{om:02}", if negative { '-' } else { '+' }),
                        if negative { -secs } else { secs },
                    )
                }
            };
            let text = format!(
                "{y:04}-{mo:02}-{d:02}{}{h:02}:{mi:02}:{s:02}{frac_text}{offset_text}",
                if lower_t { 't' } else { 'T' }
            );
            let local = PrimitiveDateTime::new(
                Date::from_calendar_date(y, month, d).unwrap(),
                Time::from_hms_nano(h, mi, s, nanos).unwrap(),
            );
            let at = local.assume_utc().unix_timestamp_nanos() - offset_secs * 1_000_000_000;
            (text, at)
        })
}

/// Times a real cache holds: years well inside what RFC 3339 can write back in UTC.
fn cache_time() -> impl Strategy<Value = (String, i128)> {
    rfc3339(1970..=9000)
}

/// An instant in nanoseconds, truncated to whole seconds as `tokens.json` stores it.
fn whole_seconds(nanos: i128) -> i128 {
    nanos.div_euclid(1_000_000_000) * 1_000_000_000
}

/// Any JSON value, nested a few levels, including fractional numbers and strings with the
/// marker.
fn json_value() -> impl Strategy<Value = Value> {
    let number = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number,
        ".{0,16}".prop_map(Value::String),
        Just(Value::String(format!("ghs_{MARKER}"))),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(".{0,8}", inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Fields a newer writer may add, avoiding the names we own.
fn extra_fields(reserved: &'static [&'static str]) -> impl Strategy<Value = Map<String, Value>> {
    btree_map(
        ".{1,12}".prop_filter("a field we own", move |k| !reserved.contains(&k.as_str())),
        json_value(),
        0..4,
    )
    .prop_map(|m| m.into_iter().collect())
}

const DOCUMENT_FIELDS: &[&str] = &["version", "entries"];
const ENTRY_FIELDS: &[&str] = &["token", "expires_at", "fetched_at", "source", "suspect"];

/// A cache key: lower-case host, `:port` when not 443.
fn host_key() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9.-]{0,20}(:[1-9][0-9]{0,4})?"
}

/// One generated entry: the JSON as a writer put it, and what it must read as.
#[derive(Clone, Debug)]
struct GenEntry {
    json: Value,
    token: String,
    /// Nanoseconds since the epoch.
    expires_at: i128,
    /// Nanoseconds since the epoch.
    fetched_at: i128,
    source: String,
    suspect: bool,
    extra: Map<String, Value>,
}

fn gen_entry() -> impl Strategy<Value = GenEntry> {
    (
        token(0),
        cache_time(),
        cache_time(),
        prop_oneof![
            Just(SOURCE_PLATFORM.to_owned()),
            Just(SOURCE_FALLBACK.to_owned()),
            "[a-z-]{1,12}"
        ],
        proptest::option::of(any::<bool>()),
        extra_fields(ENTRY_FIELDS),
    )
        .prop_map(
            |(
                token,
                (exp_text, expires_at),
                (fetched_text, fetched_at),
                source,
                suspect,
                extra,
            )| {
                let mut json = extra.clone();
                json.insert("token".into(), json!(token));
                json.insert("expires_at".into(), json!(exp_text));
                json.insert("fetched_at".into(), json!(fetched_text));
                json.insert("source".into(), json!(source));
                if let Some(s) = suspect {
                    json.insert("suspect".into(), json!(s));
                }
                GenEntry {
                    json: Value::Object(json),
                    token,
                    expires_at,
                    fetched_at,
                    source,
                    suspect: suspect.unwrap_or(false),
                    extra,
                }
            },
        )
}

/// A valid `tokens.json` as some writer (a newer one, an operator) may have left it.
fn gen_document() -> impl Strategy<
    Value = (
        Value,
        std::collections::BTreeMap<String, GenEntry>,
        Map<String, Value>,
    ),
> {
    (
        btree_map(host_key(), gen_entry(), 0..5),
        extra_fields(DOCUMENT_FIELDS),
    )
        .prop_map(|(entries, extra)| {
            let mut doc = extra.clone();
            doc.insert("version".into(), json!(1));
            doc.insert(
                "entries".into(),
                Value::Object(
                    entries
                        .iter()
                        .map(|(k, e)| (k.clone(), e.json.clone()))
                        .collect(),
                ),
            );
            (Value::Object(doc), entries, extra)
        })
}

fn assert_same_entry(read: &Entry, want: &GenEntry, host: &str) {
    assert!(read.token.eq_str(&want.token), "token of {host} changed");
    assert_eq!(read.source, want.source, "source of {host}");
    assert_eq!(read.suspect, want.suspect, "suspect of {host}");
    assert_eq!(read.extra, want.extra, "unknown fields of {host}");
}

// ---------------------------------------------------------------------------------------------
// 1–3. git's credential protocol
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    /// Whatever arrives on stdin, the parser answers Ok or a `bad-input` error that does not
    /// quote it, and an Ok request carries no value that could start a second line in
    /// anything we print or log.
    #[test]
    fn any_bytes_parse_or_fail_cleanly_and_accepted_values_hold_no_line_breaks(input in request_bytes()) {
        match read_request(&input[..]) {
            Ok(request) => {
                for (name, value) in fields(&request) {
                    prop_assert!(
                        !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)),
                        "{name} (length {}) holds CR, LF or NUL", value.len()
                    );
                }
            }
            Err(e) => {
                prop_assert_eq!(e.class(), Class::BadInput);
                prop_assert!(!e.to_string().contains(MARKER), "the error quotes the input");
            }
        }
    }

    /// Values come back byte for byte (including `=` and spaces); keys we do not know are
    /// ignored; nothing after the blank line is read.
    #[test]
    fn key_value_lines_round_trip(
        protocol in line_value(),
        host in line_value(),
        path in line_value(),
        username in line_value(),
        password in line_value(),
        unknown in vec((unknown_key(), line_value()), 0..4),
        after_blank in line_value(),
    ) {
        let mut input = String::new();
        for (k, v) in &unknown {
            input.push_str(&format!("{k}={v}\n"));
        }
        input.push_str(&format!(
            "protocol={protocol}\nhost={host}\npath={path}\nusername={username}\npassword={password}\n"
        ));
        input.push_str(&format!("\nhost=after-blank{after_blank}\n"));
        let r = read_request(input.as_bytes()).unwrap();
        prop_assert_eq!(r.protocol.as_deref(), Some(protocol.as_str()));
        prop_assert_eq!(r.host.as_deref(), Some(host.as_str()));
        prop_assert_eq!(r.path.as_deref(), Some(path.as_str()));
        prop_assert_eq!(r.username.as_deref(), Some(username.as_str()));
        prop_assert!(r.password.as_ref().is_some_and(|p| p.eq_str(&password)), "password changed");
        prop_assert!(r.capabilities.is_empty());
    }

    /// git never sends a key twice with different values. A request that does was put
    /// together by something that let a newline through (an injected `host=` after a real
    /// one), so it is refused whichever value comes first; the same value twice is harmless.
    #[test]
    fn a_key_given_twice_must_agree(
        key in prop::sample::select(vec!["protocol", "host", "path", "username", "password", "authtype", "credential"]),
        first in line_value(),
        second in prop_oneof![line_value(), Just(String::new())],
        same in any::<bool>(),
    ) {
        let second = if same { first.clone() } else { second };
        let input = format!("{key}={first}\n{key}={second}\n\n");
        match read_request(input.as_bytes()) {
            Ok(r) => {
                prop_assert_eq!(&first, &second, "{} given two different values was accepted", key);
                let read = fields(&r).into_iter().find(|(k, _)| *k == key).map(|(_, v)| v);
                prop_assert!(read.as_deref() == Some(first.as_str()), "{} changed", key);
            }
            Err(e) => {
                prop_assert_ne!(&first, &second, "{} given twice with the same value was refused", key);
                prop_assert_eq!(e.class(), Class::BadInput);
            }
        }
    }

    /// `url=` stands for its parts: protocol, host, path (trailing slashes dropped), user and
    /// password. The same parts on their own lines may accompany it; a different host may not.
    #[test]
    fn url_splits_into_its_parts(
        protocol in "[a-z][a-z0-9+.-]{0,8}",
        userinfo in proptest::option::of(("[A-Za-z0-9._~-]{0,12}", proptest::option::of("[A-Za-z0-9._~:-]{0,12}"))),
        host in "[A-Za-z0-9.:_\\[\\]-]{0,30}",
        segments in vec("[A-Za-z0-9._~%+-]{1,10}", 0..4),
        trailing_slashes in 0usize..3,
        company in 0u8..4,
    ) {
        let path = segments.join("/");
        let auth = match &userinfo {
            None => String::new(),
            Some((user, None)) => format!("{user}@"),
            Some((user, Some(pass))) => format!("{user}:{pass}@"),
        };
        let slash = if segments.is_empty() && trailing_slashes == 0 { "" } else { "/" };
        let url = format!("{protocol}://{auth}{host}{slash}{path}{}", "/".repeat(trailing_slashes));
        let parts = format!("protocol={protocol}\nhost={host}\n");
        let input = match company {
            0 => format!("url={url}\n\n"),
            1 => format!("{parts}url={url}\n\n"),
            2 => format!("url={url}\n{parts}\n"),
            _ => {
                // An injected host (no '/' in generated hosts, so it always differs).
                let injected = format!("url={url}\nhost=evil.test/\n\n");
                prop_assert!(read_request(injected.as_bytes()).is_err(), "a second host was accepted");
                return Ok(());
            }
        };
        let r = read_request(input.as_bytes()).unwrap();
        prop_assert_eq!(r.protocol.as_deref(), Some(protocol.as_str()));
        prop_assert_eq!(r.host.as_deref(), Some(host.as_str()));
        prop_assert_eq!(r.path.as_deref(), (!path.is_empty()).then_some(path.as_str()));
        prop_assert_eq!(r.username.as_deref(), userinfo.as_ref().map(|(u, _)| u.as_str()));
        let want_password = userinfo.as_ref().and_then(|(_, p)| p.as_deref());
        prop_assert_eq!(
            r.password.as_ref().map(|p| p.expose().len()),
            want_password.map(str::len),
            "password length"
        );
        prop_assert!(r.password.as_ref().zip(want_password).is_none_or(|(p, w)| p.eq_str(w)), "password changed");
    }

    /// What we print for git reads back as what we meant, whatever the token looks like.
    #[test]
    fn answers_read_back_as_written(
        token in token(0),
        username in prop_oneof![Just("x-access-token".to_owned()), "[A-Za-z0-9._-]{1,40}"],
        expiry in proptest::option::of(any::<i64>()),
        ephemeral in any::<bool>(),
    ) {
        let password = Secret::new(token.clone());
        let mut out = Vec::new();
        write_answer(
            &mut out,
            &Answer { username: &username, password: &password, password_expiry_utc: expiry, ephemeral },
        )
        .unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        prop_assert!(text.ends_with('\n'));
        prop_assert!(text.lines().all(|l| !l.is_empty()), "a blank line would end the answer early");

        let r = read_request(&out[..]).unwrap();
        prop_assert!(r.presented_token().is_some_and(|p| p.eq_str(&token)), "the token reads back differently");
        prop_assert!(r.protocol.is_none() && r.host.is_none());
        if ephemeral {
            // git >= 2.46: `authtype=Basic` and the pre-encoded `credential=`, nothing in clear.
            prop_assert!(r.has_capability("authtype"));
            prop_assert_eq!(r.authtype.as_deref(), Some("Basic"));
            prop_assert!(r.password.is_none() && r.username.is_none(), "a clear-text pair beside the credential");
            prop_assert!(text.lines().any(|l| l == "ephemeral=1"));
            let basic = STANDARD.decode(r.credential.as_ref().unwrap().expose()).unwrap();
            prop_assert!(basic == format!("{username}:{token}").into_bytes(), "the Basic credential reads back differently");
        } else {
            prop_assert_eq!(r.username.as_deref(), Some(username.as_str()));
            prop_assert!(r.password.as_ref().is_some_and(|p| p.eq_str(&token)), "password changed");
            prop_assert!(r.credential.is_none());
        }
        // read_request ignores password_expiry_utc (it is ours to send, not to act on).
        let read_expiry = text
            .lines()
            .find_map(|l| l.strip_prefix("password_expiry_utc="))
            .map(|v| v.parse::<i64>().unwrap());
        prop_assert_eq!(read_expiry, expiry);
    }
}

// ---------------------------------------------------------------------------------------------
// 4. tokens.json
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_bytes_read_as_a_document_or_an_error(bytes in vec(any::<u8>(), 0..1024)) {
        let _ = Document::from_slice(&bytes);
    }

    #[test]
    fn any_json_reads_as_a_document_or_an_error(value in json_value()) {
        let _ = Document::from_slice(&serde_json::to_vec(&value).unwrap());
    }

    /// Parse, write, parse: the second read is what the first one held (times in whole
    /// seconds, as the contract writes them), unknown fields included, and writing again
    /// changes no byte.
    #[test]
    fn documents_survive_a_rewrite((value, entries, extra) in gen_document(), pretty in any::<bool>()) {
        let text = if pretty { serde_json::to_vec_pretty(&value) } else { serde_json::to_vec(&value) }.unwrap();
        let first = Document::from_slice(&text).unwrap();
        prop_assert_eq!(first.entries.len(), entries.len());
        prop_assert_eq!(&first.extra, &extra);
        for (host, want) in &entries {
            let read = &first.entries[host];
            assert_same_entry(read, want, host);
            prop_assert_eq!(read.expires_at.unix_timestamp_nanos(), want.expires_at, "expires_at of {}", host);
            prop_assert_eq!(read.fetched_at.unix_timestamp_nanos(), want.fetched_at, "fetched_at of {}", host);
        }

        let written = first.to_vec().unwrap();
        let second = Document::from_slice(&written).unwrap();
        prop_assert_eq!(second.entries.len(), entries.len());
        prop_assert_eq!(&second.extra, &extra);
        for (host, want) in &entries {
            let read = &second.entries[host];
            assert_same_entry(read, want, host);
            prop_assert_eq!(read.expires_at.unix_timestamp_nanos(), whole_seconds(want.expires_at), "expires_at of {}", host);
            prop_assert_eq!(read.fetched_at.unix_timestamp_nanos(), whole_seconds(want.fetched_at), "fetched_at of {}", host);
        }
        prop_assert!(second.to_vec().unwrap() == written, "rewriting a rewritten document changed it");
    }

    /// A broken document is reported by position: the message never quotes what it read.
    #[test]
    fn errors_never_quote_the_document(
        (value, _, _) in gen_document(),
        mutation in 0usize..8,
        at in any::<prop::sample::Index>(),
        noise in any::<u8>(),
    ) {
        let secret = Value::String(format!("ghs_{MARKER}"));
        let mut value = value;
        let entry = value["entries"].as_object_mut().and_then(|m| m.values_mut().next());
        let text = match (mutation, entry) {
            (0, _) => { value["version"] = secret; serde_json::to_vec(&value).unwrap() }
            (1, _) => { value["entries"] = secret; serde_json::to_vec(&value).unwrap() }
            (2, Some(e)) => { e["expires_at"] = secret; serde_json::to_vec(&value).unwrap() }
            (3, Some(e)) => { e["suspect"] = secret; serde_json::to_vec(&value).unwrap() }
            (4, Some(e)) => { e["token"] = json!({"nested": secret}); serde_json::to_vec(&value).unwrap() }
            (5, Some(e)) => { e["source"] = json!([secret]); serde_json::to_vec(&value).unwrap() }
            (6, _) => {
                // Cut anywhere after a planted secret.
                value["zz"] = secret;
                let full = serde_json::to_vec(&value).unwrap();
                full[..at.index(full.len() + 1)].to_vec()
            }
            _ => {
                value["zz"] = secret;
                let mut full = serde_json::to_vec(&value).unwrap();
                full.insert(at.index(full.len() + 1), noise);
                full
            }
        };
        if let Err(e) = Document::from_slice(&text) {
            prop_assert!(!e.to_string().contains(MARKER), "the error quotes the document: mutation {}", mutation);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. The platform's answer
// ---------------------------------------------------------------------------------------------

fn platform_now() -> OffsetDateTime {
    parse_rfc3339("2026-11-22T18:00:00Z").unwrap()
}

/// A `Date` header value within `years` of now.
fn server_date(years: i64) -> impl Strategy<Value = OffsetDateTime> {
    let now = platform_now().unix_timestamp();
    let span = years * 366 * 86_400;
    (now - span..=now + span).prop_map(|s| OffsetDateTime::from_unix_timestamp(s).unwrap())
}

/// Any `Date` header an IMF-fixdate can spell (years 0000 to 9999).
fn any_server_date() -> impl Strategy<Value = OffsetDateTime> {
    let first = Date::from_calendar_date(0, Month::January, 1)
        .unwrap()
        .midnight()
        .assume_utc();
    let last = Date::from_calendar_date(9999, Month::December, 31)
        .unwrap()
        .midnight()
        .assume_utc();
    edgy(first.unix_timestamp()..=last.unix_timestamp())
        .prop_map(|s| OffsetDateTime::from_unix_timestamp(s).unwrap())
}

/// What a platform (or something in its place) may answer: arbitrary bytes, or JSON shaped
/// like the success body with any token and any expiry, every string marked.
fn platform_body(
    expiry_years: std::ops::RangeInclusive<i32>,
) -> impl Strategy<Value = Option<Vec<u8>>> {
    let token = prop_oneof![
        token(0).prop_map(|t| format!("{t}{MARKER}")),
        ".{0,20}".prop_map(|t| format!("{MARKER}{t}")),
        Just(String::new()),
        Just(format!("ghs_{MARKER}\nhost=evil.test")),
        Just(format!("ghs_{MARKER} x")),
    ];
    let expires_at = prop_oneof![
        rfc3339(expiry_years).prop_map(|(t, _)| json!(t)),
        rfc3339(2026..=2026).prop_map(|(t, _)| json!(t)),
        Just(json!(null)),
        Just(json!(MARKER)),
        any::<i64>().prop_map(|n| json!(n)),
    ];
    let shaped = (
        proptest::option::of(token),
        proptest::option::of(expires_at),
        extra_fields(&["token", "expires_at"]),
    )
        .prop_map(|(token, expires_at, extra)| {
            let mut body = extra;
            if let Some(t) = token {
                body.insert("token".into(), json!(t));
            }
            if let Some(e) = expires_at {
                body.insert("expires_at".into(), e);
            }
            body.insert("error".into(), json!(MARKER));
            serde_json::to_vec(&body).unwrap()
        });
    proptest::option::weighted(
        0.95,
        prop_oneof![
            3 => shaped,
            1 => vec(any::<u8>(), 0..256).prop_map(|mut b| { b.extend_from_slice(MARKER.as_bytes()); b }),
        ],
    )
}

fn check_classified(response: &RawResponse, now: OffsetDateTime) -> Result<(), TestCaseError> {
    match classify(response, now) {
        Ok(minted) => {
            prop_assert_eq!(response.status, 200);
            let t = minted.token.expose();
            prop_assert!(
                !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()),
                "a token we would print is not visible ASCII"
            );
            prop_assert!(minted.expires_at > now, "an expired token was accepted");
            prop_assert!(
                minted.expires_at <= now + MAX_LIFETIME,
                "a token was trusted past the cap"
            );
        }
        Err(e) => {
            prop_assert!(
                !e.to_string().contains(MARKER),
                "the error quotes the body (status {})",
                response.status
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1024))]

    /// Any status, any body, any `Retry-After`, a `Date` within 50 years: a classified
    /// answer, and a token only when it can be printed safely.
    #[test]
    fn every_answer_is_classified(
        status in 0u16..=999,
        ok_status in any::<bool>(),
        body in platform_body(0..=9999),
        retry_after in proptest::option::of(any::<u64>().prop_map(Duration::from_secs)),
        date in proptest::option::of(server_date(50)),
        ratelimit_remaining in proptest::option::of(any::<u64>()),
    ) {
        let response = RawResponse { status: if ok_status { 200 } else { status }, retry_after, date, ratelimit_remaining, body };
        check_classified(&response, platform_now())?;
    }
}

// ---------------------------------------------------------------------------------------------
// 6. The compare-and-swap rule
// ---------------------------------------------------------------------------------------------

fn cas_entry() -> impl Strategy<Value = Entry> {
    (
        "ghs_[a-z]{1,4}",
        // A narrow range, so equal expiries happen.
        0i64..20,
        prop_oneof![
            Just(SOURCE_PLATFORM),
            Just(SOURCE_FALLBACK),
            Just("github-app")
        ],
        any::<bool>(),
    )
        .prop_map(|(token, minutes, source, suspect)| {
            let base = platform_now();
            let mut e = Entry::new(
                Secret::new(token),
                base + time::Duration::minutes(minutes),
                base,
                source,
            );
            e.suspect = suspect;
            e
        })
}

fn is_fallback(e: &Entry) -> bool {
    e.source == SOURCE_FALLBACK
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn anything_fills_an_empty_slot(new in cas_entry()) {
        prop_assert!(should_replace(None, &new));
    }

    #[test]
    fn a_fallback_never_replaces_a_token_from_a_real_source(old in cas_entry(), new in cas_entry()) {
        if !is_fallback(&old) && is_fallback(&new) {
            prop_assert!(!should_replace(Some(&old), &new));
        }
    }

    #[test]
    fn a_suspect_or_fallback_entry_gives_way_to_any_real_source(old in cas_entry(), new in cas_entry()) {
        if (old.suspect || is_fallback(&old)) && !is_fallback(&new) {
            prop_assert!(should_replace(Some(&old), &new));
        }
    }

    /// Between entries of the same kind (both fallback, or both from real sources) and an
    /// unsuspected incumbent, the later (or equal) expiry wins.
    #[test]
    fn between_peers_the_later_expiry_wins(old in cas_entry(), new in cas_entry()) {
        if is_fallback(&old) == is_fallback(&new) && !old.suspect {
            prop_assert_eq!(should_replace(Some(&old), &new), new.expires_at >= old.expires_at);
        }
    }

    /// However concurrent writers interleave their offers, the cache ends with the latest
    /// expiry from a real source, or the latest fallback when no real source offered.
    #[test]
    fn offers_in_any_order_end_with_the_latest_expiry(
        (offers, shuffled) in vec(cas_entry(), 1..12)
            .prop_map(|v| v.into_iter().map(|mut e| { e.suspect = false; e }).collect::<Vec<_>>())
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
    ) {
        let fold = |order: &[Entry]| {
            order.iter().fold(None::<Entry>, |held, new| {
                if should_replace(held.as_ref(), new) { Some(new.clone()) } else { held }
            })
        };
        let real: Vec<&Entry> = offers.iter().filter(|e| !is_fallback(e)).collect();
        let pool = if real.is_empty() { offers.iter().collect() } else { real };
        let latest = pool.iter().map(|e| e.expires_at).max().unwrap();
        for order in [&offers, &shuffled] {
            let held = fold(order).unwrap();
            prop_assert_eq!(held.expires_at, latest);
            prop_assert_eq!(is_fallback(&held), pool.iter().all(|e| is_fallback(e)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Host names and log redaction
// ---------------------------------------------------------------------------------------------

/// Host-shaped strings: the characters that matter to the normaliser, ports, brackets.
fn host_like() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => "[A-Za-z0-9.:_\\[\\]-]{0,24}",
        2 => "([A-Za-z0-9.-]{1,16}|github\\.com|GitHub\\.COM|\\[::1\\])(:([0-9]{0,6}|443|0443|8443))?",
        1 => "[A-Za-z0-9.:_@/%\\\\ \t\r\n\x00\x7f\\[\\]-]{0,24}",
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn normalized_hosts_are_plain_lower_case_names(host in host_like()) {
        if let Some(n) = normalize_host(&host) {
            prop_assert!(!n.is_empty());
            prop_assert_eq!(n.to_ascii_lowercase(), n.clone(), "not lower-case");
            prop_assert!(!n.ends_with(":443"), "the default port survived");
            prop_assert!(
                !n.chars().any(|c| matches!(c, '/' | '@' | '%' | '\\') || c.is_whitespace() || c.is_control()),
                "a character that is not part of a host name survived"
            );
        }
    }

    /// Normalising twice is normalising once: a configured host (normalised when loaded)
    /// and a requested host (normalised when matched) meet on the same form.
    #[test]
    fn normalizing_is_idempotent(host in host_like()) {
        if let Some(n) = normalize_host(&host) {
            prop_assert_eq!(normalize_host(&n), Some(n.clone()), "from {:?}", host);
        }
    }

    /// `serves_host` is exactly "normalises to a configured host".
    #[test]
    fn serves_exactly_the_configured_hosts(configured in vec(host_like(), 0..4), asked in host_like()) {
        let list = configured.join(",");
        let config = Config::load(|var| (var == "MOLECULE_GIT_HOSTS" && !list.is_empty()).then(|| list.clone())).config;
        let want = normalize_host(&asked).filter(|n| config.hosts.contains(n));
        prop_assert_eq!(config.serves_host(&asked), want);
    }

    #[test]
    fn redaction_never_grows_text_by_more_than_its_marker(text in any::<String>()) {
        let out = redact(&text);
        let redactions = out.matches(REDACTED).count();
        prop_assert!(out.len() <= text.len() + REDACTED.len() * redactions);
    }

    /// Wherever a token sits in whatever text, the output does not depend on the token's
    /// body (so the body is not in it), no prefix is left followed by a token character, and
    /// no prefix is lost.
    #[test]
    fn tokens_anywhere_in_text_are_redacted(
        before in prop_oneof![any::<String>(), "[a-z_ .:\"=gh]{0,16}", "(ghs_|ghp_|github_pat_|gh|x)[A-Za-z0-9]{0,4}"],
        token in token(1),
        after in prop_oneof![any::<String>(), "[A-Za-z0-9._ \"\n-]{0,16}"],
    ) {
        let text = format!("{before}{token}{after}");
        let out = redact(&text);
        let stand_in = format!("{before}ghs_Q{after}");
        let probe = redact(&stand_in);
        prop_assert!(out == probe, "the output depends on the token's body (token length {})", token.len());
        prop_assert!(!out.contains(&token));
        for prefix in TOKEN_PREFIXES {
            for (at, _) in out.match_indices(prefix) {
                let next = out.as_bytes().get(at + prefix.len());
                prop_assert!(
                    !next.is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')),
                    "a {} token body survived", prefix
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Plain checks the properties rest on
// ---------------------------------------------------------------------------------------------

/// The RFC 3339 generator means what it says (the properties above compare against it).
#[test]
fn generated_times_parse_to_their_instant() {
    let mut runner = proptest::test_runner::TestRunner::new(config(256));
    runner
        .run(&cache_time(), |(text, at)| {
            let parsed = parse_rfc3339(&text).unwrap();
            prop_assert_eq!(parsed.unix_timestamp_nanos(), at, "{}", text);
            let rewritten = parse_rfc3339(&format_rfc3339(parsed)).unwrap();
            prop_assert_eq!(rewritten.unix_timestamp_nanos(), whole_seconds(at));
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Regressions: these properties found bugs (a panic on times past 9999-12-31 in UTC, an
// overflow in `effective_expiry`, unreadable rewrites of year-0000 times, `:port` folding in
// `normalize_host`, float drift in unknown fields); each runs at full strength now.
// ---------------------------------------------------------------------------------------------

/// Host names with more than one `:port`-looking part, the ports that fold or fail.
fn host_with_ports() -> impl Strategy<Value = String> {
    let port = prop_oneof![
        Just("443"),
        Just("0443"),
        Just("01"),
        Just("8443"),
        Just("0"),
        Just("65536"),
        Just("")
    ];
    ("[a-z0-9.-]{1,12}", vec(port, 1..4))
        .prop_map(|(name, ports)| ports.iter().fold(name, |h, p| format!("{h}:{p}")))
}

proptest! {
    #![proptest_config(config(1024))]

    /// `9999-12-31T23:30:00-01:00` is past what `time` holds in UTC; `to_offset` panicked on
    /// it, aborting every helper run that read such an `expires_at`. It is refused now.
    #[test]
    fn any_rfc3339_time_parses_or_is_refused((text, _) in rfc3339(0..=9999)) {
        let _ = parse_rfc3339(&text);
    }

    /// `0000-01-01T00:00:00+01:00` is year -1 in UTC, which RFC 3339 cannot write: it was
    /// read, then written back as `"-62167222800"`, and the next read failed. A document is
    /// now refused on read or written back readable, never the first then the second.
    #[test]
    fn every_document_read_is_written_back_readable((text, _) in rfc3339(0..=9998), host in host_key()) {
        let doc = json!({"version": 1, "entries": {host: {
            "token": "ghs_x", "expires_at": text, "fetched_at": "2026-11-22T18:00:00Z", "source": "platform"
        }}});
        if let Ok(read) = Document::from_slice(&serde_json::to_vec(&doc).unwrap()) {
            prop_assert!(Document::from_slice(&read.to_vec().unwrap()).is_ok(), "the rewrite is unreadable: {}", text);
        }
    }

    /// `effective_expiry` computes `now + (expires_at - date)`; unchecked, it overflowed and
    /// panicked on `Date: Thu, 01 Jan 1970 00:00:00 GMT` (a server whose clock was reset) with
    /// `expires_at` `9999-01-01T00:00:00Z`. Every such answer is classified now.
    #[test]
    fn every_answer_is_classified_whatever_the_dates(
        body in platform_body(0..=9999),
        date in proptest::option::of(any_server_date()),
    ) {
        let response = RawResponse { status: 200, retry_after: None, date, ratelimit_remaining: None, body };
        check_classified(&response, platform_now())?;
    }

    /// `normalize_host` took `:` inside the name, so `github.com:443:443` became
    /// `github.com:443`, and normalising again gave `github.com` (never a leak, but a
    /// configured host no request could match). A `:` is only part of an `[IPv6]` literal now.
    #[test]
    fn normalizing_any_host_is_idempotent(host in host_with_ports()) {
        if let Some(n) = normalize_host(&host) {
            prop_assert!(!n.ends_with(":443"), "{:?} kept the default port: {:?}", host, n);
            prop_assert_eq!(normalize_host(&n), Some(n.clone()), "from {:?}", host);
        }
    }

    /// "Unknown fields are kept", but a fractional number in one came back a last digit off
    /// (`2.540729766852268e252` became `2.5407297668522675e252`): serde_json parses floats
    /// best-effort unless its `float_roundtrip` feature is on, as it is now.
    #[test]
    fn unknown_float_fields_survive_a_rewrite(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        let doc = json!({"version": 1, "entries": {}, "future": f});
        let read = Document::from_slice(&serde_json::to_vec(&doc).unwrap()).unwrap();
        prop_assert_eq!(&read.extra["future"], &doc["future"]);
    }
}

//! git's credential request: `read_request` on any bytes. An accepted request holds no CR, LF
//! or NUL; written back as `key=value` lines it reads as the same request; and an answer built
//! from its username and password reads back as written.

#![no_main]

use libfuzzer_sys::fuzz_target;
use molecule_credential::Secret;
use molecule_credential::protocol::{Answer, MAX_INPUT, read_request, write_answer};

#[path = "../../crates/molecule-credential/tests/props/request_fields.rs"]
mod request_fields;
use request_fields::fields;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = read_request(data) else {
        return;
    };
    let parsed = fields(&request);
    for (key, value) in &parsed {
        assert!(
            !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)),
            "accepted {key} holds CR, LF or NUL"
        );
    }

    // The request as git would have sent it field by field reads back the same.
    let mut text = String::new();
    for (key, value) in &parsed {
        text.push_str(key);
        text.push('=');
        text.push_str(value);
        text.push('\n');
    }
    text.push('\n');
    if text.len() <= MAX_INPUT {
        let again =
            read_request(text.as_bytes()).expect("a request we accepted, rewritten, is accepted");
        assert!(
            fields(&again) == parsed,
            "a rewritten request reads differently"
        );
    }

    // An answer carrying what we read reads back the same, in both forms (plain for older git,
    // ephemeral Basic for git that announced `capability[]=authtype`).
    // A Basic user-id cannot hold ':' (RFC 7617); the helper always answers `x-access-token`.
    let username = request
        .username
        .as_deref()
        .filter(|u| !u.contains(':'))
        .unwrap_or("x-access-token");
    let password = request
        .password
        .clone()
        .unwrap_or_else(|| Secret::new(String::new()));
    let expiry = data
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(i64::from_le_bytes);
    let ephemeral = data.first().is_some_and(|b| b & 1 == 1);
    let mut out = Vec::new();
    write_answer(
        &mut out,
        &Answer {
            username,
            password: &password,
            password_expiry_utc: expiry,
            ephemeral,
        },
    )
    .expect("writing to a Vec cannot fail");
    let back = read_request(&out[..]).expect("our own answer reads back");
    assert!(
        back.presented_token()
            .is_some_and(|p| p.eq_str(password.expose())),
        "the answer's token reads back differently"
    );
    if ephemeral {
        assert!(back.password.is_none() && back.username.is_none());
        assert_eq!(back.authtype.as_deref(), Some("Basic"));
    } else {
        assert_eq!(back.username.as_deref(), Some(username));
    }
    let text = String::from_utf8(out).expect("answers are UTF-8");
    let read_expiry = text
        .lines()
        .find_map(|l| l.strip_prefix("password_expiry_utc="))
        .map(|v| v.parse::<i64>().expect("expiry is a number"));
    assert_eq!(read_expiry, expiry);
});

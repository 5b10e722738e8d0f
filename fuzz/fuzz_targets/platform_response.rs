//! The platform's answer: the first two bytes are the HTTP status (big-endian, modulo 1000),
//! the rest is the body. `classify` must not panic; a token it accepts can be printed in git's
//! line protocol (non-empty visible ASCII), lives in the future and no longer than the cap.

#![no_main]

use libfuzzer_sys::fuzz_target;
use molecule_credential::clock::parse_rfc3339;
use molecule_credential::http::RawResponse;
use molecule_credential::platform::classify;
use molecule_credential::token::MAX_LIFETIME;

fuzz_target!(|data: &[u8]| {
    let Some((status, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let status = u16::from_be_bytes(*status) % 1000;
    let now = parse_rfc3339("2026-11-22T18:00:00Z").expect("a valid time");
    let response = RawResponse {
        status,
        retry_after: None,
        date: None,
        ratelimit_remaining: None,
        body: Some(body.to_vec()),
    };
    match classify(&response, now) {
        Ok(minted) => {
            assert_eq!(status, 200, "a token from a non-200 answer");
            let token = minted.token.expose();
            assert!(
                !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()),
                "an accepted token is not visible ASCII"
            );
            assert!(minted.expires_at > now, "an expired token was accepted");
            assert!(
                minted.expires_at <= now + MAX_LIFETIME,
                "a token outlives the cap"
            );
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                !message.contains("ghs_"),
                "an error quotes a token-shaped string"
            );
        }
    }
});

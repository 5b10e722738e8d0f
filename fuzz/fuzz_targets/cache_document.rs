//! `tokens.json`: `Document::from_slice` on any bytes. A document that reads is written back
//! (`to_vec`) to bytes that read again to the same entries, times in whole seconds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use molecule_credential::cache::Document;

fuzz_target!(|data: &[u8]| {
    let Ok(first) = Document::from_slice(data) else {
        return;
    };
    let bytes = first.to_vec().expect("a document we read can be written");
    let second = Document::from_slice(&bytes).expect("a document we wrote reads back");
    assert_eq!(second.version, first.version);
    assert!(
        second.extra == first.extra,
        "unknown top-level fields changed"
    );
    assert_eq!(
        second.entries.keys().collect::<Vec<_>>(),
        first.entries.keys().collect::<Vec<_>>()
    );
    for (host, a) in &first.entries {
        let b = &second.entries[host];
        assert!(b.token.eq_str(a.token.expose()), "a token changed");
        assert_eq!(b.source, a.source);
        assert_eq!(b.suspect, a.suspect);
        assert_eq!(b.expires_at.unix_timestamp(), a.expires_at.unix_timestamp());
        assert_eq!(b.fetched_at.unix_timestamp(), a.fetched_at.unix_timestamp());
        assert!(b.extra == a.extra, "unknown entry fields changed");
    }
    assert!(
        second.to_vec().expect("writes") == bytes,
        "a rewrite is not a fixed point"
    );
});

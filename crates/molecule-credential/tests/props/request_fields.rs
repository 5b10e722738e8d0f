//! A parsed request as the `key=value` lines git would have sent, in a fixed order. Shared by
//! the property tests and the `protocol` fuzz target (`fuzz/`, through `#[path]`), which check
//! the same round trip.

use molecule_credential::protocol::Request;

/// Every field `read_request` kept, secrets exposed, capabilities last.
pub fn fields(r: &Request) -> Vec<(&'static str, String)> {
    let mut out = vec![];
    let named = [
        ("protocol", &r.protocol),
        ("host", &r.host),
        ("path", &r.path),
        ("username", &r.username),
        ("authtype", &r.authtype),
    ];
    for (name, v) in named {
        if let Some(v) = v {
            out.push((name, v.clone()));
        }
    }
    if let Some(p) = &r.password {
        out.push(("password", p.expose().clone()));
    }
    if let Some(c) = &r.credential {
        out.push(("credential", c.expose().clone()));
    }
    for c in &r.capabilities {
        out.push(("capability[]", c.clone()));
    }
    out
}

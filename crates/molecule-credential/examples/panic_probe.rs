//! Panics with a token in the message after installing the binaries' panic hook, so the
//! redaction proof can show a panic's message is redacted too. Reads the token from
//! `PROBE_TOKEN` (never argv). Not part of either binary.

fn main() {
    molecule_credential::logging::install_panic_hook("panic-probe");
    let token = molecule_credential::config::process_env("PROBE_TOKEN").unwrap_or_default();
    panic!("a failure mentioning {token} on the way out");
}

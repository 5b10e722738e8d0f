//! The App's JWT signed by a command instead of a key file (`MOLECULE_GITHUB_APP_SIGNER`,
//! DESIGN.md "GitHub App without a key on disk"), for keys held in Vault transit, a cloud KMS
//! or an HSM.
//!
//! The command runs under `sh -c` with the JWT's signing input (`base64url(header).
//! base64url(payload)`, ASCII, no newline) on stdin, and prints the RS256 signature on stdout:
//! raw bytes, or base64 (standard or URL-safe, padding optional, whitespace ignored, with
//! Vault's `vault:vN:` prefix stripped). It has 10 s and 4 KiB of output; any failure is class
//! transient (a KMS that is down now may answer later), with the command's stderr redacted to
//! one line. Its stdout is never shown: with the signing input, the signature is the JWT.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, STANDARD_NO_PAD, URL_SAFE_NO_PAD};

use crate::child;
use crate::error::{Class, Error, Result};
use crate::secret::Secret;

/// How long the command may take.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// The most output read from it: a base64 RSA-4096 signature with a prefix is under 1 KiB.
pub const MAX_OUTPUT: u64 = 4096;
/// Signature sizes of the RSA keys a signer may hold (2048, 3072 and 4096 bits): anything
/// else is not an RS256 signature.
const SIGNATURE_LENGTHS: [usize; 3] = [256, 384, 512];
/// What messages call the command.
const WHAT: &str = "the GitHub App signer (MOLECULE_GITHUB_APP_SIGNER)";

/// A signing command.
#[derive(Clone, Debug)]
pub struct Signer {
    command: Secret<String>,
}

impl Signer {
    /// The command `command`, run by `sh -c`.
    pub fn new(command: Secret<String>) -> Self {
        Self { command }
    }

    /// The RS256 signature of `input`, from the command.
    pub async fn sign(&self, input: &str) -> Result<Vec<u8>> {
        let mut sh = std::process::Command::new("sh");
        sh.arg("-c").arg(self.command.expose());
        // Whatever went wrong, the key's holder may answer on a later try.
        let transient = |e: Error| Error::new(Class::Transient, e.message().to_owned());
        let out = child::run_capped(sh, Some(input.as_bytes()), DEADLINE, MAX_OUTPUT, WHAT)
            .await
            .map_err(transient)?;
        let failed = |how: String| {
            let stderr = out.stderr_excerpt();
            let stderr = if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            };
            Error::new(Class::Transient, format!("{WHAT} {how}{stderr}"))
        };
        if out.overflowed {
            return Err(failed(format!(
                "printed more than {MAX_OUTPUT} bytes and was stopped"
            )));
        }
        if !out.status.success() {
            return Err(failed(match out.status.code() {
                Some(code) => format!("exited with status {code}"),
                None => "was killed by a signal".to_owned(),
            }));
        }
        decode(&out.stdout).ok_or_else(|| {
            failed(format!(
                "printed {} bytes that are no RS256 signature (raw, or base64 with an optional \
                 vault:vN: prefix)",
                out.stdout.len()
            ))
        })
    }
}

/// The signature in a signer's output: base64 text when the output is nothing but base64,
/// whitespace and a `vault:vN:` prefix, else the raw bytes; either way only when its length
/// is an RSA signature's. Random signature bytes are all base64 characters with a
/// probability below 2^-400, so the two readings never collide in practice.
pub fn decode(output: &[u8]) -> Option<Vec<u8>> {
    let signature = as_base64(output).unwrap_or_else(|| output.to_vec());
    SIGNATURE_LENGTHS
        .contains(&signature.len())
        .then_some(signature)
}

fn as_base64(output: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(output).ok()?.trim();
    let text = strip_vault_prefix(text);
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let compact = compact.trim_end_matches('=');
    let engine: &GeneralPurpose = if compact.contains(['-', '_']) {
        &URL_SAFE_NO_PAD
    } else {
        &STANDARD_NO_PAD
    };
    engine.decode(compact).ok()
}

/// `vault:v12:…` → `…`: Vault transit names the key version it signed with.
fn strip_vault_prefix(text: &str) -> &str {
    text.strip_prefix("vault:v")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(version, _)| !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()))
        .map_or(text, |(_, signature)| signature)
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

    use super::*;

    fn signature() -> Vec<u8> {
        // Bytes that are all base64 characters too would be read as text: include some that
        // are not, as a real signature does.
        (0..=255u8).collect()
    }

    #[test]
    fn every_form_decodes_to_the_same_signature() {
        let sig = signature();
        let std = STANDARD.encode(&sig);
        let url = URL_SAFE.encode(&sig);
        let wrapped: String = std
            .as_bytes()
            .chunks(64)
            .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
            .collect();
        for form in [
            sig.clone(),
            std.clone().into_bytes(),
            std.trim_end_matches('=').as_bytes().to_vec(),
            url.clone().into_bytes(),
            url.trim_end_matches('=').as_bytes().to_vec(),
            format!("{std}\n").into_bytes(),
            format!("  {wrapped}  ").into_bytes(),
            format!("vault:v1:{std}").into_bytes(),
            format!("vault:v27:{std}\n").into_bytes(),
        ] {
            assert_eq!(decode(&form).as_deref(), Some(&sig[..]), "{form:?}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        let sig = signature();
        for garbage in [
            Vec::new(),
            b"\n".to_vec(),
            b"error: permission denied\n".to_vec(),
            sig[..255].to_vec(),
            STANDARD.encode(&sig[..200]).into_bytes(),
            format!("vault:vX:{}", STANDARD.encode(&sig)).into_bytes(),
            format!("{}!", STANDARD.encode(&sig)).into_bytes(),
        ] {
            assert_eq!(decode(&garbage), None, "{garbage:?}");
        }
    }

    fn signer(script: &str) -> Signer {
        Signer::new(Secret::new(script.to_owned()))
    }

    #[tokio::test]
    async fn the_command_reads_the_input_and_its_answer_is_decoded() {
        // The signature of this input, as far as this test is concerned: its bytes, padded.
        let sig = signer("head -c 256 /dev/zero | tr '\\0' 'A' | base64 -w0")
            .sign("header.payload")
            .await
            .unwrap();
        assert_eq!(sig, vec![b'A'; 256]);
        let echoed = signer("cat; head -c 245 /dev/zero")
            .sign("eyJh.eyJp-_")
            .await
            .unwrap();
        assert_eq!(
            &echoed[..11],
            b"eyJh.eyJp-_",
            "the input on stdin, no newline"
        );
    }

    #[tokio::test]
    async fn failures_are_transient_and_say_why_without_the_output() {
        let cases = [
            (
                "echo ghs_SECRET; echo 'vault: permission denied ghs_SECRET' >&2; exit 2",
                "exited with status 2: vault: permission denied ghs_[REDACTED]",
            ),
            (
                "printf 'ghs_SECRETVALUE'",
                "printed 15 bytes that are no RS256 signature",
            ),
            (
                "head -c 100000 /dev/zero",
                "printed more than 4096 bytes and was stopped",
            ),
            ("kill -9 $$", "was killed by a signal"),
        ];
        for (script, says) in cases {
            let e = signer(script).sign("x.y").await.unwrap_err();
            assert_eq!(e.class(), Class::Transient, "{script}");
            assert!(e.message().contains(says), "{script}: {e}");
            assert!(!e.message().contains("SECRET"), "{e}");
            assert_eq!(e.message().lines().count(), 1, "{e}");
        }
    }
}

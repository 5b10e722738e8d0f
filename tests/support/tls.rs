//! The throw-away certificate authority: one CA and one server certificate for the
//! loopback names, so real clients (git via libcurl, gh via Go's TLS, curl) verify the
//! stand-ins exactly as they would a real host, with only the trust anchor swapped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA written to disk as `ca.pem`, and the server certificate it signed for
/// `localhost`, `127.0.0.1` and `::1`.
pub struct TestCa {
    ca_pem_path: PathBuf,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl TestCa {
    /// Generates a fresh CA and server certificate, and writes the CA certificate to
    /// `dir/ca.pem` for clients to trust.
    pub fn generate(dir: &Path) -> TestCa {
        let ca_key = KeyPair::generate().expect("generate the CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new())
            .expect("CA parameters without names are valid");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "molecule test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .expect("self-sign the CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("generate the server key");
        let mut server_params = CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ])
        .expect("loopback names are valid subject alternative names");
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        // Go's verifier (gh) insists on the server-auth EKU when any EKU is present;
        // stating it keeps every client happy.
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        server_params.use_authority_key_identifier_extension = true;
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .expect("sign the server certificate");

        std::fs::create_dir_all(dir).expect("create the CA directory");
        let ca_pem_path = dir.join("ca.pem");
        std::fs::write(&ca_pem_path, ca_cert.pem()).expect("write ca.pem");

        TestCa {
            ca_pem_path,
            // Sending the CA along costs nothing and helps clients that build chains oddly.
            chain: vec![server_cert.der().clone(), ca_cert.der().clone()],
            key_der: server_key.serialize_der(),
        }
    }

    /// Where the CA certificate (PEM) was written: what clients must trust.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    /// `curl` that trusts only this CA (whatever the environment says) and sends
    /// `Authorization: {authorization}`. The header goes through a file in `dir` so the
    /// credential never reaches curl's arguments. Callers add the URL and the rest.
    pub fn curl(&self, dir: &Path, authorization: &str) -> std::process::Command {
        let header_file = dir.join("auth-header");
        std::fs::write(&header_file, format!("Authorization: {authorization}\n"))
            .expect("write the header file");
        let mut command = std::process::Command::new("curl");
        command
            .env_remove("CURL_CA_BUNDLE")
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .args(["-sS", "--noproxy", "*", "--cacert"])
            .arg(&self.ca_pem_path)
            .arg("-H")
            .arg(format!("@{}", header_file.display()));
        command
    }

    /// A rustls server configuration presenting the server certificate, with the ring
    /// provider chosen explicitly and ALPN `http/1.1` (the stand-ins speak nothing else).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(self.chain.clone(), key)
        .expect("the server certificate matches its key");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_ca_and_builds_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::generate(dir.path());
        let pem = std::fs::read_to_string(ca.ca_pem_path()).expect("read ca.pem");
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let config = ca.server_config();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}

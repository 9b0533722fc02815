//! TLS for https and wss: which certificates are trusted, and a failed handshake in words a
//! user can act on.
//!
//! Trusted by default: the platform's store (as `rustls-native-certs` finds it, which also
//! honours `SSL_CERT_FILE` and `SSL_CERT_DIR`) and the Mozilla roots built in, so a box behind a
//! public certificate works on a machine without a CA bundle. `--ca-cert FILE` adds a private
//! CA; `--insecure` checks nothing and the dashboard says so for as long as it is on.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};

/// How one server's certificate is checked. Cheap to clone; the rustls configuration is built
/// once, on first use, and shared by the clones (the HTTP client and the WebSocket).
#[derive(Clone, Default)]
pub struct TlsSettings {
    /// `--ca-cert`: the file and the certificates read from it.
    ca: Option<(PathBuf, Arc<[CertificateDer<'static>]>)>,
    insecure: bool,
    built: Arc<OnceLock<Result<Arc<ClientConfig>, String>>>,
}

impl PartialEq for TlsSettings {
    fn eq(&self, other: &Self) -> bool {
        self.ca == other.ca && self.insecure == other.insecure
    }
}

impl Eq for TlsSettings {}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("ca_file", &self.ca.as_ref().map(|(path, _)| path))
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl TlsSettings {
    /// Also trusts the CA certificates (PEM) in `path`. The error says what is wrong with the
    /// file.
    pub fn with_ca_file(self, path: &Path) -> Result<Self, String> {
        let certificates = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read the CA certificate {}: {e}", path.display()))?;
        if certificates.is_empty() {
            return Err(format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ));
        }
        Ok(Self {
            ca: Some((path.to_path_buf(), certificates.into())),
            built: Arc::default(),
            ..self
        })
    }

    /// Accepts any certificate (`--insecure`).
    pub fn with_insecure(self, insecure: bool) -> Self {
        Self {
            insecure,
            built: Arc::default(),
            ..self
        }
    }

    pub fn insecure(&self) -> bool {
        self.insecure
    }

    pub fn ca_file(&self) -> Option<&Path> {
        self.ca.as_ref().map(|(path, _)| path.as_path())
    }

    /// The rustls configuration, built on first use.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, String> {
        self.built.get_or_init(|| self.build()).clone()
    }

    fn build(&self) -> Result<Arc<ClientConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
        let config = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            // Certificates the platform store cannot parse, or a store that is missing, leave
            // the built-in roots: the handshake then says which issuer is unknown.
            let native = rustls_native_certs::load_native_certs();
            if !native.errors.is_empty() {
                tracing::debug!(errors = ?native.errors, "parts of the platform's trust store were unreadable");
            }
            roots.add_parsable_certificates(native.certs);
            if let Some((path, certificates)) = &self.ca {
                for certificate in certificates.iter() {
                    roots.add(certificate.clone()).map_err(|e| {
                        format!("{} is not a usable CA certificate: {e}", path.display())
                    })?;
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        Ok(Arc::new(config))
    }
}

/// `--insecure`: any certificate for any name. The handshake's signatures are still checked,
/// so the connection is encrypted, only not authenticated.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls error somewhere in `error`'s chain. rustls errors arrive wrapped in `io::Error`s,
/// whose `source()` skips the wrapped error, so those are opened too.
pub fn find_tls_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Why a TLS handshake failed and what to do, as the end of a sentence that begins "the TLS
/// handshake with SERVER failed: ".
pub fn describe(error: &rustls::Error) -> String {
    const TRUST_HINT: &str = "Give comfytop that CA with --ca-cert FILE (or ca_cert in the config); --insecure skips the check";
    match error {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            CertificateError::UnknownIssuer => format!(
                "its certificate is signed by an authority comfytop does not trust (self-signed, or a private CA). {TRUST_HINT}"
            ),
            CertificateError::NotValidForName => {
                "its certificate is for another name. Connect with a name the certificate lists"
                    .to_string()
            }
            CertificateError::NotValidForNameContext { presented, .. } => format!(
                "its certificate is for another name ({}). Connect with a name the certificate lists",
                presented.join(", ")
            ),
            CertificateError::Expired => {
                "its certificate has expired. Renew it on the server".to_string()
            }
            CertificateError::ExpiredContext { time, not_after } => format!(
                "its certificate expired {} ago. Renew it on the server",
                days(time.as_secs().saturating_sub(not_after.as_secs()))
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "its certificate is not valid yet. Check the clock of this machine and of the server"
                    .to_string()
            }
            CertificateError::Revoked => "its certificate has been revoked".to_string(),
            CertificateError::BadSignature | CertificateError::BadEncoding => {
                format!("its certificate is damaged ({certificate:?})")
            }
            other => format!("its certificate was refused ({other:?}). {TRUST_HINT}"),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "it did not answer in TLS. Does the server speak https on that port (or only http)?"
                .to_string()
        }
        rustls::Error::AlertReceived(alert) => format!(
            "the server ended the handshake ({alert:?}). Does it speak https on that port, for that name?"
        ),
        other => format!("{other}"),
    }
}

fn days(seconds: u64) -> String {
    match seconds / 86_400 {
        0 => "less than a day".to_string(),
        1 => "1 day".to_string(),
        n => format!("{n} days"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reasons_name_the_cause_and_the_way_out() {
        let unknown = describe(&rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert!(unknown.contains("does not trust"), "{unknown}");
        assert!(unknown.contains("--ca-cert") && unknown.contains("--insecure"));
        let expired = describe(&rustls::Error::InvalidCertificate(
            CertificateError::ExpiredContext {
                time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(10 * 86_400)),
                not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(86_400)),
            },
        ));
        assert_eq!(
            expired,
            "its certificate expired 9 days ago. Renew it on the server"
        );
        let name = describe(&rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        ));
        assert!(name.contains("another name"), "{name}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("comfytop-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = TlsSettings::default().with_ca_file(&empty).unwrap_err();
        assert!(err.contains("empty.pem") && err.contains("no PEM"), "{err}");
        let missing = TlsSettings::default()
            .with_ca_file(&dir.join("missing.pem"))
            .unwrap_err();
        assert!(missing.contains("cannot read"), "{missing}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn both_ways_build_a_configuration_once() {
        let strict = TlsSettings::default();
        let config = strict.client_config().unwrap();
        assert!(Arc::ptr_eq(
            &config,
            &strict.clone().client_config().unwrap()
        ));
        assert!(
            TlsSettings::default()
                .with_insecure(true)
                .client_config()
                .is_ok()
        );
    }
}

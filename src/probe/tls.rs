//! TLS handshakes for probes (implicit TLS, or after STARTTLS) and the certificate expiry check.
//!
//! By default a probe does not verify the certificate chain: mail servers often serve a
//! self-signed or snakeoil certificate on loopback, and the probe checks whether the service
//! works, not whether a client on the internet trusts it. The expiry date is checked either way.
//! With `verify_cert` the chain and name are verified against the system's CA store.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

use super::io::Stream;
use super::{Outcome, TlsOptions};

/// rustls with ring, the backend lettre already builds. rustls 0.23.48 deprecates it because
/// ring has no post-quantum key exchange, which a liveness probe on this host does not need.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any certificate chain but still checks the handshake signatures, so the session is
/// real TLS with whatever key the server presents.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
        verify_tls12_signature(
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
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn unverified_config() -> Result<Arc<ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = provider();
            ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map(|builder| {
                    Arc::new(
                        builder
                            .dangerous()
                            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                            .with_no_client_auth(),
                    )
                })
                .map_err(|error| format!("cannot set up TLS: {error}"))
        })
        .clone()
}

fn verified_config() -> Result<Arc<ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "no CA certificates found in the system store (package ca-certificates)"
                        .to_string(),
                );
            }
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map(|builder| {
                    Arc::new(builder.with_root_certificates(roots).with_no_client_auth())
                })
                .map_err(|error| format!("cannot set up TLS: {error}"))
        })
        .clone()
}

/// Performs a TLS handshake over `stream` within `limit`. Returns the encrypted stream and a
/// warning when the certificate expires within `options.warn_days`. An expired certificate is
/// a failure: clients reject it.
pub async fn handshake(
    stream: Stream,
    host: &str,
    options: &TlsOptions,
    limit: Duration,
) -> Result<(Stream, Option<String>), Outcome> {
    let config = if options.verify {
        verified_config()
    } else {
        unverified_config()
    }
    .map_err(|error| Outcome::TlsFailed { error })?;
    let name = options.server_name.as_deref().unwrap_or(host).to_string();
    let server_name = ServerName::try_from(name.clone()).map_err(|error| Outcome::TlsFailed {
        error: format!("invalid TLS server name {name:?}: {error}"),
    })?;
    let connector = TlsConnector::from(config);
    let tls = match tokio::time::timeout(limit, connector.connect(server_name, stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            return Err(Outcome::TlsFailed {
                error: error.to_string(),
            })
        }
        Err(_) => {
            return Err(Outcome::TimedOut {
                step: "TLS handshake".to_string(),
                after: limit,
            })
        }
    };
    let warning = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        Some(cert) => expiry_check(cert.as_ref(), options.warn_days, SystemTime::now())?,
        None => None,
    };
    Ok((Box::new(tls), warning))
}

/// Checks the leaf certificate's notAfter: expired is a failure, expiring within `warn_days`
/// is a warning.
pub(super) fn expiry_check(
    der: &[u8],
    warn_days: u32,
    now: SystemTime,
) -> Result<Option<String>, Outcome> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|error| Outcome::TlsFailed {
            error: format!("cannot parse the server certificate: {error}"),
        })?;
    let not_after = cert.validity().not_after.timestamp();
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let expires = cert.validity().not_after.to_string();
    if not_after < now_secs {
        return Err(Outcome::TlsFailed {
            error: format!("certificate expired on {expires}"),
        });
    }
    let days_left = (not_after - now_secs) / 86_400;
    if days_left < i64::from(warn_days) {
        return Ok(Some(format!(
            "certificate expires in {days_left} day(s), on {expires}"
        )));
    }
    Ok(None)
}

//! TLS of pgspec's connections to PostgreSQL: a rustls connector for each
//! of libpq's `sslmode`s.
//!
//! The TLS stack is rustls (through tokio-postgres-rustls) with the *ring*
//! provider: no system OpenSSL, so the same static binary runs on the host
//! and, as the backup agent, inside any server image. tokio-postgres knows
//! only `disable`, `prefer` and `require`; `verify-ca` and `verify-full`
//! are `require` plus the verifier here, which checks the chain against the
//! root certificates, and for `verify-full` the host name too. `prefer` and
//! `require` encrypt without checking the certificate, as libpq does.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as WireMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`, but `allow`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// TLS when the server offers it, the certificate unchecked.
    #[default]
    Prefer,
    /// TLS, the certificate unchecked.
    Require,
    /// TLS, the certificate signed by the root certificate.
    VerifyCa,
    /// TLS, the certificate signed by the root certificate and valid for
    /// the host name.
    VerifyFull,
}

impl SslMode {
    pub fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the server's certificate is checked.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// The mode tokio-postgres negotiates with and the connector for `mode`;
/// `roots` (DER) are what `verify-ca` and `verify-full` check against.
pub fn connector(
    mode: SslMode,
    roots: Vec<Vec<u8>>,
) -> Result<(WireMode, MakeRustlsConnect), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (wire, inner) = match mode {
        SslMode::Disable => (WireMode::Disable, None),
        SslMode::Prefer => (WireMode::Prefer, None),
        SslMode::Require => (WireMode::Require, None),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let mut store = RootCertStore::empty();
            for der in roots {
                store
                    .add(CertificateDer::from(der))
                    .map_err(|error| format!("the root certificate: {error}"))?;
            }
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                    .build()
                    .map_err(|error| format!("the root certificate: {error}"))?;
            (WireMode::Require, Some(verifier))
        }
    };
    let verifier = Verifier {
        inner,
        check_name: mode == SslMode::VerifyFull,
        provider: provider.clone(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS: {error}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok((wire, MakeRustlsConnect::new(config)))
}

/// Checks the chain with `inner` (none: accepts any certificate, for
/// `prefer` and `require`) and the host name only with `check_name`.
/// Handshake signatures are always checked.
#[derive(Debug)]
struct Verifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

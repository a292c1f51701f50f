//! The server's certificates: what the files in its data directory hold,
//! and what the spec's files hold, read as public facts (fingerprint,
//! subject, names, validity). The key files are never read back from the
//! container; the spec's key is read only to check it belongs to its
//! certificate.

use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::engine::{Docker, EngineError, files};
use crate::live::ObserveError;
use crate::model::tls::{CA_FILE, CERT_FILE, EXPIRY_WARNING_DAYS, KEY_FILE, TLS_DIRECTORY};
use crate::model::{CertificateInfo, Tls, TlsFiles, TlsSource};
use crate::secret::Secret;

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or_default()
}

/// The DER of every certificate in a PEM text, in order.
pub fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem)
        .map_while(Result::ok)
        .filter(|block| block.label == "CERTIFICATE")
        .map(|block| block.contents)
        .collect()
}

/// The public facts of the first certificate of a PEM text, judged at
/// `now` (seconds since the epoch).
pub fn certificate_info(pem: &[u8], now: i64) -> Result<CertificateInfo, String> {
    let der = pem_certificates(pem)
        .into_iter()
        .next()
        .ok_or_else(|| "it holds no PEM certificate".to_owned())?;
    let (_, certificate) = X509Certificate::from_der(&der)
        .map_err(|error| format!("it is not an X.509 certificate: {error}"))?;
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(extension)) = certificate.subject_alternative_name() {
        for name in &extension.value.general_names {
            match name {
                GeneralName::DNSName(name) => names.push((*name).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Ok(octets) = <[u8; 4]>::try_from(*bytes) {
                        names.push(std::net::Ipv4Addr::from(octets).to_string());
                    } else if let Ok(octets) = <[u8; 16]>::try_from(*bytes) {
                        names.push(std::net::Ipv6Addr::from(octets).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    names.sort();
    names.dedup();
    let not_after = certificate.validity().not_after.timestamp();
    Ok(CertificateInfo {
        fingerprint: hex::encode(Sha256::digest(&der)),
        subject: certificate.subject().to_string(),
        names,
        not_after,
        expired: not_after <= now,
        expires_soon: not_after > now && not_after - now < EXPIRY_WARNING_DAYS * 86_400,
    })
}

/// Whether the private key (PEM) belongs to the certificate (PEM); `true`
/// when the key's format is one this check cannot read, for the server to
/// judge.
pub fn key_matches(certificate: &[u8], key: &str) -> bool {
    let Some(der) = pem_certificates(certificate).into_iter().next() else {
        return false;
    };
    let Ok((_, certificate)) = X509Certificate::from_der(&der) else {
        return false;
    };
    let Ok(key) = rcgen::KeyPair::from_pem(key) else {
        return true;
    };
    rcgen::PublicKeyData::der_bytes(&key)
        == certificate.public_key().subject_public_key.data.as_ref()
}

/// What the certificate files pgspec keeps in the data directory `pgdata`
/// of `container` hold, and, for certificates from files, what the spec's
/// hold.
pub async fn observe(
    docker: &Docker,
    container: &str,
    pgdata: &str,
    desired: &Tls,
) -> Result<Tls, ObserveError> {
    let now = now();
    let path = |file: &str| format!("{}/{file}", pgdata.trim_end_matches('/'));
    let certificate = files::read_file(docker, container, &path(CERT_FILE)).await?;
    let installed = match certificate {
        Some(pem) => {
            let ca = files::read_file(docker, container, &path(CA_FILE)).await?;
            let key_name = KEY_FILE.rsplit('/').next().unwrap_or_default();
            let key_ok = files::list(docker, container, &path(TLS_DIRECTORY))
                .await
                .iter()
                .any(|entry| entry.regular && entry.path.ends_with(key_name));
            // A file that is not a certificate is no certificate: the
            // plan writes it again.
            certificate_info(&pem, now)
                .ok()
                .map(|certificate| TlsFiles {
                    certificate,
                    ca: ca.and_then(|pem| certificate_info(&pem, now).ok()),
                    key_ok,
                })
        }
        None => None,
    };
    Ok(Tls {
        installed,
        ..observe_spec_only(desired)?
    })
}

/// The data directory of container `container`: its `PGDATA`.
pub async fn data_directory(docker: &Docker, container: &str) -> Result<String, EngineError> {
    let inspect = crate::engine::container::inspect(docker, container).await?;
    let env = inspect
        .and_then(|inspect| inspect.config)
        .and_then(|config| config.env)
        .unwrap_or_default();
    Ok(crate::engine::image::env_value(&env, "PGDATA")
        .filter(|pgdata| pgdata.starts_with('/'))
        .unwrap_or(crate::model::data::DEFAULT_PGDATA)
        .trim_end_matches('/')
        .to_owned())
}

/// The server certificate in the data directory of `container`, if any.
pub async fn installed_certificate(
    docker: &Docker,
    container: &str,
) -> Result<Option<CertificateInfo>, EngineError> {
    let path = format!("{}/{CERT_FILE}", data_directory(docker, container).await?);
    Ok(files::read_file(docker, container, &path)
        .await?
        .and_then(|pem| certificate_info(&pem, now()).ok()))
}

/// The spec's certificate files alone, for a server whose container does
/// not exist yet.
pub fn observe_spec_only(desired: &Tls) -> Result<Tls, ObserveError> {
    let wanted = match &desired.source {
        Some(TlsSource::Files {
            certificate,
            key,
            ca,
        }) => Some(read_files(certificate, key, ca.as_ref(), now())?),
        _ => None,
    };
    Ok(Tls {
        wanted,
        ..Tls::default()
    })
}

/// The spec's certificate files, read now.
pub fn read_files(
    certificate: &Secret,
    key: &Secret,
    ca: Option<&Secret>,
    now: i64,
) -> Result<TlsFiles, ObserveError> {
    let read = |secret: &Secret, purpose: &'static str| {
        secret
            .resolve()
            .map_err(|source| ObserveError::Secret { purpose, source })
    };
    let invalid = |secret: &Secret, message: String| ObserveError::Certificate {
        what: secret.describe(),
        message,
    };
    let certificate_pem = read(certificate, "TLS certificate")?;
    let info = certificate_info(certificate_pem.expose().as_bytes(), now)
        .map_err(|message| invalid(certificate, message))?;
    let key_pem = read(key, "TLS key")?;
    if !key_matches(certificate_pem.expose().as_bytes(), key_pem.expose()) {
        return Err(invalid(
            key,
            format!(
                "the key does not belong to the certificate {}",
                info.short_fingerprint()
            ),
        ));
    }
    let ca = match ca {
        Some(secret) => {
            let pem = read(secret, "TLS CA certificate")?;
            Some(
                certificate_info(pem.expose().as_bytes(), now)
                    .map_err(|message| invalid(secret, message))?,
            )
        }
        None => None,
    };
    Ok(TlsFiles {
        certificate: info,
        ca,
        key_ok: true,
    })
}

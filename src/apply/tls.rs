//! Writing the server's certificate, key and CA into its data directory.
//!
//! The files reach the container through the engine's archive endpoint,
//! like the superuser's password file: never through an environment
//! variable, an argument or a label. They belong to the owner of the data
//! directory (the user the server runs as), the keys readable by it alone,
//! as PostgreSQL demands of `ssl_key_file`.
//!
//! A generated certificate is issued here, at apply time, with rcgen: by
//! the CA kept in the data directory when there is one (so clients that
//! trust it keep trusting the server), else by a new CA made first.

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::engine::archive::Entry;
use crate::engine::{Docker, files};
use crate::live::Target;
use crate::live::tls::{certificate_info, key_matches, now};
use crate::model::TlsSource;
use crate::model::tls::{CA_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE, TLS_DIRECTORY};

/// How long a generated server certificate is valid: 397 days, the most
/// browsers and most TLS stacks accept of a server certificate.
const SERVER_DAYS: i64 = 397;
/// How long a generated CA is valid.
const CA_DAYS: i64 = 3650;

/// The PEM texts written into the data directory.
pub struct TlsPems {
    pub certificate: String,
    pub key: String,
    pub ca: Option<String>,
    /// The generated CA's key.
    pub ca_key: Option<String>,
}

/// Writes the server's TLS files into container `name`.
pub async fn write(
    docker: &Docker,
    name: &str,
    source: &TlsSource,
    target: &Target,
) -> anyhow::Result<()> {
    let data_directory = data_directory(target).await?;
    let path = |file: &str| format!("{}/{file}", data_directory.trim_end_matches('/'));
    let pems = match source {
        TlsSource::Files { .. } => {
            let pems = file_pems(source)?;
            TlsPems {
                // An empty file where a CA was: no CA is read back.
                ca: Some(pems.ca.unwrap_or_default()),
                ..pems
            }
        }
        TlsSource::SelfSigned { names } => {
            let ca = files::read_text(docker, name, &path(CA_FILE)).await;
            let ca_key = files::read_text(docker, name, &path(CA_KEY_FILE)).await;
            let ca = ca.zip(ca_key);
            generate(
                names,
                ca.as_ref().map(|(ca, key)| (ca.as_str(), key.as_str())),
            )?
        }
    };
    // The files belong to the owner of the data directory.
    let listing = files::list(docker, name, &data_directory).await;
    let Some(owner) = listing.first() else {
        bail!("cannot read the data directory `{data_directory}` of container `{name}`");
    };
    let (uid, gid) = (owner.uid, owner.gid);
    let directory = path(TLS_DIRECTORY);
    let (certificate, key, ca, ca_key) = (
        path(CERT_FILE),
        path(KEY_FILE),
        path(CA_FILE),
        path(CA_KEY_FILE),
    );
    let mut entries = vec![
        Entry::directory(&directory, 0o700),
        Entry::file(&certificate, 0o644, pems.certificate.as_bytes()),
        Entry::file(&key, 0o600, pems.key.as_bytes()),
    ];
    if let Some(pem) = &pems.ca {
        entries.push(Entry::file(&ca, 0o644, pem.as_bytes()));
    }
    if let Some(pem) = &pems.ca_key {
        entries.push(Entry::file(&ca_key, 0o600, pem.as_bytes()));
    }
    let entries: Vec<Entry<'_>> = entries
        .into_iter()
        .map(|entry| entry.owned_by(uid, gid).modified_at(now().max(0) as u64))
        .collect();
    files::upload_entries(
        docker,
        name,
        &entries,
        "the server's TLS certificate and key",
    )
    .await
}

/// The certificate, key and CA of `TlsSource::Files`, read from their
/// references and checked to belong together; an error for a generated one.
fn file_pems(source: &TlsSource) -> anyhow::Result<TlsPems> {
    let TlsSource::Files {
        certificate,
        key,
        ca,
    } = source
    else {
        bail!("the TLS files are generated, not read from references");
    };
    let certificate = certificate
        .resolve()
        .context("cannot read the TLS certificate")?;
    let key = key.resolve().context("cannot read the TLS key")?;
    let ca = match ca {
        Some(ca) => Some(with_newline(
            ca.resolve()
                .context("cannot read the TLS CA certificate")?
                .expose(),
        )),
        None => None,
    };
    certificate_info(certificate.expose().as_bytes(), now())
        .map_err(|message| anyhow::anyhow!("the TLS certificate: {message}"))?;
    if !key_matches(certificate.expose().as_bytes(), key.expose()) {
        bail!("the TLS key does not belong to the certificate");
    }
    Ok(TlsPems {
        certificate: with_newline(certificate.expose()),
        key: with_newline(key.expose()),
        ca,
        ca_key: None,
    })
}

/// The certificate, key and CA the pooler serves its clients with: the
/// spec's files, or the server's generated ones, read from the data
/// directory of the server container `server`.
pub async fn pooler_pems(
    docker: &Docker,
    source: &TlsSource,
    server: &str,
) -> anyhow::Result<TlsPems> {
    match source {
        TlsSource::Files { .. } => file_pems(source),
        TlsSource::SelfSigned { .. } => {
            let pgdata = crate::live::tls::data_directory(docker, server).await?;
            let read = |file: &'static str| {
                let path = format!("{pgdata}/{file}");
                async move {
                    files::read_text(docker, server, &path)
                        .await
                        .with_context(|| format!("cannot read `{path}` in container `{server}`"))
                }
            };
            Ok(TlsPems {
                certificate: read(CERT_FILE).await?,
                key: read(KEY_FILE).await?,
                ca: Some(read(CA_FILE).await?),
                ca_key: None,
            })
        }
    }
}

fn with_newline(pem: &str) -> String {
    format!("{}\n", pem.trim_end())
}

/// The data directory, as the server reports it.
async fn data_directory(target: &Target) -> anyhow::Result<String> {
    let client = target.connect().await?;
    let row = client
        .query_one("SELECT current_setting('data_directory')", &[])
        .await
        .context("cannot read the server's data directory")?;
    Ok(row.get(0))
}

/// A server certificate for `names`, issued by the CA `ca` (its PEM
/// certificate and key) or by a new CA.
pub fn generate(names: &[String], ca: Option<(&str, &str)>) -> anyhow::Result<TlsPems> {
    let now = time::OffsetDateTime::now_utc();
    let (issuer, ca_pem, ca_key_pem) = match ca {
        Some((certificate, key)) => {
            let key = KeyPair::from_pem(key).context("cannot read the CA key pgspec kept")?;
            let issuer = Issuer::from_ca_cert_pem(certificate, key)
                .context("cannot read the CA certificate pgspec kept")?;
            (issuer, certificate.to_owned(), None)
        }
        None => {
            let key = KeyPair::generate().context("cannot generate a CA key")?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params
                .distinguished_name
                .push(DnType::CommonName, "pgspec development CA");
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.not_before = now - time::Duration::days(1);
            params.not_after = now + time::Duration::days(CA_DAYS);
            let certificate = params.self_signed(&key)?;
            let key_pem = key.serialize_pem();
            (Issuer::new(params, key), certificate.pem(), Some(key_pem))
        }
    };
    let key = KeyPair::generate().context("cannot generate the server key")?;
    let mut params = CertificateParams::new(names.to_vec())?;
    let common_name = names
        .iter()
        .find(|name| name.parse::<std::net::IpAddr>().is_err() && *name != "localhost")
        .or(names.first())
        .cloned()
        .unwrap_or_else(|| "localhost".to_owned());
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(SERVER_DAYS);
    let certificate = params.signed_by(&key, &issuer)?;
    Ok(TlsPems {
        certificate: certificate.pem(),
        key: key.serialize_pem(),
        ca: Some(ca_pem),
        ca_key: ca_key_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_names_its_hosts_and_a_second_keeps_the_ca() {
        let names = ["127.0.0.1", "localhost", "x-postgres"].map(str::to_owned);
        let first = generate(&names, None).expect("generated");
        let info = certificate_info(first.certificate.as_bytes(), now()).expect("parsed");
        assert_eq!(info.names, names);
        assert_eq!(info.subject, "CN=x-postgres");
        assert!(!info.expires_soon && !info.expired);
        assert!(key_matches(first.certificate.as_bytes(), &first.key));

        let ca = first.ca.as_deref().expect("a CA");
        let ca_key = first.ca_key.as_deref().expect("its key");
        let second = generate(&names, Some((ca, ca_key))).expect("issued again");
        assert_eq!(second.ca.as_deref(), Some(ca));
        assert!(second.ca_key.is_none());
        assert_ne!(second.certificate, first.certificate);
        assert!(!key_matches(first.certificate.as_bytes(), &second.key));
    }
}

//! TLS of pgspec's own connections: where `sslmode` and `sslrootcert` come
//! from (the spec, the URL, PGSSLMODE and PGSSLROOTCERT) and the root
//! certificate, a file or the CA pgspec generated for the server. The
//! connector itself is `crate::tls`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio_postgres::config::SslMode as WireMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::engine::{Docker, files};
use crate::live::ObserveError;
use crate::live::tls::pem_certificates;
pub use crate::tls::SslMode;

/// A CA certificate pgspec generated, read from the server container's
/// data directory when a connection first needs it.
#[derive(Clone)]
pub struct GeneratedCa {
    pub docker: Docker,
    pub container: String,
    read: Arc<Mutex<Option<Vec<u8>>>>,
}

impl GeneratedCa {
    pub fn new(docker: Docker, container: String) -> GeneratedCa {
        GeneratedCa {
            docker,
            container,
            read: Arc::default(),
        }
    }

    /// The CA's path in the container: in its data directory (`PGDATA`).
    async fn path(&self) -> Result<String, ObserveError> {
        let pgdata = crate::live::tls::data_directory(&self.docker, &self.container).await?;
        Ok(format!("{pgdata}/{}", crate::model::tls::CA_FILE))
    }

    async fn pem(&self) -> Result<Vec<u8>, ObserveError> {
        if let Ok(read) = self.read.lock()
            && let Some(pem) = read.as_ref()
        {
            return Ok(pem.clone());
        }
        let path = self.path().await?;
        let pem = files::read_file(&self.docker, &self.container, &path)
            .await?
            .filter(|pem| !pem.is_empty())
            .ok_or_else(|| {
                ObserveError::Connection(format!(
                    "sslmode needs a root certificate, and container `{}` holds no CA pgspec \
                     generated yet; connect with `sslmode: prefer` until the first apply has \
                     written it, or give `sslrootcert`",
                    self.container
                ))
            })?;
        if let Ok(mut read) = self.read.lock() {
            *read = Some(pem.clone());
        }
        Ok(pem)
    }
}

/// How a connection uses TLS.
#[derive(Clone, Default)]
pub struct Ssl {
    pub mode: SslMode,
    /// `sslrootcert`: the CA file the server's certificate is checked
    /// against.
    pub root_cert: Option<PathBuf>,
    /// The CA pgspec generated, used without `root_cert`.
    pub generated_ca: Option<GeneratedCa>,
}

impl Ssl {
    /// The mode tokio-postgres negotiates with, and the connector.
    pub async fn connector(&self) -> Result<(WireMode, MakeRustlsConnect), ObserveError> {
        let roots = if self.mode.verifies() {
            let roots = pem_certificates(&self.root_pem().await?);
            if roots.is_empty() {
                return Err(ObserveError::Connection(
                    "the root certificate file holds no PEM certificate".to_owned(),
                ));
            }
            roots
        } else {
            Vec::new()
        };
        crate::tls::connector(self.mode, roots).map_err(ObserveError::Connection)
    }

    async fn root_pem(&self) -> Result<Vec<u8>, ObserveError> {
        if let Some(path) = &self.root_cert {
            return std::fs::read(path).map_err(|error| {
                ObserveError::Connection(format!(
                    "cannot read sslrootcert `{}`: {error}",
                    path.display()
                ))
            });
        }
        match &self.generated_ca {
            Some(ca) => ca.pem().await,
            None => Err(ObserveError::Connection(format!(
                "sslmode `{}` needs a root certificate: give `sslrootcert` (or PGSSLROOTCERT)",
                self.mode.as_str()
            ))),
        }
    }
}

/// A libpq URL without its `sslmode` and `sslrootcert`, which
/// tokio-postgres does not take (it knows no `verify-*`), and their values:
/// `(rest, sslmode, sslrootcert)`. Both URI (`postgresql://…?sslmode=…`)
/// and key/value (`host=… sslmode=…`) forms.
pub fn split_ssl_params(url: &str) -> (String, Option<String>, Option<String>) {
    let (mut mode, mut root) = (None, None);
    let mut take = |key: &str, value: String| match key {
        "sslmode" => {
            mode = Some(value);
            true
        }
        "sslrootcert" => {
            root = Some(value);
            true
        }
        _ => false,
    };
    let trimmed = url.trim();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        let Some((base, query)) = trimmed.split_once('?') else {
            return (trimmed.to_owned(), None, None);
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                !take(key, percent_decode(value))
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (rest, mode, root);
    }
    let mut kept: Vec<String> = Vec::new();
    for (key, value, raw) in key_values(trimmed) {
        if !take(&key, value) {
            kept.push(raw);
        }
    }
    (kept.join(" "), mode, root)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && let Some(hex) = text.get(index + 1..index + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            index += 3;
            continue;
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `key=value` pairs of a libpq key/value string: key, unquoted value,
/// and the pair as written.
fn key_values(text: &str) -> Vec<(String, String, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut pairs = Vec::new();
    let mut index = 0;
    let skip_space = |index: &mut usize| {
        while *index < chars.len() && chars[*index].is_whitespace() {
            *index += 1;
        }
    };
    loop {
        skip_space(&mut index);
        if index >= chars.len() {
            break;
        }
        let start = index;
        let mut key = String::new();
        while index < chars.len() && chars[index] != '=' && !chars[index].is_whitespace() {
            key.push(chars[index]);
            index += 1;
        }
        skip_space(&mut index);
        if index < chars.len() && chars[index] == '=' {
            index += 1;
        }
        skip_space(&mut index);
        let mut value = String::new();
        if index < chars.len() && chars[index] == '\'' {
            index += 1;
            while index < chars.len() && chars[index] != '\'' {
                if chars[index] == '\\' && index + 1 < chars.len() {
                    index += 1;
                }
                value.push(chars[index]);
                index += 1;
            }
            index += 1;
        } else {
            while index < chars.len() && !chars[index].is_whitespace() {
                if chars[index] == '\\' && index + 1 < chars.len() {
                    index += 1;
                }
                value.push(chars[index]);
                index += 1;
            }
        }
        let raw: String = chars[start..index.min(chars.len())].iter().collect();
        pairs.push((key, value, raw));
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The target of a spec whose connection URL is read from a file.
    fn resolve(
        url: &str,
        mode: Option<&str>,
    ) -> Result<crate::live::Target, crate::live::ObserveError> {
        let directory = tempfile::tempdir().expect("temp dir");
        let file = directory.path().join("url");
        std::fs::write(&file, url).expect("write the URL");
        let desired = crate::model::Desired {
            path: "spec.yaml".into(),
            deployment: crate::model::Deployment::default(),
            connection: crate::model::Connection {
                url: Some(crate::secret::Secret {
                    reference: crate::secret::SecretRef::File(file),
                }),
                sslmode: mode.map(str::to_owned),
                ..crate::model::Connection::default()
            },
            options: crate::model::DiffOptions::default(),
            monitoring: crate::model::Monitoring::default(),
        };
        crate::live::Target::resolve(&desired)
    }

    #[test]
    fn an_sslmode_in_the_url_is_honoured_and_the_spec_field_wins() {
        let target = resolve(
            "postgresql://app@db.internal:6543/app?sslmode=verify-full&sslrootcert=/etc/ca.crt",
            None,
        )
        .expect("resolves");
        assert_eq!(target.ssl.mode, SslMode::VerifyFull);
        assert_eq!(target.ssl.root_cert, Some(PathBuf::from("/etc/ca.crt")));
        assert_eq!((target.host.as_str(), target.port), ("db.internal", 6543));
        let target = resolve("host=db sslmode=verify-ca", Some("require")).expect("resolves");
        assert_eq!(target.ssl.mode, SslMode::Require);
        // Not one of libpq's modes: an error, never a quiet `prefer`.
        assert!(resolve("postgresql://db/app?sslmode=verify_full", None).is_err());
    }

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_both_url_forms() {
        assert_eq!(
            split_ssl_params(
                "postgresql://u:p@db:5432/app?sslmode=verify-full&connect_timeout=5&sslrootcert=%2Fetc%2Fca.crt"
            ),
            (
                "postgresql://u:p@db:5432/app?connect_timeout=5".to_owned(),
                Some("verify-full".to_owned()),
                Some("/etc/ca.crt".to_owned())
            )
        );
        assert_eq!(
            split_ssl_params("postgres://db/app?sslmode=require"),
            (
                "postgres://db/app".to_owned(),
                Some("require".to_owned()),
                None
            )
        );
        assert_eq!(
            split_ssl_params("host=db password='a b\\'c' sslmode = verify-ca sslrootcert='/x y'"),
            (
                "host=db password='a b\\'c'".to_owned(),
                Some("verify-ca".to_owned()),
                Some("/x y".to_owned())
            )
        );
        assert_eq!(
            split_ssl_params("postgresql://db/app"),
            ("postgresql://db/app".to_owned(), None, None)
        );
    }
}

//! `postgres.tls` and the TLS fields of `postgres.connection`: checked, then
//! lowered into `model::Tls` and the `ssl*` server settings it implies.

use std::collections::BTreeMap;
use std::path::Path;

use super::checker::Checker;
use crate::model::tls::{CA_FILE, CERT_FILE, KEY_FILE};
use crate::model::{Setting, Tls, TlsSource};
use crate::secret::Secret;
use crate::spec::file::{SpecFile, TlsGenerate, TlsSpec};
use crate::spec::load::join_index;

/// The `sslmode`s pgspec's own connections honour (libpq's, but `allow`,
/// which is `prefer` backwards and has no use here).
pub const SSL_MODES: &[&str] = &["disable", "prefer", "require", "verify-ca", "verify-full"];

/// The values of `ssl_min_protocol_version` (PostgreSQL's, 12 and later).
const PROTOCOL_VERSIONS: &[&str] = &["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];

/// The settings `postgres.tls` sets; the spec's `settings` may not set them
/// too.
const TLS_SETTINGS: &[&str] = &[
    "ssl",
    "ssl_cert_file",
    "ssl_key_file",
    "ssl_ca_file",
    "ssl_min_protocol_version",
    "ssl_ciphers",
];

impl Checker<'_> {
    pub(super) fn check_tls(&mut self, file: &SpecFile) {
        let Some(postgres) = &file.postgres else {
            return;
        };
        if let Some(connection) = &postgres.connection
            && let Some(mode) = &connection.sslmode
            && !SSL_MODES.contains(&mode.as_str())
        {
            self.error_with_choices(
                "postgres.connection.sslmode",
                format!("unknown sslmode `{}`", mode.escape_debug()),
                mode,
                SSL_MODES,
                SSL_MODES.iter().copied(),
            );
        }
        let Some(tls) = &postgres.tls else { return };
        if postgres.image.is_none() {
            self.error("postgres.tls", "`postgres.tls` needs `postgres.image`")
                .help = Some(
                "pgspec writes the certificate into the data directory of the container it runs; \
                 configure TLS of a server it does not run where that server is managed"
                    .to_owned(),
            );
        }
        match (&tls.generate, &tls.certificate, &tls.key) {
            (Some(TlsGenerate::SelfSigned), None, None) => {
                if tls.ca.is_some() {
                    self.error(
                        "postgres.tls.ca",
                        "a generated certificate comes with pgspec's own CA",
                    )
                    .help = Some(
                        "give `certificate` and `key` with `ca`, or leave `ca` out".to_owned(),
                    );
                }
            }
            (Some(_), _, _) => {
                self.error(
                    "postgres.tls.generate",
                    "`generate` and `certificate`/`key` exclude each other",
                )
                .help = Some("give either the files or `generate: self-signed`".to_owned());
            }
            (None, Some(_), Some(_)) => {
                if !tls.names.is_empty() {
                    self.error(
                        "postgres.tls.names",
                        "`names` is for a generated certificate",
                    )
                    .help = Some("the names of a given certificate are in it".to_owned());
                }
            }
            (None, Some(_), None) => {
                self.error("postgres.tls", "`certificate` needs `key`");
            }
            (None, None, Some(_)) => {
                self.error("postgres.tls", "`key` needs `certificate`");
            }
            (None, None, None) => {
                self.error(
                    "postgres.tls",
                    "`postgres.tls` needs `certificate` and `key`, or `generate: self-signed`",
                );
            }
        }
        for (index, name) in tls.names.iter().enumerate() {
            if name.is_empty()
                || !name.chars().all(|character| {
                    character.is_ascii_alphanumeric() || "-.:*".contains(character)
                })
            {
                self.error(
                    &join_index("postgres.tls.names", index),
                    format!("`{}` is not a host name or address", name.escape_debug()),
                );
            }
        }
        if let Some(version) = &tls.min_protocol_version
            && !PROTOCOL_VERSIONS.contains(&version.as_str())
        {
            self.error_with_choices(
                "postgres.tls.min_protocol_version",
                format!("unknown TLS version `{}`", version.escape_debug()),
                version,
                PROTOCOL_VERSIONS,
                PROTOCOL_VERSIONS.iter().copied(),
            );
        }
        if let Some(ciphers) = &tls.ciphers
            && (ciphers.trim().is_empty() || ciphers.chars().any(char::is_control))
        {
            self.error(
                "postgres.tls.ciphers",
                "the cipher list is empty or holds a control character",
            );
        }
        for name in TLS_SETTINGS {
            if postgres.settings.contains_key(*name) {
                self.error(
                    &format!("postgres.settings.{name}"),
                    format!("`{name}` is set by `postgres.tls`"),
                )
                .help = Some("remove it from `settings`; `postgres.tls` says it".to_owned());
            }
        }
    }
}

/// The names a generated certificate is valid for: the container's name
/// (how the pooler and backup containers reach the server), `localhost`,
/// the address pgspec connects to, and the spec's `names` (and the pooler
/// container's name, which serves the same certificate); sorted.
pub fn generated_names(container: &str, published_host: &str, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = [container, "localhost", published_host]
        .into_iter()
        .map(str::to_owned)
        .chain(extra.iter().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Lowers `postgres.tls` into the model and adds the `ssl*` settings it
/// implies to `settings`.
pub(super) fn lower_tls(
    tls: &TlsSpec,
    container: &str,
    pooler: Option<String>,
    published_host: &str,
    base: &Path,
    settings: &mut BTreeMap<String, Setting>,
) -> Tls {
    let source = match (&tls.certificate, &tls.key) {
        (Some(certificate), Some(key)) => TlsSource::Files {
            certificate: Secret::from_ref(certificate, base),
            key: Secret::from_ref(key, base),
            ca: tls.ca.as_ref().map(|ca| Secret::from_ref(ca, base)),
        },
        _ => TlsSource::SelfSigned {
            names: generated_names(
                container,
                published_host,
                &tls.names.iter().cloned().chain(pooler).collect::<Vec<_>>(),
            ),
        },
    };
    let mut set = |name: &str, value: &str| {
        settings.insert(
            name.to_owned(),
            Setting {
                value: value.to_owned(),
                ..Setting::default()
            },
        );
    };
    set("ssl", "on");
    set("ssl_cert_file", CERT_FILE);
    set("ssl_key_file", KEY_FILE);
    if source.has_client_ca() {
        set("ssl_ca_file", CA_FILE);
    }
    if let Some(version) = &tls.min_protocol_version {
        set("ssl_min_protocol_version", version);
    }
    if let Some(ciphers) = &tls.ciphers {
        set("ssl_ciphers", ciphers);
    }
    Tls {
        source: Some(source),
        require: tls.require.unwrap_or(false),
        ..Tls::default()
    }
}

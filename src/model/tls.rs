//! The server's TLS: where its certificate and key come from (desired) and
//! what the files pgspec keeps in the data directory hold (live).
//!
//! The files live in [`TLS_DIRECTORY`] inside the data directory, so a
//! replaced container finds them on the volume, and the `ssl_*_file`
//! settings name them relative to the data directory. Only public facts of
//! a certificate (fingerprint, subject, names, validity) ever reach the
//! model: key material stays in `live` and `apply`.

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The directory, relative to the data directory, that holds the server's
/// certificate, key and CA.
pub const TLS_DIRECTORY: &str = "pgspec-tls";
/// The server certificate, relative to the data directory.
pub const CERT_FILE: &str = "pgspec-tls/server.crt";
/// The server's private key (mode 0600, owned by the server's user).
pub const KEY_FILE: &str = "pgspec-tls/server.key";
/// The CA clients' certificates are checked against (`ssl_ca_file`), or the
/// CA pgspec generated the server certificate with.
pub const CA_FILE: &str = "pgspec-tls/ca.crt";
/// The generated CA's key, kept to issue the next server certificate with
/// the same CA.
pub const CA_KEY_FILE: &str = "pgspec-tls/ca.key";

/// How many days before it expires a certificate is a plan note (and a
/// generated one is issued again).
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// The address to reach a port published on `bind_address` from the
/// Docker host: the address itself, or the loopback for "every address".
pub fn published_host(bind_address: &str) -> String {
    match bind_address {
        "0.0.0.0" | "" => "127.0.0.1".to_owned(),
        "::" => "::1".to_owned(),
        address => address.to_owned(),
    }
}

/// The server's TLS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tls {
    /// Desired only: where the certificate and key come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<TlsSource>,
    /// Clients without TLS are refused (enforced by client authentication
    /// rules, see `access`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require: bool,
    /// Live only: what the files in the data directory hold; `None` when
    /// there is no certificate there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed: Option<TlsFiles>,
    /// Live only: what the spec's certificate files hold, read when the
    /// deployment is observed (like a password check); `None` for a
    /// generated certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wanted: Option<TlsFiles>,
}

/// Where the server certificate comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsSource {
    /// pgspec generates a CA and a server certificate it signs, valid for
    /// `names` (DNS names or IP addresses), and keeps both in the data
    /// directory.
    SelfSigned { names: Vec<String> },
    /// PEM files (or environment variables holding PEM text).
    Files {
        certificate: Secret,
        key: Secret,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca: Option<Secret>,
    },
}

impl TlsSource {
    /// Whether the server gets an `ssl_ca_file`: only a CA the spec gives,
    /// which is what client certificates are checked against.
    pub fn has_client_ca(&self) -> bool {
        matches!(self, TlsSource::Files { ca: Some(_), .. })
    }
}

/// The public facts of the certificates of a server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsFiles {
    pub certificate: CertificateInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CertificateInfo>,
    /// Live: whether the key file is there (its content is never read back).
    /// Wanted: whether the key belongs to the certificate.
    #[serde(default)]
    pub key_ok: bool,
}

/// What a certificate says, never what it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    /// SHA-256 of the DER encoding, lower-case hex.
    pub fingerprint: String,
    /// The subject, as `CN=…`.
    pub subject: String,
    /// DNS names and IP addresses of the subject alternative names, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// The end of its validity, seconds since the epoch.
    pub not_after: i64,
    /// Whether it had expired when it was read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
    /// Whether it expired within [`EXPIRY_WARNING_DAYS`] of being read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expires_soon: bool,
}

impl CertificateInfo {
    /// The fingerprint as the plan shows it: `SHA256:` and its first 16
    /// hex digits.
    pub fn short_fingerprint(&self) -> String {
        format!(
            "SHA256:{}",
            &self.fingerprint[..self.fingerprint.len().min(16)]
        )
    }

    /// The end of its validity as a date, `2027-01-31`.
    pub fn expiry_date(&self) -> String {
        chrono::DateTime::from_timestamp(self.not_after, 0)
            .map(|date| date.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| self.not_after.to_string())
    }

    /// Whether it is valid for every one of `names`.
    pub fn covers(&self, names: &[String]) -> bool {
        names.iter().all(|name| {
            self.names
                .iter()
                .any(|have| have.eq_ignore_ascii_case(name))
        })
    }

    /// The certificate as the plan shows it: fingerprint, subject and
    /// expiry, never its content.
    pub fn describe(&self) -> String {
        format!(
            "{} {} (expires {})",
            self.short_fingerprint(),
            self.subject,
            self.expiry_date()
        )
    }
}

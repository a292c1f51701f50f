//! Secrets: references that resolve late and always print as `(sensitive)`.
//!
//! A `Secret` holds only where the value lives (an environment variable or a
//! file), so it can sit in a saved plan or a log line without leaking. The
//! value exists only inside a `SecretValue`, whose only accessor is
//! `expose()`; it has no `Display`, and its `Debug` prints `(sensitive)`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use schemars::JsonSchema;

/// A secret is a reference, resolved only when it is needed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SecretRef {
    /// Name of an environment variable holding the secret.
    Env(String),
    /// Path of a file holding the secret (trailing newline ignored), relative
    /// to the spec file.
    File(PathBuf),
}

/// Where a secret lives. Resolve it with [`Secret::resolve`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Secret {
    /// The reference as the spec wrote it; a relative file path is resolved
    /// against the spec file's directory at load time.
    pub reference: SecretRef,
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set (or not valid Unicode).
    #[error("environment variable `{0}` is not set")]
    MissingEnv(String),
    /// The file could not be read.
    #[error("cannot read secret file `{path}`")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The variable or file is empty.
    #[error("secret {0} is empty")]
    Empty(String),
}

impl Secret {
    pub fn env(name: &str) -> Self {
        Secret {
            reference: SecretRef::Env(name.to_owned()),
        }
    }

    /// A secret whose file path is made absolute against `base`.
    pub fn from_ref(reference: &SecretRef, base: &Path) -> Self {
        let reference = match reference {
            SecretRef::File(path) if path.is_relative() => SecretRef::File(base.join(path)),
            other => other.clone(),
        };
        Secret { reference }
    }

    /// Reads the value now.
    pub fn resolve(&self) -> Result<SecretValue, SecretError> {
        let value = match &self.reference {
            SecretRef::Env(name) => {
                std::env::var(name).map_err(|_| SecretError::MissingEnv(name.clone()))?
            }
            SecretRef::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
                    path: path.clone(),
                    source,
                })?;
                text.trim_end_matches(['\n', '\r']).to_owned()
            }
        };
        if value.is_empty() {
            return Err(SecretError::Empty(self.describe()));
        }
        Ok(SecretValue(value))
    }

    /// Where the secret lives, for messages: ``env `NAME` `` or ``file `PATH` ``.
    pub fn describe(&self) -> String {
        match &self.reference {
            SecretRef::Env(name) => format!("env `{name}`"),
            SecretRef::File(path) => format!("file `{}`", path.display()),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.describe())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

/// A resolved secret. The value is reachable only through `expose()`.
#[derive(Clone)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a value read from the environment or a URL by `live`.
    pub fn from_env_value(value: String) -> Self {
        SecretValue(value)
    }

    /// The plain value, for the one call site that must send it somewhere.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        // SAFETY: tests in this module are the only users of this variable.
        unsafe { std::env::set_var("PGSPEC_TEST_SECRET_DEBUG", "hunter2") };
        let secret = Secret::env("PGSPEC_TEST_SECRET_DEBUG");
        let value = secret.resolve().expect("set above");
        assert_eq!(value.expose(), "hunter2");
        for text in [
            format!("{secret:?}"),
            format!("{secret}"),
            format!("{value:?}"),
            serde_json::to_string(&secret).expect("serializes"),
        ] {
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn missing_env_names_the_variable() {
        let error = Secret::env("PGSPEC_TEST_SECRET_SURELY_UNSET")
            .resolve()
            .expect_err("unset");
        assert_eq!(
            error.to_string(),
            "environment variable `PGSPEC_TEST_SECRET_SURELY_UNSET` is not set"
        );
    }

    #[test]
    fn file_secret_drops_trailing_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pw"), "s3cret\n").expect("write");
        let secret = Secret::from_ref(&SecretRef::File("pw".into()), dir.path());
        assert_eq!(secret.resolve().expect("readable").expose(), "s3cret");
    }
}

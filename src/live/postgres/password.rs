//! Checking a role's stored password against the spec's secret without
//! changing it: the SCRAM-SHA-256 verifier in `pg_authid.rolpassword` is
//! recomputed from the secret with the verifier's own salt and iteration
//! count (RFC 5802, RFC 7677).
//!
//! Invariant: neither the verifier nor the secret leaves this module; only
//! the `PasswordState` does.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::model::PasswordState;
use crate::secret::SecretValue;

/// Compares a stored password (`rolpassword`, `None` when the role has
/// none) with the secret the spec names.
pub fn check(stored: Option<&str>, secret: &SecretValue) -> PasswordState {
    if let Some(state) = without_hashing(stored) {
        return state;
    }
    match scram_matches(stored.unwrap_or_default(), secret.expose()) {
        Some(true) => PasswordState::Matches,
        // A verifier that cannot be parsed was not made from this secret by
        // any means pgspec knows; setting the password again repairs it.
        Some(false) | None => PasswordState::Differs,
    }
}

/// The state of a stored password that can be judged without hashing the
/// secret: none stored, or an MD5 hash. `None` when it takes a check.
pub fn without_hashing(stored: Option<&str>) -> Option<PasswordState> {
    match stored {
        None => Some(PasswordState::Missing),
        Some(stored) if stored.starts_with("md5") => Some(PasswordState::Md5),
        Some(_) => None,
    }
}

/// Whether `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` was
/// made from `password`; `None` when the text is not such a verifier.
fn scram_matches(verifier: &str, password: &str) -> Option<bool> {
    let rest = verifier.strip_prefix("SCRAM-SHA-256$")?;
    let (parameters, keys) = rest.split_once('$')?;
    let (iterations, salt) = parameters.split_once(':')?;
    let (stored_key, server_key) = keys.split_once(':')?;
    let iterations: u32 = iterations.parse().ok().filter(|count| *count > 0)?;
    let salt = STANDARD.decode(salt).ok()?;
    let stored_key = STANDARD.decode(stored_key).ok()?;
    let server_key = STANDARD.decode(server_key).ok()?;

    // The server runs SASLprep on the password first, as libpq and
    // postgres-protocol do; a password SASLprep rejects is used as is.
    let prepared = match stringprep::saslprep(password) {
        Ok(prepared) => prepared.into_owned(),
        Err(_) => password.to_owned(),
    };
    let salted = salted_password(prepared.as_bytes(), &salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    let computed_stored_key = Sha256::digest(client_key);
    let computed_server_key = hmac(&salted, b"Server Key");
    Some(
        computed_stored_key.as_slice() == stored_key.as_slice()
            && computed_server_key.as_slice() == server_key.as_slice(),
    )
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA-256 with one output block, which is all SCRAM-SHA-256
/// needs (RFC 8018 section 5.2 with dkLen = hLen).
/// The HMAC is keyed once and its keyed state copied for each round, which
/// halves the hashing of re-keying every round.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(password)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    let round = |message: &[u8]| -> [u8; 32] {
        let mut mac = keyed.clone();
        mac.update(message);
        mac.finalize().into_bytes().into()
    };
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut previous = round(&first);
    let mut result = previous;
    for _ in 1..iterations {
        previous = round(&previous);
        for (byte, next) in result.iter_mut().zip(previous) {
            *byte ^= next;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(value: &str) -> SecretValue {
        SecretValue::from_env_value(value.to_owned())
    }

    #[test]
    fn a_verifier_matches_its_own_password_only() {
        let verifier = postgres_protocol::password::scram_sha_256(b"correct horse");
        assert_eq!(
            check(Some(&verifier), &secret("correct horse")),
            PasswordState::Matches
        );
        assert_eq!(
            check(Some(&verifier), &secret("correct horse!")),
            PasswordState::Differs
        );
    }

    #[test]
    fn a_verifier_made_by_postgresql_17_matches() {
        // `CREATE ROLE vec PASSWORD 'pencil ü'` on PostgreSQL 17, read back
        // from pg_authid.rolpassword.
        let verifier = "SCRAM-SHA-256$4096:KHnmdF0VWZIEfzdPCty6Hg==$\
                        Egdxtb9n2YRmrsA3UiKnXxRs/FlxSuHFtPgOntWlweE=:\
                        8OCSTqAugyzip56OE1TssVAv451mbYtDcMvYGBcODXg=";
        assert_eq!(
            check(Some(verifier), &secret("pencil ü")),
            PasswordState::Matches
        );
        assert_eq!(
            check(Some(verifier), &secret("pencil u")),
            PasswordState::Differs
        );
    }

    #[test]
    fn md5_missing_and_garbage_are_told_apart() {
        let md5 = postgres_protocol::password::md5(b"secret", "app");
        assert_eq!(check(Some(&md5), &secret("secret")), PasswordState::Md5);
        assert_eq!(check(None, &secret("secret")), PasswordState::Missing);
        assert_eq!(
            check(Some("SCRAM-SHA-256$x"), &secret("secret")),
            PasswordState::Differs
        );
    }
}

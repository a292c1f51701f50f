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
use sha2::block_api::compress256;
use sha2::{Digest, Sha256};

use crate::model::{MAX_SCRAM_ITERATIONS, PasswordState};
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
/// secret: none stored, an MD5 hash, or a verifier that asks for more than
/// [`MAX_SCRAM_ITERATIONS`]. `None` when it takes a check.
pub fn without_hashing(stored: Option<&str>) -> Option<PasswordState> {
    match stored {
        None => Some(PasswordState::Missing),
        Some(stored) if stored.starts_with("md5") => Some(PasswordState::Md5),
        Some(stored) => match scram_iterations(stored) {
            Some(iterations) if iterations > MAX_SCRAM_ITERATIONS => {
                Some(PasswordState::TooManyIterations { iterations })
            }
            _ => None,
        },
    }
}

/// The iteration count of a SCRAM-SHA-256 verifier; `None` when the text
/// is not one.
fn scram_iterations(verifier: &str) -> Option<u32> {
    let rest = verifier.strip_prefix("SCRAM-SHA-256$")?;
    let (iterations, _) = rest.split_once(':')?;
    iterations.parse().ok()
}

/// Whether `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` was
/// made from `password`; `None` when the text is not such a verifier.
fn scram_matches(verifier: &str, password: &str) -> Option<bool> {
    let rest = verifier.strip_prefix("SCRAM-SHA-256$")?;
    let (parameters, keys) = rest.split_once('$')?;
    let (iterations, salt) = parameters.split_once(':')?;
    let (stored_key, server_key) = keys.split_once(':')?;
    let iterations: u32 = iterations
        .parse()
        .ok()
        .filter(|count| (1..=MAX_SCRAM_ITERATIONS).contains(count))?;
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

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// PBKDF2-HMAC-SHA-256 with one output block, which is all SCRAM-SHA-256
/// needs (RFC 8018 section 5.2 with dkLen = hLen).
///
/// This is where a plan spends its CPU: thousands of rounds per role. After
/// the first round every HMAC message is one 32-byte hash, so each round is
/// exactly two SHA-256 block compressions from the key's precomputed inner
/// and outer states (RFC 2104), with the padding written once.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut key = [0u8; 64];
    if password.len() > key.len() {
        key[..32].copy_from_slice(&Sha256::digest(password));
    } else {
        key[..password.len()].copy_from_slice(password);
    }
    let mut inner_key = SHA256_IV;
    compress256(&mut inner_key, &[key.map(|byte| byte ^ 0x36)]);
    let mut outer_key = SHA256_IV;
    compress256(&mut outer_key, &[key.map(|byte| byte ^ 0x5c)]);

    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut previous = hmac(password, &first);
    let mut result = previous;
    // One block: a 32-byte message after the 64-byte key block, then the
    // padding bit and the length in bits, (64 + 32) * 8.
    let mut block = [0u8; 64];
    block[32] = 0x80;
    block[56..].copy_from_slice(&768u64.to_be_bytes());
    for _ in 1..iterations {
        block[..32].copy_from_slice(&previous);
        let mut state = inner_key;
        compress256(&mut state, &[block]);
        write_state(&state, &mut block);
        let mut state = outer_key;
        compress256(&mut state, &[block]);
        write_state(&state, &mut block);
        previous.copy_from_slice(&block[..32]);
        for (byte, next) in result.iter_mut().zip(previous) {
            *byte ^= next;
        }
    }
    result
}

/// Writes a SHA-256 state as its big-endian digest into the first 32 bytes
/// of `block`.
fn write_state(state: &[u32; 8], block: &mut [u8; 64]) {
    for (chunk, word) in block.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
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
    fn long_passwords_and_other_iteration_counts_match_the_reference() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA-256("passwd", "salt", 1).
        assert_eq!(
            hex::encode(salted_password(b"passwd", b"salt", 1)),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
        // A key longer than a block is hashed first; the verifier libpq's
        // code makes must match for any length.
        let long = "x".repeat(100);
        let verifier = postgres_protocol::password::scram_sha_256(long.as_bytes());
        assert_eq!(
            check(Some(&verifier), &secret(&long)),
            PasswordState::Matches
        );
    }

    #[test]
    fn a_verifier_with_too_many_iterations_is_not_hashed() {
        // Issue 15, part 6: any role can store a verifier of its own; one
        // with 2^31 - 1 iterations would take minutes to check. Its keys are
        // those of the secret at 4096 iterations, so only the count is wrong.
        let made = postgres_protocol::password::scram_sha_256(b"secret");
        let hostile = made.replacen("SCRAM-SHA-256$4096:", "SCRAM-SHA-256$2147483647:", 1);
        assert_eq!(
            check(Some(&hostile), &secret("secret")),
            PasswordState::TooManyIterations {
                iterations: 2_147_483_647
            }
        );
        let above = format!("SCRAM-SHA-256${}:", MAX_SCRAM_ITERATIONS + 1);
        let above = made.replacen("SCRAM-SHA-256$4096:", &above, 1);
        assert_eq!(
            without_hashing(Some(&above)),
            Some(PasswordState::TooManyIterations {
                iterations: MAX_SCRAM_ITERATIONS + 1
            })
        );
        // At the cap a verifier is still checked.
        let at = format!("SCRAM-SHA-256${MAX_SCRAM_ITERATIONS}:");
        assert_eq!(
            without_hashing(Some(&made.replacen("SCRAM-SHA-256$4096:", &at, 1))),
            None
        );
        assert_eq!(without_hashing(Some(&made)), None);
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

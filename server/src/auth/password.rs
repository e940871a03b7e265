//! Password hashing: argon2id with the argon2 crate's defaults (m = 19 MiB,
//! t = 2, p = 1, the OWASP minimum), stored as PHC strings so parameters can
//! be raised later without invalidating old hashes.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::AuthError;

pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_BYTES: usize = 1024;

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// Refuses passwords too short to resist guessing, or absurdly long.
pub fn check_strength(password: &str) -> Result<(), AuthError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AuthError::Invalid(format!(
            "Choose a password of at least {MIN_PASSWORD_CHARS} characters."
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AuthError::Invalid(format!(
            "Choose a password of at most {MAX_PASSWORD_BYTES} characters."
        )));
    }
    Ok(())
}

/// Hashes a password (slow on purpose: call it off the async runtime).
pub fn hash(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| AuthError::Hashing(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hashing(e.to_string()))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AuthError::Hashing(e.to_string()))
}

/// Whether `password` matches the stored hash. Unknown users are checked
/// against a throwaway hash so a wrong email takes as long as a wrong password.
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let matches = |hash: &str| {
        PasswordHash::new(hash).is_ok_and(|parsed| {
            argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    };
    match stored {
        Some(hash) => matches(hash),
        None => {
            let dummy = DUMMY.get_or_init(|| hash("not a password anyone has").unwrap_or_default());
            let _ = matches(dummy);
            false
        }
    }
}

/// A random password for `fieldnotes admin` to print once (20 characters).
pub fn generate() -> String {
    super::new_token()[..20].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify_only_the_right_password() {
        let stored = hash("correct horse battery").unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(!stored.contains("correct horse"));
        assert!(verify("correct horse battery", Some(&stored)));
        assert!(!verify("correct horse batterY", Some(&stored)));
        assert!(!verify("correct horse battery", None));
        assert!(!verify("anything", Some("not a phc string")));
    }

    #[test]
    fn short_passwords_are_refused_in_plain_words() {
        let error = check_strength("short").unwrap_err().to_string();
        assert_eq!(error, "Choose a password of at least 10 characters.");
        check_strength("long enough!").unwrap();
    }
}

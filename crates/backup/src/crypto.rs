//! age X25519 keys: one identity per cluster. The secret half is only ever handled as
//! a [`SecretString`] (redacted `Debug`, zeroized on drop).

use age::secrecy::{ExposeSecret, SecretString};

pub use age::x25519::{Identity, Recipient};

/// Errors parsing keys. Never contains the key text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    /// Not an `AGE-SECRET-KEY-1…` string.
    #[error("invalid age identity: {0}")]
    Identity(&'static str),
    /// Not an `age1…` string.
    #[error("invalid age recipient: {0}")]
    Recipient(&'static str),
}

/// Generates a new identity: `(secret "AGE-SECRET-KEY-1…", recipient "age1…")`.
///
/// The secret opens every backup encrypted to the recipient, also with the standard
/// `age` tool (`age -d -i key.txt backup | zstd -d > snapshot.db`).
pub fn generate_identity() -> (SecretString, String) {
    let identity = Identity::generate();
    let recipient = identity.to_public().to_string();
    (identity.to_string(), recipient)
}

/// Parses an `AGE-SECRET-KEY-1…` identity.
///
/// # Errors
/// [`KeyParseError::Identity`] (without the input).
pub fn parse_identity(secret: &SecretString) -> Result<Identity, KeyParseError> {
    secret
        .expose_secret()
        .trim()
        .parse()
        .map_err(KeyParseError::Identity)
}

/// Parses an `age1…` recipient.
///
/// # Errors
/// [`KeyParseError::Recipient`].
pub fn parse_recipient(recipient: &str) -> Result<Recipient, KeyParseError> {
    recipient.trim().parse().map_err(KeyParseError::Recipient)
}

/// The recipient (public half) of `identity`, as `age1…`.
pub fn recipient_of(identity: &Identity) -> String {
    identity.to_public().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_parse_roundtrip() {
        let (secret, recipient) = generate_identity();
        assert!(secret.expose_secret().starts_with("AGE-SECRET-KEY-1"));
        assert!(recipient.starts_with("age1"));
        let id = parse_identity(&secret).unwrap();
        assert_eq!(recipient_of(&id), recipient);
        assert_eq!(parse_recipient(&recipient).unwrap().to_string(), recipient);
        assert!(!format!("{secret:?}").contains("AGE-SECRET-KEY"));
    }

    #[test]
    fn errors_do_not_echo_input() {
        let bad = SecretString::from("AGE-SECRET-KEY-1NOTREALLYAKEY");
        let Err(e) = parse_identity(&bad) else {
            panic!("bogus identity parsed")
        };
        assert!(!e.to_string().contains("NOTREALLY"), "{e}");
        assert!(parse_recipient("age1xyz").is_err());
        let (secret, _) = generate_identity();
        assert!(
            parse_recipient(secret.expose_secret()).is_err(),
            "a secret is no recipient"
        );
    }
}

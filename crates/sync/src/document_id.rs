//! Document identifiers as automerge-repo spells them: 16 random bytes,
//! written as base58check text and wrapped in `automerge:` URLs.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The URL scheme automerge-repo uses for document links.
pub const URL_PREFIX: &str = "automerge:";

/// A document's identity: 16 bytes the creator chose at random.
///
/// The crate never makes randomness itself: callers pass the bytes in through
/// [`DocumentId::from_bytes`], so the same code runs in the browser and on the server.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentId([u8; 16]);

/// Why a text was not a valid document id or document URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentIdError {
    #[error("document id is not valid base58check text")]
    NotBase58Check,
    #[error("document id has {0} bytes, expected 16")]
    WrongLength(usize),
    #[error("document url does not start with \"automerge:\"")]
    NotAnAutomergeUrl,
    #[error("document id of {0} characters is too long")]
    TooLong(usize),
}

/// The longest base58check text of 16 bytes and their checksum. Checked before decoding, which
/// costs the square of the text's length.
pub const MAX_TEXT_LEN: usize = 28;

impl DocumentId {
    /// Wraps 16 bytes; pass random bytes to create a new document.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw 16 bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses the base58check text form, e.g. `3CdZN7os5Eb6CAKjiEe4bfmsszZf`.
    pub fn parse(text: &str) -> Result<Self, DocumentIdError> {
        if text.len() > MAX_TEXT_LEN {
            return Err(DocumentIdError::TooLong(text.len()));
        }
        let bytes = bs58::decode(text)
            .into_vec()
            .map_err(|_| DocumentIdError::NotBase58Check)?;
        let Some((payload, check)) = bytes.split_last_chunk::<CHECKSUM_LEN>() else {
            return Err(DocumentIdError::NotBase58Check);
        };
        if *check != checksum(payload) {
            return Err(DocumentIdError::NotBase58Check);
        }
        let array: [u8; 16] = payload
            .try_into()
            .map_err(|_| DocumentIdError::WrongLength(payload.len()))?;
        Ok(Self(array))
    }

    /// Parses an `automerge:<id>` URL.
    pub fn parse_url(url: &str) -> Result<Self, DocumentIdError> {
        let id = url
            .strip_prefix(URL_PREFIX)
            .ok_or(DocumentIdError::NotAnAutomergeUrl)?;
        Self::parse(id)
    }

    /// The `automerge:<id>` URL for this document.
    pub fn to_url(&self) -> String {
        format!("{URL_PREFIX}{self}")
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut checked = [0; 16 + CHECKSUM_LEN];
        checked[..16].copy_from_slice(&self.0);
        checked[16..].copy_from_slice(&checksum(&self.0));
        f.write_str(&bs58::encode(checked).into_string())
    }
}

/// base58check's checksum: the first four bytes of SHA-256 applied twice. Written here rather
/// than taken from bs58's `check` feature, which links a second SHA-256 crate into the web app.
const CHECKSUM_LEN: usize = 4;

fn checksum(payload: &[u8]) -> [u8; CHECKSUM_LEN] {
    let twice = Sha256::digest(Sha256::digest(payload));
    [twice[0], twice[1], twice[2], twice[3]]
}

impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentId({self})")
    }
}

impl FromStr for DocumentId {
    type Err = DocumentIdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_id_from_the_transcript_and_prints_it_back() {
        let id = DocumentId::parse("3CdZN7os5Eb6CAKjiEe4bfmsszZf").unwrap();
        assert_eq!(id.to_string(), "3CdZN7os5Eb6CAKjiEe4bfmsszZf");
        assert_eq!(id.to_url(), "automerge:3CdZN7os5Eb6CAKjiEe4bfmsszZf");
        assert_eq!(DocumentId::parse_url(&id.to_url()), Ok(id));
    }

    #[test]
    fn round_trips_arbitrary_bytes() {
        for seed in 0u8..=255 {
            let bytes = std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 7));
            let id = DocumentId::from_bytes(bytes);
            assert_eq!(DocumentId::parse(&id.to_string()), Ok(id));
            assert_eq!(id.as_bytes(), &bytes);
        }
    }

    #[test]
    fn rejects_bad_checksums_lengths_and_urls() {
        // Last character changed: the checksum no longer matches.
        assert_eq!(
            DocumentId::parse("3CdZN7os5Eb6CAKjiEe4bfmsszZg"),
            Err(DocumentIdError::NotBase58Check)
        );
        let short =
            bs58::encode([[1u8; 8].as_slice(), &checksum(&[1u8; 8])].concat()).into_string();
        assert_eq!(
            DocumentId::parse(&short),
            Err(DocumentIdError::WrongLength(8))
        );
        assert_eq!(
            DocumentId::parse_url("3CdZN7os5Eb6CAKjiEe4bfmsszZf"),
            Err(DocumentIdError::NotAnAutomergeUrl)
        );
        assert_eq!(
            DocumentId::parse("0OIl"),
            Err(DocumentIdError::NotBase58Check)
        );
    }

    #[test]
    fn the_longest_id_fits_and_a_longer_text_is_refused_before_decoding() {
        let longest = (0..=255u8)
            .map(|b| DocumentId::from_bytes([b; 16]).to_string().len())
            .chain([DocumentId::from_bytes([0; 16]).to_string().len()])
            .max()
            .unwrap();
        assert!(longest <= MAX_TEXT_LEN, "{longest}");
        // 200,000 characters used to cost seconds of quadratic base58 decoding.
        let long = "2".repeat(200_000);
        let started = std::time::Instant::now();
        assert_eq!(
            DocumentId::parse(&long),
            Err(DocumentIdError::TooLong(200_000))
        );
        assert!(started.elapsed() < std::time::Duration::from_millis(10));
    }
}

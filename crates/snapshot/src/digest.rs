//! Verification of the SHA-256 trailer etcd appends to a snapshot stream.
//!
//! `Maintenance.Snapshot` sends the bolt db followed by the SHA-256 of the db (32
//! bytes). [`TrailerVerifier`] consumes the stream in arbitrary chunks, holds back the
//! last 32 bytes seen, hashes everything before them, and on [`TrailerVerifier::finish`]
//! compares the held-back bytes with the digest.

use sha2::{Digest, Sha256};

/// Length of the trailer.
pub const TRAILER_LEN: usize = 32;

/// Why a snapshot stream failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The stream is too short to hold a trailer.
    #[error("snapshot stream too short: {len} bytes, need at least {TRAILER_LEN}")]
    TooShort { len: u64 },
    /// The trailer does not match the data.
    #[error("snapshot SHA-256 mismatch: trailer {expected}, data hashes to {actual}")]
    Mismatch { expected: String, actual: String },
}

/// Streaming verifier; see the module docs.
#[derive(Clone, Default)]
pub struct TrailerVerifier {
    hasher: Sha256,
    tail: [u8; TRAILER_LEN],
    tail_len: usize,
    total: u64,
}

impl std::fmt::Debug for TrailerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrailerVerifier")
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl TrailerVerifier {
    /// A verifier that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes seen so far (data plus trailer).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Feeds the next chunk of the stream.
    pub fn update(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        if chunk.len() >= TRAILER_LEN {
            // Everything held back so far is data; so is all but the chunk's last 32 bytes.
            self.hasher.update(&self.tail[..self.tail_len]);
            let (data, tail) = chunk.split_at(chunk.len() - TRAILER_LEN);
            self.hasher.update(data);
            self.tail.copy_from_slice(tail);
            self.tail_len = TRAILER_LEN;
            return;
        }
        let overflow = (self.tail_len + chunk.len()).saturating_sub(TRAILER_LEN);
        if overflow > 0 {
            self.hasher.update(&self.tail[..overflow]);
            self.tail.copy_within(overflow..self.tail_len, 0);
            self.tail_len -= overflow;
        }
        self.tail[self.tail_len..self.tail_len + chunk.len()].copy_from_slice(chunk);
        self.tail_len += chunk.len();
    }

    /// Checks the trailer; returns the db's SHA-256 as lower-case hex.
    ///
    /// # Errors
    /// [`DigestError::TooShort`] or [`DigestError::Mismatch`].
    pub fn finish(self) -> Result<String, DigestError> {
        if self.tail_len < TRAILER_LEN {
            return Err(DigestError::TooShort { len: self.total });
        }
        let actual: [u8; TRAILER_LEN] = self.hasher.finalize().into();
        if actual != self.tail {
            return Err(DigestError::Mismatch {
                expected: hex(&self.tail),
                actual: hex(&actual),
            });
        }
        Ok(hex(&actual))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(data: &[u8]) -> Vec<u8> {
        let mut s = data.to_vec();
        s.extend_from_slice(&Sha256::digest(data));
        s
    }

    fn verify_in_chunks(s: &[u8], sizes: &[usize]) -> Result<String, DigestError> {
        let mut v = TrailerVerifier::new();
        let mut rest = s;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].min(rest.len());
            v.update(&rest[..n]);
            rest = &rest[n..];
            i += 1;
        }
        assert_eq!(v.total(), s.len() as u64);
        v.finish()
    }

    #[test]
    fn accepts_valid_stream_in_any_chunking() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let s = stream(&data);
        let want = hex(&Sha256::digest(&data));
        for sizes in [
            &[1][..],
            &[31],
            &[32],
            &[33],
            &[1, 40, 3],
            &[1000],
            &[1032],
            &[5000],
            &[17, 64, 2, 31],
        ] {
            assert_eq!(
                verify_in_chunks(&s, sizes).as_ref(),
                Ok(&want),
                "chunking {sizes:?}"
            );
        }
    }

    #[test]
    fn trailer_split_across_chunk_boundaries() {
        let data = b"hello bolt db".repeat(10);
        let s = stream(&data);
        // Every split point, including inside the trailer.
        for cut in 0..=s.len() {
            let mut v = TrailerVerifier::new();
            v.update(&s[..cut]);
            v.update(&s[cut..]);
            assert!(v.finish().is_ok(), "cut at {cut}");
        }
    }

    #[test]
    fn empty_db_is_just_a_trailer() {
        assert!(verify_in_chunks(&stream(b""), &[7]).is_ok());
    }

    #[test]
    fn short_streams_fail() {
        for len in [0usize, 1, 31] {
            let v = {
                let mut v = TrailerVerifier::new();
                v.update(&vec![0u8; len]);
                v
            };
            assert_eq!(v.finish(), Err(DigestError::TooShort { len: len as u64 }));
        }
    }

    #[test]
    fn any_flipped_bit_fails() {
        let data = b"some snapshot payload".repeat(5);
        let s = stream(&data);
        for i in [0, 10, data.len() - 1, data.len(), s.len() - 1] {
            let mut bad = s.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(
                    verify_in_chunks(&bad, &[3, 50]),
                    Err(DigestError::Mismatch { .. })
                ),
                "byte {i}"
            );
        }
        // Truncation fails too.
        assert!(verify_in_chunks(&s[..s.len() - 1], &[64]).is_err());
    }
}

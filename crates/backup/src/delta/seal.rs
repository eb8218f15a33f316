//! A segment's plaintext sealed like a full backup (label naming its key,
//! zstd, age to the cluster's key) and opened again, through the same
//! building blocks as the streaming pipeline.

use std::io;

use age::x25519::{Identity, Recipient};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::transform::{compress_encrypt, decrypt_decompress, CHUNK, DEFAULT_ZSTD_LEVEL, DEPTH};

/// Compresses and encrypts `plain` for `recipient`, labelled with `key`.
///
/// # Errors
/// The encoder failing (it does not on memory input; kept for form).
pub async fn seal(plain: Vec<u8>, recipient: Recipient, key: &str) -> io::Result<Vec<u8>> {
    let (ptx, prx) = mpsc::channel(DEPTH);
    let (etx, mut erx) = mpsc::channel(DEPTH);
    let key = key.to_string();
    let enc = tokio::task::spawn_blocking(move || {
        compress_encrypt(prx, etx, recipient, DEFAULT_ZSTD_LEVEL, &key)
    });
    let feed = async move {
        let plain = Bytes::from(plain);
        let mut at = 0;
        while at < plain.len() {
            let end = (at + CHUNK).min(plain.len());
            if ptx.send(plain.slice(at..end)).await.is_err() {
                break;
            }
            at = end;
        }
    };
    let collect = async {
        let mut out = Vec::new();
        while let Some(b) = erx.recv().await {
            out.extend_from_slice(&b);
        }
        out
    };
    let ((), sealed) = tokio::join!(feed, collect);
    enc.await.map_err(io::Error::other)??;
    Ok(sealed)
}

/// Decrypts and decompresses a sealed segment, checking its label names `key`.
///
/// # Errors
/// A wrong key, a damaged object or a label for another key.
pub async fn open(sealed: Bytes, identity: Identity, key: &str) -> io::Result<Vec<u8>> {
    let (stx, srx) = mpsc::channel(DEPTH);
    let (otx, mut orx) = mpsc::channel(DEPTH);
    let key = key.to_string();
    let dec = tokio::task::spawn_blocking(move || decrypt_decompress(srx, otx, identity, &key));
    let feed = async move {
        let mut at = 0;
        while at < sealed.len() {
            let end = (at + CHUNK).min(sealed.len());
            if stx.send(sealed.slice(at..end)).await.is_err() {
                break;
            }
            at = end;
        }
    };
    let collect = async {
        let mut out = Vec::new();
        while let Some(b) = orx.recv().await {
            out.extend_from_slice(&b);
        }
        out
    };
    let ((), plain) = tokio::join!(feed, collect);
    dec.await.map_err(io::Error::other)??;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sealed_segments_open_only_with_their_key_and_name() {
        let id = Identity::generate();
        let plain: Vec<u8> = (0..700_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let sealed = seal(plain.clone(), id.to_public(), "c/deltas/x")
            .await
            .unwrap();
        assert!(sealed.starts_with(b"age-encryption.org/v1"));
        assert!(sealed.len() < plain.len());
        let back = open(Bytes::from(sealed.clone()), id.clone(), "c/deltas/x")
            .await
            .unwrap();
        assert_eq!(back, plain);
        assert!(open(Bytes::from(sealed.clone()), id, "c/deltas/y")
            .await
            .is_err());
        assert!(
            open(Bytes::from(sealed), Identity::generate(), "c/deltas/x")
                .await
                .is_err()
        );
    }
}

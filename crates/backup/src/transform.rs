//! The CPU-bound middle of both pipelines, run on a blocking thread between two
//! bounded channels: zstd + age on the way in, age + zstd on the way out.
//!
//! Memory is bounded by the channel depths times the chunk size, plus zstd's window
//! (2 MiB at the default level) and age's 64 KiB chunks — independent of db size.

use std::io::{self, BufRead, Read, Write};

use age::x25519::{Identity, Recipient};
use bytes::Bytes;
use tokio::sync::mpsc;

/// Size of chunks sent between stages.
pub(crate) const CHUNK: usize = 256 * 1024;
/// Chunks buffered per channel.
pub(crate) const DEPTH: usize = 8;

/// Default zstd level. zstd was the second CPU cost of a backup after the
/// snapshot's SHA-256 (scripts/bench-backup.sh --perf): level 1 halves it
/// (0.93 → 0.38 CPU s/GB there) and compressed the benchmark's values to
/// within 0.5 % of level 3 (`zstd -b1` vs `-b3`). Other levels: see
/// [`crate::BackupOptions::zstd_level`].
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

/// A blocking `Write` that sends [`CHUNK`]-sized pieces down a channel.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn new(tx: mpsc::Sender<Bytes>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "next pipeline stage stopped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = (CHUNK - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buf()
    }
}

/// A blocking `BufRead` over chunks received from a channel; a closed channel is EOF.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChannelReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => break,
            }
        }
        Ok(&self.cur)
    }

    fn consume(&mut self, amt: usize) {
        let _ = self.cur.split_to(amt.min(self.cur.len()));
    }
}

/// Plaintext handed to the encoder: one buffer, or several in order.
pub(crate) trait Pieces: Send + 'static {
    /// Calls `f` on each buffer, in order, until it fails.
    fn each(&self, f: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()>;
}

impl Pieces for Bytes {
    fn each(&self, f: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        f(self)
    }
}

/// Compresses then encrypts everything from `rx` into `tx`. Returns plaintext bytes.
/// The object starts with a label naming `key` (see [`crate::label`]).
pub(crate) fn compress_encrypt<P: Pieces>(
    mut rx: mpsc::Receiver<P>,
    tx: mpsc::Sender<Bytes>,
    recipient: Recipient,
    level: i32,
    key: &str,
) -> io::Result<u64> {
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .map_err(io::Error::other)?;
    let mut sealed = encryptor.wrap_output(ChannelWriter::new(tx))?;
    crate::label::write_label(&mut sealed, key)?;
    let mut zstd = zstd::stream::write::Encoder::new(sealed, level)?;
    let mut total = 0u64;
    while let Some(pieces) = rx.blocking_recv() {
        pieces.each(&mut |piece| {
            total += piece.len() as u64;
            zstd.write_all(piece)
        })?;
    }
    let sealed = zstd.finish()?;
    let mut out = sealed.finish()?;
    out.flush()?;
    Ok(total)
}

/// An object that no key could open: its age header is not one. Carried
/// inside the `io::Error` so [`crate::download`] can tell it from a wrong key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Damaged(pub(crate) &'static str);

fn damaged(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Damaged(what))
}

/// Decrypts then decompresses everything from `rx` into `tx`, after
/// checking the object's label names `key`.
pub(crate) fn decrypt_decompress(
    rx: mpsc::Receiver<Bytes>,
    tx: mpsc::Sender<Bytes>,
    identity: Identity,
    key: &str,
) -> io::Result<()> {
    let reader = ChannelReader {
        rx,
        cur: Bytes::new(),
    };
    // age's own words for a bad header ("Unknown age format. Have you tried
    // upgrading…") send the user the wrong way: the object is what is broken.
    let decryptor = age::Decryptor::new_buffered(reader).map_err(|e| match e {
        age::DecryptError::Io(e) => e,
        _ => damaged("its age header is unreadable (overwritten or truncated)"),
    })?;
    let plain = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::InvalidMac => damaged("its age header fails its MAC check"),
            e => io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
    let plain = crate::label::check_label(plain, key)?;
    let mut zstd = zstd::stream::read::Decoder::new(plain)?;
    let mut out = ChannelWriter::new(tx);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = zstd.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn roundtrip(data: Vec<u8>) -> Vec<u8> {
        let identity = Identity::generate();
        let recipient = identity.to_public();
        let (ptx, prx) = mpsc::channel(DEPTH);
        let (etx, mut erx) = mpsc::channel(DEPTH);
        let enc =
            tokio::task::spawn_blocking(move || compress_encrypt(prx, etx, recipient, 3, "c/k"));
        let input = data.clone();
        let feed = tokio::spawn(async move {
            for c in input.chunks(10_000) {
                ptx.send(Bytes::copy_from_slice(c)).await.unwrap();
            }
        });
        let mut sealed = Vec::new();
        while let Some(b) = erx.recv().await {
            sealed.extend_from_slice(&b);
        }
        feed.await.unwrap();
        assert_eq!(enc.await.unwrap().unwrap(), data.len() as u64);
        assert!(sealed.starts_with(b"age-encryption.org/v1"));

        let (stx, srx) = mpsc::channel(DEPTH);
        let (otx, mut orx) = mpsc::channel(DEPTH);
        let dec =
            tokio::task::spawn_blocking(move || decrypt_decompress(srx, otx, identity, "c/k"));
        tokio::spawn(async move {
            for c in sealed.chunks(777) {
                if stx.send(Bytes::copy_from_slice(c)).await.is_err() {
                    break;
                }
            }
        });
        let mut out = Vec::new();
        while let Some(b) = orx.recv().await {
            out.extend_from_slice(&b);
        }
        dec.await.unwrap().unwrap();
        out
    }

    fn open(sealed: Vec<u8>, identity: Identity) -> io::Error {
        let (stx, srx) = mpsc::channel(1);
        let (otx, _orx) = mpsc::channel(DEPTH);
        stx.try_send(Bytes::from(sealed)).unwrap();
        drop(stx);
        decrypt_decompress(srx, otx, identity, "c/k").unwrap_err()
    }

    #[tokio::test]
    async fn a_damaged_header_is_named_damaged_not_a_wrong_key() {
        let identity = Identity::generate();
        let (ptx, prx) = mpsc::channel(DEPTH);
        let (etx, mut erx) = mpsc::channel(DEPTH);
        let recipient = identity.to_public();
        let enc =
            tokio::task::spawn_blocking(move || compress_encrypt(prx, etx, recipient, 3, "c/k"));
        ptx.send(Bytes::from_static(b"db")).await.unwrap();
        drop(ptx);
        let mut sealed = Vec::new();
        while let Some(b) = erx.recv().await {
            sealed.extend_from_slice(&b);
        }
        enc.await.unwrap().unwrap();

        let is_damaged = |e: &io::Error| {
            e.get_ref()
                .is_some_and(|r| r.downcast_ref::<Damaged>().is_some())
        };
        for at in [0, 3, 10] {
            let mut bad = sealed.clone();
            bad[at] ^= 0x20;
            let e = tokio::task::spawn_blocking({
                let identity = identity.clone();
                move || open(bad, identity)
            })
            .await
            .unwrap();
            assert!(is_damaged(&e), "byte {at}: {e}");
            assert!(!e.to_string().contains("upgrading"), "{e}");
        }
        // The header MAC ends the header: change its first character.
        let end = sealed.windows(4).position(|w| w == b"--- ").unwrap();
        let mac_at = end + 4;
        let mut bad = sealed.clone();
        bad[mac_at] = if bad[mac_at] == b'A' { b'B' } else { b'A' };
        let e = tokio::task::spawn_blocking({
            let identity = identity.clone();
            move || open(bad, identity)
        })
        .await
        .unwrap();
        assert!(is_damaged(&e), "mac: {e}");

        // A wrong key is not damage.
        let e = tokio::task::spawn_blocking(move || open(sealed, Identity::generate()))
            .await
            .unwrap();
        assert!(!is_damaged(&e), "{e}");
    }

    #[tokio::test]
    async fn compress_encrypt_roundtrip() {
        for data in [
            Vec::new(),
            b"x".to_vec(),
            (0..3_000_000u32).map(|i| (i % 97) as u8).collect(),
        ] {
            assert_eq!(roundtrip(data.clone()).await, data);
        }
    }
}

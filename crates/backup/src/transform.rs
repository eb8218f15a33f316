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
    decompress_into(plain, tx)
}

/// Input read from age per step: zstd's own recommendation (`ZSTD_DStreamInSize`).
const ZSTD_IN: usize = 128 * 1024 + 512;

/// Decompresses `input` into [`CHUNK`]-sized pieces sent down `tx`. zstd
/// writes straight into each piece's buffer: through `io::Read` it went to a
/// scratch buffer and was copied again into the piece, a memcpy of the whole
/// snapshot for nothing.
fn decompress_into(mut input: impl Read, tx: mpsc::Sender<Bytes>) -> io::Result<()> {
    use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};

    let mut zstd = Decoder::new()?;
    let mut inbuf = vec![0u8; ZSTD_IN];
    let (mut at, mut end) = (0, 0);
    let mut out: Vec<u8> = Vec::with_capacity(CHUNK);
    // Whether a frame was begun and not yet ended (or not yet all handed out).
    let mut open = false;
    // A full output may leave decoded bytes inside zstd: run it again, with
    // no new input, before reading more (and before taking EOF for the end).
    let mut need_input = true;
    let send = |out: Vec<u8>| {
        tx.blocking_send(Bytes::from(out))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "next pipeline stage stopped"))
    };
    loop {
        // zstd stops short of a full output only once it needs more input.
        if at == end && need_input {
            end = input.read(&mut inbuf)?;
            at = 0;
            if end == 0 {
                break;
            }
        }
        let mut src = InBuffer::around(&inbuf[at..end]);
        let pos = out.len();
        let mut dst = OutBuffer::around_pos(&mut out, pos);
        let hint = zstd.run(&mut src, &mut dst)?;
        // A call that took and gave nothing (flushing an empty zstd) says
        // nothing about the frame: its hint is the next header's size.
        if src.pos() > 0 || out.len() > pos {
            open = hint != 0;
        }
        at += src.pos();
        need_input = out.len() < out.capacity();
        if !need_input {
            send(std::mem::replace(&mut out, Vec::with_capacity(CHUNK)))?;
        }
    }
    if open {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the compressed snapshot ends in the middle of a zstd frame",
        ));
    }
    if !out.is_empty() {
        send(out)?;
    }
    Ok(())
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

    fn decompress_all(compressed: &[u8]) -> io::Result<Vec<Bytes>> {
        let (tx, mut rx) = mpsc::channel(1024);
        decompress_into(compressed, tx)?;
        let mut pieces = Vec::new();
        while let Ok(p) = rx.try_recv() {
            pieces.push(p);
        }
        Ok(pieces)
    }

    /// Pieces are full [`CHUNK`]s but the last, frames may follow one
    /// another, and a frame cut short is an error, not a shorter snapshot.
    #[test]
    fn decompression_fills_whole_pieces_and_refuses_a_cut_frame() {
        let data: Vec<u8> = (0..(3 * CHUNK + 1234) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 & 0x0f)
            .collect();
        let frame = zstd::encode_all(&data[..], 1).unwrap();
        let pieces = decompress_all(&frame).unwrap();
        assert_eq!(pieces.concat(), data);
        let (last, whole) = pieces.split_last().unwrap();
        assert!(whole.iter().all(|p| p.len() == CHUNK));
        assert_eq!(last.len(), 1234);

        let mut two = frame.clone();
        two.extend_from_slice(&zstd::encode_all(&b"more"[..], 1).unwrap());
        let mut want = data.clone();
        want.extend_from_slice(b"more");
        assert_eq!(decompress_all(&two).unwrap().concat(), want);

        for cut in [1, frame.len() / 2, frame.len() - 1] {
            let err = decompress_all(&frame[..cut]).unwrap_err();
            assert!(
                err.kind() == io::ErrorKind::UnexpectedEof || err.kind() == io::ErrorKind::Other,
                "cut at {cut}: {err}"
            );
        }
        assert!(decompress_all(&frame[..frame.len() - 1])
            .unwrap_err()
            .to_string()
            .contains("middle of a zstd frame"));
        assert!(decompress_all(&[]).unwrap().is_empty());
    }

    /// A `Read` that hands out at most `n` bytes per call.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(out.len()).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// The input may end in the very call that fills a piece, with decoded
    /// bytes still inside zstd: they come out, and it is no cut frame.
    #[test]
    fn decompression_flushes_what_zstd_holds_when_the_input_ends() {
        for len in [CHUNK, 2 * CHUNK, 2 * CHUNK + 1, 5 * CHUNK - 1] {
            // Highly compressible: the whole frame is a few hundred bytes, so
            // its last input byte arrives while pieces are still being filled.
            let data: Vec<u8> = (0..len as u32).map(|i| (i % 7) as u8).collect();
            let frame = zstd::encode_all(&data[..], 1).unwrap();
            for step in [1, 7, frame.len()] {
                let (tx, mut rx) = mpsc::channel(1024);
                decompress_into(Trickle(&frame, step), tx)
                    .unwrap_or_else(|e| panic!("len {len}, step {step}: {e}"));
                let mut got = Vec::new();
                while let Ok(p) = rx.try_recv() {
                    got.extend_from_slice(&p);
                }
                assert!(got == data, "len {len}, step {step}");
            }
        }
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

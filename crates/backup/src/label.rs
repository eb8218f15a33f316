//! A label inside every stored object naming the backup it holds.
//!
//! It is a zstd skippable frame ahead of the compressed snapshot: `zstd -d`
//! skips it, so `age -d | zstd -d` still yields a plain snapshot, while a
//! download checks it against the key it asked for. An object swapped with
//! another, or copied onto another key, is caught even though its own
//! digest is fine.

use std::io::{self, Cursor, Read, Write};

/// First of zstd's skippable-frame magic numbers (0x184D2A50..=0x184D2A5F).
const MAGIC: u32 = 0x184D_2A5E;
const PREFIX: &[u8] = b"omni-backup v1\nkey=";
const MAX_LABEL: u32 = 4096;

/// Writes the label frame for `key`.
pub(crate) fn write_label(w: &mut impl Write, key: &str) -> io::Result<()> {
    let mut payload = PREFIX.to_vec();
    payload.extend_from_slice(key.as_bytes());
    payload.push(b'\n');
    w.write_all(&MAGIC.to_le_bytes())?;
    w.write_all(&(payload.len() as u32).to_le_bytes())?;
    w.write_all(&payload)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads the label off the front of `r` and checks it names `expected`;
/// returns the rest of the stream (the compressed snapshot).
pub(crate) fn check_label<R: Read + Send + 'static>(
    mut r: R,
    expected: &str,
) -> io::Result<Box<dyn Read + Send>> {
    let mut head = [0u8; 8];
    let mut got = 0;
    while got < head.len() {
        let n = r.read(&mut head[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if got < 8 || magic != MAGIC {
        return Err(invalid(
            "the object carries no backup label: not written by omni, or damaged".into(),
        ));
    }
    let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len > MAX_LABEL {
        return Err(invalid(format!(
            "backup label of {len} bytes is implausible: damaged object"
        )));
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    let key = payload
        .strip_prefix(PREFIX)
        .and_then(|k| k.strip_suffix(b"\n"))
        .and_then(|k| std::str::from_utf8(k).ok())
        .ok_or_else(|| invalid("unreadable backup label: damaged object".into()))?;
    if key != expected {
        return Err(invalid(format!(
            "the object holds backup {key}, not {expected}: it was swapped or copied onto another key"
        )));
    }
    Ok(Box::new(Cursor::new(Vec::new()).chain(r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(key: &str, rest: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        write_label(&mut v, key).unwrap();
        v.extend_from_slice(rest);
        v
    }

    #[test]
    fn a_matching_label_passes_the_rest_through() {
        let mut rest = String::new();
        check_label(
            Cursor::new(labelled("c/1.snapshot", b"zstd")),
            "c/1.snapshot",
        )
        .unwrap()
        .read_to_string(&mut rest)
        .unwrap();
        assert_eq!(rest, "zstd");
    }

    #[test]
    fn a_swapped_object_is_named() {
        let err = check_label(Cursor::new(labelled("c/2.snapshot", b"")), "c/1.snapshot")
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("holds backup c/2.snapshot, not c/1.snapshot"),
            "{err}"
        );
    }

    #[test]
    fn missing_or_damaged_labels_are_errors() {
        assert!(check_label(Cursor::new(b"\x28\xb5\x2f\xfd....".to_vec()), "k").is_err());
        assert!(check_label(Cursor::new(Vec::new()), "k").is_err());
        let mut huge = MAGIC.to_le_bytes().to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(check_label(Cursor::new(huge), "k")
            .err()
            .unwrap()
            .to_string()
            .contains("implausible"));
        let mut bad = labelled("k", b"");
        bad[10] ^= 0xff;
        assert!(check_label(Cursor::new(bad), "k").is_err());
    }

    #[test]
    fn zstd_skips_the_label() {
        let mut z = Vec::new();
        write_label(&mut z, "c/1.snapshot").unwrap();
        z.extend_from_slice(&zstd::encode_all(&b"snapshot bytes"[..], 3).unwrap());
        assert_eq!(zstd::decode_all(&z[..]).unwrap(), b"snapshot bytes");
    }
}

//! The plaintext of a delta segment (before zstd and age): a header naming
//! the cluster and the revision range, the events grouped by revision, and
//! a SHA-256 over everything before it. Described for humans in
//! `docs/point-in-time-restore.md`; all integers little-endian.
//!
//! ```text
//! "OMNIDLT1"
//! u16 len, cluster uuid | i64 base_rev | i64 from_rev | i64 to_rev
//! i64 until_ms | u32 revisions | u32 events
//! per revision: i64 rev | i64 at_ms | u32 ops
//!   per op: u8 kind (1 put, 2 delete) | u32 len, key
//!           put only: u32 len, value | i64 lease
//! [32] SHA-256 of all the bytes above
//! ```

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"OMNIDLT1";
const PUT: u8 = 1;
const DELETE: u8 = 2;

/// One change of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        /// The lease the key was attached to (0: none). Kept for the
        /// record; a replay cannot restore leases granted after the base.
        lease: i64,
    },
    Delete {
        key: Vec<u8>,
    },
}

/// All changes of one etcd revision (one transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub rev: i64,
    /// When omni received it (unix milliseconds); etcd does not say when
    /// it committed.
    pub at_ms: i64,
    pub ops: Vec<Op>,
}

/// What a segment covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub cluster: String,
    /// The revision read just before the chain's full snapshot started.
    pub base_rev: i64,
    /// First revision covered (the previous segment's `to_rev` + 1).
    pub from_rev: i64,
    /// Every revision up to here is in this segment or an earlier one;
    /// `to_rev < from_rev` for a segment that covers time but no revision.
    pub to_rev: i64,
    /// The cluster had no revision beyond `to_rev` at this time.
    pub until_ms: i64,
    pub revisions: u32,
    pub events: u32,
}

/// A decoded segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub header: Header,
    pub revisions: Vec<Revision>,
}

/// Why a segment does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("delta segment is truncated")]
    Truncated,
    #[error("delta segment digest mismatch: damaged")]
    Digest,
    #[error("not a delta segment (bad magic)")]
    Magic,
    #[error("delta segment is inconsistent: {0}")]
    Inconsistent(String),
}

/// Accumulates the events of a segment; its size is what the flush
/// threshold looks at.
#[derive(Debug, Default)]
pub struct Builder {
    body: Vec<u8>,
    revisions: u32,
    events: u32,
    last_rev: Option<i64>,
}

impl Builder {
    /// Bytes buffered so far.
    pub fn len(&self) -> usize {
        self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.revisions == 0
    }

    /// Events buffered so far.
    pub fn events(&self) -> u32 {
        self.events
    }

    pub fn last_rev(&self) -> Option<i64> {
        self.last_rev
    }

    /// Appends one revision; revisions must increase.
    pub fn push(&mut self, rev: &Revision) {
        debug_assert!(self.last_rev.is_none_or(|l| rev.rev > l));
        self.body.extend_from_slice(&rev.rev.to_le_bytes());
        self.body.extend_from_slice(&rev.at_ms.to_le_bytes());
        self.body
            .extend_from_slice(&(rev.ops.len() as u32).to_le_bytes());
        for op in &rev.ops {
            match op {
                Op::Put { key, value, lease } => {
                    self.body.push(PUT);
                    put_bytes(&mut self.body, key);
                    put_bytes(&mut self.body, value);
                    self.body.extend_from_slice(&lease.to_le_bytes());
                }
                Op::Delete { key } => {
                    self.body.push(DELETE);
                    put_bytes(&mut self.body, key);
                }
            }
        }
        self.revisions += 1;
        self.events += rev.ops.len() as u32;
        self.last_rev = Some(rev.rev);
    }

    /// The encoded segment; the builder is empty again.
    pub fn finish(
        &mut self,
        cluster: &str,
        base_rev: i64,
        from_rev: i64,
        to_rev: i64,
        until_ms: i64,
    ) -> Vec<u8> {
        let body = std::mem::take(&mut self.body);
        let mut out = Vec::with_capacity(body.len() + 128);
        out.extend_from_slice(MAGIC);
        put_bytes16(&mut out, cluster.as_bytes());
        for v in [base_rev, from_rev, to_rev, until_ms] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.revisions.to_le_bytes());
        out.extend_from_slice(&self.events.to_le_bytes());
        out.extend_from_slice(&body);
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        *self = Builder::default();
        out
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_bytes16(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if self.0.len() < n {
            return Err(FormatError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(
            self.take(2)?
                .try_into()
                .map_err(|_| FormatError::Truncated)?,
        ))
    }
    fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(
            self.take(4)?
                .try_into()
                .map_err(|_| FormatError::Truncated)?,
        ))
    }
    fn i64(&mut self) -> Result<i64, FormatError> {
        Ok(i64::from_le_bytes(
            self.take(8)?
                .try_into()
                .map_err(|_| FormatError::Truncated)?,
        ))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, FormatError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
}

/// Decodes and checks a segment: digest first, then that every revision
/// lies in the header's range, in order, and the counts agree.
///
/// # Errors
/// [`FormatError`] naming what is wrong.
pub fn decode(data: &[u8]) -> Result<Segment, FormatError> {
    if data.len() < MAGIC.len() + 32 {
        return Err(FormatError::Truncated);
    }
    let (content, digest) = data.split_at(data.len() - 32);
    if Sha256::digest(content).as_slice() != digest {
        return Err(FormatError::Digest);
    }
    let mut r = Reader(content);
    if r.take(MAGIC.len())? != MAGIC {
        return Err(FormatError::Magic);
    }
    let n = r.u16()? as usize;
    let cluster = String::from_utf8(r.take(n)?.to_vec())
        .map_err(|_| FormatError::Inconsistent("cluster id is not UTF-8".into()))?;
    let (base_rev, from_rev, to_rev, until_ms) = (r.i64()?, r.i64()?, r.i64()?, r.i64()?);
    let (revisions, events) = (r.u32()?, r.u32()?);
    let bad = |m: String| Err(FormatError::Inconsistent(m));
    let mut out = Vec::with_capacity(revisions.min(1 << 16) as usize);
    let mut seen_events = 0u64;
    for _ in 0..revisions {
        let rev = r.i64()?;
        let at_ms = r.i64()?;
        let n = r.u32()?;
        if rev < from_rev || rev > to_rev || out.last().is_some_and(|l: &Revision| l.rev >= rev) {
            return bad(format!(
                "revision {rev} out of order or outside {from_rev}..={to_rev}"
            ));
        }
        let mut ops = Vec::with_capacity(n.min(1 << 16) as usize);
        for _ in 0..n {
            ops.push(match r.u8()? {
                PUT => Op::Put {
                    key: r.bytes()?,
                    value: r.bytes()?,
                    lease: r.i64()?,
                },
                DELETE => Op::Delete { key: r.bytes()? },
                k => return bad(format!("unknown op kind {k}")),
            });
        }
        seen_events += u64::from(n);
        out.push(Revision { rev, at_ms, ops });
    }
    if !r.0.is_empty() {
        return bad(format!("{} bytes after the last revision", r.0.len()));
    }
    if seen_events != u64::from(events) {
        return bad(format!("header says {events} events, found {seen_events}"));
    }
    Ok(Segment {
        header: Header {
            cluster,
            base_rev,
            from_rev,
            to_rev,
            until_ms,
            revisions,
            events,
        },
        revisions: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(rev: i64, ops: Vec<Op>) -> Revision {
        Revision {
            rev,
            at_ms: 1000 + rev,
            ops,
        }
    }

    #[test]
    fn a_segment_round_trips_and_any_flipped_byte_is_caught() {
        let revs = vec![
            rev(
                5,
                vec![Op::Put {
                    key: b"a".to_vec(),
                    value: b"1".to_vec(),
                    lease: 7,
                }],
            ),
            rev(
                6,
                vec![
                    Op::Delete { key: b"a".to_vec() },
                    Op::Put {
                        key: b"b".to_vec(),
                        value: vec![0; 300],
                        lease: 0,
                    },
                ],
            ),
        ];
        let mut b = Builder::default();
        for r in &revs {
            b.push(r);
        }
        assert_eq!(b.last_rev(), Some(6));
        let data = b.finish("uuid-1", 4, 5, 9, 12345);
        assert!(b.is_empty() && b.last_rev().is_none());
        let seg = decode(&data).unwrap();
        assert_eq!(seg.revisions, revs);
        assert_eq!(
            seg.header,
            Header {
                cluster: "uuid-1".into(),
                base_rev: 4,
                from_rev: 5,
                to_rev: 9,
                until_ms: 12345,
                revisions: 2,
                events: 3
            }
        );
        for i in [0, 9, data.len() / 2, data.len() - 1] {
            let mut bad = data.clone();
            bad[i] ^= 1;
            assert_eq!(decode(&bad), Err(FormatError::Digest), "byte {i}");
        }
        assert_eq!(decode(&data[..data.len() - 1]), Err(FormatError::Digest));
        assert_eq!(decode(&data[..10]), Err(FormatError::Truncated));
    }

    #[test]
    fn revisions_outside_the_header_range_are_refused() {
        let mut b = Builder::default();
        b.push(&rev(20, vec![Op::Delete { key: b"x".to_vec() }]));
        let data = b.finish("c", 1, 2, 10, 0);
        assert!(
            matches!(decode(&data), Err(FormatError::Inconsistent(m)) if m.contains("revision 20"))
        );
        let empty = Builder::default().finish("c", 1, 11, 10, 99);
        assert_eq!(decode(&empty).unwrap().revisions, vec![]);
    }
}

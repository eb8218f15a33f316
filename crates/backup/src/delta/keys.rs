//! Object keys of delta segments:
//! `<cluster-uuid>/deltas/<full-stem>/<from>-<to>-<until>.delta`, where
//! `<full-stem>` is the name of the full backup the chain starts from
//! (its 16 hex digits, without `.snapshot`) and the rest is hex: first and
//! last revision covered, and the time (unix ms) the segment covers up to.
//!
//! None of these parse as a backup key ([`crate::keys::parse_key`] wants
//! `<cluster>/<16 hex>.snapshot`), so listings of full backups and their
//! retention never mistake a segment for a backup.

use crate::keys::{format_key, parse_key, validate_cluster_id, KeyError, SNAPSHOT_SUFFIX};

pub const DELTA_DIR: &str = "deltas";
pub const DELTA_SUFFIX: &str = ".delta";

/// Where a segment belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentName {
    /// Time of the chain's full backup (unix seconds).
    pub full_unix: i64,
    pub from_rev: i64,
    pub to_rev: i64,
    pub until_ms: i64,
}

/// The prefix of every segment of the chain that starts at the full
/// backup taken at `full_unix`.
///
/// # Errors
/// As [`format_key`].
pub fn chain_prefix(cluster_uuid: &str, full_unix: i64) -> Result<String, KeyError> {
    let full = format_key(cluster_uuid, full_unix)?;
    let stem = full
        .rsplit('/')
        .next()
        .and_then(|f| f.strip_suffix(SNAPSHOT_SUFFIX))
        .unwrap_or_default();
    Ok(format!("{cluster_uuid}/{DELTA_DIR}/{stem}/"))
}

/// The prefix of all chains of a cluster.
///
/// # Errors
/// An invalid cluster id.
pub fn cluster_prefix(cluster_uuid: &str) -> Result<String, KeyError> {
    validate_cluster_id(cluster_uuid)?;
    Ok(format!("{cluster_uuid}/{DELTA_DIR}/"))
}

/// The key of one segment. Revisions and times are non-negative.
///
/// # Errors
/// As [`format_key`].
pub fn segment_key(cluster_uuid: &str, name: &SegmentName) -> Result<String, KeyError> {
    let prefix = chain_prefix(cluster_uuid, name.full_unix)?;
    let hex = |v: i64| u64::try_from(v).map_err(|_| KeyError::NegativeTime(v));
    Ok(format!(
        "{prefix}{:016x}-{:016x}-{:012x}{DELTA_SUFFIX}",
        hex(name.from_rev)?,
        hex(name.to_rev)?,
        hex(name.until_ms)?
    ))
}

/// Splits a segment key into its cluster and [`SegmentName`].
///
/// # Errors
/// [`KeyError::NotABackupKey`] for anything [`segment_key`] would not write.
pub fn parse_segment_key(key: &str) -> Result<(&str, SegmentName), KeyError> {
    let bad = || KeyError::NotABackupKey(key.to_string());
    let mut parts = key.split('/');
    let (Some(cluster), Some(DELTA_DIR), Some(stem), Some(file), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    let full_key = format!("{cluster}/{stem}{SNAPSHOT_SUFFIX}");
    let (_, full_unix) = parse_key(&full_key).map_err(|_| bad())?;
    let file = file.strip_suffix(DELTA_SUFFIX).ok_or_else(bad)?;
    let nums: Vec<&str> = file.split('-').collect();
    let [from, to, until] = nums[..] else {
        return Err(bad());
    };
    let num = |s: &str, width: usize| {
        let ok = s.len() == width && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
            .and_then(|v| i64::try_from(v).ok())
            .ok_or_else(bad)
    };
    let name = SegmentName {
        full_unix,
        from_rev: num(from, 16)?,
        to_rev: num(to, 16)?,
        until_ms: num(until, 12)?,
    };
    // Only the reference spelling of the stem is ever written.
    if chain_prefix(cluster, full_unix).ok().as_deref()
        != Some(&format!("{cluster}/{DELTA_DIR}/{stem}/"))
    {
        return Err(bad());
    }
    Ok((cluster, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_keys_round_trip_and_are_never_backup_keys() {
        let name = SegmentName {
            full_unix: 1_701_184_522,
            from_rev: 11,
            to_rev: 300,
            until_ms: 1_701_184_600_123,
        };
        let key = segment_key("c-1", &name).unwrap();
        assert_eq!(
            key,
            "c-1/deltas/FFFFFFFF9A99FBF6/000000000000000b-000000000000012c-018c1680f83b.delta"
        );
        assert_eq!(parse_segment_key(&key).unwrap(), ("c-1", name));
        assert!(parse_key(&key).is_err());
        assert!(key.starts_with(&chain_prefix("c-1", name.full_unix).unwrap()));
        for bad in [
            "c-1/FFFFFFFF9A99FBF6.snapshot",
            "c-1/deltas/FFFFFFFF9A99FBF6/0b-12c-1.delta",
            "c-1/deltas/ffffffff9a99fbf5/000000000000000b-000000000000012c-018c1b6e6fbb.delta",
            "c-1/deltas/FFFFFFFF9A99FBF6/x/000000000000000b-000000000000012c-018c1b6e6fbb.delta",
        ] {
            assert!(parse_segment_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_sort_in_chain_order() {
        let a = segment_key(
            "c",
            &SegmentName {
                full_unix: 5,
                from_rev: 11,
                to_rev: 15,
                until_ms: 100,
            },
        )
        .unwrap();
        let idle = segment_key(
            "c",
            &SegmentName {
                full_unix: 5,
                from_rev: 16,
                to_rev: 15,
                until_ms: 200,
            },
        )
        .unwrap();
        let idle2 = segment_key(
            "c",
            &SegmentName {
                full_unix: 5,
                from_rev: 16,
                to_rev: 15,
                until_ms: 300,
            },
        )
        .unwrap();
        let b = segment_key(
            "c",
            &SegmentName {
                full_unix: 5,
                from_rev: 16,
                to_rev: 20,
                until_ms: 400,
            },
        )
        .unwrap();
        let mut v = vec![b.clone(), idle2.clone(), a.clone(), idle.clone()];
        v.sort();
        assert_eq!(v, [a, idle, idle2, b]);
    }
}

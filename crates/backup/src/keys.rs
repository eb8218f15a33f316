//! Object keys: `<cluster-uuid>/<inverted-timestamp-hex>.snapshot`.
//!
//! The timestamp is stored inverted (`u64::MAX - unix_seconds`, 16 lower-case hex
//! digits) so a plain lexicographic listing returns the newest backup first.

/// Suffix of every backup object.
pub const SNAPSHOT_SUFFIX: &str = ".snapshot";

/// Errors building or parsing an object key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The cluster id is empty or contains characters unsafe in a key.
    #[error(
        "invalid cluster id {0:?}: use 1-128 characters from [A-Za-z0-9._-], not starting with '.'"
    )]
    InvalidClusterId(String),
    /// Backups before the Unix epoch cannot be named.
    #[error("invalid backup time {0}: must not be before 1970-01-01")]
    NegativeTime(i64),
    /// The key is not `<cluster>/<16 hex digits>.snapshot`.
    #[error("not a backup object key: {0:?}")]
    NotABackupKey(String),
}

/// Checks that `cluster_uuid` can be used as the key prefix.
///
/// # Errors
/// [`KeyError::InvalidClusterId`].
pub fn validate_cluster_id(cluster_uuid: &str) -> Result<(), KeyError> {
    let ok = !cluster_uuid.is_empty()
        && cluster_uuid.len() <= 128
        && !cluster_uuid.starts_with('.')
        && cluster_uuid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(KeyError::InvalidClusterId(cluster_uuid.to_string()))
    }
}

/// The object key of the backup of `cluster_uuid` taken at `unix_seconds`.
///
/// # Errors
/// An invalid cluster id or a negative time.
pub fn format_key(cluster_uuid: &str, unix_seconds: i64) -> Result<String, KeyError> {
    validate_cluster_id(cluster_uuid)?;
    let secs = u64::try_from(unix_seconds).map_err(|_| KeyError::NegativeTime(unix_seconds))?;
    Ok(format!(
        "{cluster_uuid}/{:016x}{SNAPSHOT_SUFFIX}",
        u64::MAX - secs
    ))
}

/// Splits a backup key into `(cluster_uuid, unix_seconds)`.
///
/// # Errors
/// [`KeyError::NotABackupKey`] for anything [`format_key`] would not produce.
pub fn parse_key(key: &str) -> Result<(&str, i64), KeyError> {
    let bad = || KeyError::NotABackupKey(key.to_string());
    let (cluster, file) = key.split_once('/').ok_or_else(bad)?;
    validate_cluster_id(cluster).map_err(|_| bad())?;
    let hex = file.strip_suffix(SNAPSHOT_SUFFIX).ok_or_else(bad)?;
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad());
    }
    let inverted = u64::from_str_radix(hex, 16).map_err(|_| bad())?;
    let secs = i64::try_from(u64::MAX - inverted).map_err(|_| bad())?;
    Ok((cluster, secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_known_value() {
        let key = format_key("c-1", 1_700_000_000).unwrap();
        assert_eq!(key, "c-1/ffffffff9aac0eff.snapshot");
        assert_eq!(parse_key(&key).unwrap(), ("c-1", 1_700_000_000));
        assert_eq!(parse_key(&format_key("x", 0).unwrap()).unwrap(), ("x", 0));
        let max = format_key("x", i64::MAX).unwrap();
        assert_eq!(parse_key(&max).unwrap(), ("x", i64::MAX));
    }

    #[test]
    fn newer_sorts_first() {
        let mut keys: Vec<String> = [5, 1_000, 10, 1_700_000_000, 99]
            .iter()
            .map(|t| format_key("u", *t).unwrap())
            .collect();
        keys.sort();
        let times: Vec<i64> = keys.iter().map(|k| parse_key(k).unwrap().1).collect();
        assert_eq!(times, vec![1_700_000_000, 1_000, 99, 10, 5]);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(format_key("u", -1), Err(KeyError::NegativeTime(-1)));
        for id in ["", "a/b", "..", ".hidden", "a b", "ü"] {
            assert!(format_key(id, 1).is_err(), "{id:?}");
        }
        for key in [
            "",
            "u",
            "u/",
            "/ffffffff9aac0eff.snapshot",
            "u/ffffffff9aac0eff",
            "u/ffffffff9aac0ef.snapshot",
            "u/FFFFFFFF9AAC0EFF.snapshot",
            "u/ffffffff9aac0efg.snapshot",
            "u/+fffffff9aac0eff.snapshot",
            "u/x/ffffffff9aac0eff.snapshot",
            "u/.tmp-ffffffff9aac0eff.snapshot",
            // u64::MAX - inverted > i64::MAX
            "u/0000000000000000.snapshot",
        ] {
            assert!(parse_key(key).is_err(), "{key:?}");
        }
    }
}

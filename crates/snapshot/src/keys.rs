//! Object keys: `<cluster-uuid>/<inverted-timestamp-hex>.snapshot`.
//!
//! The name is the reference product's: Go's `%016X` of `uint64(-unix)`, i.e.
//! `2^64 - unix_seconds` in 16 upper-case hex digits (unix 1701184522 →
//! `FFFFFFFF9A99FBF6`), so a plain lexicographic listing returns the newest
//! backup first and buckets written by either product read the same.
//!
//! Earlier versions of omni-rs wrote `u64::MAX - unix_seconds` in lower case
//! (one less: `ffffffff9a99fbf5`). Those names still parse, so existing buckets
//! keep listing; they are never written. A name of digits only fits both
//! spellings and is read as the reference's.

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
        "{cluster_uuid}/{:016X}{SNAPSHOT_SUFFIX}",
        secs.wrapping_neg()
    ))
}

/// The key an earlier omni-rs gave the same backup (lower case, one less);
/// for finding objects it wrote. Never use it to write.
///
/// # Errors
/// As [`format_key`].
pub fn legacy_key(cluster_uuid: &str, unix_seconds: i64) -> Result<String, KeyError> {
    validate_cluster_id(cluster_uuid)?;
    let secs = u64::try_from(unix_seconds).map_err(|_| KeyError::NegativeTime(unix_seconds))?;
    Ok(format!(
        "{cluster_uuid}/{:016x}{SNAPSHOT_SUFFIX}",
        u64::MAX - secs
    ))
}

/// Every key a backup of `cluster_uuid` taken at `unix_seconds` may be stored
/// under: the reference's spelling first, then the legacy one.
///
/// # Errors
/// As [`format_key`].
pub fn candidate_keys(cluster_uuid: &str, unix_seconds: i64) -> Result<[String; 2], KeyError> {
    Ok([
        format_key(cluster_uuid, unix_seconds)?,
        legacy_key(cluster_uuid, unix_seconds)?,
    ])
}

/// Splits a backup key, in either spelling, into `(cluster_uuid, unix_seconds)`.
///
/// # Errors
/// [`KeyError::NotABackupKey`] for anything neither [`format_key`] nor
/// [`legacy_key`] would produce.
pub fn parse_key(key: &str) -> Result<(&str, i64), KeyError> {
    let bad = || KeyError::NotABackupKey(key.to_string());
    let (cluster, file) = key.split_once('/').ok_or_else(bad)?;
    validate_cluster_id(cluster).map_err(|_| bad())?;
    let hex = file.strip_suffix(SNAPSHOT_SUFFIX).ok_or_else(bad)?;
    if hex.len() != 16 {
        return Err(bad());
    }
    let upper = hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'));
    let lower = hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !upper && !lower {
        return Err(bad());
    }
    let inverted = u64::from_str_radix(hex, 16).map_err(|_| bad())?;
    let secs = if upper {
        inverted.wrapping_neg()
    } else {
        u64::MAX - inverted
    };
    let secs = i64::try_from(secs).map_err(|_| bad())?;
    Ok((cluster, secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_spelling_of_the_issue_example() {
        let key = format_key("c-1", 1_701_184_522).unwrap();
        assert_eq!(key, "c-1/FFFFFFFF9A99FBF6.snapshot");
        assert_eq!(
            legacy_key("c-1", 1_701_184_522).unwrap(),
            "c-1/ffffffff9a99fbf5.snapshot"
        );
        assert_eq!(parse_key(&key).unwrap(), ("c-1", 1_701_184_522));
        assert_eq!(
            parse_key("c-1/ffffffff9a99fbf5.snapshot").unwrap(),
            ("c-1", 1_701_184_522)
        );
    }

    #[test]
    fn both_spellings_roundtrip() {
        assert_eq!(
            parse_key(&format_key("x", i64::MAX).unwrap()).unwrap(),
            ("x", i64::MAX)
        );
        // Any time before the year 292 billion: past that a legacy name is
        // digits only and reads as the reference's.
        for t in [0, 1, 59, 1_700_000_000, 4_102_444_800, i64::MAX / 2] {
            assert_eq!(parse_key(&format_key("x", t).unwrap()).unwrap(), ("x", t));
            assert_eq!(parse_key(&legacy_key("x", t).unwrap()).unwrap(), ("x", t));
            let [new, old] = candidate_keys("x", t).unwrap();
            assert_eq!(
                (new.as_str(), old.as_str()),
                (
                    format_key("x", t).unwrap().as_str(),
                    legacy_key("x", t).unwrap().as_str()
                )
            );
        }
    }

    #[test]
    fn newer_sorts_first_within_a_spelling() {
        let times = [5, 1_000, 10, 1_700_000_000, 99];
        for name in [format_key, legacy_key] {
            let mut keys: Vec<String> = times.iter().map(|t| name("u", *t).unwrap()).collect();
            keys.sort();
            let got: Vec<i64> = keys.iter().map(|k| parse_key(k).unwrap().1).collect();
            assert_eq!(got, vec![1_700_000_000, 1_000, 99, 10, 5]);
        }
    }

    #[test]
    fn digits_only_names_read_as_the_reference() {
        // 2^64 - 0x9000000000000000 = 0x7000000000000000
        assert_eq!(
            parse_key("u/9000000000000000.snapshot").unwrap().1,
            0x7000_0000_0000_0000
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(format_key("u", -1), Err(KeyError::NegativeTime(-1)));
        assert_eq!(legacy_key("u", -1), Err(KeyError::NegativeTime(-1)));
        for id in ["", "a/b", "..", ".hidden", "a b", "ü"] {
            assert!(format_key(id, 1).is_err(), "{id:?}");
            assert!(legacy_key(id, 1).is_err(), "{id:?}");
        }
        for key in [
            "",
            "u",
            "u/",
            "/FFFFFFFF9A99FBF6.snapshot",
            "u/FFFFFFFF9A99FBF6",
            "u/FFFFFFFF9A99FBF.snapshot",
            "u/FFFFFFFF9A99FBF66.snapshot",
            // one name, two spellings
            "u/FFFFFFFF9a99fbf6.snapshot",
            "u/ffffffff9aac0efg.snapshot",
            "u/FFFFFFFF9AAC0EFG.snapshot",
            "u/+fffffff9aac0eff.snapshot",
            "u/x/FFFFFFFF9A99FBF6.snapshot",
            "u/.tmp-FFFFFFFF9A99FBF6.snapshot",
            // 2^64 - inverted > i64::MAX
            "u/7FFFFFFFFFFFFFFF.snapshot",
            // u64::MAX - inverted > i64::MAX
            "u/7fffffffffffffff.snapshot",
        ] {
            assert!(parse_key(key).is_err(), "{key:?}");
        }
    }
}

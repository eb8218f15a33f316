//! Backups marked to keep. A manual request with `keep: true` marks the
//! first backup stored after the request was stored (that is the backup the
//! request makes: the backup controller starts it after reading the
//! request, and one backup per cluster runs at a time). The mark lives in
//! the retention status until the backup is deleted explicitly.

use omni_resources::Timestamp;

/// The keep marks of one cluster, as kept in its retention status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeepMarks {
    /// Backup times (Unix seconds) marked to keep.
    pub kept: Vec<i64>,
    /// When a `keep: true` request was stored whose backup is not listed
    /// yet; zero when none is pending.
    pub pending: Timestamp,
    /// The stored time of the last manual request looked at.
    pub last_request: Timestamp,
}

/// A manual backup request as the retention controller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub keep: bool,
    /// When the request was stored (`metadata.updated`).
    pub stored: Timestamp,
}

/// Folds the current request and the listed backup times (`listed`) into
/// the marks: a new `keep` request becomes pending; a pending request is
/// resolved to the oldest backup taken at or after it; marks of backups no
/// longer listed are dropped.
pub fn update(mut marks: KeepMarks, request: Option<Request>, listed: &[i64]) -> KeepMarks {
    if let Some(r) = request {
        if r.stored != marks.last_request {
            marks.last_request = r.stored;
            // An earlier keep request still pending stays: its backup (the
            // first after it) is also the first after this one or earlier.
            if r.keep && marks.pending.is_zero() {
                marks.pending = r.stored;
            }
        }
    }
    if !marks.pending.is_zero() {
        let made = listed
            .iter()
            .copied()
            .filter(|t| *t >= marks.pending.seconds)
            .min();
        if let Some(t) = made {
            if !marks.kept.contains(&t) {
                marks.kept.push(t);
            }
            marks.pending = Timestamp::default();
        }
    }
    marks.kept.retain(|t| listed.contains(t));
    marks.kept.sort_unstable();
    marks
}

/// `<cluster>-<unix seconds>`, the id of a backup.
pub fn backup_id(cluster: &str, at: i64) -> String {
    format!("{cluster}-{at}")
}

/// The time in a backup id of `cluster`, if it is one.
pub fn backup_time(cluster: &str, id: &str) -> Option<i64> {
    id.strip_prefix(cluster)?.strip_prefix('-')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp {
            seconds: s,
            nanos: 5,
        }
    }

    #[test]
    fn a_keep_request_marks_the_first_backup_after_it() {
        let req = Request {
            keep: true,
            stored: at(100),
        };
        // Not taken yet: pending, nothing marked; older backups stay unmarked.
        let m = update(KeepMarks::default(), Some(req), &[50, 90]);
        assert_eq!(m.pending, at(100));
        assert!(m.kept.is_empty());
        // Taken (and a later one too): the first after the request is marked.
        let m = update(m, Some(req), &[50, 90, 101, 160]);
        assert_eq!(m.kept, vec![101]);
        assert!(m.pending.is_zero());
        // Seeing the same request again marks nothing more.
        let m = update(m, Some(req), &[50, 90, 101, 160, 220]);
        assert_eq!(m.kept, vec![101]);
        // A request without keep marks nothing.
        let plain = Request {
            keep: false,
            stored: at(300),
        };
        let m = update(m, Some(plain), &[101, 160, 220, 301]);
        assert_eq!(m.kept, vec![101]);
        // The marked backup deleted explicitly: the mark goes with it.
        let m = update(m, Some(plain), &[160, 220, 301]);
        assert!(m.kept.is_empty());
    }

    #[test]
    fn ids_round_trip_for_clusters_with_dashes() {
        let id = backup_id("talos-default", 1_702_166_400);
        assert_eq!(id, "talos-default-1702166400");
        assert_eq!(backup_time("talos-default", &id), Some(1_702_166_400));
        assert_eq!(backup_time("talos", &id), None);
        assert_eq!(backup_time("other", &id), None);
    }
}

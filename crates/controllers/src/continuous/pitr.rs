//! Point-in-time restore: the newest full backup at or before the target
//! whose chain reaches it, restored with stock `etcdutl` into a throwaway
//! etcd on loopback (the drill's), the chain's revisions replayed up to
//! the target (each revision one transaction, so revision numbers come
//! out as the cluster had them), then a snapshot of the result with its
//! SHA-256 trailer checked.
//!
//! What a replay cannot keep: leases granted after the full backup (their
//! keys come back without a lease) and the compaction history; the
//! report counts the puts whose lease was dropped.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use etcd_client::{Client, GetOptions, PutOptions, Txn, TxnOp};
use omni_backup::delta::format::{self, Op, Revision};
use omni_backup::digest::TrailerVerifier;
use omni_backup::store::DeltaObject;
use omni_backup::{BackupObject, BackupStore, Identity, StoreError};
pub use omni_resources::pitr::PitrReport;

use crate::drill::guard::Workspace;
use crate::drill::run::{measure, start_restored};
use crate::drill::{DrillError, DrillReport, DrillSettings};

/// Where to restore to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Exactly this etcd revision.
    Revision(i64),
    /// Every revision omni had received by this time (unix ms).
    TimeMs(i64),
}

#[derive(Debug, thiserror::Error)]
pub enum PitrError {
    /// No chain reaches the target; the message names what is restorable.
    #[error("{0}")]
    NotCovered(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Drill(#[from] DrillError),
    #[error("delta segment {key}: {detail}")]
    Segment { key: String, detail: String },
    #[error("replay: {0}")]
    Replay(String),
    #[error("snapshot of the restored etcd: {0}")]
    Snapshot(String),
}

impl PitrError {
    pub fn is_not_covered(&self) -> bool {
        matches!(self, PitrError::NotCovered(_))
    }
}

/// A full backup and the contiguous start of its chain.
#[derive(Debug, Clone)]
pub struct Chain {
    pub full: BackupObject,
    pub segments: Vec<DeltaObject>,
}

impl Chain {
    /// Last revision and time the chain covers.
    pub fn reach(&self) -> Option<(i64, i64)> {
        self.segments
            .last()
            .map(|s| (s.name.to_rev, s.name.until_ms))
    }

    fn covers(&self, target: Target) -> bool {
        let (Some(first), Some((to, until))) = (self.segments.first(), self.reach()) else {
            return false;
        };
        match target {
            Target::Revision(n) => n >= first.name.from_rev - 1 && n <= to,
            Target::TimeMs(t) => self.full.created_at_unix * 1000 <= t && t <= until,
        }
    }
}

/// The chains of a cluster, newest full first. A chain is cut at its
/// first gap (a segment lost): what follows a gap cannot be replayed.
pub fn chains(fulls: &[BackupObject], deltas: Vec<DeltaObject>) -> Vec<Chain> {
    let mut by_full: BTreeMap<i64, Vec<DeltaObject>> = BTreeMap::new();
    for d in deltas {
        by_full.entry(d.name.full_unix).or_default().push(d);
    }
    let mut out = Vec::new();
    for full in fulls {
        let Some(mut segs) = by_full.remove(&full.created_at_unix) else {
            continue;
        };
        segs.sort_by_key(|a| a.name);
        let mut keep = 0;
        for (i, s) in segs.iter().enumerate() {
            if i > 0 && s.name.from_rev != segs[i - 1].name.to_rev + 1 {
                break;
            }
            keep = i + 1;
        }
        segs.truncate(keep);
        out.push(Chain {
            full: full.clone(),
            segments: segs,
        });
    }
    out
}

/// Why one chain could not serve a target that an older one may.
enum Attempt {
    /// Its snapshot already holds changes after the target.
    TooNew(String),
    Failed(PitrError),
}

impl<E: Into<PitrError>> From<E> for Attempt {
    fn from(e: E) -> Self {
        Attempt::Failed(e.into())
    }
}

/// Restores `target` of the cluster whose store prefix is `cluster_uuid`
/// into a snapshot file at `out`.
///
/// # Errors
/// [`PitrError::NotCovered`] naming the restorable range, or the step that
/// failed. Nothing is left at `out` on error.
pub async fn restore_point(
    store: &BackupStore,
    cluster_uuid: &str,
    identity: &Identity,
    target: Target,
    settings: &DrillSettings,
    out: &Path,
) -> Result<PitrReport, PitrError> {
    let fulls = store.list(cluster_uuid).await?;
    let all = chains(&fulls, store.list_deltas(cluster_uuid).await?);
    let mut why_not = Vec::new();
    for chain in all.iter().filter(|c| c.covers(target)) {
        match attempt(store, chain, identity, target, settings, out).await {
            Ok(report) => return Ok(report),
            Err(Attempt::TooNew(why)) => why_not.push(why),
            Err(Attempt::Failed(e)) => return Err(e),
        }
    }
    let newest = all
        .iter()
        .filter_map(|c| c.reach().map(|(rev, ms)| (ms, rev, c.full.created_at_unix)))
        .max();
    let oldest = all
        .iter()
        .filter(|c| !c.segments.is_empty())
        .map(|c| c.full.created_at_unix)
        .min();
    let mut msg = format!(
        "no full backup with a delta chain reaches {}",
        describe(target)
    );
    match (oldest, newest) {
        (Some(old), Some((ms, rev, _))) => msg.push_str(&format!(
            "; restorable: from the full backup at {} up to revision {rev} at {}",
            rfc3339(old * 1000),
            rfc3339(ms)
        )),
        _ => {
            msg.push_str("; the cluster has no delta chain (is backupconfiguration.continuous on?)")
        }
    }
    if !why_not.is_empty() {
        msg.push_str(&format!(" ({})", why_not.join("; ")));
    }
    Err(PitrError::NotCovered(msg))
}

fn describe(target: Target) -> String {
    match target {
        Target::Revision(n) => format!("revision {n}"),
        Target::TimeMs(t) => rfc3339(t),
    }
}

/// Unix ms as RFC 3339 UTC, to the millisecond.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// Reads `--to-time`: RFC 3339 (`2026-11-30T14:02:00Z`, offsets too).
///
/// # Errors
/// A message naming the expected form.
pub fn parse_time(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|d| d.timestamp_millis())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-11-30T14:02:00Z: {e}"))
}

async fn attempt(
    store: &BackupStore,
    chain: &Chain,
    identity: &Identity,
    target: Target,
    settings: &DrillSettings,
    out: &Path,
) -> Result<PitrReport, Attempt> {
    let (ws, mut client, mut report) =
        replay(store, chain, identity, Some(target), settings).await?;
    report.sha256 = save_snapshot(&mut client, out).await?;
    drop(ws);
    Ok(report)
}

/// Drills the newest point of `chain`: its full backup restored and every
/// segment listed in it replayed (a drill proves the newest restorable
/// point, not only the full backup). Returns what the restored etcd holds
/// and the point reached; no snapshot file is kept.
///
/// # Errors
/// The step that failed; a segment that does not open or decode is named.
pub async fn drill_chain(
    store: &BackupStore,
    chain: &Chain,
    identity: &Identity,
    settings: &DrillSettings,
) -> Result<(DrillReport, PitrReport), PitrError> {
    let (ws, mut client, report) = match replay(store, chain, identity, None, settings).await {
        Ok(r) => r,
        Err(Attempt::Failed(e)) => return Err(e),
        Err(Attempt::TooNew(why)) => return Err(PitrError::Replay(why)),
    };
    let measured = measure(&mut client).await?;
    drop(ws);
    Ok((measured, report))
}

/// The chain's full backup restored into a throwaway etcd and its
/// revisions replayed up to `target` (to its end when `None`). The
/// workspace owns the etcd: dropping it ends the etcd.
async fn replay(
    store: &BackupStore,
    chain: &Chain,
    identity: &Identity,
    target: Option<Target>,
    settings: &DrillSettings,
) -> Result<(Workspace, Client, PitrReport), Attempt> {
    let (ws, mut client) = start_restored(store, &chain.full.key, identity, settings).await?;
    let replay = |e: etcd_client::Error| PitrError::Replay(e.to_string());
    let snap_rev = revision(&mut client).await.map_err(replay)?;
    if let Some(Target::Revision(n)) = target {
        if snap_rev > n {
            return Err(Attempt::TooNew(format!(
                "the full backup at {} already holds revision {snap_rev}",
                rfc3339(chain.full.created_at_unix * 1000)
            )));
        }
    }
    let leases: HashSet<i64> = client
        .leases()
        .await
        .map_err(replay)?
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    // The restored etcd would expire its leases (and delete their keys,
    // a revision of its own) during a long replay.
    let keep = tokio::spawn(keep_leases_alive(
        client.clone(),
        leases.iter().copied().collect(),
    ));
    let _stop_keep = AbortOnDrop(keep);
    let mut report = PitrReport {
        full_unix: chain.full.created_at_unix,
        snapshot_revision: snap_rev,
        revision: snap_rev,
        point_ms: chain.full.created_at_unix * 1000,
        ..PitrReport::default()
    };
    'segments: for (i, seg) in chain.segments.iter().enumerate() {
        let segment = read_segment(store, seg, identity).await?;
        report.segments_read += 1;
        if i == 0 && segment.header.base_rev > snap_rev {
            return Err(Attempt::Failed(PitrError::Replay(format!(
                "the chain starts after revision {} but its full snapshot holds revision {snap_rev}: the revisions between are missing",
                segment.header.base_rev
            ))));
        }
        for rev in &segment.revisions {
            if rev.rev <= snap_rev {
                if let Some(Target::TimeMs(t)) = target {
                    if rev.at_ms > t {
                        return Err(Attempt::TooNew(format!(
                            "the full backup at {} already holds revision {} received at {}",
                            rfc3339(chain.full.created_at_unix * 1000),
                            rev.rev,
                            rfc3339(rev.at_ms)
                        )));
                    }
                }
                continue;
            }
            let past = match target {
                Some(Target::Revision(n)) => rev.rev > n,
                Some(Target::TimeMs(t)) => rev.at_ms > t,
                None => false,
            };
            if past {
                break 'segments;
            }
            apply(&mut client, rev, &leases, &mut report).await?;
        }
        if target.is_none() {
            // The whole chain: its point is where its last segment ends,
            // also when that segment only covers time.
            report.point_ms = report.point_ms.max(seg.name.until_ms);
        }
    }
    let now = revision(&mut client).await.map_err(replay)?;
    if now != report.revision {
        return Err(Attempt::Failed(PitrError::Replay(format!(
            "the restored etcd is at revision {now}, the replay at {}",
            report.revision
        ))));
    }
    if let Some(Target::Revision(n)) = target {
        if report.revision != n {
            return Err(Attempt::Failed(PitrError::Replay(format!(
                "the chain ends at revision {} before revision {n}",
                report.revision
            ))));
        }
    }
    report.point = rfc3339(report.point_ms);
    Ok((ws, client, report))
}

async fn revision(client: &mut Client) -> Result<i64, etcd_client::Error> {
    let resp = client
        .get(vec![0u8], Some(GetOptions::new().with_count_only()))
        .await?;
    Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
}

async fn read_segment(
    store: &BackupStore,
    seg: &DeltaObject,
    identity: &Identity,
) -> Result<format::Segment, PitrError> {
    let bad = |detail: String| PitrError::Segment {
        key: seg.key.clone(),
        detail,
    };
    let sealed = store.get_delta(&seg.key).await?;
    let plain = omni_backup::delta::open(sealed, identity.clone(), &seg.key)
        .await
        .map_err(|e| bad(e.to_string()))?;
    let s = format::decode(&plain).map_err(|e| bad(e.to_string()))?;
    let h = &s.header;
    if (h.from_rev, h.to_rev, h.until_ms) != (seg.name.from_rev, seg.name.to_rev, seg.name.until_ms)
    {
        return Err(bad(format!(
            "its header says revisions {}..={} until {}, its name otherwise",
            h.from_rev, h.to_rev, h.until_ms
        )));
    }
    Ok(s)
}

/// One revision as one transaction; etcd must answer with that revision.
async fn apply(
    client: &mut Client,
    rev: &Revision,
    leases: &HashSet<i64>,
    report: &mut PitrReport,
) -> Result<(), PitrError> {
    let mut ops = Vec::with_capacity(rev.ops.len());
    for op in &rev.ops {
        ops.push(match op {
            Op::Put { key, value, lease } => {
                let opts = if *lease != 0 && leases.contains(lease) {
                    Some(PutOptions::new().with_lease(*lease))
                } else {
                    if *lease != 0 {
                        report.leases_dropped += 1;
                    }
                    None
                };
                TxnOp::put(key.clone(), value.clone(), opts)
            }
            Op::Delete { key } => TxnOp::delete(key.clone(), None),
        });
    }
    let resp = client
        .txn(Txn::new().and_then(ops))
        .await
        .map_err(|e| PitrError::Replay(format!("revision {}: {e}", rev.rev)))?;
    let got = resp.header().map(|h| h.revision()).unwrap_or(0);
    if got != rev.rev {
        return Err(PitrError::Replay(format!(
            "revision {} came out as revision {got}: the restored etcd changed on its own",
            rev.rev
        )));
    }
    report.revision = rev.rev;
    report.point_ms = rev.at_ms;
    report.replayed_revisions += 1;
    report.replayed_events += rev.ops.len() as u64;
    Ok(())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn keep_leases_alive(mut client: Client, ids: Vec<i64>) {
    let mut keepers = Vec::new();
    for id in ids {
        if let Ok(k) = client.lease_keep_alive(id).await {
            keepers.push(k);
        }
    }
    loop {
        for (keeper, stream) in &mut keepers {
            if keeper.keep_alive().await.is_ok() {
                let _ = stream.message().await;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Streams the restored etcd's snapshot to `out`, checking its trailer.
async fn save_snapshot(client: &mut Client, out: &Path) -> Result<String, PitrError> {
    let fail = |e: String| PitrError::Snapshot(e);
    let dir = out.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| fail(e.to_string()))?;
    let mut stream = client.snapshot().await.map_err(|e| fail(e.to_string()))?;
    let mut verifier = TrailerVerifier::new();
    while let Some(resp) = stream.message().await.map_err(|e| fail(e.to_string()))? {
        verifier.update(resp.blob());
        tmp.write_all(resp.blob())
            .map_err(|e| fail(e.to_string()))?;
    }
    let sha = verifier.finish().map_err(|e| fail(e.to_string()))?;
    tmp.as_file().sync_all().map_err(|e| fail(e.to_string()))?;
    tmp.persist(out).map_err(|e| fail(e.to_string()))?;
    Ok(sha)
}

#[cfg(test)]
mod tests {
    use super::*;
    use omni_backup::delta::keys::SegmentName;

    fn full(at: i64) -> BackupObject {
        BackupObject {
            key: omni_backup::keys::format_key("c", at).unwrap(),
            cluster_uuid: "c".into(),
            created_at_unix: at,
            size: 1,
        }
    }

    fn seg(full_unix: i64, from_rev: i64, to_rev: i64, until_ms: i64) -> DeltaObject {
        let name = SegmentName {
            full_unix,
            from_rev,
            to_rev,
            until_ms,
        };
        DeltaObject {
            key: omni_backup::delta::keys::segment_key("c", &name).unwrap(),
            name,
            size: 1,
        }
    }

    #[test]
    fn chains_stop_at_a_gap_and_need_their_full_backup() {
        let fulls = [full(2000), full(1000)];
        let deltas = vec![
            seg(1000, 11, 20, 1_010_000),
            seg(1000, 21, 30, 1_020_000),
            seg(1000, 41, 50, 1_040_000), // 31..=40 lost
            seg(2000, 101, 110, 2_010_000),
            seg(3000, 201, 210, 3_010_000), // its full is gone
        ];
        let c = chains(&fulls, deltas);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].full.created_at_unix, 2000);
        assert_eq!(c[1].reach(), Some((30, 1_020_000)));
        assert!(c[1].covers(Target::Revision(10)) && c[1].covers(Target::Revision(30)));
        assert!(!c[1].covers(Target::Revision(45)));
        assert!(c[1].covers(Target::TimeMs(1_015_000)));
        assert!(!c[1].covers(Target::TimeMs(999_000)) && !c[1].covers(Target::TimeMs(1_030_000)));
        assert!(!c[0].covers(Target::Revision(50)));
    }

    #[test]
    fn times_print_to_the_millisecond() {
        assert_eq!(rfc3339(1_701_184_522_042), "2023-11-28T15:15:22.042Z");
        assert_eq!(
            parse_time("2023-11-28T16:15:22.042+01:00"),
            Ok(1_701_184_522_042)
        );
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }
}

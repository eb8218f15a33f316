//! A snapshot of a cluster at a point in time (`--to-revision`,
//! `--to-time`): the server restores the newest full backup before it into
//! a throwaway etcd, replays the delta chain up to it, and sends the
//! result, which is written and verified like a backup download.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;

use super::super::Context;
use super::fetch::{write_atomically, Mode};
use crate::args::PointsArgs;

/// The server's account of the restore.
pub use omni_resources::pitr::PitrReport as Report;
use omni_resources::pitr::REPORT_HEADER;

/// Where to restore to, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Point {
    Revision(i64),
    Time(String),
}

impl Point {
    /// `--to-revision` or `--to-time`, if either was given.
    pub fn of(revision: Option<i64>, time: Option<&str>) -> Option<Point> {
        match (revision, time) {
            (Some(n), _) => Some(Point::Revision(n)),
            (None, Some(t)) => Some(Point::Time(t.to_string())),
            (None, None) => None,
        }
    }

    fn query(&self) -> String {
        match self {
            Point::Revision(n) => format!("revision={n}"),
            // '+' of an offset would read as a space.
            Point::Time(t) => format!("time={}", t.trim().replace('+', "%2B")),
        }
    }
}

/// Writes the snapshot of `cluster` at `point` to `path` (trailer verified;
/// nothing left at `path` on failure).
pub async fn fetch_point(
    ctx: &Context,
    cluster: &str,
    point: &Point,
    path: &Path,
) -> anyhow::Result<(Report, String)> {
    let url = format!(
        "/api/v1/etcd-restore-points/{cluster}/snapshot?{}",
        point.query()
    );
    let stream = ctx
        .client()?
        .get_stream(&url)
        .await
        .with_context(|| format!("restoring cluster {cluster} to a point in time"))?;
    let report: Report = stream
        .headers
        .get(REPORT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let size = stream.content_length.unwrap_or(0);
    let sha = write_atomically(path, stream.body, Mode::Verified, size)
        .await
        .with_context(|| format!("cluster {cluster} at {point:?}"))?
        .unwrap_or_default();
    Ok((report, sha))
}

/// What the user must know about a replayed snapshot, in plain words.
pub fn describe(cluster: &str, r: &Report) -> String {
    format!(
        "cluster {cluster} at revision {} (as omni had it at {}): full backup {cluster}-{} (revision {}) \
         plus {} revisions ({} changes) replayed from {} delta segments\n\
         a replay keeps keys, values and revision numbers; it cannot keep leases granted after that full backup \
         ({} keys restored without their lease) nor the compaction history",
        r.revision,
        r.point,
        r.full_unix,
        r.snapshot_revision,
        r.replayed_revisions,
        r.replayed_events,
        r.segments_read,
        r.leases_dropped,
    )
}

/// `omnictl etcd-backup points`: the cluster's chains as a table (or the
/// server's JSON), newest restorable point and recovery point first.
pub async fn points(ctx: &Context, args: &PointsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    use futures::StreamExt;
    let cluster = &args.cluster;
    let mut stream = ctx
        .client()?
        .get_stream(&format!("/api/v1/etcd-restore-points/{cluster}"))
        .await
        .with_context(|| format!("reading the restore points of cluster {cluster}"))?
        .body;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk?);
    }
    let v: serde_json::Value =
        serde_json::from_slice(&body).context("unexpected restore points answer")?;
    if args.output == "json" {
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    match v.get("newest").filter(|n| !n.is_null()) {
        Some(n) => writeln!(
            out,
            "newest restorable point: revision {} at {} (recovery point {:.1} s)",
            n["revision"],
            n["time"].as_str().unwrap_or("?"),
            n["rposeconds"].as_f64().unwrap_or(0.0)
        )?,
        None => writeln!(
            out,
            "cluster {cluster} has no delta chain (is backupconfiguration.continuous on?)"
        )?,
    }
    writeln!(
        out,
        "{:<32} {:<24} {:>12} {:>12} {:<24} {:>8} {:>12}",
        "FULL BACKUP", "FULL AT", "FROM REV", "TO REV", "UNTIL", "SEGMENTS", "BYTES"
    )?;
    for c in v["chains"].as_array().into_iter().flatten() {
        let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
        writeln!(
            out,
            "{:<32} {:<24} {:>12} {:>12} {:<24} {:>8} {:>12}",
            s("backup"),
            s("fullat"),
            c["fromrevision"],
            c["torevision"],
            s("until"),
            c["segments"],
            c["bytes"]
        )?;
    }
    Ok(())
}

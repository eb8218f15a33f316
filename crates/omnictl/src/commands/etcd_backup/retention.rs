//! `omnictl etcd-backup retention --cluster NAME [--keep-* N ...]`: which
//! backups a policy would delete. A dry run: nothing is deleted. Without
//! `--keep-*` flags the cluster's own policy is shown, or the server's
//! default as the retention controller last applied it. Backups marked to
//! keep are kept, as the controller does.

use std::collections::HashSet;
use std::io::Write;

use anyhow::{bail, Context as _};
use omni_resources::retention::{civil_from_days, plan, RetentionPolicy, MAX_KEEP};
use omni_resources::specs::backup::EtcdBackupSpec;
use omni_resources::specs::backup_retention::{source, EtcdBackupRetentionStatusSpec};
use omni_resources::specs::cluster::ClusterSpec;
use omni_resources::specs::Kind;
use omni_resources::{LABEL_CLUSTER, NS_DEFAULT, NS_EPHEMERAL, NS_EXTERNAL};

use super::super::Context;
use crate::args::RetentionArgs;

pub async fn run(ctx: &Context, args: &RetentionArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let name = &args.cluster;
    let status = match client
        .get(EtcdBackupRetentionStatusSpec::TYPE, NS_EPHEMERAL, name)
        .await
    {
        Ok(r) => Some(r.spec_as::<EtcdBackupRetentionStatusSpec>()?),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e).context("reading the retention status"),
    };
    let (policy, from) = match given_policy(args)? {
        Some(p) => (p, "given"),
        None => {
            let cluster = client
                .get(ClusterSpec::TYPE, NS_DEFAULT, name)
                .await
                .with_context(|| format!("reading cluster {name}"))?;
            let spec: ClusterSpec = cluster.spec_as()?;
            match (spec.retention_policy(), &status) {
                (Some(p), _) => (p, "the cluster's"),
                (None, Some(s)) if s.policysource == source::SERVER => (s.policy, "the server default"),
                (None, _) => bail!(
                    "cluster {name} sets no retention policy and the server default is not known yet \
                     (no retention run recorded); pass --keep-last/--keep-hourly/--keep-daily/--keep-weekly/--keep-monthly"
                ),
            }
        }
    };
    let selector = format!("{LABEL_CLUSTER}={name}");
    let backups = client
        .list(EtcdBackupSpec::TYPE, NS_EXTERNAL, Some(&selector))
        .await
        .with_context(|| format!("listing the backups of cluster {name}"))?;
    let kept: HashSet<&str> = status
        .as_ref()
        .map(|s| s.kept.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let mut times = Vec::new();
    let mut pinned = HashSet::new();
    for b in &backups {
        let spec: EtcdBackupSpec = b.spec_as()?;
        times.push(spec.createdat.seconds);
        if kept.contains(b.metadata.id.as_str()) {
            pinned.insert(spec.createdat.seconds);
        }
    }
    let decisions = plan(&times, &policy, &pinned);
    writeln!(
        out,
        "policy: {policy} ({from}); dry run, nothing is deleted"
    )?;
    writeln!(
        out,
        "{:<40} {:<21} {:<7} REASON",
        "ID", "CREATED AT (UTC)", "ACTION"
    )?;
    let mut deleted = 0;
    for d in &decisions {
        let id = format!("{name}-{}", d.at);
        let (action, why) = if d.keep() {
            let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
            ("keep", reasons.join(", "))
        } else {
            deleted += 1;
            ("delete", String::new())
        };
        let line = format!("{id:<40} {:<21} {action:<7} {why}", utc(d.at));
        writeln!(out, "{}", line.trim_end())?;
    }
    writeln!(out, "{}", summary(decisions.len(), deleted))?;
    Ok(())
}

fn summary(total: usize, deleted: usize) -> String {
    let noun = if total == 1 { "backup" } else { "backups" };
    format!(
        "{total} {noun}: {} kept, {deleted} would be deleted",
        total - deleted
    )
}

/// The policy from `--keep-*` flags; `None` when none is given.
fn given_policy(args: &RetentionArgs) -> anyhow::Result<Option<RetentionPolicy>> {
    let flags = [
        ("--keep-last", args.keep_last),
        ("--keep-hourly", args.keep_hourly),
        ("--keep-daily", args.keep_daily),
        ("--keep-weekly", args.keep_weekly),
        ("--keep-monthly", args.keep_monthly),
    ];
    if flags.iter().all(|(_, v)| v.is_none()) {
        return Ok(None);
    }
    for (flag, v) in flags {
        if v.is_some_and(|n| i64::from(n) > MAX_KEEP) {
            bail!("{flag}: must be at most {MAX_KEEP}");
        }
    }
    Ok(Some(RetentionPolicy {
        keeplast: args.keep_last.unwrap_or(0),
        keephourly: args.keep_hourly.unwrap_or(0),
        keepdaily: args.keep_daily.unwrap_or(0),
        keepweekly: args.keep_weekly.unwrap_or(0),
        keepmonthly: args.keep_monthly.unwrap_or(0),
    }))
}

/// `2023-12-10T00:00:00Z`.
fn utc(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
    let s = unix.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3_600,
        s % 3_600 / 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_in_words() {
        assert_eq!(summary(1, 0), "1 backup: 1 kept, 0 would be deleted");
        assert_eq!(summary(2, 1), "2 backups: 1 kept, 1 would be deleted");
        assert_eq!(summary(0, 0), "0 backups: 0 kept, 0 would be deleted");
    }

    #[test]
    fn times_print_in_utc() {
        assert_eq!(utc(1_702_166_400), "2023-12-10T00:00:00Z");
        assert_eq!(utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}

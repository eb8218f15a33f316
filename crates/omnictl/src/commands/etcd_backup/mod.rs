//! `omnictl etcd-backup download|export-key|restore|retention`: get a backup
//! out of omni as a file that stock `etcdutl snapshot restore` accepts (or
//! restore it right away), the key to open stored objects without omni, and
//! a dry run of a retention policy.

mod fetch;
mod point;
mod restore;
mod retention;

use std::io::Write;

use anyhow::{bail, Context as _};
use omni_resources::specs::backup::BackupDataSpec;
use omni_resources::specs::cluster::ClusterSpec;
use omni_resources::specs::Kind;
use omni_resources::NS_DEFAULT;

use super::{note, Context};
use crate::args::{DownloadArgs, EtcdBackupCommand, ExportKeyArgs, VerifyArgs};

pub async fn run(ctx: &Context, cmd: EtcdBackupCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        EtcdBackupCommand::Download(args) => download(ctx, &args, out).await,
        EtcdBackupCommand::Verify(args) => verify(ctx, &args, out).await,
        EtcdBackupCommand::ExportKey(args) => export_key(ctx, &args, out).await,
        EtcdBackupCommand::Restore(args) => restore::run(ctx, &args, out).await,
        EtcdBackupCommand::Retention(args) => retention::run(ctx, &args, out).await,
        EtcdBackupCommand::Points(args) => point::points(ctx, &args, out).await,
    }
}

async fn download(ctx: &Context, args: &DownloadArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if let Some(p) = point::Point::of(args.to_revision, args.to_time.as_deref()) {
        let (report, sha) = point::fetch_point(ctx, &args.cluster, &p, &args.output).await?;
        writeln!(
            out,
            "downloaded {} (sha256 {sha} verified)",
            args.output.display()
        )?;
        writeln!(out, "{}", point::describe(&args.cluster, &report))?;
        return Ok(());
    }
    let got = fetch::fetch(
        ctx,
        &args.cluster,
        args.snapshot.as_deref(),
        args.encrypted,
        &args.output,
    )
    .await?;
    match got.sha256 {
        Some(sha) => writeln!(
            out,
            "downloaded {} to {} (sha256 {sha} verified)",
            got.id,
            args.output.display()
        )?,
        None => writeln!(
            out,
            "downloaded {} (encrypted) to {}",
            got.id,
            args.output.display()
        )?,
    }
    Ok(())
}

async fn verify(ctx: &Context, args: &VerifyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let backup = fetch::choose(ctx, &args.cluster, args.snapshot.as_deref()).await?;
    let id = backup.metadata.id;
    let verdict = fetch::verify(ctx, &id)
        .await
        .with_context(|| format!("backup {id}"))?;
    for failed in &verdict.failedcopies {
        if verdict.ok || failed.store != verdict.store {
            eprintln!(
                "warning: backup {id}: the copy in store {:?} failed its check: {}",
                failed.store, failed.error
            );
        }
    }
    if !verdict.ok {
        bail!("backup {id}: integrity check failed: {}", verdict.error);
    }
    if !verdict.failedcopies.is_empty() {
        eprintln!(
            "backup {id}: the copy in store {:?} is intact",
            verdict.store
        );
    }
    writeln!(
        out,
        "backup {id} is intact: {} bytes, sha256 {}",
        verdict.bytes, verdict.sha256
    )?;
    Ok(())
}

/// Writes the cluster's age identity in age's key file format (0600), so
/// `age -d -i FILE` opens a stored object: `age -d -i key.txt obj | zstd -d`.
async fn export_key(
    ctx: &Context,
    args: &ExportKeyArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    // Checked first: a refused export changes nothing and asks nothing.
    if !args.force && args.output.symlink_metadata().is_ok() {
        bail!(
            "{} exists; pass --force to overwrite it",
            args.output.display()
        );
    }
    let client = ctx.client()?;
    let cluster = &args.cluster;
    let res = match client.get(BackupDataSpec::TYPE, NS_DEFAULT, cluster).await {
        Ok(res) => res,
        // The key outlives its cluster, so ask which of the two is missing.
        Err(e) if e.is_not_found() => {
            match client.get(ClusterSpec::TYPE, NS_DEFAULT, cluster).await {
                Ok(_) => bail!(
                    "cluster {cluster} has no backup key yet: it is made with the cluster's first backup"
                ),
                Err(e) if e.is_not_found() => bail!("cluster {cluster} does not exist"),
                Err(e) => return Err(e.into()),
            }
        }
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("cannot read the backup key of cluster {cluster}")))
        }
    };
    let spec: BackupDataSpec = res.spec_as().context("unexpected backup data")?;
    if spec.ageidentity.is_empty() || spec.ageidentity == "<redacted>" {
        bail!(
            "the backup key of cluster {} is visible to admins only",
            args.cluster
        );
    }
    let text = format!(
        "# cluster: {}\n# cluster uuid: {}\n# public key: {}\n{}\n",
        args.cluster, spec.clusteruuid, spec.agerecipient, spec.ageidentity
    );
    crate::config::write_private_file(&args.output, &text)?;
    writeln!(
        out,
        "wrote the backup key of cluster {} to {}",
        args.cluster,
        args.output.display()
    )?;
    note("keep it safe: it opens every backup of this cluster");
    Ok(())
}

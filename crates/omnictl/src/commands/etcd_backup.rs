//! `omnictl etcd-backup download|export-key`: get a backup out of omni as a
//! file that stock `etcdutl snapshot restore` accepts, or the key to open
//! stored objects without omni.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use futures::StreamExt;
use omni_backup::digest::TrailerVerifier;
use omni_resources::specs::backup::{BackupDataSpec, EtcdBackupSpec};
use omni_resources::specs::Kind;
use omni_resources::{Resource, LABEL_CLUSTER, NS_DEFAULT, NS_EXTERNAL};

use super::{note, Context};
use crate::args::{DownloadArgs, EtcdBackupCommand, ExportKeyArgs};

pub async fn run(ctx: &Context, cmd: EtcdBackupCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        EtcdBackupCommand::Download(args) => download(ctx, &args, out).await,
        EtcdBackupCommand::ExportKey(args) => export_key(ctx, &args, out).await,
    }
}

/// Picks the backup: by ID or snapshot name, or the newest.
pub async fn choose(
    ctx: &Context,
    cluster: &str,
    snapshot: Option<&str>,
) -> anyhow::Result<Resource> {
    let selector = format!("{LABEL_CLUSTER}={cluster}");
    let backups = ctx
        .client()?
        .list(EtcdBackupSpec::TYPE, NS_EXTERNAL, Some(&selector))
        .await
        .with_context(|| format!("listing the backups of cluster {cluster}"))?;
    let found = match snapshot {
        None => backups.into_iter().next(),
        Some(want) => backups.into_iter().find(|b| {
            b.metadata.id == want || b.spec.get("snapshot").and_then(|s| s.as_str()) == Some(want)
        }),
    };
    match (found, snapshot) {
        (Some(b), _) => Ok(b),
        (None, None) => bail!("cluster {cluster} has no backups"),
        (None, Some(s)) => bail!("cluster {cluster} has no backup {s:?} (see omnictl get etcdbackup --selector {selector})"),
    }
}

async fn download(ctx: &Context, args: &DownloadArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let backup = choose(ctx, &args.cluster, args.snapshot.as_deref()).await?;
    let id = backup.metadata.id.clone();
    let size = backup
        .spec
        .get("size")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let path = if args.encrypted { "object" } else { "snapshot" };
    let stream = ctx
        .client()?
        .get_stream(&format!("/api/v1/etcd-backups/{id}/{path}"))
        .await?;
    let info = write_atomically(&args.output, stream.body, !args.encrypted, size)
        .await
        .with_context(|| format!("backup {id}"))?;
    match info {
        Some(sha) => writeln!(
            out,
            "downloaded {id} to {} (sha256 {sha} verified)",
            args.output.display()
        )?,
        None => writeln!(
            out,
            "downloaded {id} (encrypted) to {}",
            args.output.display()
        )?,
    }
    Ok(())
}

/// Streams into a temp file beside `path`, verifying etcd's SHA-256
/// trailer when `verify`; renames only when everything checked out, so a
/// failed download leaves nothing at `path`.
async fn write_atomically(
    path: &Path,
    mut body: futures::stream::BoxStream<'static, Result<bytes::Bytes, omni_client::ClientError>>,
    verify: bool,
    size_hint: u64,
) -> anyhow::Result<Option<String>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".omnictl-download-")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    let mut verifier = TrailerVerifier::new();
    let progress = Progress::new(size_hint);
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("download interrupted")?;
        if verify {
            verifier.update(&chunk);
        }
        tmp.write_all(&chunk).context("writing the snapshot")?;
        written += chunk.len() as u64;
        progress.set(written);
    }
    progress.finish();
    let sha = if verify {
        Some(
            verifier
                .finish()
                .context("integrity check failed; nothing was written")?,
        )
    } else {
        None
    };
    tmp.as_file().sync_all().context("syncing the snapshot")?;
    tmp.persist(path)
        .with_context(|| format!("moving the snapshot to {}", path.display()))?;
    Ok(sha)
}

/// A progress bar on a terminal, nothing otherwise.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(total: u64) -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bytes} downloaded ({bytes_per_sec}) {spinner}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Progress(Some(bar))
    }

    fn set(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.set_position(n);
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// Writes the cluster's age identity in age's key file format (0600), so
/// `age -d -i FILE` opens a stored object: `age -d -i key.txt obj | zstd -d`.
async fn export_key(
    ctx: &Context,
    args: &ExportKeyArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let res = ctx
        .client()?
        .get(BackupDataSpec::TYPE, NS_DEFAULT, &args.cluster)
        .await
        .with_context(|| format!("reading the backup key of cluster {}", args.cluster))?;
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

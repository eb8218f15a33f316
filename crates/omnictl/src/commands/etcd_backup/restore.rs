//! `omnictl etcd-backup restore`: one command per member to bring a lost
//! cluster back. Downloads the backup into a temp dir beside the data dir,
//! checking its SHA-256 trailer on the bytes as they are written, hands it
//! to `etcdutl snapshot restore`, and removes the temp copy whatever
//! happens.
//!
//! etcdutl is told `--skip-hash-check`: its own check is a second read and
//! hash of the whole file after its copy, serial, and at 1 GiB it was
//! 1.3–2.6 s of a 3.5–4.6 s restore (scripts/bench-backup.sh). The check it
//! skips is the very one done here while the file was written (the same
//! trailer, the same SHA-256 of the same bytes), and etcdutl still cuts the
//! trailer off.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

use super::super::Context;
use super::fetch::fetch_scratch;
use super::point::{describe, fetch_point, Point};
use crate::args::RestoreArgs;

pub async fn run(ctx: &Context, args: &RestoreArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    check_which(args)?;
    let etcdutl = find_etcdutl(args.etcdutl.as_deref())?;
    check_member(args)?;
    let existed = check_data_dir(&args.data_dir)?;
    let parent = match args.data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Removed again (when still empty) unless the restore succeeds.
    let mut made = MadeDirs::create(&parent)?;
    // Beside the data dir: same file system, and gone on any return.
    let tmp = tempfile::Builder::new()
        .prefix(".omnictl-restore-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a temp dir in {}", parent.display()))?;
    let snapshot = tmp.path().join("snapshot.db");
    let point = Point::of(args.to_revision, args.to_time.as_deref());
    let (what, sha, replay) = match &point {
        Some(p) => {
            let (report, sha) = fetch_point(ctx, &args.cluster, p, &snapshot).await?;
            let what = format!("cluster {} at revision {}", args.cluster, report.revision);
            (what, sha, Some(describe(&args.cluster, &report)))
        }
        None => {
            let got =
                fetch_scratch(ctx, &args.cluster, args.snapshot.as_deref(), &snapshot).await?;
            (
                format!("backup {}", got.id),
                got.sha256.unwrap_or_default(),
                None,
            )
        }
    };

    let mut cmd = Command::new(&etcdutl);
    cmd.args(["snapshot", "restore", "--skip-hash-check"])
        .arg(&snapshot)
        .arg("--data-dir")
        .arg(&args.data_dir)
        .args(["--name", &args.name])
        .args(["--initial-cluster", &args.initial_cluster])
        .args([
            "--initial-advertise-peer-urls",
            &args.initial_advertise_peer_urls,
        ]);
    if let Some(token) = &args.initial_cluster_token {
        cmd.args(["--initial-cluster-token", token]);
    }
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", etcdutl.display()))?;
    tmp.close().context("removing the downloaded snapshot")?;
    if !output.status.success() {
        // It was new or empty (checked above): leave nothing half-made.
        clear(&args.data_dir, existed);
        bail!(
            "etcdutl snapshot restore failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    made.keep();
    writeln!(
        out,
        "restored {what} (sha256 {sha} verified) into {} as member {}",
        args.data_dir.display(),
        args.name
    )?;
    if let Some(replay) = replay {
        writeln!(out, "{replay}")?;
    }
    Ok(())
}

/// The directories `create_dir_all` made for the data dir's parent, so a
/// failed restore leaves the file system as it found it.
struct MadeDirs {
    made: Vec<PathBuf>,
}

impl MadeDirs {
    fn create(dir: &Path) -> anyhow::Result<Self> {
        let mut made: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
            .map(Path::to_path_buf)
            .collect();
        made.reverse();
        // Built before creating, so a partial `create_dir_all` is undone too.
        let guard = MadeDirs { made };
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(guard)
    }

    fn keep(&mut self) {
        self.made.clear();
    }
}

impl Drop for MadeDirs {
    fn drop(&mut self) {
        // Deepest first; `remove_dir` leaves a directory someone filled.
        for d in self.made.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// `--etcdutl` as given (a path, or a name on PATH), else `etcdutl` on PATH.
fn find_etcdutl(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let want = given.unwrap_or(Path::new("etcdutl"));
    if want.components().count() > 1 {
        if want.is_file() {
            return Ok(want.to_path_buf());
        }
        bail!("--etcdutl {}: no such file", want.display());
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(want))
            .find(|p| p.is_file())
    });
    found.ok_or_else(|| match given {
        Some(_) => anyhow::anyhow!("--etcdutl {}: not found on PATH", want.display()),
        None => anyhow::anyhow!(
            "etcdutl not found on PATH: install etcdutl (it ships with etcd 3.5 and later) or pass --etcdutl PATH"
        ),
    })
}

/// Members restored from different backups would not form one cluster, and
/// the DR guide warns against `--latest` while backups keep coming: which
/// backup is never implied.
fn check_which(args: &RestoreArgs) -> anyhow::Result<()> {
    let point = args.to_revision.is_some() || args.to_time.is_some();
    if args.snapshot.is_none() && !args.latest && !point {
        bail!("say which backup to restore: --snapshot ID (the same on every member), --latest, or a point in time with --to-revision N (the same on every member) or --to-time TIME");
    }
    Ok(())
}

/// The member must be in `--initial-cluster`, with its own peer URL.
fn check_member(args: &RestoreArgs) -> anyhow::Result<()> {
    let mut found = false;
    for entry in args.initial_cluster.split(',') {
        let Some((name, url)) = entry.split_once('=') else {
            bail!("--initial-cluster: {entry:?} is not NAME=URL");
        };
        if name == args.name {
            found = true;
            let own: Vec<&str> = args.initial_advertise_peer_urls.split(',').collect();
            if !own.contains(&url) {
                bail!(
                    "--initial-cluster gives member {name} the peer URL {url}, but --initial-advertise-peer-urls is {}",
                    args.initial_advertise_peer_urls
                );
            }
        }
    }
    if !found {
        bail!(
            "--name {} is not a member in --initial-cluster {}",
            args.name,
            args.initial_cluster
        );
    }
    Ok(())
}

/// etcdutl restores into a new or empty directory only. Returns whether
/// the directory exists (empty).
fn check_data_dir(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "--data-dir {} exists and is not empty; restore into a new directory",
                    dir.display()
                );
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("--data-dir {}", dir.display())),
    }
}

/// Removes what a failed restore left: the dir itself when it was new, its
/// contents when it existed (it may be a mount point).
fn clear(dir: &Path, existed: bool) {
    if !existed {
        let _ = std::fs::remove_dir_all(dir);
        return;
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let _ = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str, cluster: &str, peer: &str) -> RestoreArgs {
        RestoreArgs {
            cluster: "c".into(),
            snapshot: None,
            latest: true,
            data_dir: PathBuf::from("/nonexistent/m0"),
            name: name.into(),
            initial_cluster: cluster.into(),
            initial_advertise_peer_urls: peer.into(),
            initial_cluster_token: None,
            etcdutl: None,
            to_revision: None,
            to_time: None,
        }
    }

    #[test]
    fn the_member_must_be_in_the_initial_cluster_with_its_url() {
        let ic = "m0=http://a:2380,m1=http://b:2380";
        assert!(check_member(&args("m0", ic, "http://a:2380")).is_ok());
        let err = check_member(&args("m2", ic, "http://c:2380")).unwrap_err();
        assert!(
            err.to_string().contains("--name m2 is not a member"),
            "{err}"
        );
        let err = check_member(&args("m1", ic, "http://a:2380")).unwrap_err();
        assert!(err.to_string().contains("peer URL http://b:2380"), "{err}");
        assert!(check_member(&args("m0", "m0", "x")).is_err());
    }

    #[test]
    fn parent_dirs_made_for_a_failed_restore_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("a/b/c");
        drop(MadeDirs::create(&deep).unwrap());
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
        // Kept on success; a directory that existed before is never removed.
        std::fs::create_dir(root.path().join("a")).unwrap();
        MadeDirs::create(&deep).unwrap().keep();
        assert!(deep.is_dir());
        std::fs::remove_dir_all(root.path().join("a/b")).unwrap();
        drop(MadeDirs::create(&deep).unwrap());
        assert!(root.path().join("a").is_dir() && !root.path().join("a/b").exists());
    }

    #[test]
    fn which_backup_must_be_said() {
        let mut a = args("m0", "m0=http://a:2380", "http://a:2380");
        assert!(check_which(&a).is_ok());
        a.latest = false;
        let err = check_which(&a).unwrap_err();
        assert!(
            err.to_string()
                .contains("--snapshot ID (the same on every member), --latest"),
            "{err}"
        );
        a.snapshot = Some("c-1".into());
        assert!(check_which(&a).is_ok());
    }

    #[test]
    fn a_missing_etcdutl_is_named() {
        let err = find_etcdutl(Some(Path::new("/no/such/etcdutl"))).unwrap_err();
        assert_eq!(err.to_string(), "--etcdutl /no/such/etcdutl: no such file");
        let err = find_etcdutl(Some(Path::new("no-such-etcdutl-omni"))).unwrap_err();
        assert!(err.to_string().contains("not found on PATH"), "{err}");
    }

    #[test]
    fn data_dir_must_be_new_or_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!check_data_dir(&dir.path().join("new")).unwrap());
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(check_data_dir(&empty).unwrap());
        std::fs::create_dir_all(empty.join("member/wal")).unwrap();
        clear(&empty, true);
        assert!(empty.is_dir() && std::fs::read_dir(&empty).unwrap().next().is_none());
        clear(&empty, false);
        assert!(!empty.exists());
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let err = check_data_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("is not empty"), "{err}");
    }
}

//! Restore drills end to end: the real omni restores each new backup into a
//! throwaway real etcd and reports ok with the source's key count and
//! revision; a corrupted backup reports an error; and no temp dir or etcd
//! process survives a drill, also when it fails after etcd started.

mod common;
mod ops;

use std::path::{Path, PathBuf};

use common::*;
use omni_testkit::{etcd_bins, free_port, EtcdCluster};
use ops::*;

const DRILL: &str = "    restoredrill: true\n";
/// Drills off, and nothing else set: accepted, no automatic backups.
const NO_DRILL: &str = "    restoredrill: false\n";

/// Neither a drill dir nor a process mentioning one is left.
fn assert_clean(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "drill dirs left: {left:?}");
    let procs = processes_mentioning(&dir.join("omni-drill-").display().to_string());
    assert!(procs.is_empty(), "drill processes left: {procs:?}");
}

/// Waits for the drill of `backup` to finish; returns its status.
async fn drilled(omni: &Omni, cluster: &str, backup: &str) -> serde_json::Value {
    eventually(&format!("the drill of {backup}"), || {
        spec(omni, "etcdbackupdrillstatus", cluster)
            .filter(|s| s["backup"] == backup && (s["status"] == 1 || s["status"] == 2))
    })
    .await
}

async fn source_revision(etcd: &EtcdCluster) -> i64 {
    let mut c = etcd.client().await.unwrap();
    c.get("/", None).await.unwrap().header().unwrap().revision()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drills_report_ok_for_a_good_backup_and_error_for_a_corrupted_one() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    for i in 0..40 {
        etcd.put(format!("/drill/{i}"), format!("v{i}"))
            .await
            .unwrap();
    }
    etcd.put("/drill/0", "again").await.unwrap();
    let revision = source_revision(&etcd).await;
    let dir = tempfile::tempdir().unwrap();
    let drills = dir.path().join("drills");
    let omni = start_with_etcd_bins(
        &drills,
        &[
            "--etcd-backup-tick",
            "1s",
            "--etcd-backup-drill-timeout",
            "30s",
        ],
    )
    .await;
    register_machines(&omni, &etcd, "c1");
    assert!(apply_cluster(&omni, "c1", DRILL).status.success());

    // A good backup: ok, with what the source held.
    manual_backup(&omni, "c1", false).await;
    let good = backup_ids(&omni, "c1").remove(0);
    let st = drilled(&omni, "c1", &good).await;
    assert_eq!(st["status"], 1, "{st}");
    assert_eq!(st["error"], "");
    assert_eq!(st["keys"], 40, "{st}");
    assert_eq!(st["revision"], revision, "{st}");
    assert!(st["dbsize"].as_u64().unwrap() > 0, "{st}");
    assert!(!st["finishedat"]["seconds"].is_null());
    let table = omni.ctl_ok(&["get", "etcdbackupdrillstatus"]);
    assert!(
        table.contains("EtcdBackupDrillStatus") && table.contains(&good),
        "{table}"
    );
    assert_clean(&drills);

    // A corrupted backup: drills off while it is made and damaged, then on.
    assert!(apply_cluster(&omni, "c1", NO_DRILL).status.success());
    manual_backup(&omni, "c1", false).await;
    let bad = backup_ids(&omni, "c1").remove(0);
    assert_ne!(bad, good);
    let object = newest_object(&omni.data_dir().join("backups"));
    let mut bytes = std::fs::read(&object).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&object, bytes).unwrap();
    assert!(apply_cluster(&omni, "c1", DRILL).status.success());
    let st = drilled(&omni, "c1", &bad).await;
    assert_eq!(st["status"], 2, "{st}");
    assert!(st["error"].as_str().unwrap().contains("download"), "{st}");
    assert_clean(&drills);
}

/// The newest object in a local store (names sort newest first).
fn newest_object(root: &Path) -> PathBuf {
    let uuid_dir = std::fs::read_dir(root)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::read_dir(uuid_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_that_times_out_with_etcd_running_leaves_nothing() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    etcd.put("/k", "v").await.unwrap();
    let bins = etcd_bins().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let drills = dir.path().join("drills");
    // An etcd that runs but never answers where it was told to: it listens
    // for clients elsewhere. Not exec'd, so etcd is a grandchild of omni in
    // the drill's process group.
    let wrapper = dir.path().join("deaf-etcd");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/bash\nargs=()\nfor a in \"$@\"; do\n  case \"$a\" in\n    --listen-client-urls=*) args+=(\"--listen-client-urls=http://127.0.0.1:{}\") ;;\n    *) args+=(\"$a\") ;;\n  esac\ndone\n\"{}\" \"${{args[@]}}\" &\nwait\n",
            free_port().unwrap(),
            bins.etcd.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let omni = Omni::start(&[
        "--etcd-backup-tick",
        "1s",
        "--etcd-bin",
        path_str(&wrapper),
        "--etcdutl-bin",
        path_str(&bins.etcdutl),
        "--etcd-backup-drill-dir",
        path_str(&drills),
        "--etcd-backup-drill-timeout",
        "5s",
    ])
    .await;
    register_machines(&omni, &etcd, "c2");
    assert!(apply_cluster(&omni, "c2", DRILL).status.success());
    manual_backup(&omni, "c2", false).await;
    let backup = backup_ids(&omni, "c2").remove(0);

    // While the drill runs, its etcd runs: the test sees what it must not
    // see afterwards.
    let needle = drills.join("omni-drill-").display().to_string();
    eventually("the drill's etcd running", || {
        processes_mentioning(&needle)
            .iter()
            .any(|(_, cmd)| cmd.contains(&bins.etcd.display().to_string()))
            .then_some(())
    })
    .await;
    let st = drilled(&omni, "c2", &backup).await;
    assert_eq!(st["status"], 2, "{st}");
    assert!(
        st["error"].as_str().unwrap().contains("timed out after 5s"),
        "{st}"
    );
    assert_clean(&drills);

    // A missing etcd binary is named, and leaves nothing either.
    drop(omni);
    let omni = Omni::start(&[
        "--etcd-backup-tick",
        "1s",
        "--etcd-bin",
        "no-such-etcd-binary",
        "--etcd-backup-drill-dir",
        path_str(&drills),
    ])
    .await;
    register_machines(&omni, &etcd, "c3");
    assert!(apply_cluster(&omni, "c3", DRILL).status.success());
    manual_backup(&omni, "c3", false).await;
    let backup = backup_ids(&omni, "c3").remove(0);
    let st = drilled(&omni, "c3", &backup).await;
    assert!(
        st["error"]
            .as_str()
            .unwrap()
            .contains("etcd binary \"no-such-etcd-binary\" not found")
            && st["error"].as_str().unwrap().contains("--etcd-bin"),
        "{st}"
    );
    assert_clean(&drills);
}

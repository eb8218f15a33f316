//! The copy and drill controllers are woken by a backup only for clusters
//! that use copies or drills: a backup of a cluster that uses neither
//! reconciles neither (at 10,000 clusters those were six reconciles per
//! backup for nothing). A cluster that turns both on later is picked up:
//! its next backup is copied and drilled, and its earlier ones copied.

mod common;
mod ops;

use std::path::Path;

use common::*;
use omni_testkit::EtcdCluster;
use ops::*;

const COPY: &str = "EtcdBackupCopyController";
const DRILL: &str = "EtcdBackupDrillController";
const RETENTION: &str = "EtcdBackupRetentionController";

async fn reconciles(omni: &Omni, controller: &str) -> u64 {
    let text = omni.metrics_text().await;
    let series = format!("omni_controller_reconciles_total{{controller=\"{controller}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map(|v| v.trim().parse::<f64>().unwrap() as u64)
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

fn local_store_yaml(name: &str, dir: &Path) -> String {
    format!(
        "metadata:\n  type: etcdbackupstore\n  id: {name}\nspec:\n  local:\n    path: {}\n",
        dir.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_wake_copies_and_drills_only_for_clusters_that_use_them() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    etcd.put("/wakeups/k", "v").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let drills = dir.path().join("drills");
    let second = dir.path().join("second");
    let omni = start_with_etcd_bins(&drills, &["--machine-probe-interval", "1h"]).await;
    register_machines(&omni, &etcd, "c1");
    assert!(apply_cluster(&omni, "c1", "    restoredrill: false\n")
        .status
        .success());
    manual_backup(&omni, "c1", false).await;

    // A backup of a cluster without copies or drills: retention runs on
    // its events, the copy and drill controllers do not.
    let before = (
        reconciles(&omni, COPY).await,
        reconciles(&omni, DRILL).await,
    );
    let retention = reconciles(&omni, RETENTION).await;
    manual_backup(&omni, "c1", false).await;
    let mut waited = 0;
    while reconciles(&omni, RETENTION).await == retention {
        waited += 1;
        assert!(waited < 100, "retention never ran after the backup");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let after = (
        reconciles(&omni, COPY).await,
        reconciles(&omni, DRILL).await,
    );
    assert_eq!(after, before, "(copy, drill) reconciles for a backup");
    assert_eq!(backup_ids(&omni, "c1").len(), 2);

    // Both turned on: the earlier backups are copied, the next one is
    // copied and drilled.
    let out = omni.apply_yaml(&local_store_yaml("second", &second));
    assert!(out.status.success(), "{}", stderr(&out));
    let conf = "    restoredrill: true\n    secondarystore: second\n";
    assert!(apply_cluster(&omni, "c1", conf).status.success());
    eventually("the earlier backups copied", || {
        spec(&omni, "etcdbackupcopystatus", "c1").filter(|s| s["copiedtotal"] == 2)
    })
    .await;
    manual_backup(&omni, "c1", false).await;
    let newest = backup_ids(&omni, "c1").remove(0);
    eventually("the new backup drilled", || {
        spec(&omni, "etcdbackupdrillstatus", "c1")
            .filter(|s| s["backup"] == newest.as_str() && s["status"] == 1)
    })
    .await;
    eventually("the new backup copied", || {
        spec(&omni, "etcdbackupcopystatus", "c1")
            .filter(|s| s["copiedtotal"] == 3 && s["pending"] == 0)
    })
    .await;
}

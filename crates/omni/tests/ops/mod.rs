//! Helpers shared by the retention, restore, drill and point-in-time end-to-end tests.
#![allow(dead_code)]

use crate::common::*;
use omni_testkit::{EtcdCluster, S3Server};

/// Applies the S3 config of `s3` and waits until the store works.
pub async fn configure_s3(omni: &Omni, s3: &S3Server) {
    let yaml = format!(
        "metadata:\n  namespace: default\n  type: EtcdBackupS3Configs.omni.sidero.dev\n  id: etcd-backup-s3-conf\nspec:\n  bucket: {}\n  region: us-east-1\n  endpoint: {}\n  accesskeyid: {}\n  secretaccesskey: {}\n",
        s3.bucket(),
        s3.endpoint(),
        s3.access_key(),
        s3.secret_key()
    );
    let out = omni.apply_yaml(&yaml);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually("the S3 store configured", || {
        let o = omni.ctl_ok(&["get", "etcdbackupoverallstatus", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&o).unwrap();
        v["spec"]["configurationerror"]
            .as_str()
            .is_some_and(str::is_empty)
            .then_some(())
    })
    .await;
}

/// Registers every member of `etcd` as a control-plane machine of `cluster`.
pub fn register_machines(omni: &Omni, etcd: &EtcdCluster, cluster: &str) {
    let machines: Vec<(String, String)> = etcd
        .members()
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("{cluster}-m{i}"), m.client_url()))
        .collect();
    let out = omni.apply_yaml(&machines_yaml(cluster, &machines, true));
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Applies cluster `name` with `backup` as its `spec.backupconfiguration`
/// (YAML lines indented by four spaces, or empty for none).
pub fn apply_cluster(omni: &Omni, name: &str, backup: &str) -> std::process::Output {
    let conf = if backup.is_empty() {
        String::new()
    } else {
        format!("  backupconfiguration:\n{backup}")
    };
    omni.apply_yaml(&format!(
        "metadata:\n  namespace: default\n  type: Clusters.omni.sidero.dev\n  id: {name}\nspec:\n  kubernetesversion: 1.28.2\n  talosversion: 1.5.5\n{conf}"
    ))
}

/// Requests a manual backup of `cluster` (marked to keep or not) and waits
/// until a backup attempted at or after the request succeeded. Waits for
/// the next second first, so the request is newer than any earlier attempt.
pub async fn manual_backup(omni: &Omni, cluster: &str, keep: bool) {
    let start = now();
    while now() == start {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let at = now();
    let yaml = format!("metadata:\n  namespace: ephemeral\n  type: EtcdManualBackups.omni.sidero.dev\n  id: {cluster}\nspec:\n  backupat:\n    seconds: {at}\n    nanos: 0\n  keep: {keep}\n");
    let out = omni.apply_yaml(&yaml);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually(&format!("the manual backup of {cluster}"), || {
        let st = spec(omni, "etcdbackupstatus", cluster)?;
        let attempted = st["lastbackupattempt"]["seconds"].as_i64()?;
        assert_ne!(st["status"], 2, "backup failed: {st}");
        (st["status"] == 1 && attempted >= at).then_some(())
    })
    .await;
}

/// The spec of one resource as JSON, `None` when it does not exist.
pub fn spec(omni: &Omni, kind: &str, id: &str) -> Option<serde_json::Value> {
    let out = omni.ctl(&["get", kind, id, "-o", "json"]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).ok()?;
    Some(v["spec"].clone())
}

/// Backup IDs of `cluster`, newest first.
pub fn backup_ids(omni: &Omni, cluster: &str) -> Vec<String> {
    let out = omni.ctl_ok(&[
        "get",
        "etcdbackup",
        "--selector",
        &format!("omni.sidero.dev/cluster={cluster}"),
        "-o",
        "json",
    ]);
    serde_json::Deserializer::from_str(&out)
        .into_iter::<serde_json::Value>()
        .map(|v| v.unwrap()["metadata"]["id"].as_str().unwrap().to_string())
        .collect()
}

/// Processes (not zombies) whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if cmdline.contains(needle) && !zombie {
            found.push((pid, cmdline));
        }
    }
    found
}

/// A cluster's `backupconfiguration` lines for continuous backup with a
/// one-second delta interval.
pub const CONTINUOUS: &str = "    continuous: true\n    deltainterval:\n      seconds: 1\n";

/// The cluster's restore points (`GET /api/v1/etcd-restore-points/…`);
/// null when the call fails.
pub fn points(omni: &Omni, cluster: &str) -> serde_json::Value {
    let out = std::process::Command::new("curl")
        .args(["-sf", "-H"])
        .arg(format!("Authorization: Bearer {}", omni.token))
        .arg(format!(
            "{}/api/v1/etcd-restore-points/{cluster}",
            omni.endpoint()
        ))
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Waits until the cluster can be restored to revision `rev`.
pub async fn covered(omni: &Omni, cluster: &str, rev: i64) -> serde_json::Value {
    eventually(&format!("a restorable point at revision {rev}"), || {
        let p = points(omni, cluster);
        (p["newest"]["revision"].as_i64()? >= rev).then_some(p)
    })
    .await
}

/// Starts omni with the test etcd's `etcd` and `etcdutl` (for drills and
/// point-in-time restores), drills under `drills`, and `extra` flags.
pub async fn start_with_etcd_bins(drills: &std::path::Path, extra: &[&str]) -> Omni {
    let bins = omni_testkit::etcd_bins().unwrap();
    let mut args = vec![
        "--etcd-bin",
        path_str(&bins.etcd),
        "--etcdutl-bin",
        path_str(&bins.etcdutl),
        "--etcd-backup-drill-dir",
        path_str(drills),
    ];
    args.extend_from_slice(extra);
    Omni::start(&args).await
}

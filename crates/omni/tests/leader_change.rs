//! Leadership moves while a snapshot streams: the backup still completes and
//! restores to the data written before it.

mod common;

use std::process::Command;

use common::*;
use omni_testkit::EtcdCluster;

fn etcdctl(etcd: &EtcdCluster, args: &[&str]) -> serde_json::Value {
    let out = Command::new(&etcd.bins().etcdctl)
        .arg(format!("--endpoints={}", etcd.client_urls().join(",")))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

/// Moves leadership to a member that does not have it; returns its id.
fn move_leader(etcd: &EtcdCluster) -> u64 {
    let status = etcdctl(etcd, &["endpoint", "status", "-w", "json"]);
    let leader = status[0]["Status"]["leader"].as_u64().unwrap();
    let members = etcdctl(etcd, &["member", "list", "-w", "json"]);
    let target = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["ID"].as_u64().unwrap())
        .find(|id| *id != leader)
        .unwrap();
    etcdctl(etcd, &["move-leader", &format!("{target:x}")]);
    target
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_change_during_a_snapshot() {
    let etcd = EtcdCluster::start(3).await.unwrap();
    for i in 0..30u64 {
        etcd.put(format!("/big/{i:02}"), noise(i, 1024 * 1024))
            .await
            .unwrap();
    }
    let omni = Omni::start(&["--etcd-backup-tick", "1s"]).await;
    register_members(&omni, "c", &etcd);
    create_cluster(&omni, "c");

    let mut moved_during = 0;
    for round in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let at = now();
        let req = format!(
            "metadata:\n  type: etcdmanualbackup\n  id: c\nspec:\n  backupat:\n    seconds: {at}\n"
        );
        assert!(omni.apply_yaml(&req).status.success());
        let status = |omni: &Omni| backup_status(omni, "c");
        eventually("running", || {
            let s = status(&omni);
            (s["lastbackupattempt"]["seconds"].as_i64() >= Some(at)).then_some(())
        })
        .await;
        let was_running = status(&omni)["status"] == 3;
        move_leader(&etcd);
        let st = eventually("the backup to end", || {
            let s = status(&omni);
            (s["status"] != 3).then_some(s)
        })
        .await;
        assert_eq!(
            st["status"], 1,
            "round {round}: leader change broke the backup: {st}"
        );
        if was_running {
            moved_during += 1;
        }
    }
    assert!(
        moved_during > 0,
        "leadership never moved while a snapshot was running"
    );

    // The newest backup restores with every key.
    let snap = omni.dir.path().join("snap.db");
    omni.ctl_ok(&[
        "etcd-backup",
        "download",
        "--cluster",
        "c",
        "--latest",
        "-o",
        path_str(&snap),
    ]);
    let restored = EtcdCluster::restore_single(&snap).await.unwrap();
    for i in [0u64, 17, 29] {
        assert_eq!(
            restored.get(format!("/big/{i:02}")).await.unwrap(),
            Some(noise(i, 1024 * 1024))
        );
    }
}

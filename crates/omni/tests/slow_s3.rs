//! A slow S3 server (a delaying proxy in front of s3s-fs): the backup is cut
//! off by the per-backup timeout with a clear status, nothing is listed, and
//! backups succeed again once the server is fast.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::slow_proxy::{slow_proxy_with, Slow};
use common::*;
use omni_testkit::{EtcdCluster, S3Server};

fn status(omni: &Omni) -> serde_json::Value {
    backup_status(omni, "c")
}

async fn backup(omni: &Omni, code: i64) -> serde_json::Value {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let at = now();
    let req = format!(
        "metadata:\n  type: etcdmanualbackup\n  id: c\nspec:\n  backupat:\n    seconds: {at}\n"
    );
    let out = omni.apply_yaml(&req);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually(&format!("status {code}"), || {
        let s = status(omni);
        (s["status"] == code && s["lastbackupattempt"]["seconds"].as_i64() >= Some(at)).then_some(s)
    })
    .await
}

fn listed(omni: &Omni) -> usize {
    let out = omni.ctl_ok(&[
        "get",
        "etcdbackup",
        "--selector",
        "omni.sidero.dev/cluster=c",
        "-o",
        "json",
    ]);
    out.matches("\"EtcdBackups.omni.sidero.dev\"").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_store_hits_the_backup_timeout_and_recovers() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    for i in 0..2u64 {
        etcd.put(format!("/big/{i}"), noise(i, 1024 * 1024))
            .await
            .unwrap();
    }
    let s3 = S3Server::start().await.unwrap();
    let delay = Arc::new(AtomicU64::new(0));
    let proxy = slow_proxy_with(s3.port(), delay.clone(), Slow::Server).await;
    let omni = Omni::start(&[
        "--etcd-backup-s3",
        "--etcd-backup-tick",
        "1s",
        "--etcd-backup-timeout",
        "2s",
    ])
    .await;
    let cfg = format!(
        "metadata:\n  type: EtcdBackupS3Configs.omni.sidero.dev\n  id: etcd-backup-s3-conf\nspec:\n  bucket: {}\n  endpoint: http://127.0.0.1:{proxy}\n  accesskeyid: {}\n  secretaccesskey: {}\n",
        s3.bucket(), s3.access_key(), s3.secret_key()
    );
    let out = omni.apply_yaml(&cfg);
    assert!(out.status.success(), "{}", stderr(&out));
    register_members(&omni, "c", &etcd);
    create_cluster(&omni, "c");
    backup(&omni, 1).await;

    // 2 MiB through 64 KiB chunks at 250 ms each: 8s, far beyond the 2s
    // timeout. The slow server has the whole request and stores it after
    // omni gave up: omni must remove that late object.
    delay.store(250, Ordering::SeqCst);
    let st = backup(&omni, 2).await;
    assert!(
        st["error"]
            .as_str()
            .unwrap()
            .contains("backup timed out after 2s"),
        "{st}"
    );
    delay.store(0, Ordering::SeqCst);
    let st = backup(&omni, 1).await;
    assert_eq!(st["error"], "");
    // Eventually exactly the two good backups, whatever landed late.
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(listed(&omni), 2, "the failed backup's object stayed listed");
    assert!(
        omni.log_text().contains("landed late"),
        "the late object never landed: the test proves nothing"
    );
}

//! S3 failures seen from the user's side: the server down before and in the
//! middle of an upload, a deleted bucket. Never a listed partial backup;
//! an error status in words that clears on the next success.

mod common;

use common::*;
use omni_testkit::{EtcdCluster, S3Server};

async fn request_backup(omni: &Omni) -> i64 {
    // Requests must differ from the last one to count as new.
    let at = now();
    let yaml = format!("metadata:\n  type: etcdmanualbackup\n  id: talos-default\nspec:\n  backupat:\n    seconds: {at}\n    nanos: 0\n");
    let out = omni.apply_yaml(&yaml);
    assert!(out.status.success(), "{}", stderr(&out));
    at
}

fn status(omni: &Omni) -> serde_json::Value {
    backup_status(omni, "talos-default")
}

async fn wait_status(omni: &Omni, attempt_at: i64, code: i64) -> serde_json::Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let s = status(omni);
        if s["status"] == code && s["lastbackupattempt"]["seconds"].as_i64() >= Some(attempt_at) {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no status {code} for the request at {attempt_at}; status is {s}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn listed(omni: &Omni) -> usize {
    let out = omni.ctl(&[
        "get",
        "etcdbackup",
        "--selector",
        "omni.sidero.dev/cluster=talos-default",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .matches("\"EtcdBackups.omni.sidero.dev\"")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_down_before_and_during_upload_and_a_missing_bucket() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    for i in 0..40u64 {
        etcd.put(format!("/big/{i}"), noise(i, 1024 * 1024))
            .await
            .unwrap();
    }
    let mut s3 = S3Server::start().await.unwrap();
    let omni = Omni::start(&["--etcd-backup-s3", "--etcd-backup-tick", "1s"]).await;
    let cfg = format!(
        "metadata:\n  type: EtcdBackupS3Configs.omni.sidero.dev\n  id: etcd-backup-s3-conf\nspec:\n  bucket: {}\n  endpoint: {}\n  accesskeyid: {}\n  secretaccesskey: {}\n",
        s3.bucket(), s3.endpoint(), s3.access_key(), s3.secret_key()
    );
    assert!(omni.apply_yaml(&cfg).status.success());
    register_members(&omni, "talos-default", &etcd);
    create_cluster(&omni, "talos-default");

    // 1. S3 down before the backup: an error in words, nothing listed.
    s3.stop();
    let at = request_backup(&omni).await;
    let st = wait_status(&omni, at, 2).await;
    assert!(!st["error"].as_str().unwrap().is_empty(), "{st}");
    s3.restart().await.unwrap();
    assert_eq!(listed(&omni), 0);
    let overall = omni.ctl_ok(&["get", "etcdbackupoverallstatus", "-o", "yaml"]);
    assert!(overall.contains("    status: 2\n"), "{overall}");

    // 2. Back up: success clears the error.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let at = request_backup(&omni).await;
    let st = wait_status(&omni, at, 1).await;
    assert_eq!(st["error"], "", "{st}");
    assert_eq!(listed(&omni), 1);

    // 3. S3 stops in the middle of an upload. The upload takes about a
    // second here; should it finish before the stop lands, try again.
    let mut successes = 1;
    let mut interrupted = false;
    for _ in 0..5 {
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let at = request_backup(&omni).await;
        wait_status(&omni, at, 3).await;
        s3.stop();
        let st = eventually("the interrupted backup to end", || {
            let s = status(&omni);
            (s["status"] != 3 && s["lastbackupattempt"]["seconds"].as_i64() >= Some(at))
                .then_some(s)
        })
        .await;
        s3.restart().await.unwrap();
        if st["status"] == 1 {
            successes += 1;
            continue;
        }
        assert_eq!(st["status"], 2, "{st}");
        eprintln!("mid-upload failure reads: {}", st["error"]);
        interrupted = true;
        break;
    }
    assert!(interrupted, "never managed to stop S3 during an upload");
    assert_eq!(listed(&omni), successes, "a partial upload was listed");

    // 4. And recovers.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let at = request_backup(&omni).await;
    let st = wait_status(&omni, at, 1).await;
    assert_eq!(st["error"], "");
    assert_eq!(listed(&omni), successes + 1);

    // 5. The key is rotated behind omni's back: an error in words, without
    // the secret; the admin applies the new key and backups resume.
    let old_secret = s3.secret_key().to_string();
    s3.rotate_secret("rotated-secret-0123456789").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let at = request_backup(&omni).await;
    let st = wait_status(&omni, at, 2).await;
    let err = st["error"].as_str().unwrap().to_lowercase();
    assert!(
        err.contains("denied") || err.contains("signature") || err.contains("credentials"),
        "{err}"
    );
    assert!(
        !err.contains(&old_secret) && !err.contains("rotated-secret"),
        "{err}"
    );
    let out = omni.apply_yaml(&cfg.replace(&old_secret, s3.secret_key()));
    assert!(out.status.success(), "{}", stderr(&out));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let at = request_backup(&omni).await;
    eventually("the new key in use", || {
        let s = status(&omni);
        (s["status"] == 1 && s["lastbackupattempt"]["seconds"].as_i64() >= Some(at)).then_some(())
    })
    .await;
    let cfg = cfg.replace(&old_secret, s3.secret_key());

    // 6. A configuration naming a bucket that does not exist is refused in
    // words, and the working one stays. (s3s-fs recreates a removed bucket
    // directory on write, so "deleted under us" is checked at the store
    // level in omni-backup's tests.)
    let out = omni.apply_yaml(&cfg.replace(
        &format!("bucket: {}", s3.bucket()),
        "bucket: no-such-bucket",
    ));
    assert!(!out.status.success());
    let err = stderr(&out).to_lowercase();
    assert!(
        err.contains("incorrect settings for s3 client") && err.contains("bucket"),
        "{err}"
    );
    let stored = omni.ctl_ok(&[
        "get",
        "etcdbackups3config",
        "etcd-backup-s3-conf",
        "-o",
        "yaml",
    ]);
    assert!(
        stored.contains(&format!("bucket: {}", s3.bucket())),
        "{stored}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let at = request_backup(&omni).await;
    wait_status(&omni, at, 1).await;
    assert!(!omni.log_text().contains(s3.secret_key()));
}

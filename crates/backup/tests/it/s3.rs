use omni_backup::keys::format_key;
use omni_backup::{take_backup, BackupStore, S3Settings, StoreError};
use omni_testkit::S3Server;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_backup_restores_into_etcd() {
    let etcd = etcd_with_keys(1, 40).await;
    let s3 = S3Server::start().await.expect("s3");
    let store = BackupStore::s3(&s3_settings(&s3)).expect("store");
    store.validate().await.expect("validate");
    let k = keys();
    let members = members(&etcd);

    let first = take_backup(&members, &store, CLUSTER, &k.recipient, 1_000)
        .await
        .expect("first");
    // Large enough for a multipart upload (parts of 8 MiB).
    fill_random(&etcd, 20 << 20).await;
    let second = take_backup(&members, &store, CLUSTER, &k.recipient, 2_000)
        .await
        .expect("second");
    let listed = store.list(CLUSTER).await.expect("list");
    let keys: Vec<_> = listed.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        [second.key.as_str(), first.key.as_str()],
        "newest first"
    );
    assert_eq!(listed[0].size, second.size);
    assert!(
        second.size > 2 * omni_backup::store::PART_SIZE as u64,
        "multipart: {}",
        second.size
    );
    assert!(
        first.size < omni_backup::store::PART_SIZE as u64,
        "single put: {}",
        first.size
    );

    // Same second again: refused rather than overwritten.
    let again = take_backup(&members, &store, CLUSTER, &k.recipient, 2_000).await;
    assert!(
        matches!(
            again,
            Err(omni_backup::Error::Store(StoreError::AlreadyExists { .. }))
        ),
        "{again:?}"
    );

    let dir = tempfile::tempdir().expect("tmp");
    let restored = restore(&store, &second.key, &k.identity, dir.path()).await;
    assert_keys(&restored, 40).await;
    let filled = restored
        .get("/fill/000039")
        .await
        .expect("get")
        .expect("fill key restored");
    assert_eq!(filled.len(), 512 * 1024);

    store.delete(&first.key).await.expect("delete");
    let keys: Vec<_> = store
        .list(CLUSTER)
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, [second.key]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_validate_explains_bad_settings_without_secrets() {
    let s3 = S3Server::start().await.expect("s3");
    let good = s3_settings(&s3);

    let wrong_secret = S3Settings {
        secret_access_key: Some("definitely-wrong-secret-value".into()),
        ..good.clone()
    };
    let err = BackupStore::s3(&wrong_secret)
        .expect("store")
        .validate()
        .await
        .expect_err("wrong secret must fail");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
    assert!(msg.contains("access key"), "{msg}");
    assert!(
        !msg.contains("definitely-wrong-secret-value") && !msg.contains(s3.secret_key()),
        "{msg}"
    );
    assert!(!format!("{err:?}").contains("definitely-wrong-secret-value"));

    let wrong_key = S3Settings {
        access_key_id: Some("NOSUCHKEY".into()),
        ..good.clone()
    };
    let err = BackupStore::s3(&wrong_key)
        .expect("store")
        .validate()
        .await
        .expect_err("wrong key");
    assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
    assert!(!err.to_string().contains(s3.secret_key()));

    let no_bucket = S3Settings {
        bucket: "no-such-bucket".into(),
        ..good.clone()
    };
    let err = BackupStore::s3(&no_bucket)
        .expect("store")
        .validate()
        .await
        .expect_err("bucket");
    assert!(matches!(err, StoreError::NoSuchBucket { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");

    let port = omni_testkit::free_port().expect("port");
    let unreachable = S3Settings {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        ..good.clone()
    };
    let err = BackupStore::s3(&unreachable)
        .expect("store")
        .validate()
        .await
        .expect_err("unreachable");
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    assert!(!err.to_string().contains(s3.secret_key()), "{err}");

    BackupStore::s3(&good)
        .expect("store")
        .validate()
        .await
        .expect("good settings validate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_listing_paginates_past_1000() {
    let s3 = S3Server::start().await.expect("s3");
    // s3s-fs serves files under the bucket dir as objects and pages at 1000 keys.
    let dir = s3.bucket_dir().join(CLUSTER);
    std::fs::create_dir_all(&dir).expect("dir");
    for t in 0..1100i64 {
        let key = format_key(CLUSTER, 1_600_000_000 + t * 3600).expect("key");
        std::fs::write(s3.bucket_dir().join(&key), b"x").expect("write");
    }
    std::fs::write(dir.join("not-a-backup.txt"), b"x").expect("write");
    let other = s3.bucket_dir().join("other-cluster");
    std::fs::create_dir_all(&other).expect("dir");
    std::fs::write(
        other.join(
            format_key("other-cluster", 5)
                .expect("key")
                .split('/')
                .nth(1)
                .expect("name"),
        ),
        b"x",
    )
    .expect("write");

    let store = BackupStore::s3(&s3_settings(&s3)).expect("store");
    let listed = store.list(CLUSTER).await.expect("list");
    assert_eq!(listed.len(), 1100, "all pages listed");
    assert_eq!(
        listed[0].created_at_unix,
        1_600_000_000 + 1099 * 3600,
        "newest first"
    );
    assert_eq!(listed[1099].created_at_unix, 1_600_000_000);
    assert!(listed
        .windows(2)
        .all(|w| w[0].created_at_unix > w[1].created_at_unix));
    assert!(listed
        .iter()
        .all(|o| o.cluster_uuid == CLUSTER && o.size == 1));
}

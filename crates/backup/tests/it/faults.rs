use std::time::Duration;

use omni_backup::{
    download_to_file, take_backup, take_backup_with, BackupStore, Error, StoreError,
};
use omni_testkit::{wait_until, S3Server};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_member_down_falls_back_to_next() {
    let mut etcd = etcd_with_keys(3, 30).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = BackupStore::local(dir.path().join("store")).expect("store");
    let k = keys();
    let members = members(&etcd);

    etcd.stop_member(0).expect("stop m0");
    let out = take_backup_with(&fast_opts(), &members, &store, CLUSTER, &k.recipient, 10)
        .await
        .expect("backup from a surviving member");
    assert_eq!(out.member, "m1");
    let restored = restore(&store, &out.key, &k.identity, dir.path()).await;
    assert_keys(&restored, 30).await;

    // Nobody reachable: an error naming every member, and nothing stored.
    etcd.stop_member(1).expect("stop m1");
    etcd.stop_member(2).expect("stop m2");
    let err = take_backup_with(&fast_opts(), &members, &store, CLUSTER, &k.recipient, 20)
        .await
        .expect_err("no member up");
    match &err {
        Error::NoSnapshot { failures } => assert_eq!(failures.len(), 3, "{err}"),
        other => panic!("unexpected {other:?}"),
    }
    eprintln!("all members down: {err}");
    for m in ["m0", "m1", "m2"] {
        assert!(err.to_string().contains(&format!("member {m}")), "{err}");
    }
    assert_eq!(store.list(CLUSTER).await.expect("list").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_object_fails_download_and_writes_nothing() {
    let etcd = etcd_with_keys(1, 10).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = BackupStore::local(dir.path().join("store")).expect("store");
    let k = keys();
    let out = take_backup(&members(&etcd), &store, CLUSTER, &k.recipient, 1)
        .await
        .expect("backup");

    let object = dir.path().join("store").join(&out.key);
    let mut bytes = std::fs::read(&object).expect("read object");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&object, bytes).expect("corrupt object");

    let outdir = tempfile::tempdir().expect("tmp");
    let target = outdir.path().join("snapshot.db");
    let err = download_to_file(&store, &out.key, &k.identity, &target)
        .await
        .expect_err("corrupt object must not download");
    assert!(err.is_corrupt(), "{err:?}");
    assert!(
        err.to_string().contains(&out.key),
        "error names the key: {err}"
    );
    assert!(!target.exists(), "no output file");
    assert!(files_under(outdir.path()).is_empty(), "no temp file left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_unreachable_fails_and_stores_nothing() {
    let etcd = etcd_with_keys(1, 5).await;
    let mut s3 = S3Server::start().await.expect("s3");
    let store = BackupStore::s3(&s3_settings(&s3)).expect("store");
    let k = keys();
    s3.stop();
    let err = take_backup(&members(&etcd), &store, CLUSTER, &k.recipient, 1)
        .await
        .expect_err("store down");
    assert!(
        matches!(err, Error::Store(StoreError::Unreachable { .. })),
        "{err:?}"
    );
    assert!(!err.to_string().contains(s3.secret_key()));
    s3.restart().await.expect("restart");
    assert!(store.list(CLUSTER).await.expect("list").is_empty());
}

fn has_upload_parts(s3: &S3Server) -> bool {
    std::fs::read_dir(s3.root())
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".upload_id-"))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_stopped_mid_upload_fails_and_lists_nothing() {
    let etcd = etcd_with_keys(1, 5).await;
    fill_random(&etcd, 40 << 20).await;
    let mut s3 = S3Server::start().await.expect("s3");
    let store = BackupStore::s3(&s3_settings(&s3)).expect("store");
    let k = keys();
    let task = {
        let (members, store, r) = (members(&etcd), store.clone(), k.recipient.clone());
        tokio::spawn(async move { take_backup(&members, &store, CLUSTER, &r, 1).await })
    };
    let started = poll_fast(Duration::from_secs(60), || {
        has_upload_parts(&s3) || task.is_finished()
    })
    .await;
    assert!(started, "multipart upload started");
    assert!(
        !task.is_finished(),
        "upload must still be running when the store goes away"
    );
    s3.stop();
    let res = task.await.expect("join");
    assert!(matches!(res, Err(Error::Store(_))), "{res:?}");
    s3.restart().await.expect("restart");
    assert!(
        store.list(CLUSTER).await.expect("list").is_empty(),
        "nothing listed"
    );
    assert!(
        files_under(&s3.bucket_dir()).is_empty(),
        "no object file in the bucket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_backup_future_leaves_nothing_behind() {
    let etcd = etcd_with_keys(1, 5).await;
    // Large enough that the upload is caught well before its commit.
    fill_random(&etcd, 48 << 20).await;
    let members = members(&etcd);
    let k = keys();

    // Local: the temp file goes away with the future.
    let dir = tempfile::tempdir().expect("tmp");
    let store = BackupStore::local(dir.path()).expect("store");
    let mut backup = Box::pin(take_backup(&members, &store, CLUSTER, &k.recipient, 1));
    let temp_seen = poll_fast(Duration::from_secs(30), || {
        !files_under(dir.path()).is_empty()
    });
    tokio::select! {
        res = &mut backup => panic!("backup finished before it could be cancelled: {res:?}"),
        seen = temp_seen => assert!(seen, "temp file appears"),
    }
    drop(backup);
    assert!(
        files_under(dir.path()).is_empty(),
        "temp file removed on drop"
    );
    assert!(store.list(CLUSTER).await.expect("list").is_empty());

    // S3: the open multipart upload is aborted in the background.
    let s3 = S3Server::start().await.expect("s3");
    let store = BackupStore::s3(&s3_settings(&s3)).expect("store");
    let mut backup = Box::pin(take_backup(&members, &store, CLUSTER, &k.recipient, 1));
    let started = poll_fast(Duration::from_secs(30), || has_upload_parts(&s3));
    tokio::select! {
        res = &mut backup => panic!("backup finished before it could be cancelled: {res:?}"),
        seen = started => assert!(seen, "multipart upload starts"),
    }
    drop(backup);
    wait_until(Duration::from_secs(10), || {
        let gone = !has_upload_parts(&s3);
        async move { gone }
    })
    .await
    .unwrap_or_else(|e| {
        let files: Vec<_> = std::fs::read_dir(s3.root())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        panic!("multipart upload not aborted ({e}): {files:?}")
    });
    assert!(store.list(CLUSTER).await.expect("list").is_empty());
    assert!(files_under(&s3.bucket_dir()).is_empty());
}

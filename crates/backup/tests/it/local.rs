use omni_backup::keys::parse_key;
use omni_backup::{take_backup, BackupStore};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_backup_restores_into_etcd() {
    let etcd = etcd_with_keys(1, 50).await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = BackupStore::local(dir.path().join("store")).expect("store");
    store.validate().await.expect("validate local");
    let k = keys();
    let members = members(&etcd);

    let first = take_backup(&members, &store, CLUSTER, &k.recipient, 1_700_000_000)
        .await
        .expect("first backup");
    etcd.put("/registry/later", "after-first")
        .await
        .expect("put");
    let second = take_backup(&members, &store, CLUSTER, &k.recipient, 1_700_000_060)
        .await
        .expect("second backup");
    assert_eq!(second.member, "m0");
    assert!(second.snapshot_bytes > 32 && second.size > 0);
    assert_eq!(
        parse_key(&second.key).expect("key"),
        (CLUSTER, 1_700_000_060)
    );

    // Stored encrypted, never as a plain bolt db.
    let raw = std::fs::read(dir.path().join("store").join(&second.key)).expect("object file");
    assert!(raw.starts_with(b"age-encryption.org/v1\n"));
    assert_eq!(raw.len() as u64, second.size);

    let listed = store.list(CLUSTER).await.expect("list");
    let keys: Vec<_> = listed.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        [second.key.as_str(), first.key.as_str()],
        "newest first"
    );
    assert_eq!(listed[0].created_at_unix, 1_700_000_060);
    assert_eq!(listed[0].size, second.size);
    assert!(store
        .list("other-cluster")
        .await
        .expect("list other")
        .is_empty());

    let restored = restore(&store, &second.key, &k.identity, dir.path()).await;
    assert_keys(&restored, 50).await;
    assert_eq!(
        restored.get("/registry/later").await.expect("get"),
        Some(b"after-first".to_vec())
    );
    drop(restored);
    let tmp2 = tempfile::tempdir().expect("tmp");
    let older = restore(&store, &first.key, &k.identity, tmp2.path()).await;
    assert_eq!(
        older.get("/registry/later").await.expect("get"),
        None,
        "first backup predates the key"
    );

    store.delete(&first.key).await.expect("delete");
    assert_eq!(store.list(CLUSTER).await.expect("list").len(), 1);
    // Only the object itself is in the store dir: no temp files left behind.
    assert_eq!(files_under(&dir.path().join("store")).len(), 1);
}

#[tokio::test]
async fn local_listing_is_newest_first_and_skips_strangers() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = BackupStore::local(dir.path()).expect("store");
    let cluster_dir = dir.path().join(CLUSTER);
    std::fs::create_dir_all(&cluster_dir).expect("dir");
    // Written in a scrambled order; the file system lists in its own order.
    let times: Vec<i64> = (0..64).map(|i| (i * 37) % 64 * 1000 + 5).collect();
    for t in &times {
        let key = omni_backup::keys::format_key(CLUSTER, *t).expect("key");
        std::fs::write(dir.path().join(&key), vec![0u8; *t as usize % 7]).expect("write");
    }
    std::fs::write(cluster_dir.join(".tmp-abc.partial"), b"x").expect("write");
    std::fs::write(cluster_dir.join("notes.txt"), b"x").expect("write");
    let listed = store.list(CLUSTER).await.expect("list");
    assert_eq!(listed.len(), 64);
    let got: Vec<i64> = listed.iter().map(|o| o.created_at_unix).collect();
    let mut want = times.clone();
    want.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(got, want);
    assert!(listed
        .iter()
        .all(|o| o.size == o.created_at_unix as u64 % 7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_incomplete_takes_only_the_sinks_temp_files() {
    let etcd = etcd_with_keys(1, 5).await;
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("store");
    let store = BackupStore::local(&root).expect("store");
    let k = keys();
    let done = take_backup(&members(&etcd), &store, CLUSTER, &k.recipient, 7)
        .await
        .expect("backup");

    // What a process killed mid-backup leaves, beside things that are not ours.
    let cluster_dir = root.join(CLUSTER);
    let other_dir = root.join("another-cluster");
    let deep = other_dir.join("nested");
    std::fs::create_dir_all(&deep).expect("dirs");
    let stale = [
        cluster_dir.join(".tmp-a1B2c3.partial"),
        other_dir.join(".tmp-zzzzzz.partial"),
        root.join(".tmp-rootlv.partial"),
    ];
    let foreign = [
        cluster_dir.join(".tmp-no-suffix"),
        cluster_dir.join("notes.partial"),
        cluster_dir.join(".tmp-.partial"),
        deep.join(".tmp-deeper.partial"),
    ];
    for p in stale.iter().chain(&foreign) {
        std::fs::write(p, b"half a backup").expect("write");
    }
    // A directory with the temp name is left alone too.
    std::fs::create_dir_all(cluster_dir.join(".tmp-dir123.partial")).expect("dir");

    let mut removed = store.remove_incomplete().await.expect("clean");
    removed.sort();
    let mut want: Vec<String> = stale
        .iter()
        .map(|p| {
            p.strip_prefix(&root)
                .expect("under root")
                .display()
                .to_string()
        })
        .collect();
    want.sort();
    assert_eq!(removed, want);
    for p in &stale {
        assert!(!p.exists(), "{} removed", p.display());
    }
    for p in &foreign {
        assert!(p.exists(), "{} kept", p.display());
    }
    assert!(cluster_dir.join(".tmp-dir123.partial").is_dir());

    // The finished backup is untouched and still restores.
    let listed = store.list(CLUSTER).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, done.key);
    let restored = restore(&store, &done.key, &k.identity, dir.path()).await;
    assert_keys(&restored, 5).await;
    assert!(store.remove_incomplete().await.expect("again").is_empty());
}

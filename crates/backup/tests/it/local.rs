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

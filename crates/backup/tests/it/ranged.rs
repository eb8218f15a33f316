//! Reading S3 objects as parallel ranged GETs (`BackupStore::get_ranged`),
//! against s3s-fs: the bytes come back whole and in order at every size
//! around the range boundaries, and a backup damaged in a later range still
//! fails its download, naming the object, with nothing written.

use futures::TryStreamExt;
use omni_backup::keys::format_key;
use omni_backup::store::RANGE_PART;
use omni_backup::{download_checked, take_backup, BackupStore, TrailerCheck};
use omni_testkit::S3Server;

use crate::common::*;

fn data(len: usize) -> Vec<u8> {
    omni_testkit::noise(0x2545_F491_4F6C_DD1D, len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_reads_return_every_byte_in_order() {
    let s3 = S3Server::start().await.expect("s3");
    let store = BackupStore::s3(&s3_settings(&s3)).expect("store");
    let part = RANGE_PART as usize;
    for (i, len) in [1, part - 1, part, part + 1, 2 * part, 5 * part + 12_345]
        .into_iter()
        .enumerate()
    {
        let key = format_key(CLUSTER, 100 + i as i64).expect("key");
        let path = s3.bucket_dir().join(&key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        let want = data(len);
        std::fs::write(&path, &want).expect("object");
        let pieces: Vec<bytes::Bytes> = store
            .get_ranged(&key)
            .await
            .expect("get")
            .try_collect()
            .await
            .expect("read");
        // Pieces as they came off the wire: none empty, none across ranges.
        assert!(pieces
            .iter()
            .all(|p| !p.is_empty() && p.len() as u64 <= RANGE_PART));
        let got = pieces.concat();
        assert_eq!(got.len(), want.len(), "length at {len}");
        assert!(got == want, "bytes differ at {len}");
    }
    let missing = format_key(CLUSTER, 99).expect("key");
    let err = store.get_ranged(&missing).await.err().expect("missing");
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_damaged_in_a_later_range_fails_even_unchecked() {
    let etcd = etcd_with_keys(1, 10).await;
    fill_random(&etcd, 3 * RANGE_PART as usize).await;
    let s3 = S3Server::start().await.expect("s3");
    let store = BackupStore::s3(&s3_settings(&s3)).expect("store");
    let k = keys();
    let b = take_backup(&members(&etcd), &store, CLUSTER, &k.recipient, 1_000)
        .await
        .expect("backup");
    assert!(b.size > 2 * RANGE_PART, "{}", b.size);

    // Whole, unchecked here: the same bytes as checked.
    let mut plain = Vec::new();
    let info = download_checked(
        &store,
        &b.key,
        &k.identity,
        &mut plain,
        TrailerCheck::Reader,
    )
    .await
    .expect("download");
    assert_eq!(info.bytes, b.snapshot_bytes);
    assert_eq!(plain.len() as u64, b.snapshot_bytes);
    let mut checked = Vec::new();
    let info = download_checked(
        &store,
        &b.key,
        &k.identity,
        &mut checked,
        TrailerCheck::Here,
    )
    .await
    .expect("download");
    assert_eq!(info.sha256, b.snapshot_sha256);
    assert!(plain == checked);

    // One byte flipped in the third range: age's MAC catches it though no
    // SHA-256 is taken.
    let path = s3.bucket_dir().join(&b.key);
    let mut bytes = std::fs::read(&path).expect("object");
    bytes[2 * RANGE_PART as usize + 1000] ^= 0x40;
    std::fs::write(&path, bytes).expect("write");
    let mut out = Vec::new();
    let err = download_checked(&store, &b.key, &k.identity, &mut out, TrailerCheck::Reader)
        .await
        .expect_err("a damaged object downloaded");
    assert!(err.is_corrupt(), "{err}");
    assert!(err.to_string().contains(&b.key), "{err}");
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("restored.db");
    let err = omni_backup::download_to_file(&store, &b.key, &k.identity, &file)
        .await
        .expect_err("a damaged object downloaded");
    assert!(err.is_corrupt(), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
}

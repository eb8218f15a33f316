//! Listing a continuous cluster's full backups costs the same however many
//! delta segments it has: the listing reads the cluster's own level only.
//! Requests are counted on the wire, between the store and a real S3
//! server (s3s-fs).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use omni_backup::delta::keys::{segment_key, SegmentName};
use omni_backup::keys::format_key;
use omni_backup::{BackupStore, S3Settings};
use omni_testkit::S3Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{s3_settings, CLUSTER};

const LIST_V2: &[u8] = b"list-type=2";

/// A TCP proxy to `target` counting the `ListObjectsV2` requests sent through it.
async fn counting_proxy(target: u16, lists: Arc<AtomicUsize>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let lists = lists.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    // The tail of the previous read, so a match split between two reads counts.
                    let mut carry: Vec<u8> = Vec::new();
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        carry.extend_from_slice(&buf[..n]);
                        let found = carry
                            .windows(LIST_V2.len())
                            .filter(|w| *w == LIST_V2)
                            .count();
                        lists.fetch_add(found, Ordering::SeqCst);
                        let keep = carry.len().min(LIST_V2.len() - 1);
                        carry.drain(..carry.len() - keep);
                    }
                };
                let down = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = sr.read(&mut buf).await {
                        if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                tokio::join!(up, down);
            });
        }
    });
    port
}

/// Writes `n` small segment objects of the chain based at `full_unix`
/// straight into the bucket's directory (no request through the proxy).
fn write_segments(bucket: &Path, full_unix: i64, n: i64) {
    for i in 0..n {
        let name = SegmentName {
            full_unix,
            from_rev: 10 * i + 1,
            to_rev: 10 * i + 10,
            until_ms: full_unix * 1000 + i,
        };
        let path = bucket.join(segment_key(CLUSTER, &name).unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"segment").unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_full_backups_does_not_page_through_segments() {
    let s3 = S3Server::start().await.expect("s3");
    let lists = Arc::new(AtomicUsize::new(0));
    let port = counting_proxy(s3.port(), lists.clone()).await;
    let store = BackupStore::s3(&S3Settings {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        ..s3_settings(&s3)
    })
    .unwrap();
    let bucket = s3.bucket_dir();
    let full = 1_800_000_000;
    let full_key = format_key(CLUSTER, full).unwrap();
    std::fs::create_dir_all(bucket.join(CLUSTER)).unwrap();
    std::fs::write(bucket.join(&full_key), b"full").unwrap();

    let before = lists.load(Ordering::SeqCst);
    let listed = store.list(CLUSTER).await.unwrap();
    let without_segments = lists.load(Ordering::SeqCst) - before;
    assert_eq!(listed.len(), 1);
    assert_eq!(without_segments, 1, "one page for one backup");

    // 2,000 segments: two pages and more for a recursive listing (S3 pages
    // hold 1,000 keys), still one for the backups.
    write_segments(&bucket, full, 2_000);
    let before = lists.load(Ordering::SeqCst);
    let listed = store.list(CLUSTER).await.unwrap();
    let with_segments = lists.load(Ordering::SeqCst) - before;
    assert_eq!(
        listed.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
        [full_key.as_str()],
        "segments are never listed as backups"
    );
    assert_eq!(with_segments, without_segments);

    // The counter sees pages: listing the segments themselves takes several.
    let before = lists.load(Ordering::SeqCst);
    assert_eq!(store.list_chain(CLUSTER, full).await.unwrap().len(), 2_000);
    let pages = lists.load(Ordering::SeqCst) - before;
    assert!(pages >= 2, "{pages} list requests for 2,000 segments");
}

#[tokio::test]
async fn local_listing_skips_segments_and_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = BackupStore::local(dir.path()).unwrap();
    let full = 1_800_000_000;
    let full_key = format_key(CLUSTER, full).unwrap();
    std::fs::create_dir_all(dir.path().join(CLUSTER)).unwrap();
    std::fs::write(dir.path().join(&full_key), b"full").unwrap();
    // What a killed process leaves of a backup being written.
    let temp = format!(
        "{CLUSTER}/{}x{}",
        omni_backup::store::TEMP_PREFIX,
        omni_backup::store::TEMP_SUFFIX
    );
    std::fs::write(dir.path().join(temp), b"half").unwrap();
    write_segments(dir.path(), full, 50);
    let listed = store.list(CLUSTER).await.unwrap();
    assert_eq!(
        listed.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
        [full_key.as_str()]
    );
    assert_eq!(store.list_chain(CLUSTER, full).await.unwrap().len(), 50);
}

/// Three chains with five segments each; the full backups of `gone` and
/// `live` deleted by hand.
fn orphaned_layout(root: &Path) -> [i64; 3] {
    let (kept, gone, live) = (1_800_000_000, 1_800_003_600, 1_800_007_200);
    std::fs::create_dir_all(root.join(CLUSTER)).unwrap();
    for at in [kept, gone, live] {
        std::fs::write(root.join(format_key(CLUSTER, at).unwrap()), b"full").unwrap();
        write_segments(root, at, 5);
    }
    for at in [gone, live] {
        std::fs::remove_file(root.join(format_key(CLUSTER, at).unwrap())).unwrap();
    }
    [kept, gone, live]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_chains_go_but_not_the_live_one_nor_on_a_store_error() {
    let mut s3 = S3Server::start().await.expect("s3");
    let store = BackupStore::s3(&s3_settings(&s3)).unwrap();
    let [kept, gone, live] = orphaned_layout(&s3.bucket_dir());

    // A store that does not answer is not a store without the base.
    s3.stop();
    assert!(store.delete_orphan_chains(CLUSTER, &[live]).await.is_err());
    s3.restart().await.unwrap();
    assert_eq!(
        store.list_chain_bases(CLUSTER).await.unwrap(),
        [kept, gone, live]
    );

    assert_eq!(
        store.delete_orphan_chains(CLUSTER, &[live]).await.unwrap(),
        [gone]
    );
    assert_eq!(store.list_chain_bases(CLUSTER).await.unwrap(), [kept, live]);
    assert!(store.list_chain(CLUSTER, gone).await.unwrap().is_empty());
    assert_eq!(store.list_chain(CLUSTER, kept).await.unwrap().len(), 5);
    assert_eq!(store.list_chain(CLUSTER, live).await.unwrap().len(), 5);
    assert!(store
        .delete_orphan_chains(CLUSTER, &[live])
        .await
        .unwrap()
        .is_empty());
    // Once the chain is no longer written, it goes too.
    assert_eq!(
        store.delete_orphan_chains(CLUSTER, &[]).await.unwrap(),
        [live]
    );
    assert_eq!(store.list_chain_bases(CLUSTER).await.unwrap(), [kept]);
}

#[tokio::test]
async fn a_local_orphan_chain_leaves_no_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = BackupStore::local(dir.path()).unwrap();
    let [kept, gone, live] = orphaned_layout(dir.path());
    assert_eq!(
        store.delete_orphan_chains(CLUSTER, &[live]).await.unwrap(),
        [gone]
    );
    assert_eq!(store.list_chain_bases(CLUSTER).await.unwrap(), [kept, live]);
    assert!(store
        .delete_orphan_chains(CLUSTER, &[live])
        .await
        .unwrap()
        .is_empty());
}

//! The full-backup listing of a local store reads the cluster's directory
//! only, however many delta segments lie below it: counted through a
//! wrapper around the real local store.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

use super::BackupStore;
use crate::delta::keys::{segment_key, SegmentName};
use crate::keys::format_key;

/// Counts the entries every listing hands back.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn ObjectStore>,
    entries: Arc<AtomicUsize>,
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Counting {
    async fn put_opts(&self, l: &ObjectPath, p: PutPayload, o: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(l, p, o).await
    }
    async fn put_multipart_opts(
        &self,
        l: &ObjectPath,
        o: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(l, o).await
    }
    async fn get_opts(&self, l: &ObjectPath, o: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(l, o).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<ObjectPath>>,
    ) -> BoxStream<'static, Result<ObjectPath>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&ObjectPath>) -> BoxStream<'static, Result<ObjectMeta>> {
        use futures::StreamExt;
        let entries = self.entries.clone();
        self.inner
            .list(prefix)
            .inspect(move |_| {
                entries.fetch_add(1, Ordering::SeqCst);
            })
            .boxed()
    }
    async fn list_with_delimiter(&self, prefix: Option<&ObjectPath>) -> Result<ListResult> {
        let r = self.inner.list_with_delimiter(prefix).await?;
        self.entries
            .fetch_add(r.objects.len() + r.common_prefixes.len(), Ordering::SeqCst);
        Ok(r)
    }
    async fn copy_opts(&self, from: &ObjectPath, to: &ObjectPath, o: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, o).await
    }
}

const CLUSTER: &str = "0b7c3c59-6a2e-4c1f-9d0e-2f6a1b2c3d4e";

fn write_segments(root: &std::path::Path, full_unix: i64, n: i64) {
    for i in 0..n {
        let name = SegmentName {
            full_unix,
            from_rev: 10 * i + 1,
            to_rev: 10 * i + 10,
            until_ms: full_unix * 1000 + i,
        };
        let path = root.join(segment_key(CLUSTER, &name).unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"segment").unwrap();
    }
}

#[tokio::test]
async fn a_local_listing_reads_the_cluster_directory_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = BackupStore::local(dir.path()).unwrap();
    let entries = Arc::new(AtomicUsize::new(0));
    store.store = Arc::new(Counting {
        inner: store.store.clone(),
        entries: entries.clone(),
    });
    let fulls = [1_800_000_000, 1_800_003_600];
    std::fs::create_dir_all(dir.path().join(CLUSTER)).unwrap();
    for at in fulls {
        std::fs::write(dir.path().join(format_key(CLUSTER, at).unwrap()), b"full").unwrap();
    }
    let mut seen = Vec::new();
    for (full, segments) in [(fulls[0], 0), (fulls[0], 1_000), (fulls[1], 1_000)] {
        write_segments(dir.path(), full, segments);
        entries.store(0, Ordering::SeqCst);
        let listed = store.list(CLUSTER).await.unwrap();
        assert_eq!(listed.len(), 2, "segments are never listed as backups");
        seen.push(entries.load(Ordering::SeqCst));
    }
    // Two backups and the `deltas` directory, with 0 or 2,000 segments below.
    assert_eq!(seen, [2, 3, 3]);
    assert!(
        store.list_level(CLUSTER).await.unwrap().1,
        "the chains are seen"
    );
    let other = "1b7c3c59-6a2e-4c1f-9d0e-2f6a1b2c3d4e";
    std::fs::create_dir_all(dir.path().join(other)).unwrap();
    std::fs::write(
        dir.path().join(format_key(other, fulls[0]).unwrap()),
        b"full",
    )
    .unwrap();
    assert!(
        !store.list_level(other).await.unwrap().1,
        "no chain, none seen"
    );
    entries.store(0, Ordering::SeqCst);
    assert_eq!(store.list_deltas(CLUSTER).await.unwrap().len(), 2_000);
    assert!(
        entries.load(Ordering::SeqCst) >= 2_000,
        "the counter counts"
    );
}

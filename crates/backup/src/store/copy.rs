//! Copying a stored object from one store to another, bytes as they are
//! (already compressed and encrypted): the pipeline does not run again.

use std::sync::Arc;

use futures::StreamExt;

use super::{BackupStore, StoreError, UploadJournal};

impl BackupStore {
    /// Copies object `key` of `from` into this store under the same key. The
    /// copy appears only once complete (a local temp file renamed into
    /// place, or a completed S3 multipart upload recorded in `journal` while
    /// open); on any error nothing is visible here. Returns the bytes copied.
    ///
    /// # Errors
    /// An invalid key, the object missing or unreadable in `from`, this
    /// store failing, or [`StoreError::AlreadyExists`] (local store) when
    /// the copy is already here.
    pub async fn copy_from(
        &self,
        from: &BackupStore,
        key: &str,
        journal: &Arc<dyn UploadJournal>,
    ) -> Result<u64, StoreError> {
        let mut source = from.get_stream(key).await?;
        let mut sink = self.sink(key, journal).await?;
        while let Some(chunk) = source.next().await {
            let written = match chunk {
                Ok(bytes) => sink.write(&bytes).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                sink.abort().await;
                return Err(e);
            }
        }
        sink.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::format_key;
    use crate::store::NoJournal;

    const UUID: &str = "0b0d7a4e-8f45-4a4e-9d1f-3d3c2b1a0f9e";

    #[tokio::test]
    async fn copies_bytes_as_they_are_and_only_whole() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (from, to) = (
            BackupStore::local(a.path()).unwrap(),
            BackupStore::local(b.path()).unwrap(),
        );
        let key = format_key(UUID, 1_700_000_000).unwrap();
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::create_dir_all(a.path().join(UUID)).unwrap();
        std::fs::write(a.path().join(&key), &bytes).unwrap();
        let journal: Arc<dyn UploadJournal> = Arc::new(NoJournal);

        assert_eq!(to.copy_from(&from, &key, &journal).await.unwrap(), 300_000);
        assert_eq!(std::fs::read(b.path().join(&key)).unwrap(), bytes);
        let listed = to.list(UUID).await.unwrap();
        assert_eq!((listed.len(), listed[0].size), (1, 300_000));
        // Twice: the copy is there already, and stays untouched.
        let again = to.copy_from(&from, &key, &journal).await;
        assert!(
            matches!(again, Err(StoreError::AlreadyExists { .. })),
            "{again:?}"
        );
        // A missing source object leaves nothing behind, not even a temp file.
        let other = format_key(UUID, 1_600_000_000).unwrap();
        let missing = to.copy_from(&from, &other, &journal).await;
        assert!(
            matches!(missing, Err(StoreError::NotFound { .. })),
            "{missing:?}"
        );
        assert_eq!(to.list(UUID).await.unwrap().len(), 1);
        let names: Vec<_> = std::fs::read_dir(b.path().join(UUID)).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}

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

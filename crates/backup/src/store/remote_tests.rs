//! The journal contract of the S3 sink, against an in-memory multipart store that
//! logs every call into the same event list as the journal.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use object_store::memory::InMemory;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{MultipartId, ObjectStore, ObjectStoreExt, PutPayload, PutResult};

use super::super::error::{ErrorContext, StoreError};
use super::super::journal::{JournalError, OpenUpload, UploadJournal};
use super::super::sink::{ObjectSink, PART_SIZE};

type Events = Arc<Mutex<Vec<String>>>;

fn push(events: &Events, e: impl Into<String>) {
    events
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(e.into());
}

fn snapshot(events: &Events) -> Vec<String> {
    events.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

#[derive(Debug)]
struct Recorder {
    inner: Arc<InMemory>,
    events: Events,
    fail_part: Option<usize>,
    fail_abort: bool,
}

fn failure(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "test",
        source: format!("injected failure: {what}").into(),
    }
}

#[async_trait]
impl MultipartStore for Recorder {
    async fn create_multipart(&self, path: &ObjectPath) -> object_store::Result<MultipartId> {
        push(&self.events, "create");
        self.inner.create_multipart(path).await
    }

    async fn put_part(
        &self,
        path: &ObjectPath,
        id: &MultipartId,
        part_idx: usize,
        data: PutPayload,
    ) -> object_store::Result<PartId> {
        push(&self.events, format!("part {part_idx}"));
        if self.fail_part == Some(part_idx) {
            return Err(failure("part"));
        }
        self.inner.put_part(path, id, part_idx, data).await
    }

    async fn complete_multipart(
        &self,
        path: &ObjectPath,
        id: &MultipartId,
        parts: Vec<PartId>,
    ) -> object_store::Result<PutResult> {
        push(&self.events, "complete");
        self.inner.complete_multipart(path, id, parts).await
    }

    async fn abort_multipart(
        &self,
        path: &ObjectPath,
        id: &MultipartId,
    ) -> object_store::Result<()> {
        push(&self.events, "abort");
        if self.fail_abort {
            return Err(failure("abort"));
        }
        self.inner.abort_multipart(path, id).await
    }
}

/// Records and forgets into the shared event list, and keeps the open set.
struct Journal {
    events: Events,
    open: Mutex<Vec<OpenUpload>>,
    fail_record: bool,
}

impl UploadJournal for Journal {
    fn record<'a>(&'a self, upload: &'a OpenUpload) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async move {
            push(&self.events, "record");
            if self.fail_record {
                return Err("state is read-only".into());
            }
            self.open
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(upload.clone());
            Ok(())
        })
    }

    fn clear<'a>(&'a self, upload: &'a OpenUpload) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async move {
            push(&self.events, "clear");
            self.open
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|u| u != upload);
            Ok(())
        })
    }
}

struct Setup {
    memory: Arc<InMemory>,
    events: Events,
    journal: Arc<Journal>,
}

const KEY: &str = "c/ffffffff.snapshot";

impl Setup {
    fn new() -> Self {
        Self::with_journal(false)
    }

    fn with_journal(fail_record: bool) -> Self {
        let events = Events::default();
        Setup {
            memory: Arc::new(InMemory::new()),
            journal: Arc::new(Journal {
                events: events.clone(),
                open: Mutex::default(),
                fail_record,
            }),
            events,
        }
    }

    fn sink(&self, fail_part: Option<usize>, fail_abort: bool) -> ObjectSink {
        let multipart = Arc::new(Recorder {
            inner: self.memory.clone(),
            events: self.events.clone(),
            fail_part,
            fail_abort,
        });
        let store: Arc<dyn ObjectStore> = self.memory.clone();
        let journal: Arc<dyn UploadJournal> = self.journal.clone();
        ObjectSink::remote(store, multipart, journal, KEY, ErrorContext::default())
    }

    fn open(&self) -> Vec<OpenUpload> {
        self.journal
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn object(&self) -> Option<Vec<u8>> {
        match self.memory.get(&ObjectPath::from(KEY)).await {
            Ok(r) => Some(r.bytes().await.expect("bytes").to_vec()),
            Err(_) => None,
        }
    }
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn pos(events: &[String], e: &str) -> usize {
    events
        .iter()
        .position(|x| x == e)
        .unwrap_or_else(|| panic!("no {e:?} in {events:?}"))
}

#[tokio::test]
async fn journaled_before_the_first_part_and_cleared_after_complete() {
    let s = Setup::new();
    let mut sink = s.sink(None, false);
    let body = data(2 * PART_SIZE + 1000);
    for chunk in body.chunks(1 << 20) {
        sink.write(chunk).await.expect("write");
    }
    assert_eq!(s.open().len(), 1, "open while uploading");
    assert_eq!(sink.commit().await.expect("commit"), body.len() as u64);

    let ev = snapshot(&s.events);
    let record = pos(&ev, "record");
    assert!(pos(&ev, "create") < record, "{ev:?}");
    for p in ["part 0", "part 1", "part 2"] {
        assert!(record < pos(&ev, p), "{ev:?}");
        assert!(pos(&ev, p) < pos(&ev, "complete"), "{ev:?}");
    }
    assert_eq!(ev.last().map(String::as_str), Some("clear"), "{ev:?}");
    assert!(pos(&ev, "complete") < pos(&ev, "clear"));
    assert!(s.open().is_empty());
    assert_eq!(s.object().await, Some(body));
}

#[tokio::test]
async fn small_object_is_one_put_without_journal() {
    let s = Setup::new();
    let mut sink = s.sink(None, false);
    sink.write(&data(1000)).await.expect("write");
    sink.commit().await.expect("commit");
    assert!(snapshot(&s.events).is_empty(), "{:?}", snapshot(&s.events));
    assert_eq!(s.object().await, Some(data(1000)));
}

#[tokio::test]
async fn failed_part_aborts_then_clears() {
    let s = Setup::new();
    let mut sink = s.sink(Some(1), false);
    let mut res = Ok(());
    for chunk in data(3 * PART_SIZE).chunks(1 << 20) {
        res = sink.write(chunk).await;
        if res.is_err() {
            break;
        }
    }
    let res = match res {
        Ok(()) => sink.commit().await.map(drop),
        Err(e) => {
            sink.abort().await;
            Err(e)
        }
    };
    assert!(res.is_err(), "{res:?}");
    let ev = snapshot(&s.events);
    assert!(pos(&ev, "record") < pos(&ev, "part 0"), "{ev:?}");
    assert!(!ev.contains(&"complete".to_string()), "{ev:?}");
    assert!(pos(&ev, "abort") < pos(&ev, "clear"), "{ev:?}");
    assert!(s.open().is_empty());
    assert_eq!(s.object().await, None);
}

#[tokio::test]
async fn failed_abort_keeps_the_entry_for_the_next_start() {
    let s = Setup::new();
    let mut sink = s.sink(Some(0), true);
    let mut failed = false;
    for chunk in data(2 * PART_SIZE).chunks(1 << 20) {
        if sink.write(chunk).await.is_err() {
            failed = true;
            break;
        }
    }
    if failed {
        sink.abort().await;
    } else {
        assert!(sink.commit().await.is_err());
    }
    let ev = snapshot(&s.events);
    assert!(ev.contains(&"abort".to_string()), "{ev:?}");
    assert!(!ev.contains(&"clear".to_string()), "{ev:?}");
    let open = s.open();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].key, KEY);
    assert!(!open[0].upload_id.is_empty());
}

#[tokio::test]
async fn journal_failure_aborts_before_any_part() {
    let s = Setup::with_journal(true);
    let mut sink = s.sink(None, false);
    let mut err = None;
    for chunk in data(2 * PART_SIZE).chunks(1 << 20) {
        if let Err(e) = sink.write(chunk).await {
            err = Some(e);
            break;
        }
    }
    let err = err.expect("the first part must not go out unjournaled");
    assert!(matches!(err, StoreError::Journal { .. }), "{err:?}");
    assert!(err.to_string().contains("state is read-only"), "{err}");
    sink.abort().await;
    let ev = snapshot(&s.events);
    assert_eq!(ev[..3], ["create", "record", "abort"], "{ev:?}");
    assert!(!ev.iter().any(|e| e.starts_with("part")), "{ev:?}");
}

#[tokio::test]
async fn dropped_sink_aborts_and_clears_in_the_background() {
    let s = Setup::new();
    let mut sink = s.sink(None, false);
    sink.write(&data(PART_SIZE + 10)).await.expect("write");
    assert_eq!(s.open().len(), 1);
    drop(sink);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !snapshot(&s.events).contains(&"clear".to_string()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            snapshot(&s.events)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ev = snapshot(&s.events);
    assert!(pos(&ev, "part 0") < pos(&ev, "abort"), "{ev:?}");
    assert!(s.open().is_empty());
    assert_eq!(s.object().await, None);
}

/// A part's buffer comes back for the next part once its upload dropped it,
/// and no more than the parts in flight plus the one filling are kept.
#[test]
fn part_buffers_are_reused_and_the_pool_stays_bounded() {
    use super::{PartPool, POOLED};

    let pool = PartPool::default();
    let mut buf = pool.take();
    buf.extend_from_slice(b"part one");
    let addr = buf.as_ptr();
    let payload = pool.payload(buf);
    let in_flight = payload.clone();
    drop(payload);
    assert_eq!(pool.len(), 0, "returned while a request still held it");
    assert_eq!(
        in_flight.iter().next().map(|b| b.to_vec()),
        Some(b"part one".to_vec())
    );
    drop(in_flight);
    assert_eq!(pool.len(), 1);
    let again = pool.take();
    assert_eq!(
        again.as_ptr(),
        addr,
        "a fresh buffer instead of the returned one"
    );
    assert!(again.is_empty() && again.capacity() == PART_SIZE);

    let payloads: Vec<_> = (0..POOLED + 3).map(|_| pool.payload(pool.take())).collect();
    drop(payloads);
    assert_eq!(pool.len(), POOLED);
}

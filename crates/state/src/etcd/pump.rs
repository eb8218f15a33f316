//! One etcd watch turned into a stream of [`Change`]s, resumed after every
//! failure from the last revision seen; a compacted start revision becomes
//! a [`Change::Resync`] (watchers re-list) and the watch goes on from the
//! oldest revision etcd still has.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions, WatchResponse};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::decode;
use crate::{Change, Event, EventKind};

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// What the watch delivers.
pub(crate) enum Pumped {
    Change(Change),
    /// Every event up to this store revision has been delivered.
    Progress(i64),
}

/// Feeds `sink` until `cancel` fires or `sink` returns false. Each
/// notification of `want_progress` asks etcd for a progress report.
pub(crate) async fn run(
    client: Client,
    prefix: String,
    mut from: i64,
    cancel: CancellationToken,
    want_progress: Option<Arc<Notify>>,
    mut sink: impl FnMut(Pumped) -> bool + Send,
) {
    let never = Arc::new(Notify::new());
    let want_progress = want_progress.unwrap_or(never);
    let mut retry = RETRY_MIN;
    loop {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(from);
        let mut watch_client = client.watch_client();
        let started = tokio::select! {
            _ = cancel.cancelled() => return,
            r = watch_client.watch(prefix.clone(), Some(opts)) => r,
        };
        match started {
            Err(e) => tracing::debug!(error = %e, "state watch: cannot start; retrying"),
            Ok(mut stream) => loop {
                let msg = tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = want_progress.notified() => {
                        // A failed request means a broken stream, which
                        // the next message reports.
                        let _ = stream.request_progress().await;
                        continue;
                    }
                    m = stream.message() => m,
                };
                let resp = match msg {
                    Ok(Some(resp)) => resp,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "state watch: stream failed; resuming");
                        break;
                    }
                };
                if resp.compact_revision() > 0 {
                    tracing::warn!(
                        from,
                        compacted = resp.compact_revision(),
                        "state watch: history compacted; watchers re-list"
                    );
                    if !sink(Pumped::Change(Change::Resync)) {
                        return;
                    }
                    from = resp.compact_revision();
                    break;
                }
                if resp.canceled() {
                    break;
                }
                retry = RETRY_MIN;
                if let Some(revision) = progress_report(&resp) {
                    if !sink(Pumped::Progress(revision)) {
                        return;
                    }
                }
                for ev in resp.events() {
                    let Some(change) = convert(ev) else { continue };
                    if let Some(kv) = ev.kv() {
                        from = kv.mod_revision() + 1;
                    }
                    if !sink(Pumped::Change(change)) {
                        return;
                    }
                }
            },
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(RETRY_MAX);
    }
}

/// A response without events that is not about creating or ending the
/// watch reports progress: etcd sends it only once the watch is synced,
/// so its header revision is covered.
fn progress_report(resp: &WatchResponse) -> Option<i64> {
    let plain = resp.events().is_empty()
        && !resp.created()
        && !resp.canceled()
        && resp.compact_revision() == 0;
    plain
        .then(|| resp.header().map(|h| h.revision()))
        .flatten()
        .filter(|r| *r > 0)
}

fn convert(ev: &etcd_client::Event) -> Option<Change> {
    let kv = ev.kv()?;
    let previous = ev
        .prev_kv()
        .and_then(|p| decode(p.value(), p.version()).ok());
    let revision = u64::try_from(kv.mod_revision()).ok()?;
    let (kind, resource) = match ev.event_type() {
        EventType::Put => {
            let resource = match decode(kv.value(), kv.version()) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "state watch: undecodable value skipped");
                    return None;
                }
            };
            // etcd counts a key's writes since its creation from 1.
            let kind = EventKind::of_write(kv.version() != 1);
            (kind, resource)
        }
        // Without the previous value there is nothing to report.
        EventType::Delete => (EventKind::Destroyed, previous.clone()?),
    };
    Some(Change::Event(Arc::new(Event {
        kind,
        resource,
        previous,
        revision,
    })))
}

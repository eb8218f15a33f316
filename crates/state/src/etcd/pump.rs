//! One etcd watch turned into a stream of [`Change`]s, resumed after every
//! failure from the last revision seen; a compacted start revision becomes
//! a [`Change::Resync`] (watchers re-list) and the watch goes on from the
//! oldest revision etcd still has.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions};
use tokio_util::sync::CancellationToken;

use super::decode;
use crate::{Change, Event, EventKind};

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Feeds `sink` until `cancel` fires or `sink` returns false.
pub(crate) async fn run(
    client: Client,
    prefix: String,
    mut from: i64,
    cancel: CancellationToken,
    mut sink: impl FnMut(Change) -> bool + Send,
) {
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
                    if !sink(Change::Resync) {
                        return;
                    }
                    from = resp.compact_revision();
                    break;
                }
                if resp.canceled() {
                    break;
                }
                retry = RETRY_MIN;
                for ev in resp.events() {
                    let Some(change) = convert(ev) else { continue };
                    if let Some(kv) = ev.kv() {
                        from = kv.mod_revision() + 1;
                    }
                    if !sink(change) {
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

//! Backup download endpoints, composed into the API router by the server.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use omni_api::auth::Role;
use omni_api::{Api, ApiError};
use omni_backup::parse_identity;
use omni_controllers::backup::data::identity_secret;
use omni_controllers::external::EtcdBackupSource;

/// Names the store whose copy a download reads.
const STORE_HEADER: &str = "x-omni-backup-store";
/// Decoded pieces (256 KiB each) buffered between the download and the body.
const PIECES: usize = 4;

#[derive(Clone)]
struct Ctx {
    api: Api,
    source: Arc<EtcdBackupSource>,
}

pub fn router(api: Api, source: Arc<EtcdBackupSource>) -> Router {
    Router::new()
        .route("/api/v1/etcd-backups/{id}/snapshot", get(snapshot))
        .route("/api/v1/etcd-backups/{id}/object", get(object))
        .route("/api/v1/etcd-backups/{id}/verify", get(verify))
        .with_state(Ctx { api, source })
}

/// Query of the snapshot download.
#[derive(Debug, serde::Deserialize)]
struct SnapshotQuery {
    /// Who checks the SHA-256 trailer: `server` (the default) or `client`.
    check: Option<String>,
}

/// The restored snapshot (decrypted, decompressed, trailer verified on the
/// way, unless `?check=client`: a client that checks it itself, as omnictl
/// does, spares the server a second SHA-256 of the whole snapshot). A
/// failure mid-stream aborts the response, so a client never takes a
/// truncated body for a whole one.
async fn snapshot(
    AxState(ctx): AxState<Ctx>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<SnapshotQuery>,
) -> Result<Response, ApiError> {
    let check = match query.check.as_deref() {
        None | Some("server") => omni_backup::TrailerCheck::Here,
        Some("client") => omni_backup::TrailerCheck::Reader,
        Some(other) => {
            return Err(ApiError::Invalid(format!(
                "query parameter check: {other:?} is neither \"server\" nor \"client\""
            )))
        }
    };
    let caller = ctx.api.caller(&headers).await?;
    caller.require(Role::Operator, "downloading backups")?;
    let (_, data, _) = ctx.source.locate(&id).await?;
    let identity = parse_identity(&identity_secret(&data))
        .map_err(|e| ApiError::Internal(format!("backup key of cluster is unusable: {e}")))?;
    // Of several copies, one that reads intact (primary first).
    let copy = ctx.source.choose(&id, &identity).await?;
    let (key, store, store_name) = (copy.key, copy.store, copy.name);
    tracing::info!(backup = %id, store = %store_name, token = %caller.token_id, "snapshot download");
    // The decoded pieces become the body as they are: an AsyncWrite pipe
    // here cost two copies of every byte and a wakeup per few KiB.
    let (tx, rx) = tokio::sync::mpsc::channel::<axum::body::Bytes>(PIECES);
    let task = tokio::spawn(async move {
        let r = omni_backup::download_to_channel(&store, &key, &identity, tx, check).await;
        if let Err(e) = &r {
            tracing::warn!(error = %e, "snapshot download failed");
        }
        r.map(|_| ()).map_err(|e| e.to_string())
    });
    let tail = futures::stream::once(async move {
        match task.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Err(std::io::Error::other(e))),
            Err(e) => Some(Err(std::io::Error::other(e.to_string()))),
        }
    })
    .filter_map(|x| async move { x });
    let pieces = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    let body = Body::from_stream(pieces.chain(tail));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(STORE_HEADER, store_name)
        .body(body)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// The stored object as is (age-encrypted zstd), for admins who open it
/// with the standard tools.
async fn object(
    AxState(ctx): AxState<Ctx>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = ctx.api.caller(&headers).await?;
    caller.require(Role::Admin, "downloading encrypted backup objects")?;
    let (_, copies) = ctx.source.copies(&id).await?;
    let copy = copies
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::NotFound(id.clone()))?;
    let (key, store, store_name) = (copy.key, copy.store, copy.name);
    let stream = store
        .get_stream(&key)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .then(paced(omni_backup::limit::download()))
        .map(|r| r.map_err(|e| std::io::Error::other(e.to_string())));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(STORE_HEADER, store_name)
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Reads a backup end to end (decrypt, decompress, label and digest) without
/// sending it; the answer says whether it is intact and, if not, why.
async fn verify(
    AxState(ctx): AxState<Ctx>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let caller = ctx.api.caller(&headers).await?;
    caller.require(Role::Operator, "verifying backups")?;
    let (_, data, _) = ctx.source.locate(&id).await?;
    let identity = parse_identity(&identity_secret(&data))
        .map_err(|e| ApiError::Internal(format!("backup key of cluster is unusable: {e}")))?;
    // Copies in order until one is intact; earlier ones are reported.
    let checks = ctx.source.check_copies(&id, &identity).await?;
    let failed: Vec<serde_json::Value> = checks
        .iter()
        .filter_map(|c| {
            c.result
                .as_ref()
                .err()
                .map(|e| serde_json::json!({"store": c.copy.name, "error": e}))
        })
        .collect();
    let answer = match checks.last() {
        Some(c) => match &c.result {
            Ok(info) => {
                serde_json::json!({"id": id, "ok": true, "bytes": info.bytes, "sha256": info.sha256, "store": c.copy.name, "failedcopies": failed})
            }
            Err(e) => {
                serde_json::json!({"id": id, "ok": false, "error": e, "store": c.copy.name, "failedcopies": failed})
            }
        },
        None => serde_json::json!({"id": id, "ok": false, "error": "no copy found"}),
    };
    Ok(axum::Json(answer))
}

/// Holds each chunk back until the download limit lets it pass.
fn paced<T, E>(
    pacer: Option<Arc<omni_backup::limit::Pacer>>,
) -> impl FnMut(Result<T, E>) -> futures::future::BoxFuture<'static, Result<T, E>>
where
    T: AsRef<[u8]> + Send + 'static,
    E: Send + 'static,
{
    move |r| {
        let pacer = pacer.clone();
        Box::pin(async move {
            if let (Some(p), Ok(b)) = (&pacer, &r) {
                p.pace(b.as_ref().len()).await;
            }
            r
        })
    }
}

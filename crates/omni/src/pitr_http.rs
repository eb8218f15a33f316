//! Point-in-time restore endpoints: what a cluster's delta chains cover,
//! and a snapshot of the cluster at a chosen revision or time, replayed on
//! the server (it holds the cluster's key, and the drills' etcd and
//! etcdutl), handed over like a backup download.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use omni_api::auth::Role;
use omni_api::{Api, ApiError};
use omni_backup::parse_identity;
use omni_controllers::backup::data::{find, identity_secret};
use omni_controllers::continuous::pitr::{self, Target};
use omni_controllers::drill::DrillSettings;
use omni_controllers::external::EtcdBackupSource;
use omni_resources::Timestamp;
use tokio::sync::Semaphore;
use tokio_util::io::ReaderStream;

pub use omni_resources::pitr::REPORT_HEADER;

#[derive(Clone)]
struct Ctx {
    api: Api,
    source: Arc<EtcdBackupSource>,
    drill: DrillSettings,
    /// One replay at a time: each runs an etcd.
    one: Arc<Semaphore>,
}

pub fn router(api: Api, source: Arc<EtcdBackupSource>, drill: DrillSettings) -> Router {
    Router::new()
        .route("/api/v1/etcd-restore-points/{cluster}", get(points))
        .route(
            "/api/v1/etcd-restore-points/{cluster}/snapshot",
            get(snapshot),
        )
        .with_state(Ctx {
            api,
            source,
            drill,
            one: Arc::new(Semaphore::new(1)),
        })
}

#[derive(Debug, serde::Deserialize)]
struct PointQuery {
    revision: Option<i64>,
    time: Option<String>,
}

async fn cluster_store(
    ctx: &Ctx,
    cluster: &str,
) -> Result<
    (
        omni_resources::specs::backup::BackupDataSpec,
        omni_backup::BackupStore,
    ),
    ApiError,
> {
    let data = find(&ctx.source.state, cluster)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("cluster {cluster:?} has no backups")))?;
    // Chains live beside their full backups, in the cluster's primary store.
    let store = ctx
        .source
        .stores
        .of_cluster(&ctx.source.state, cluster)
        .await?
        .primary
        .store
        .map_err(ApiError::Unavailable)?;
    Ok((data, store))
}

/// The cluster's chains and its newest restorable point, from the store.
async fn points(
    AxState(ctx): AxState<Ctx>,
    headers: HeaderMap,
    Path(cluster): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let caller = ctx.api.caller(&headers).await?;
    caller.require(Role::Reader, "reading restore points")?;
    let (data, store) = cluster_store(&ctx, &cluster).await?;
    let unavailable = |e: omni_backup::StoreError| ApiError::Unavailable(e.to_string());
    let fulls = store.list(&data.clusteruuid).await.map_err(unavailable)?;
    let deltas = store
        .list_deltas(&data.clusteruuid)
        .await
        .map_err(unavailable)?;
    let chains = pitr::chains(&fulls, deltas);
    let now_ms = Timestamp::now().seconds * 1000;
    let mut newest: Option<(i64, i64)> = None;
    let list: Vec<serde_json::Value> = chains
        .iter()
        .filter_map(|c| {
            let (rev, until) = c.reach()?;
            if newest.is_none_or(|(_, u)| until > u) {
                newest = Some((rev, until));
            }
            Some(serde_json::json!({
                "backup": format!("{cluster}-{}", c.full.created_at_unix),
                "fullat": pitr::rfc3339(c.full.created_at_unix * 1000),
                "fromrevision": c.segments.first().map(|s| s.name.from_rev),
                "torevision": rev,
                "until": pitr::rfc3339(until),
                "segments": c.segments.len(),
                "bytes": c.segments.iter().map(|s| s.size).sum::<u64>(),
            }))
        })
        .collect();
    let newest = newest.map(|(rev, until)| {
        serde_json::json!({
            "revision": rev,
            "time": pitr::rfc3339(until),
            "rposeconds": (now_ms - until).max(0) as f64 / 1000.0,
        })
    });
    Ok(axum::Json(serde_json::json!({
        "cluster": cluster,
        "newest": newest,
        "chains": list,
    })))
}

/// Replays the cluster to `?revision=N` or `?time=RFC3339` and sends the
/// resulting snapshot (etcd's SHA-256 trailer included); the report comes
/// in the [`REPORT_HEADER`] header.
async fn snapshot(
    AxState(ctx): AxState<Ctx>,
    headers: HeaderMap,
    Path(cluster): Path<String>,
    Query(q): Query<PointQuery>,
) -> Result<Response, ApiError> {
    let caller = ctx.api.caller(&headers).await?;
    caller.require(Role::Operator, "restoring to a point in time")?;
    let target = match (q.revision, q.time.as_deref()) {
        (Some(n), None) if n > 0 => Target::Revision(n),
        (Some(n), None) => {
            return Err(ApiError::Invalid(format!(
                "revision: must be positive, got {n}"
            )))
        }
        (None, Some(t)) => Target::TimeMs(
            pitr::parse_time(t).map_err(|e| ApiError::Invalid(format!("time: {e}")))?,
        ),
        _ => {
            return Err(ApiError::Invalid(
                "give exactly one of revision and time".into(),
            ))
        }
    };
    let (data, store) = cluster_store(&ctx, &cluster).await?;
    let identity = parse_identity(&identity_secret(&data))
        .map_err(|e| ApiError::Internal(format!("backup key of cluster is unusable: {e}")))?;
    let _one = ctx
        .one
        .acquire()
        .await
        .map_err(|_| ApiError::Unavailable("shutting down".into()))?;
    std::fs::create_dir_all(&ctx.drill.work_dir)
        .map_err(|e| ApiError::Internal(format!("restore work dir: {e}")))?;
    let tmp = tempfile::Builder::new()
        .prefix("omni-pitr-")
        .tempdir_in(&ctx.drill.work_dir)
        .map_err(|e| ApiError::Internal(format!("restore work dir: {e}")))?;
    let out = tmp.path().join("snapshot.db");
    tracing::info!(%cluster, ?target, token = %caller.token_id, "point-in-time restore");
    let run = pitr::restore_point(
        &store,
        &data.clusteruuid,
        &identity,
        target,
        &ctx.drill,
        &out,
    );
    let report = match tokio::time::timeout(ctx.drill.timeout, run).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) if e.is_not_covered() => return Err(ApiError::NotFound(e.to_string())),
        Ok(Err(e)) => {
            tracing::warn!(%cluster, error = %e, "point-in-time restore failed");
            return Err(ApiError::Internal(format!("point-in-time restore: {e}")));
        }
        Err(_) => {
            return Err(ApiError::Unavailable(
                "point-in-time restore timed out".into(),
            ))
        }
    };
    tracing::info!(%cluster, revision = report.revision, replayed = report.replayed_revisions, "point-in-time restore ready");
    let file = tokio::fs::File::open(&out)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    // The temp dir goes when the body has been sent (or dropped).
    let stream = ReaderStream::new(file);
    let body = Body::from_stream(futures::StreamExt::map(stream, move |c| {
        let _keep = &tmp;
        c
    }));
    let json = serde_json::to_string(&report).map_err(|e| ApiError::Internal(e.to_string()))?;
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(
            REPORT_HEADER,
            HeaderValue::from_str(&json).map_err(|e| ApiError::Internal(e.to_string()))?,
        )
        .body(body)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

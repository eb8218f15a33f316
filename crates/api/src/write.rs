//! Writes: create, update, apply and delete of user-writable kinds.

use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use omni_resources::kinds::{TypeInfo, Writer};
use omni_resources::meta::ResourceKey;
use omni_resources::specs::alert::AlertReceiverSpec;
use omni_resources::specs::backup::{EtcdBackupS3ConfigSpec, S3_CONFIG_ID};
use omni_resources::specs::backup_store::{EtcdBackupStoreSpec, DEFAULT_STORE};
use omni_resources::specs::Kind;
use omni_resources::validate::{validate_id, validate_labels};
use omni_resources::Resource;
use serde_json::{json, Value};

use crate::auth::{Caller, Role};
use crate::resources::{kind_info, visible};
use crate::{Api, ApiError};

/// Parses and checks a user-written resource; returns it normalised.
pub(crate) fn prepare(
    api: &Api,
    caller: &Caller,
    body: &[u8],
) -> Result<(&'static TypeInfo, Resource), ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut res: Resource = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::Invalid(format!("invalid resource: {inner}"))
        } else {
            ApiError::Invalid(format!("{path}: {inner}"))
        }
    })?;
    let info = kind_info(&res.metadata.kind).map_err(|_| {
        ApiError::Invalid(format!(
            "metadata.type: unknown resource type {:?}",
            res.metadata.kind
        ))
    })?;
    authorize_write(caller, info)?;
    let m = &mut res.metadata;
    m.kind = info.name.to_string();
    if m.namespace.is_empty() {
        m.namespace = info.default_namespace.to_string();
    }
    if m.namespace != info.default_namespace {
        return Err(ApiError::Invalid(format!(
            "metadata.namespace: {} resources live in namespace {:?}, not {:?}",
            info.name, info.default_namespace, m.namespace
        )));
    }
    validate_id(&m.id)?;
    if info.name == EtcdBackupStoreSpec::TYPE && m.id == DEFAULT_STORE {
        return Err(ApiError::Invalid(format!(
            "metadata.id: {DEFAULT_STORE:?} is the server's own store (--etcd-backup-s3 or --etcd-backup-local-path); choose another name"
        )));
    }
    if info.name == EtcdBackupS3ConfigSpec::TYPE && m.id != S3_CONFIG_ID {
        return Err(ApiError::Invalid(format!(
            "metadata.id: the S3 configuration must be named {S3_CONFIG_ID:?}"
        )));
    }
    if !m.owner.is_empty() {
        return Err(ApiError::Invalid(
            "metadata.owner: is set by controllers only; leave it empty".into(),
        ));
    }
    validate_labels(&m.labels)?;
    validate_labels(&m.annotations)
        .map_err(|e| ApiError::Invalid(e.to_string().replacen("labels", "annotations", 1)))?;
    res.spec = info.validate_spec(&res.spec, &api.validation_context())?;
    Ok((info, res))
}

fn authorize_write(caller: &Caller, info: &TypeInfo) -> Result<(), ApiError> {
    match info.writer {
        Writer::User => {}
        Writer::Controller(owner) => {
            return Err(ApiError::Forbidden(format!(
                "{} is written only by {owner}; users cannot write it",
                info.name
            )))
        }
        Writer::External => {
            return Err(ApiError::Forbidden(format!(
                "{} is read from the backup store; it cannot be written",
                info.name
            )))
        }
    }
    if info.name == EtcdBackupS3ConfigSpec::TYPE || info.name == EtcdBackupStoreSpec::TYPE {
        caller.require(Role::Admin, "changing the backup store configuration")
    } else if info.name == AlertReceiverSpec::TYPE {
        // Receivers hold secrets and point the server's requests somewhere.
        caller.require(Role::Admin, "changing alert receivers")
    } else {
        caller.require(Role::Operator, &format!("writing {}", info.name))
    }
}

async fn admit(api: &Api, res: &Resource) -> Result<(), ApiError> {
    for (kind, hook) in &api.admission {
        if *kind == res.metadata.kind {
            hook.admit(res).await?;
        }
    }
    Ok(())
}

fn same_content(a: &Resource, b: &Resource) -> bool {
    a.spec == b.spec
        && a.metadata.labels == b.metadata.labels
        && a.metadata.annotations == b.metadata.annotations
}

/// Carries over what users may not set from the stored resource.
fn merge_into_stored(stored: &Resource, mut incoming: Resource) -> Resource {
    incoming.metadata.version = stored.metadata.version;
    incoming.metadata.finalizers = stored.metadata.finalizers.clone();
    incoming.metadata.owner = stored.metadata.owner.clone();
    incoming
}

pub(crate) async fn create(
    AxState(api): AxState<Api>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Resource>), ApiError> {
    let caller = api.caller(&headers).await?;
    let (info, mut res) = prepare(&api, &caller, &body)?;
    res.metadata.finalizers.clear();
    admit(&api, &res).await?;
    let created = api.state.create(res).await?;
    tracing::info!(resource = %created.key(), token = %caller.token_id, "created");
    Ok((StatusCode::CREATED, Json(visible(&caller, info, created))))
}

pub(crate) async fn update(
    AxState(api): AxState<Api>,
    headers: HeaderMap,
    Path((kind, namespace, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Json<Resource>, ApiError> {
    let caller = api.caller(&headers).await?;
    let (info, res) = prepare(&api, &caller, &body)?;
    if kind_info(&kind)?.name != info.name
        || namespace != res.metadata.namespace
        || id != res.metadata.id
    {
        return Err(ApiError::Invalid(
            "metadata: type, namespace and id must match the URL".into(),
        ));
    }
    if res.metadata.version == 0 {
        return Err(ApiError::Invalid(
            "metadata.version: is required for update (the version you read)".into(),
        ));
    }
    let stored = api.state.get(&res.key()).await?;
    if stored.metadata.version != res.metadata.version {
        return Err(ApiError::Conflict(format!(
            "resource {} version conflict: expected {}, found {}",
            res.key(),
            res.metadata.version,
            stored.metadata.version
        )));
    }
    let res = merge_into_stored(&stored, res);
    if stored.spec != res.spec {
        admit(&api, &res).await?;
    }
    let updated = api.state.update(res).await?;
    tracing::info!(resource = %updated.key(), token = %caller.token_id, "updated");
    Ok(Json(visible(&caller, info, updated)))
}

pub(crate) async fn apply(
    AxState(api): AxState<Api>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = api.caller(&headers).await?;
    let (info, res) = prepare(&api, &caller, &body)?;
    let (result, stored) = apply_with_retry(&api, res).await?;
    tracing::info!(resource = %stored.key(), result, token = %caller.token_id, "applied");
    Ok(Json(
        json!({"result": result, "resource": visible(&caller, info, stored)}),
    ))
}

/// Applies a prepared resource. Without a pinned version, apply is
/// last-writer-wins: a concurrent write between our read and our write is
/// retried, not reported.
pub(crate) async fn apply_with_retry(
    api: &Api,
    res: Resource,
) -> Result<(&'static str, Resource), ApiError> {
    let pinned = res.metadata.version != 0;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match apply_once(api, res.clone()).await {
            Err(ApiError::Conflict(_)) if !pinned && attempts < 16 => continue,
            other => return other,
        }
    }
}

async fn apply_once(api: &Api, mut res: Resource) -> Result<(&'static str, Resource), ApiError> {
    match api.state.get_opt(&res.key()).await? {
        None => {
            if res.metadata.version != 0 {
                return Err(ApiError::NotFound(format!(
                    "resource {} doesn't exist",
                    res.key()
                )));
            }
            res.metadata.finalizers.clear();
            admit(api, &res).await?;
            Ok(("created", api.state.create(res).await?))
        }
        Some(stored) => {
            if res.metadata.version != 0 && res.metadata.version != stored.metadata.version {
                return Err(ApiError::Conflict(format!(
                    "resource {} version conflict: expected {}, found {}",
                    res.key(),
                    res.metadata.version,
                    stored.metadata.version
                )));
            }
            if same_content(&stored, &res) {
                return Ok(("unchanged", stored));
            }
            let res = merge_into_stored(&stored, res);
            if stored.spec != res.spec {
                admit(api, &res).await?;
            }
            Ok(("updated", api.state.update(res).await?))
        }
    }
}

pub(crate) async fn destroy(
    AxState(api): AxState<Api>,
    headers: HeaderMap,
    Path((kind, namespace, id)): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = api.caller(&headers).await?;
    let info = kind_info(&kind)?;
    if let Some(source) = api.external_source(info.name) {
        caller.require(Role::Admin, &format!("deleting {}", info.name))?;
        source.delete(info.name, &id).await?;
        tracing::info!(kind = info.name, id, token = %caller.token_id, "deleted external resource");
        return Ok((StatusCode::OK, Json(json!({"destroyed": true}))));
    }
    authorize_write(&caller, info)?;
    let key = ResourceKey::new(&namespace, info.name, &id);
    let destroyed = api.state.teardown(&key).await?;
    tracing::info!(resource = %key, destroyed, token = %caller.token_id, "delete requested");
    let status = if destroyed {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(json!({"destroyed": destroyed}))))
}

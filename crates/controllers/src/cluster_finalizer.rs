//! A controller that keeps per-cluster outputs puts its finalizer on every
//! running cluster, so a deleted cluster waits until those outputs are
//! cleaned up; then the controller removes its finalizer.

use std::future::Future;

use omni_resources::specs::cluster::ClusterSpec;
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Phase, Resource, NS_DEFAULT};
use omni_state::{State, StateError};

/// Adds `name`'s finalizer to running clusters; for clusters being torn
/// down runs `clean_up` and removes the finalizer once it reports done.
pub async fn guard_clusters<F, Fut>(
    state: &State,
    name: &str,
    mut clean_up: F,
) -> Result<(), StateError>
where
    F: FnMut(Resource) -> Fut,
    Fut: Future<Output = Result<bool, StateError>>,
{
    for cluster in state
        .list(NS_DEFAULT, ClusterSpec::TYPE, &LabelSelector::default())
        .await?
    {
        guard(state, name, cluster, &mut clean_up).await?;
    }
    Ok(())
}

/// [`guard_clusters`] for one cluster, by name (gone: nothing to do).
pub async fn guard_cluster<F, Fut>(
    state: &State,
    name: &str,
    cluster: &str,
    mut clean_up: F,
) -> Result<(), StateError>
where
    F: FnMut(Resource) -> Fut,
    Fut: Future<Output = Result<bool, StateError>>,
{
    let key = omni_resources::meta::ResourceKey::new(NS_DEFAULT, ClusterSpec::TYPE, cluster);
    match state.get_opt(&key).await? {
        Some(c) => guard(state, name, c, &mut clean_up).await,
        None => Ok(()),
    }
}

async fn guard<F, Fut>(
    state: &State,
    name: &str,
    cluster: Resource,
    clean_up: &mut F,
) -> Result<(), StateError>
where
    F: FnMut(Resource) -> Fut,
    Fut: Future<Output = Result<bool, StateError>>,
{
    let ours = cluster.metadata.finalizers.iter().any(|f| f == name);
    let key = cluster.key();
    match cluster.metadata.phase {
        Phase::Running if !ours => match state.add_finalizer(&key, name).await {
            // Deleted meanwhile: nothing of ours to guard.
            Ok(()) | Err(StateError::NotFound(_) | StateError::TearingDown(_)) => {}
            Err(e) => return Err(e),
        },
        Phase::TearingDown if ours && clean_up(cluster).await? => {
            state.remove_finalizer(&key, name).await?;
        }
        _ => {}
    }
    Ok(())
}

/// The common case: a controller keeping one status per cluster (`kind` in
/// the ephemeral namespace, id = cluster) releases a deleted cluster once it
/// is no longer `busy` with it and that status is gone.
pub async fn guard_with_status(
    state: &State,
    name: &str,
    kind: &'static str,
    busy: impl Fn(&str) -> bool,
) -> Result<(), StateError> {
    guard_clusters(state, name, |c| {
        let (state, busy) = (state.clone(), busy(&c.metadata.id));
        async move {
            if busy {
                return Ok(false);
            }
            destroy_if_present(&state, omni_resources::NS_EPHEMERAL, kind, &c.metadata.id).await?;
            Ok(true)
        }
    })
    .await
}

/// Destroys `kind`/`id` in `namespace` if it exists.
pub async fn destroy_if_present(
    state: &State,
    namespace: &str,
    kind: &str,
    id: &str,
) -> Result<(), StateError> {
    match state
        .destroy(&omni_resources::meta::ResourceKey::new(namespace, kind, id))
        .await
    {
        Ok(()) | Err(StateError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn finalizer_is_added_then_removed_only_when_clean_up_is_done() {
        let state = State::memory();
        let c = Resource::new(ClusterSpec::TYPE, NS_DEFAULT, "c", serde_json::json!({}));
        let key = c.key();
        state.create(c).await.unwrap();
        guard_clusters(&state, "X", |_| async { Ok(true) })
            .await
            .unwrap();
        assert_eq!(state.get(&key).await.unwrap().metadata.finalizers, ["X"]);
        assert!(!state.teardown(&key).await.unwrap());
        guard_clusters(&state, "X", |_| async { Ok(false) })
            .await
            .unwrap();
        assert_eq!(
            state.get(&key).await.unwrap().metadata.phase,
            Phase::TearingDown,
            "not done: stays"
        );
        guard_clusters(&state, "X", |_| async { Ok(true) })
            .await
            .unwrap();
        assert!(
            state.get_opt(&key).await.unwrap().is_none(),
            "done: the last finalizer went and so did the cluster"
        );
    }
}

//! Cluster clean-up: the [`ClusterController`] puts its finalizer on every
//! running cluster; when a cluster is deleted (phase `tearingDown`) it tears
//! down the cluster's `MachineSetNodes` and `MachineSets`, waits until the
//! derived `ClusterMachines` are gone, then removes its finalizer so the
//! cluster goes too. Backups and `BackupDatas` are not touched: they outlive
//! the cluster on purpose.

use async_trait::async_trait;
use omni_resources::meta::ResourceKey;
use omni_resources::specs::cluster::{
    ClusterMachineSpec, ClusterSpec, MachineSetNodeSpec, MachineSetSpec,
};
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Phase, Resource, LABEL_CLUSTER, NS_DEFAULT};
use omni_runtime::{Action, BoxError, Context, Controller, Input};
use omni_state::{State, StateError};

/// Owns the clean-up of what belongs to a cluster.
pub struct ClusterController;

/// The controller's name, also its finalizer on clusters.
pub const NAME: &str = "ClusterController";

#[async_trait]
impl Controller for ClusterController {
    fn name(&self) -> &'static str {
        NAME
    }

    fn inputs(&self) -> Vec<Input> {
        vec![
            Input::by_id(ClusterSpec::TYPE),
            Input::by_label(MachineSetSpec::TYPE, LABEL_CLUSTER),
            Input::by_label(MachineSetNodeSpec::TYPE, LABEL_CLUSTER),
            Input::by_label(ClusterMachineSpec::TYPE, LABEL_CLUSTER),
        ]
    }

    /// It writes no kind of its own: it only tears down what users (or
    /// templates) created for the cluster, and its finalizer.
    fn outputs(&self) -> Vec<&'static str> {
        Vec::new()
    }

    async fn keys(&self, state: &State) -> Result<Vec<String>, BoxError> {
        let all = state
            .list(NS_DEFAULT, ClusterSpec::TYPE, &LabelSelector::default())
            .await?;
        Ok(all.into_iter().map(|c| c.metadata.id).collect())
    }

    fn concurrency(&self) -> usize {
        4
    }

    async fn reconcile(&self, name: &str, ctx: &Context) -> Result<Action, BoxError> {
        let key = ResourceKey::new(NS_DEFAULT, ClusterSpec::TYPE, name);
        let Some(cluster) = ctx.state.get_opt(&key).await? else {
            return Ok(Action::AwaitChange);
        };
        let ours = cluster.metadata.finalizers.iter().any(|f| f == NAME);
        match cluster.metadata.phase {
            Phase::Running if !ours => match ctx.state.add_finalizer(&key, NAME).await {
                Ok(()) => {}
                // Deleted meanwhile: nothing of ours to guard.
                Err(StateError::NotFound(_) | StateError::TearingDown(_)) => {}
                Err(e) => return Err(e.into()),
            },
            Phase::TearingDown if ours => tear_down(&ctx.state, &cluster).await?,
            _ => {}
        }
        Ok(Action::AwaitChange)
    }
}

/// One step of tearing a cluster down; removes the finalizer once nothing
/// of the cluster is left.
async fn tear_down(state: &State, cluster: &Resource) -> Result<(), StateError> {
    let name = &cluster.metadata.id;
    let selector = LabelSelector::equals(LABEL_CLUSTER, name);
    let nodes = state
        .list(NS_DEFAULT, MachineSetNodeSpec::TYPE, &selector)
        .await?;
    for node in &nodes {
        ignore_gone(state.teardown(&node.key()).await)?;
    }
    let sets = state
        .list(NS_DEFAULT, MachineSetSpec::TYPE, &selector)
        .await?;
    for set in &sets {
        ignore_gone(state.teardown(&set.key()).await)?;
    }
    // Cluster machines follow the nodes (their controller removes them);
    // their removal wakes us up again.
    let left = state
        .list(NS_DEFAULT, ClusterMachineSpec::TYPE, &selector)
        .await?
        .len()
        + state
            .list(NS_DEFAULT, MachineSetNodeSpec::TYPE, &selector)
            .await?
            .len()
        + state
            .list(NS_DEFAULT, MachineSetSpec::TYPE, &selector)
            .await?
            .len();
    if left == 0 {
        state.remove_finalizer(&cluster.key(), NAME).await?;
        tracing::info!(cluster = %name, "cluster torn down");
    } else {
        tracing::debug!(cluster = %name, left, "cluster teardown waits for its resources");
    }
    Ok(())
}

fn ignore_gone<T>(r: Result<T, StateError>) -> Result<(), StateError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_machines::ClusterMachineController;
    use omni_resources::{LABEL_MACHINE_SET, LABEL_ROLE_CONTROLPLANE};
    use omni_runtime::Runtime;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    fn labelled(kind: &str, id: &str, spec: serde_json::Value, cluster: &str) -> Resource {
        let mut r = Resource::new(kind, NS_DEFAULT, id, spec);
        r.metadata
            .labels
            .insert(LABEL_CLUSTER.into(), cluster.into());
        r
    }

    async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
        for _ in 0..250 {
            if f().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {what}");
    }

    async fn count(state: &State, kind: &str) -> usize {
        state
            .list(NS_DEFAULT, kind, &LabelSelector::default())
            .await
            .unwrap()
            .len()
    }

    #[tokio::test]
    async fn finalizer_is_added_and_delete_tears_down_the_cluster_resources() {
        let state = State::memory();
        let mut rt = Runtime::new(state.clone());
        rt.register(Arc::new(ClusterController)).unwrap();
        rt.register(Arc::new(ClusterMachineController)).unwrap();
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(rt.run(cancel.clone()));

        let cluster = Resource::new(ClusterSpec::TYPE, NS_DEFAULT, "c1", serde_json::json!({}));
        state.create(cluster).await.unwrap();
        let set = labelled(
            MachineSetSpec::TYPE,
            "c1-control-planes",
            serde_json::json!({"role": "controlplane"}),
            "c1",
        );
        state.create(set).await.unwrap();
        let mut node = labelled(MachineSetNodeSpec::TYPE, "m1", serde_json::json!({}), "c1");
        node.metadata
            .labels
            .insert(LABEL_MACHINE_SET.into(), "c1-control-planes".into());
        node.metadata
            .labels
            .insert(LABEL_ROLE_CONTROLPLANE.into(), String::new());
        state.create(node).await.unwrap();
        // Another cluster's node stays.
        let other = labelled(MachineSetNodeSpec::TYPE, "m2", serde_json::json!({}), "c2");
        state.create(other).await.unwrap();

        let key = ResourceKey::new(NS_DEFAULT, ClusterSpec::TYPE, "c1");
        eventually("finalizer and cluster machine", async || {
            let c = state.get(&key).await.unwrap();
            c.metadata.finalizers == [NAME] && count(&state, ClusterMachineSpec::TYPE).await == 2
        })
        .await;

        assert!(!state.teardown(&key).await.unwrap());
        eventually("cluster gone", async || {
            state.get_opt(&key).await.unwrap().is_none()
        })
        .await;
        assert_eq!(count(&state, MachineSetSpec::TYPE).await, 0);
        let nodes = state
            .list(
                NS_DEFAULT,
                MachineSetNodeSpec::TYPE,
                &LabelSelector::default(),
            )
            .await
            .unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].metadata.id, "m2");
        let cms = state
            .list(
                NS_DEFAULT,
                ClusterMachineSpec::TYPE,
                &LabelSelector::default(),
            )
            .await
            .unwrap();
        assert_eq!(cms.len(), 1);
        assert_eq!(cms[0].metadata.id, "m2");
        cancel.cancel();
        handle.await.unwrap();
    }
}

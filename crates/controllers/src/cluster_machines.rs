//! Derives `ClusterMachines` from `MachineSetNodes`: a machine is in a
//! cluster, with a role, exactly while a machine set node puts it there.

use std::collections::HashSet;

use async_trait::async_trait;
use omni_resources::meta::ResourceKey;
use omni_resources::specs::cluster::{ClusterMachineSpec, MachineSetNodeSpec};
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Resource, LABEL_CLUSTER, NS_DEFAULT};
use omni_runtime::{Action, BoxError, Context, Controller, Input};
use omni_state::{State, StateError};

pub struct ClusterMachineController;

const NAME: &str = "ClusterMachineController";

#[async_trait]
impl Controller for ClusterMachineController {
    fn name(&self) -> &'static str {
        NAME
    }

    fn inputs(&self) -> Vec<Input> {
        vec![Input::by_id(MachineSetNodeSpec::TYPE)]
    }

    fn outputs(&self) -> Vec<&'static str> {
        vec![ClusterMachineSpec::TYPE]
    }

    /// Nodes, and cluster machines whose node may be gone.
    async fn keys(&self, state: &State) -> Result<Vec<String>, BoxError> {
        let all = LabelSelector::default();
        let mut ids: HashSet<String> = HashSet::new();
        for kind in [MachineSetNodeSpec::TYPE, ClusterMachineSpec::TYPE] {
            let list = state.list(NS_DEFAULT, kind, &all).await?;
            ids.extend(list.into_iter().map(|r| r.metadata.id));
        }
        Ok(ids.into_iter().collect())
    }

    fn concurrency(&self) -> usize {
        4
    }

    async fn reconcile(&self, id: &str, ctx: &Context) -> Result<Action, BoxError> {
        let node = ctx
            .state
            .get_opt(&ResourceKey::new(NS_DEFAULT, MachineSetNodeSpec::TYPE, id))
            .await?
            .filter(|n| n.metadata.labels.contains_key(LABEL_CLUSTER));
        let existing = ctx
            .state
            .get_opt(&ResourceKey::new(NS_DEFAULT, ClusterMachineSpec::TYPE, id))
            .await?;
        match (node, existing) {
            (Some(node), Some(cm)) if cm.metadata.labels == node.metadata.labels => {}
            (Some(node), Some(mut cm)) => {
                cm.metadata.labels = node.metadata.labels.clone();
                ctx.state.update(cm).await?;
            }
            (Some(node), None) => {
                let mut cm = Resource::from_spec(
                    ClusterMachineSpec::TYPE,
                    NS_DEFAULT,
                    id,
                    &ClusterMachineSpec::default(),
                );
                cm.metadata.labels = node.metadata.labels.clone();
                cm.metadata.owner = NAME.to_string();
                ctx.state.create(cm).await?;
            }
            (None, Some(cm)) => match ctx.state.destroy(&cm.key()).await {
                Ok(()) | Err(StateError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            },
            (None, None) => {}
        }
        Ok(Action::AwaitChange)
    }
}

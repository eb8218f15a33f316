//! Derives `ClusterMachines` from `MachineSetNodes`: a machine is in a
//! cluster, with a role, exactly while a machine set node puts it there.

use async_trait::async_trait;
use omni_resources::specs::cluster::{ClusterMachineSpec, MachineSetNodeSpec};
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Resource, LABEL_CLUSTER, NS_DEFAULT};
use omni_runtime::{Action, BoxError, Context, Controller, Input};

pub struct ClusterMachineController;

const NAME: &str = "ClusterMachineController";

#[async_trait]
impl Controller for ClusterMachineController {
    fn name(&self) -> &'static str {
        NAME
    }

    fn inputs(&self) -> Vec<Input> {
        vec![Input::kind(MachineSetNodeSpec::TYPE)]
    }

    fn outputs(&self) -> Vec<&'static str> {
        vec![ClusterMachineSpec::TYPE]
    }

    async fn reconcile(&self, ctx: &Context) -> Result<Action, BoxError> {
        let all = LabelSelector::default();
        let nodes = ctx
            .state
            .list(NS_DEFAULT, MachineSetNodeSpec::TYPE, &all)
            .await?;
        let existing = ctx
            .state
            .list(NS_DEFAULT, ClusterMachineSpec::TYPE, &all)
            .await?;
        for node in nodes
            .iter()
            .filter(|n| n.metadata.labels.contains_key(LABEL_CLUSTER))
        {
            let id = &node.metadata.id;
            match existing.iter().find(|c| &c.metadata.id == id) {
                Some(cm) if cm.metadata.labels == node.metadata.labels => {}
                Some(cm) => {
                    let mut cm = cm.clone();
                    cm.metadata.labels = node.metadata.labels.clone();
                    ctx.state.update(cm).await?;
                }
                None => {
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
            }
        }
        for cm in existing {
            let wanted = nodes.iter().any(|n| {
                n.metadata.id == cm.metadata.id && n.metadata.labels.contains_key(LABEL_CLUSTER)
            });
            if !wanted {
                ctx.state.destroy(&cm.key()).await?;
            }
        }
        Ok(Action::AwaitChange)
    }
}

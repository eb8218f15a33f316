//! The etcd members of a cluster: its control-plane cluster machines,
//! reached through their machines' endpoints.

use omni_backup::{MemberEndpoint, TlsMaterial};
use omni_resources::specs::cluster::ClusterMachineSpec;
use omni_resources::specs::machine::{MachineSpec, MachineStatusSpec};
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, LABEL_CLUSTER, LABEL_ROLE_CONTROLPLANE, NS_DEFAULT};
use omni_state::{State, StateError};

/// Control-plane members of `cluster`, reachable ones first and the etcd
/// leader last (a follower's snapshot spares the leader).
pub async fn control_plane_members(
    state: &State,
    cluster: &str,
) -> Result<Vec<MemberEndpoint>, StateError> {
    let selector = LabelSelector::parse(&format!(
        "{LABEL_CLUSTER}={cluster},{LABEL_ROLE_CONTROLPLANE}"
    ))
    .unwrap_or_else(|_| LabelSelector::equals(LABEL_CLUSTER, cluster));
    let machines = state
        .list(NS_DEFAULT, ClusterMachineSpec::TYPE, &selector)
        .await?;
    let mut members = Vec::new();
    for cm in machines {
        let id = &cm.metadata.id;
        let Some((_, spec)) = state.get_spec::<MachineSpec>(NS_DEFAULT, id).await? else {
            continue;
        };
        // Not registered with an etcd member (yet): nothing to snapshot.
        if spec.etcdendpoints.is_empty() {
            continue;
        }
        let status = state
            .get_spec::<MachineStatusSpec>(NS_DEFAULT, id)
            .await?
            .map(|(_, s)| s);
        let rank = match &status {
            Some(s) if s.reachable && !s.leader => 0,
            Some(s) if s.reachable => 1,
            None => 1,
            Some(_) => 2,
        };
        let tls = (!spec.etcdca.is_empty()).then(|| TlsMaterial {
            ca_pem: spec.etcdca.clone(),
            cert_pem: (!spec.etcdcert.is_empty()).then(|| spec.etcdcert.clone()),
            key_pem: (!spec.etcdkey.is_empty()).then(|| spec.etcdkey.clone()),
        });
        members.push((
            rank,
            MemberEndpoint {
                name: id.clone(),
                urls: spec.etcdendpoints.clone(),
                tls,
            },
        ));
    }
    members.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    Ok(members.into_iter().map(|(_, m)| m).collect())
}

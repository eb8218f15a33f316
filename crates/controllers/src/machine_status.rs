//! What the machines' etcd members say about themselves.
//!
//! - [`MachineStatusController`] probes every machine's etcd member on a
//!   period (a `Maintenance.Status` call with a short timeout) and writes
//!   `MachineStatuses`: reachable, etcd version, member id (hex, as etcdctl
//!   prints it), leader, db size, an error in words, when it last looked.
//! - [`ClusterMachineStatusController`] turns those into
//!   `ClusterMachineStatuses`, one per cluster machine, labelled like the
//!   cluster machine (cluster, machine set, role).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use omni_backup::probe::{member_status, MemberStatus};
use omni_backup::{MemberEndpoint, SourceError, TlsMaterial};
use omni_resources::specs::cluster::{ClusterMachineSpec, ClusterMachineStatusSpec};
use omni_resources::specs::machine::{MachineSpec, MachineStatusSpec};
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Resource, Timestamp, NS_DEFAULT};
use omni_runtime::{Action, BoxError, Context, Controller, Input};
use omni_state::{State, StateError};
use tokio::task::JoinSet;

/// How often and how patiently machines are probed.
#[derive(Debug, Clone)]
pub struct MachineStatusSettings {
    /// Time between two probes of every machine.
    pub interval: Duration,
    /// Longest wait for a connection, and again for the status answer.
    pub timeout: Duration,
}

impl Default for MachineStatusSettings {
    fn default() -> Self {
        MachineStatusSettings {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(3),
        }
    }
}

/// Probes machines and writes `MachineStatuses`.
pub struct MachineStatusController {
    pub settings: MachineStatusSettings,
}

const MACHINE_STATUS: &str = "MachineStatusController";

/// The member endpoint of a machine, with its TLS material.
pub fn endpoint_of(id: &str, spec: &MachineSpec) -> MemberEndpoint {
    let tls = (!spec.etcdca.is_empty()).then(|| TlsMaterial {
        ca_pem: spec.etcdca.clone(),
        cert_pem: (!spec.etcdcert.is_empty()).then(|| spec.etcdcert.clone()),
        key_pem: (!spec.etcdkey.is_empty()).then(|| spec.etcdkey.clone()),
    });
    MemberEndpoint {
        name: id.to_string(),
        urls: spec.etcdendpoints.clone(),
        tls,
    }
}

/// A probe failure in words, naming where the member was looked for.
fn failure_text(urls: &[String], e: &SourceError) -> String {
    let at = urls.join(", ");
    match e {
        SourceError::NoUrls { .. } => "no etcd client URLs configured".to_string(),
        SourceError::Connect { detail, .. } => {
            format!("etcd member unreachable at {at}: cannot connect: {detail}")
        }
        SourceError::Status { detail, .. } => {
            format!("etcd member unreachable at {at}: status call failed: {detail}")
        }
        other => format!("etcd member at {at}: {other}"),
    }
}

/// Folds a probe result into the previous status: identity fields (member
/// id, version, db size) stay as last seen when the member does not answer.
pub fn next_status(
    previous: &MachineStatusSpec,
    urls: &[String],
    result: &Result<MemberStatus, SourceError>,
    now: Timestamp,
) -> MachineStatusSpec {
    let mut s = previous.clone();
    s.lastchecked = now;
    match result {
        Ok(st) => {
            s.reachable = true;
            s.etcdversion = st.version.clone();
            s.memberid = format!("{:x}", st.member_id);
            s.leader = st.is_leader();
            s.dbsize = st.db_size;
            s.error = st.problem().unwrap_or_default();
        }
        Err(e) => {
            s.reachable = false;
            s.leader = false;
            s.error = failure_text(urls, e);
        }
    }
    s
}

#[async_trait]
impl Controller for MachineStatusController {
    fn name(&self) -> &'static str {
        MACHINE_STATUS
    }

    fn inputs(&self) -> Vec<Input> {
        vec![Input::kind(MachineSpec::TYPE)]
    }

    fn outputs(&self) -> Vec<&'static str> {
        vec![MachineStatusSpec::TYPE]
    }

    async fn reconcile(&self, ctx: &Context) -> Result<Action, BoxError> {
        let all = LabelSelector::default();
        let machines = ctx.state.list(NS_DEFAULT, MachineSpec::TYPE, &all).await?;
        let mut probes = JoinSet::new();
        for m in &machines {
            let spec: MachineSpec = match m.spec_as() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(machine = %m.metadata.id, error = %e, "unreadable machine spec");
                    continue;
                }
            };
            let endpoint = endpoint_of(&m.metadata.id, &spec);
            let timeout = self.settings.timeout;
            probes.spawn(async move {
                let result = member_status(&endpoint, timeout).await;
                (endpoint, result)
            });
        }
        while let Some(joined) = tokio::select! {
            j = probes.join_next() => j,
            _ = ctx.cancel.cancelled() => None,
        } {
            let Ok((endpoint, result)) = joined else {
                continue;
            };
            let now = Timestamp::now();
            let written = ctx
                .state
                .modify::<MachineStatusSpec>(NS_DEFAULT, &endpoint.name, MACHINE_STATUS, |s| {
                    *s = next_status(s, &endpoint.urls, &result, now);
                })
                .await;
            match written {
                Ok(_) => {}
                // The machine went away meanwhile: the next pass cleans up.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Last, so that a status written by a probe of a machine deleted
        // meanwhile goes too (the deletion triggers another pass).
        let ids: HashSet<String> = ctx
            .state
            .list(NS_DEFAULT, MachineSpec::TYPE, &all)
            .await?
            .into_iter()
            .map(|m| m.metadata.id)
            .collect();
        for status in ctx
            .state
            .list(NS_DEFAULT, MachineStatusSpec::TYPE, &all)
            .await?
        {
            if !ids.contains(&status.metadata.id) {
                ctx.state.destroy(&status.key()).await?;
            }
        }
        Ok(Action::Requeue(self.settings.interval))
    }
}

/// Writes `ClusterMachineStatuses` from cluster machines and machine statuses.
pub struct ClusterMachineStatusController;

const CLUSTER_MACHINE_STATUS: &str = "ClusterMachineStatusController";

/// The status of one cluster machine, given what is known of its machine.
pub fn cluster_machine_status(
    id: &str,
    registered: bool,
    status: Option<&MachineStatusSpec>,
) -> ClusterMachineStatusSpec {
    let mut out = ClusterMachineStatusSpec::default();
    if !registered {
        out.stage = "unregistered".into();
        out.error = format!("machine {id} is not registered (no Machines resource)");
        return out;
    }
    let Some(s) = status else {
        out.stage = "waiting".into();
        return out;
    };
    out.etcdmemberid = s.memberid.clone();
    out.error = s.error.clone();
    out.stage = if !s.reachable {
        "unreachable"
    } else if !s.error.is_empty() {
        "degraded"
    } else {
        "running"
    }
    .into();
    out.ready = s.reachable && s.error.is_empty();
    out
}

#[async_trait]
impl Controller for ClusterMachineStatusController {
    fn name(&self) -> &'static str {
        CLUSTER_MACHINE_STATUS
    }

    fn inputs(&self) -> Vec<Input> {
        vec![
            Input::kind(ClusterMachineSpec::TYPE),
            Input::kind(MachineSpec::TYPE),
            Input::kind(MachineStatusSpec::TYPE),
            Input::kind(omni_resources::specs::cluster::ClusterSpec::TYPE),
        ]
    }

    fn outputs(&self) -> Vec<&'static str> {
        vec![ClusterMachineStatusSpec::TYPE]
    }

    async fn reconcile(&self, ctx: &Context) -> Result<Action, BoxError> {
        // A deleted cluster waits until the statuses of its machines are gone
        // (they go with its cluster machines).
        crate::cluster_finalizer::guard_clusters(&ctx.state, CLUSTER_MACHINE_STATUS, |c| {
            let state = ctx.state.clone();
            async move {
                let selector = LabelSelector::equals(omni_resources::LABEL_CLUSTER, &c.metadata.id);
                let left = state
                    .list(NS_DEFAULT, ClusterMachineStatusSpec::TYPE, &selector)
                    .await?;
                Ok(left.is_empty())
            }
        })
        .await?;
        let all = LabelSelector::default();
        let state = &ctx.state;
        let cms = state
            .list(NS_DEFAULT, ClusterMachineSpec::TYPE, &all)
            .await?;
        let machines: HashSet<String> = state
            .list(NS_DEFAULT, MachineSpec::TYPE, &all)
            .await?
            .into_iter()
            .map(|m| m.metadata.id)
            .collect();
        let statuses: HashMap<String, MachineStatusSpec> = state
            .list(NS_DEFAULT, MachineStatusSpec::TYPE, &all)
            .await?
            .into_iter()
            .filter_map(|r| Some((r.metadata.id.clone(), r.spec_as().ok()?)))
            .collect();
        for cm in &cms {
            let id = &cm.metadata.id;
            let spec = cluster_machine_status(id, machines.contains(id), statuses.get(id));
            put_labelled(
                state,
                id,
                CLUSTER_MACHINE_STATUS,
                &cm.metadata.labels,
                &spec,
            )
            .await?;
        }
        let wanted: HashSet<&str> = cms.iter().map(|c| c.metadata.id.as_str()).collect();
        for r in state
            .list(NS_DEFAULT, ClusterMachineStatusSpec::TYPE, &all)
            .await?
        {
            if !wanted.contains(r.metadata.id.as_str()) {
                state.destroy(&r.key()).await?;
            }
        }
        Ok(Action::AwaitChange)
    }
}

/// Creates or updates a controller-owned resource with labels; writes
/// nothing when spec, labels and owner are as stored. Retries conflicts.
async fn put_labelled<K: Kind + PartialEq>(
    state: &State,
    id: &str,
    owner: &str,
    labels: &BTreeMap<String, String>,
    spec: &K,
) -> Result<(), StateError> {
    loop {
        let result = match state.get_spec::<K>(NS_DEFAULT, id).await? {
            Some((res, current))
                if current == *spec
                    && res.metadata.labels == *labels
                    && res.metadata.owner == owner =>
            {
                return Ok(())
            }
            Some((mut res, _)) => {
                res.spec =
                    serde_json::to_value(spec).map_err(|e| StateError::Storage(e.to_string()))?;
                res.metadata.labels = labels.clone();
                res.metadata.owner = owner.to_string();
                state.update(res).await
            }
            None => {
                let mut res = Resource::from_spec(K::TYPE, NS_DEFAULT, id, spec);
                res.metadata.labels = labels.clone();
                res.metadata.owner = owner.to_string();
                state.create(res).await
            }
        };
        match result {
            Err(e) if e.is_conflict() => continue,
            other => return other.map(drop),
        }
    }
}

#[cfg(test)]
mod tests;

//! What the machines' etcd members say about themselves.
//!
//! - [`MachineStatusController`] probes every machine's etcd member on a
//!   period (a `Maintenance.Status` call with a short timeout) and writes
//!   `MachineStatuses`: reachable, etcd version, member id (hex, as etcdctl
//!   prints it), leader, db size, an error in words, when it last looked
//!   (refreshed at least every minute while nothing else changes).
//! - [`ClusterMachineStatusController`] turns those into
//!   `ClusterMachineStatuses`, one per cluster machine, labelled like the
//!   cluster machine (cluster, machine set, role).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use omni_backup::probe::{MemberStatus, Prober};
use omni_backup::{MemberEndpoint, SourceError, TlsMaterial};
use omni_resources::meta::ResourceKey;
use omni_resources::specs::cluster::{ClusterMachineSpec, ClusterMachineStatusSpec, ClusterSpec};
use omni_resources::specs::machine::{MachineSpec, MachineStatusSpec};
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Resource, Timestamp, NS_DEFAULT};
use omni_runtime::{Action, BoxError, Context, Controller, Input};
use omni_state::{State, StateError};

use crate::cluster_finalizer::destroy_if_present;
use crate::probe_pace::ProbePace;

/// How often and how patiently machines are probed.
#[derive(Debug, Clone)]
pub struct MachineStatusSettings {
    /// Shortest time between two probes of one machine.
    pub interval: Duration,
    /// Probes per second across the fleet (0: no limit); beyond
    /// `interval × rate` machines each one's period stretches.
    pub rate: f64,
    /// Longest wait for a connection, and again for the status answer.
    pub timeout: Duration,
}

/// The default fleet-wide probe budget. The request itself (a connection
/// and one HTTP/1.1 request to etcd's gateway) costs about 0.4 ms of CPU
/// plain and 1.1 ms with TLS client certificates (`probe_bench` example of
/// omni-backup); with the reconcile around it, and the status writes of a
/// machine's first probe, it is 1 to 2 ms in `omni`. Nearly all of omni's
/// idle CPU is probes (0.01 % of a core at 1,000 clusters with them off,
/// 1.0 % at 5 a second), so 5 a second stays about 1 % of a core however
/// large the fleet: fleets up to 50 machines keep the 10 s period, 10,000
/// machines are each probed every 2,000 s (`scripts/bench-fleet.sh`).
pub const DEFAULT_PROBE_RATE: f64 = 5.0;

impl Default for MachineStatusSettings {
    fn default() -> Self {
        MachineStatusSettings {
            interval: Duration::from_secs(10),
            rate: DEFAULT_PROBE_RATE,
            timeout: Duration::from_secs(3),
        }
    }
}

/// Probes machines and writes `MachineStatuses`.
pub struct MachineStatusController {
    pace: ProbePace,
    prober: Prober,
}

impl MachineStatusController {
    pub fn new(settings: MachineStatusSettings) -> Self {
        MachineStatusController {
            pace: ProbePace::new(settings.interval, settings.rate),
            prober: Prober::new(settings.timeout),
        }
    }
}

const MACHINE_STATUS: &str = "MachineStatusController";

/// Longest a status keeps its `lastchecked` while the probes see no change
/// (or two and a half probe periods when the fleet stretches them: a write
/// per unchanged probe would double what a probe costs).
const LASTCHECKED_REFRESH: f64 = 60.0;

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
        vec![Input::by_id(MachineSpec::TYPE)]
    }

    fn outputs(&self) -> Vec<&'static str> {
        vec![MachineStatusSpec::TYPE]
    }

    /// Machines, and statuses whose machine may be gone.
    async fn keys(&self, state: &State) -> Result<Vec<String>, BoxError> {
        let mut all = ids(state, MachineSpec::TYPE).await?;
        all.extend(ids(state, MachineStatusSpec::TYPE).await?);
        Ok(all.into_iter().collect())
    }

    /// Probes wait mostly on the network: many at once.
    fn concurrency(&self) -> usize {
        32
    }

    /// Probes one machine's member and records what it said; a machine
    /// without etcd endpoints (a worker) has no member and no status.
    async fn reconcile(&self, id: &str, ctx: &Context) -> Result<Action, BoxError> {
        let machine = ctx.state.get_spec::<MachineSpec>(NS_DEFAULT, id).await?;
        let Some((_, spec)) = machine.filter(|(_, s)| !s.etcdendpoints.is_empty()) else {
            self.pace.forget(id);
            destroy_if_present(&ctx.state, NS_DEFAULT, MachineStatusSpec::TYPE, id).await?;
            return Ok(Action::AwaitChange);
        };
        self.pace.track(id);
        let endpoint = endpoint_of(id, &spec);
        let slot = self.pace.reserve(tokio::time::Instant::now());
        let result = tokio::select! {
            r = async {
                tokio::time::sleep_until(slot).await;
                self.prober.status(&endpoint).await
            } => r,
            _ = ctx.cancel.cancelled() => return Ok(Action::AwaitChange),
        };
        let period = self.pace.period();
        let now = Timestamp::now();
        let written = ctx
            .state
            .modify::<MachineStatusSpec>(NS_DEFAULT, id, MACHINE_STATUS, |s| {
                let next = next_status(s, &endpoint.urls, &result, now);
                // Nothing but the time changed: a write per probe would
                // cost a commit and an event per machine and period, so the
                // time is refreshed only now and then.
                let same = MachineStatusSpec {
                    lastchecked: s.lastchecked,
                    ..next.clone()
                } == *s;
                let age = now.as_secs_f64() - s.lastchecked.as_secs_f64();
                let fresh = age < LASTCHECKED_REFRESH.max(period.as_secs_f64() * 2.5);
                if !(same && fresh) {
                    *s = next;
                }
            })
            .await;
        match written {
            // Deleted meanwhile: that event runs this key again, which
            // removes the status.
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Action::Requeue(period))
    }
}

async fn ids(state: &State, kind: &str) -> Result<HashSet<String>, StateError> {
    Ok(state
        .list(NS_DEFAULT, kind, &LabelSelector::default())
        .await?
        .into_iter()
        .map(|r| r.metadata.id)
        .collect())
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

/// The status of a cluster machine whose machine has no etcd member: a
/// worker is ready once registered; a control-plane machine needs one.
pub fn memberless_status(id: &str, control_plane: bool) -> ClusterMachineStatusSpec {
    let mut out = ClusterMachineStatusSpec::default();
    if control_plane {
        out.stage = "degraded".into();
        out.error = format!("control-plane machine {id} has no etcd endpoints");
    } else {
        out.stage = "running".into();
        out.ready = true;
    }
    out
}

/// Keys: `m:<machine>` for one cluster machine, `c:<cluster>` for the
/// finalizer on one cluster.
fn machine_key(id: &str) -> String {
    format!("m:{id}")
}

fn cluster_key(id: &str) -> String {
    format!("c:{id}")
}

#[async_trait]
impl Controller for ClusterMachineStatusController {
    fn name(&self) -> &'static str {
        CLUSTER_MACHINE_STATUS
    }

    fn inputs(&self) -> Vec<Input> {
        let by_machine = |kind| {
            Input::lookup(kind, |_, r: Resource| {
                Box::pin(async move { vec![machine_key(&r.metadata.id)] })
            })
        };
        vec![
            by_machine(ClusterMachineSpec::TYPE),
            by_machine(MachineSpec::TYPE),
            by_machine(MachineStatusSpec::TYPE),
            Input::lookup(ClusterSpec::TYPE, |_, r: Resource| {
                Box::pin(async move { vec![cluster_key(&r.metadata.id)] })
            }),
        ]
    }

    fn outputs(&self) -> Vec<&'static str> {
        vec![ClusterMachineStatusSpec::TYPE]
    }

    async fn keys(&self, state: &State) -> Result<Vec<String>, BoxError> {
        let mut machines = ids(state, ClusterMachineSpec::TYPE).await?;
        machines.extend(ids(state, ClusterMachineStatusSpec::TYPE).await?);
        let clusters = ids(state, ClusterSpec::TYPE).await?;
        Ok(machines
            .iter()
            .map(|m| machine_key(m))
            .chain(clusters.iter().map(|c| cluster_key(c)))
            .collect())
    }

    fn concurrency(&self) -> usize {
        8
    }

    async fn reconcile(&self, key: &str, ctx: &Context) -> Result<Action, BoxError> {
        let state = &ctx.state;
        if let Some(cluster) = key.strip_prefix("c:") {
            // A deleted cluster waits until the statuses of its machines
            // are gone (they go with its cluster machines).
            crate::cluster_finalizer::guard_cluster(state, CLUSTER_MACHINE_STATUS, cluster, |c| {
                let state = state.clone();
                async move {
                    let selector =
                        LabelSelector::equals(omni_resources::LABEL_CLUSTER, &c.metadata.id);
                    let left = state
                        .list(NS_DEFAULT, ClusterMachineStatusSpec::TYPE, &selector)
                        .await?;
                    Ok(left.is_empty())
                }
            })
            .await?;
            return Ok(Action::AwaitChange);
        }
        let Some(id) = key.strip_prefix("m:") else {
            return Ok(Action::AwaitChange);
        };
        let Some(cm) = state
            .get_opt(&ResourceKey::new(NS_DEFAULT, ClusterMachineSpec::TYPE, id))
            .await?
        else {
            let key = ResourceKey::new(NS_DEFAULT, ClusterMachineStatusSpec::TYPE, id);
            if let Some(old) = state.get_opt(&key).await? {
                destroy_if_present(state, NS_DEFAULT, ClusterMachineStatusSpec::TYPE, id).await?;
                if let Some(c) = old.metadata.labels.get(omni_resources::LABEL_CLUSTER) {
                    ctx.trigger.poke_key(&cluster_key(c));
                }
            }
            return Ok(Action::AwaitChange);
        };
        let machine = state.get_spec::<MachineSpec>(NS_DEFAULT, id).await?;
        let spec = match machine {
            Some((_, m)) if m.etcdendpoints.is_empty() => {
                let cp = cm
                    .metadata
                    .labels
                    .contains_key(omni_resources::LABEL_ROLE_CONTROLPLANE);
                memberless_status(id, cp)
            }
            registered => {
                let status = state
                    .get_spec::<MachineStatusSpec>(NS_DEFAULT, id)
                    .await?
                    .map(|(_, s)| s);
                cluster_machine_status(id, registered.is_some(), status.as_ref())
            }
        };
        put_labelled(
            state,
            id,
            CLUSTER_MACHINE_STATUS,
            &cm.metadata.labels,
            &spec,
        )
        .await?;
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

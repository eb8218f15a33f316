//! The alert controller: derives the firing alerts of each cluster (backup
//! failed, backups stale, drill failed, retention stuck, copies to the secondary store failing) and of the store
//! (configuration invalid) from the statuses other controllers write, keeps
//! one `AlertStatuses` resource per alert instance (its only output), and
//! delivers firing, repeated and resolved messages to every
//! `AlertReceivers` that wants them.
//!
//! Keys are cluster names, plus [`SINGLETON`] for the store. Delivery runs
//! in background tasks ([`Context::tasks`]) so a slow or dead receiver
//! never holds up a reconcile, let alone a backup; a failed delivery stays
//! due in the status and is retried with capped exponential backoff, also
//! after a restart. Receiver URLs and headers are never logged: log lines
//! name the receiver by its id.

pub mod deliver;
pub mod derive;
pub mod payload;
pub mod track;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use omni_resources::meta::ResourceKey;
use omni_resources::specs::alert::{event, state, AlertReceiverSpec, AlertStatusSpec};
use omni_resources::specs::backup::{
    EtcdBackupOverallStatusSpec, EtcdBackupStatusSpec, OVERALL_STATUS_ID,
};
use omni_resources::specs::backup_drill::EtcdBackupDrillStatusSpec;
use omni_resources::specs::backup_retention::EtcdBackupRetentionStatusSpec;
use omni_resources::specs::backup_store::EtcdBackupCopyStatusSpec;
use omni_resources::specs::cluster::ClusterSpec;
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Phase, Timestamp, NS_DEFAULT, NS_EPHEMERAL};
use omni_runtime::{Action, BoxError, Context, Controller, Input, SINGLETON};
use omni_state::State;

use derive::{ClusterFacts, Condition};
use track::Due;

pub const NAME: &str = "AlertController";

/// Alerts about one cluster, in the order they are evaluated.
const CLUSTER_ALERTS: &[&str] = &[
    event::BACKUP_FAILED,
    event::BACKUP_STALE,
    event::DRILL_FAILED,
    event::RETENTION_IDLE,
    event::COPY_FAILED,
];

/// Knobs of the alert controller.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// First retry delay of a failed delivery (doubles per failure).
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Longest a delivery request may take.
    pub timeout: Duration,
    /// Expected interval of clusters whose automatic backups set none
    /// (the server's longest allowed interval).
    pub max_interval: Duration,
    /// The server's base URL, for links back in messages.
    pub base_url: Option<String>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
            max_interval: Duration::from_secs(24 * 3600),
            base_url: None,
        }
    }
}

struct Receiver {
    name: String,
    spec: AlertReceiverSpec,
    clusters: LabelSelector,
}

/// One alert instance to evaluate: per receiver (in order) the condition
/// as that receiver sees it; `hold` keeps the stored state unchanged;
/// `gone`: the cluster no longer exists, so the status goes once resolved
/// and delivered.
struct Instance<'a> {
    alert: &'a str,
    cluster: &'a str,
    conditions: &'a [Option<Condition>],
    hold: bool,
    gone: bool,
}

/// The status id of an alert instance.
pub fn status_id(alert: &str, cluster: &str) -> String {
    if cluster.is_empty() {
        alert.to_string()
    } else {
        format!("{cluster}.{alert}")
    }
}

pub struct AlertController {
    settings: AlertSettings,
    client: reqwest::Client,
    /// (status id, receiver) deliveries under way: one at a time each.
    inflight: Arc<Mutex<HashSet<(String, String)>>>,
    /// Retention idle-run counters per cluster. Kept in memory: after a
    /// restart counting starts over, which only delays that alert.
    idle: Mutex<HashMap<String, (u32, Timestamp, u64)>>,
}

impl AlertController {
    /// # Errors
    /// The HTTP client cannot be built (no TLS roots).
    pub fn new(settings: AlertSettings) -> Result<Self, reqwest::Error> {
        Ok(AlertController {
            client: deliver::client(settings.timeout)?,
            settings,
            inflight: Arc::default(),
            idle: Mutex::default(),
        })
    }

    async fn receivers(&self, state: &State) -> Result<Vec<Receiver>, BoxError> {
        let all = LabelSelector::default();
        let mut out = Vec::new();
        for res in state
            .list(NS_DEFAULT, AlertReceiverSpec::TYPE, &all)
            .await?
        {
            let name = res.metadata.id.clone();
            let parsed = res
                .spec_as::<AlertReceiverSpec>()
                .map_err(|e| e.to_string());
            let parsed = parsed.and_then(|spec| {
                let clusters = LabelSelector::parse(&spec.clusters).map_err(|e| e.to_string())?;
                Ok((spec, clusters))
            });
            match parsed {
                Ok((spec, clusters)) => out.push(Receiver {
                    name,
                    spec,
                    clusters,
                }),
                Err(e) => tracing::warn!(receiver = %name, error = %e, "unusable alert receiver"),
            }
        }
        Ok(out)
    }

    /// What the state says about a running cluster; `None` when it is gone.
    async fn facts(
        &self,
        state: &State,
        name: &str,
    ) -> Result<Option<(ClusterFacts, BTreeMap<String, String>)>, BoxError> {
        let key = ResourceKey::new(NS_DEFAULT, ClusterSpec::TYPE, name);
        let Some(cluster) = state
            .get_opt(&key)
            .await?
            .filter(|c| c.metadata.phase == Phase::Running)
        else {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(name);
            return Ok(None);
        };
        let spec: ClusterSpec = cluster.spec_as()?;
        let backup = state
            .get_spec::<EtcdBackupStatusSpec>(NS_EPHEMERAL, name)
            .await?;
        let drill = state
            .get_spec::<EtcdBackupDrillStatusSpec>(NS_EPHEMERAL, name)
            .await?;
        let retention = state
            .get_spec::<EtcdBackupRetentionStatusSpec>(NS_EPHEMERAL, name)
            .await?;
        let retention = retention.map(|(_, s)| s);
        let copy = state
            .get_spec::<EtcdBackupCopyStatusSpec>(NS_EPHEMERAL, name)
            .await?
            .map(|(_, s)| s);
        let idle_runs = match &retention {
            Some(r) => {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                let prev = idle.get(name).copied().unwrap_or_default();
                let next = derive::count_idle_runs(prev, r);
                idle.insert(name.to_string(), next);
                next.0
            }
            None => 0,
        };
        let facts = ClusterFacts {
            cluster: name.to_string(),
            created: cluster.metadata.created.unwrap_or_default(),
            interval: derive::expected_interval(&spec, self.settings.max_interval),
            backup: backup.map(|(_, s)| s),
            drill: drill.map(|(_, s)| s),
            retention,
            retention_idle_runs: idle_runs,
            copy,
        };
        Ok(Some((facts, cluster.metadata.labels)))
    }

    /// Updates one alert instance and starts the deliveries due; returns
    /// when it next needs a look.
    async fn evaluate(
        &self,
        ctx: &Context,
        instance: Instance<'_>,
        receivers: &[Receiver],
        now: Timestamp,
    ) -> Result<Option<Timestamp>, BoxError> {
        let Instance {
            alert,
            cluster,
            conditions,
            hold,
            gone,
        } = instance;
        // The key is the cluster ([`SINGLETON`] for the store).
        let id = status_id(alert, cluster);
        let any = conditions.iter().flatten().next();
        let existing = ctx
            .state
            .get_spec::<AlertStatusSpec>(NS_EPHEMERAL, &id)
            .await?;
        let status = match existing {
            None if any.is_none() || hold => return Ok(None),
            // Held: deliveries still due go out, nothing else changes.
            Some((_, status)) if hold => status,
            _ => {
                let firing: Vec<(String, bool)> = receivers
                    .iter()
                    .zip(conditions)
                    .map(|(r, c)| (r.name.clone(), c.is_some()))
                    .collect();
                let stored = ctx
                    .state
                    .modify::<AlertStatusSpec>(NS_EPHEMERAL, &id, NAME, |s| {
                        track::update(s, alert, cluster, any, &firing, now)
                    })
                    .await?;
                stored.spec_as()?
            }
        };
        let mut wake: Option<Timestamp> = None;
        let mut sending = false;
        for d in &status.receivers {
            let Some(r) = receivers.iter().find(|r| r.name == d.receiver) else {
                continue;
            };
            match track::due(d, r.spec.sendresolved, r.spec.resend(), now) {
                Due::Now(state) => {
                    sending = true;
                    self.spawn(ctx, &id, r, &status, state, now)
                }
                Due::At(t) => wake = Some(wake.map_or(t, |w| w.min(t))),
                Due::Never => {}
            }
        }
        if gone && !sending && wake.is_none() && status.state != state::FIRING {
            crate::cluster_finalizer::destroy_if_present(
                &ctx.state,
                NS_EPHEMERAL,
                AlertStatusSpec::TYPE,
                &id,
            )
            .await?;
        }
        Ok(wake)
    }

    /// Sends `state` of the alert to `r` in the background, then records
    /// the outcome and reconciles the alert's key (its cluster) again.
    fn spawn(
        &self,
        ctx: &Context,
        id: &str,
        r: &Receiver,
        status: &AlertStatusSpec,
        state: &'static str,
        now: Timestamp,
    ) {
        if ctx.cancel.is_cancelled() {
            return;
        }
        let slot = (id.to_string(), r.name.clone());
        if !self
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(slot.clone())
        {
            return;
        }
        let message = payload::Message {
            alert: status,
            state,
            now,
            resend: r.spec.resend(),
            generator_url: self.generator_url(&status.cluster),
        };
        let body = payload::body(&r.spec.kind, &message);
        let (client, spec, receiver) = (self.client.clone(), r.spec.clone(), r.name.clone());
        let (store, trigger, abort) = (ctx.state.clone(), ctx.trigger.clone(), ctx.abort.clone());
        let (inflight, key, id) = (
            self.inflight.clone(),
            status.cluster.clone(),
            id.to_string(),
        );
        let (retry_min, retry_max) = (self.settings.retry_min, self.settings.retry_max);
        ctx.tasks.spawn(async move {
            // The reconcile that chose this delivery read the status before
            // taking the slot; a delivery that held the slot meanwhile may
            // have sent and recorded this very state. Look again, inside
            // the slot, so one state goes out once.
            let result = if still_due(&store, &id, &receiver, &spec, state).await {
                tokio::select! {
                    r = deliver::send(&client, &spec, &body) => Some(r),
                    _ = abort.cancelled() => None,
                }
            } else {
                None
            };
            if let Some(result) = result {
                match &result {
                    Ok(()) => tracing::info!(receiver = %receiver, alert = %id, state, "alert delivered"),
                    Err(e) => tracing::warn!(receiver = %receiver, alert = %id, state, error = %e, "alert delivery failed; will retry"),
                }
                let result = result.map_err(|e| e.to_string());
                let at = Timestamp::now();
                let written = store
                    .modify::<AlertStatusSpec>(NS_EPHEMERAL, &id, NAME, |s| {
                        track::record(s, &receiver, state, result.clone(), at, |n| {
                            deliver::backoff(n, retry_min, retry_max)
                        })
                    })
                    .await;
                if let Err(e) = written {
                    tracing::warn!(alert = %id, error = %e, "recording an alert delivery failed");
                }
            }
            inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&slot);
            trigger.poke_key(&key);
        });
    }

    fn generator_url(&self, cluster: &str) -> Option<String> {
        let base = self.settings.base_url.as_ref()?.trim_end_matches('/');
        Some(if cluster.is_empty() {
            format!("{base}/")
        } else {
            format!("{base}/ui/clusters/{cluster}")
        })
    }

    async fn reconcile_store(
        &self,
        ctx: &Context,
        receivers: &[Receiver],
        now: Timestamp,
    ) -> Result<Option<Timestamp>, BoxError> {
        let overall = ctx
            .state
            .get_spec::<EtcdBackupOverallStatusSpec>(NS_EPHEMERAL, OVERALL_STATUS_ID)
            .await?;
        let condition = overall.and_then(|(_, s)| derive::store_condition(&s.configurationerror));
        let conditions: Vec<Option<Condition>> = receivers
            .iter()
            .map(|r| condition.clone().filter(|c| r.spec.wants(c.alert)))
            .collect();
        let instance = Instance {
            alert: event::STORE_CONFIG_INVALID,
            cluster: SINGLETON,
            conditions: &conditions,
            hold: false,
            gone: false,
        };
        self.evaluate(ctx, instance, receivers, now).await
    }

    async fn reconcile_cluster(
        &self,
        ctx: &Context,
        name: &str,
        receivers: &[Receiver],
        now: Timestamp,
    ) -> Result<Option<Timestamp>, BoxError> {
        let facts = self.facts(&ctx.state, name).await?;
        let mut wake: Option<Timestamp> = None;
        let per_receiver: Vec<Vec<Condition>> = receivers
            .iter()
            .map(|r| match &facts {
                Some((f, labels)) if r.clusters.matches(labels) => {
                    if let Some(at) = derive::stale_at(f, r.spec.staleafterintervals) {
                        if at > now && r.spec.wants(event::BACKUP_STALE) {
                            wake = Some(wake.map_or(at, |w| w.min(at)));
                        }
                    }
                    derive::cluster_conditions(f, &r.spec, now)
                        .into_iter()
                        .filter(|c| r.spec.wants(c.alert))
                        .collect()
                }
                _ => Vec::new(),
            })
            .collect();
        for alert in CLUSTER_ALERTS {
            let conditions: Vec<Option<Condition>> = per_receiver
                .iter()
                .map(|cs| cs.iter().find(|c| c.alert == *alert).cloned())
                .collect();
            let hold = facts.as_ref().is_some_and(|(f, _)| derive::holds(f, alert));
            let instance = Instance {
                alert,
                cluster: name,
                conditions: &conditions,
                hold,
                gone: facts.is_none(),
            };
            let next = self.evaluate(ctx, instance, receivers, now).await?;
            if let Some(t) = next {
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
        }
        Ok(wake)
    }
}

/// Whether `state` is still due to `receiver` by the stored status (true
/// when the status cannot be read: sending twice beats not sending).
async fn still_due(
    store: &State,
    id: &str,
    receiver: &str,
    spec: &AlertReceiverSpec,
    state: &'static str,
) -> bool {
    let Ok(Some((_, status))) = store.get_spec::<AlertStatusSpec>(NS_EPHEMERAL, id).await else {
        return true;
    };
    status
        .receivers
        .iter()
        .find(|d| d.receiver == receiver)
        .is_none_or(|d| {
            matches!(
                track::due(d, spec.sendresolved, spec.resend(), Timestamp::now()),
                Due::Now(s) if s == state
            )
        })
}

#[async_trait]
impl Controller for AlertController {
    fn name(&self) -> &'static str {
        NAME
    }

    fn inputs(&self) -> Vec<Input> {
        vec![
            Input::by_id(ClusterSpec::TYPE),
            Input::by_id(EtcdBackupStatusSpec::TYPE),
            Input::by_id(EtcdBackupDrillStatusSpec::TYPE),
            Input::by_id(EtcdBackupRetentionStatusSpec::TYPE),
            Input::by_id(EtcdBackupCopyStatusSpec::TYPE),
            store_error_changed(),
            Input::every_key(AlertReceiverSpec::TYPE),
        ]
    }

    fn outputs(&self) -> Vec<&'static str> {
        vec![AlertStatusSpec::TYPE]
    }

    /// The store, every cluster, and clusters that still have alerts.
    async fn keys(&self, state: &State) -> Result<Vec<String>, BoxError> {
        let all = LabelSelector::default();
        let mut keys: HashSet<String> = HashSet::from([SINGLETON.to_string()]);
        for c in state.list(NS_DEFAULT, ClusterSpec::TYPE, &all).await? {
            keys.insert(c.metadata.id);
        }
        for s in state
            .list(NS_EPHEMERAL, AlertStatusSpec::TYPE, &all)
            .await?
        {
            if let Ok(spec) = s.spec_as::<AlertStatusSpec>() {
                keys.insert(spec.cluster);
            }
        }
        Ok(keys.into_iter().collect())
    }

    fn concurrency(&self) -> usize {
        4
    }

    async fn reconcile(&self, key: &str, ctx: &Context) -> Result<Action, BoxError> {
        let now = Timestamp::now();
        let receivers = self.receivers(&ctx.state).await?;
        let wake = if key == SINGLETON {
            self.reconcile_store(ctx, &receivers, now).await?
        } else {
            self.reconcile_cluster(ctx, key, &receivers, now).await?
        };
        Ok(match wake {
            Some(t) => Action::requeue(Duration::from_secs(
                (t.seconds - now.seconds).clamp(1, 24 * 3600) as u64,
            )),
            None => Action::AwaitChange,
        })
    }
}

/// The overall status, for the store alert: it reads only the
/// configuration error, which a backup never changes, while every backup
/// rewrites the rest of the overall status (the last attempt). So only a
/// change of that error wakes the store's key.
fn store_error_changed() -> Input {
    let seen: Arc<Mutex<Option<String>>> = Arc::default();
    Input::lookup(EtcdBackupOverallStatusSpec::TYPE, move |_, r| {
        let error = r
            .spec_as::<EtcdBackupOverallStatusSpec>()
            .map(|s| s.configurationerror)
            .ok();
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let keys = if error.is_none() || *seen != error {
            *seen = error;
            vec![SINGLETON.to_string()]
        } else {
            Vec::new()
        };
        Box::pin(std::future::ready(keys))
    })
}

#[cfg(test)]
mod tests;

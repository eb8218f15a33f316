//! Per-cluster recovery points, read from the state at scrape time: one
//! series per cluster and family, never one per backup.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use omni_api::ApiError;
use omni_resources::specs::backup::{
    EtcdBackupOverallStatusSpec, EtcdBackupStatusSpec, OVERALL_STATUS_ID,
};
use omni_resources::specs::backup_drill::EtcdBackupDrillStatusSpec;
use omni_resources::specs::cluster::ClusterSpec;
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Resource, Timestamp, NS_DEFAULT, NS_EPHEMERAL};
use omni_state::State;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StoreLabels {
    store: String,
}

type Gauges = Family<ClusterLabels, Gauge<f64, AtomicU64>>;

/// A per-cluster family: name, help, and its value in a cluster's row.
type Series = (&'static str, &'static str, fn(&Row) -> Option<f64>);

/// What one cluster contributes, each `None` leaving its series out.
#[derive(Debug, Default, PartialEq)]
struct Row {
    status: Option<f64>,
    last_success: Option<f64>,
    last_attempt: Option<f64>,
    age: Option<f64>,
    interval: Option<f64>,
    next_due: Option<f64>,
    proven: Option<f64>,
    drill_duration: Option<f64>,
    drill_status: Option<f64>,
}

fn secs(t: Timestamp) -> Option<f64> {
    (!t.is_zero()).then(|| t.as_secs_f64())
}

/// One cluster's row. The age is that of its newest good backup, or, when
/// it has none, the time since the cluster was created: a cluster that
/// never got a backup is as exposed as one whose backups stopped.
fn row(
    now: f64,
    cluster: Option<&Resource>,
    status: Option<&EtcdBackupStatusSpec>,
    drill: Option<&EtcdBackupDrillStatusSpec>,
) -> Row {
    let spec = cluster.and_then(|c| c.spec_as::<ClusterSpec>().ok());
    let created = cluster.and_then(|c| c.metadata.created).and_then(secs);
    let last_good = status.and_then(|s| secs(s.lastbackuptime));
    let proven = status.and_then(|s| secs(s.lastprovenrestorable));
    Row {
        status: status.map(|s| f64::from(s.status)),
        last_success: status.map(|s| s.lastbackuptime.as_secs_f64()),
        last_attempt: status.map(|s| s.lastbackupattempt.as_secs_f64()),
        age: last_good.or(created).map(|t| (now - t).max(0.0)),
        interval: spec
            .as_ref()
            .and_then(ClusterSpec::backup_interval)
            .map(|d| d.as_secs_f64()),
        next_due: status.and_then(|s| secs(s.nextbackuptime)),
        // A cluster that is drilled but has nothing proven yet shows 0, so
        // "nothing proven restorable for N days" covers it too.
        proven: proven.or(drill.map(|_| 0.0)),
        drill_duration: proven
            .and(status.and_then(|s| s.lastdrillrestoreduration.to_std().map(|d| d.as_secs_f64()))),
        drill_status: drill.map(|d| f64::from(d.status)),
    }
}

async fn specs<K: Kind>(
    state: &State,
    ns: &str,
) -> Result<BTreeMap<String, (Resource, K)>, ApiError> {
    let all = state.list(ns, K::TYPE, &LabelSelector::default()).await?;
    Ok(all
        .into_iter()
        .filter_map(|r| {
            let spec = r.spec_as::<K>().ok()?;
            Some((r.metadata.id.clone(), (r, spec)))
        })
        .collect())
}

/// Reads the statuses once and registers the per-cluster families.
pub(super) async fn register(registry: &mut Registry, state: &State) -> Result<(), ApiError> {
    let clusters = specs::<ClusterSpec>(state, NS_DEFAULT).await?;
    let statuses = specs::<EtcdBackupStatusSpec>(state, NS_EPHEMERAL).await?;
    let drills = specs::<EtcdBackupDrillStatusSpec>(state, NS_EPHEMERAL).await?;
    let now = Timestamp::now().as_secs_f64();
    let names: std::collections::BTreeSet<&String> =
        clusters.keys().chain(statuses.keys()).collect();

    let families: [Series; 9] = [
        ("omni_etcd_backup_status", "Backup status per cluster: 0 unknown, 1 ok, 2 error, 3 running", |r| r.status),
        ("omni_etcd_backup_last_success_timestamp_seconds", "Time of the newest successful backup (0: none yet)", |r| r.last_success),
        ("omni_etcd_backup_last_attempt_timestamp_seconds", "Time of the newest backup attempt", |r| r.last_attempt),
        ("omni_etcd_backup_age_seconds", "Age of the newest good backup at scrape time; since the cluster's creation when it has none", |r| r.age),
        ("omni_etcd_backup_interval_seconds", "Automatic backup interval of the cluster (absent: manual backups only)", |r| r.interval),
        ("omni_etcd_backup_next_due_timestamp_seconds", "When the next automatic backup is due", |r| r.next_due),
        ("omni_etcd_backup_last_proven_restorable_timestamp_seconds", "Creation time of the newest backup a restore drill proved restorable (0: drilled, none proven yet)", |r| r.proven),
        ("omni_etcd_backup_drill_restore_duration_seconds", "How long the drill that proved the newest restorable backup took", |r| r.drill_duration),
        ("omni_etcd_backup_drill_status", "Outcome of the cluster's latest restore drill: 1 ok, 2 error, 3 running", |r| r.drill_status),
    ];
    let gauges: Vec<Gauges> = families.iter().map(|_| Gauges::default()).collect();
    for name in names {
        let r = row(
            now,
            clusters.get(name).map(|(r, _)| r),
            statuses.get(name).map(|(_, s)| s),
            drills.get(name).map(|(_, d)| d),
        );
        let labels = ClusterLabels {
            cluster: name.clone(),
        };
        for ((_, _, value), family) in families.iter().zip(&gauges) {
            if let Some(v) = value(&r) {
                family.get_or_create(&labels).set(v);
            }
        }
    }
    for ((name, help, _), family) in families.iter().zip(gauges) {
        registry.register(*name, *help, family);
    }

    let overall = state
        .get_spec::<EtcdBackupOverallStatusSpec>(NS_EPHEMERAL, OVERALL_STATUS_ID)
        .await?;
    let (store, configured) = match overall {
        Some((_, s)) => (s.configurationname, s.configurationerror.is_empty()),
        None => (String::new(), false),
    };
    let store_configured = Family::<StoreLabels, Gauge>::default();
    store_configured
        .get_or_create(&StoreLabels { store })
        .set(i64::from(configured));
    registry.register(
        "omni_etcd_backup_store_configured",
        "Whether the backup store is usable",
        store_configured,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use omni_resources::duration::ProtoDuration;

    const NOW: f64 = 1_700_000_000.0;

    fn cluster(created: i64, interval: u64) -> Resource {
        let spec: ClusterSpec = serde_json::from_value(serde_json::json!({
            "backupconfiguration": {"interval": {"seconds": interval, "nanos": 0}}
        }))
        .unwrap();
        let mut r = Resource::from_spec(ClusterSpec::TYPE, NS_DEFAULT, "c", &spec);
        r.metadata.created = Some(Timestamp::from_unix(created));
        r
    }

    #[test]
    fn age_counts_from_the_last_good_backup_else_from_creation() {
        let c = cluster(NOW as i64 - 7200, 3600);
        let never = row(NOW, Some(&c), None, None);
        assert_eq!(never.age, Some(7200.0));
        assert_eq!(never.interval, Some(3600.0));
        assert_eq!(never.status, None);
        let st = EtcdBackupStatusSpec {
            status: 1,
            lastbackuptime: Timestamp::from_unix(NOW as i64 - 600),
            nextbackuptime: Timestamp::from_unix(NOW as i64 + 3000),
            ..Default::default()
        };
        let r = row(NOW, Some(&c), Some(&st), None);
        assert_eq!(r.age, Some(600.0));
        assert_eq!(r.next_due, Some(NOW + 3000.0));
        assert_eq!(r.proven, None, "never drilled: no series");
        assert_eq!(r.drill_duration, None);
    }

    #[test]
    fn drilled_clusters_show_their_proof_or_zero() {
        let failed = EtcdBackupDrillStatusSpec {
            status: 2,
            ..Default::default()
        };
        let mut st = EtcdBackupStatusSpec::default();
        let r = row(NOW, None, Some(&st), Some(&failed));
        assert_eq!((r.proven, r.drill_status), (Some(0.0), Some(2.0)));
        st.lastprovenrestorable = Timestamp::from_unix(NOW as i64 - 60);
        st.lastdrillrestoreduration = ProtoDuration {
            seconds: 4,
            nanos: 500_000_000,
        };
        let r = row(NOW, None, Some(&st), Some(&failed));
        assert_eq!(r.proven, Some(NOW - 60.0));
        assert_eq!(r.drill_duration, Some(4.5));
    }
}

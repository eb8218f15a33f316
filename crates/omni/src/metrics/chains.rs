//! Continuous backup per cluster: the newest restorable point its delta
//! chains stored and the recovery point (now minus that point), for
//! clusters with `continuous` only.

use std::sync::atomic::AtomicU64;

use omni_controllers::continuous::Chains;
use omni_resources::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
}

type Gauges = Family<ClusterLabels, Gauge<f64, AtomicU64>>;

pub fn register(registry: &mut Registry, chains: &Chains) {
    let now = Timestamp::now().as_secs_f64();
    let point = Gauges::default();
    let revision = Gauges::default();
    let rpo = Gauges::default();
    let bytes = Gauges::default();
    for (cluster, p) in chains.points() {
        let l = ClusterLabels { cluster };
        let until = p.until_ms as f64 / 1000.0;
        point.get_or_create(&l).set(until);
        revision.get_or_create(&l).set(p.through_rev as f64);
        rpo.get_or_create(&l).set((now - until).max(0.0));
        bytes.get_or_create(&l).set(p.stored_bytes as f64);
    }
    registry.register(
        "omni_continuous_restorable_timestamp_seconds",
        "Newest point in time a cluster can be restored to from its delta chain",
        point,
    );
    registry.register(
        "omni_continuous_restorable_revision",
        "etcd revision of that point",
        revision,
    );
    registry.register(
        "omni_continuous_recovery_point_seconds",
        "Now minus the newest restorable point: the writes a loss now would cost",
        rpo,
    );
    registry.register(
        "omni_continuous_chain_stored_bytes",
        "Bytes of delta segments the current chain stored",
        bytes,
    );
}

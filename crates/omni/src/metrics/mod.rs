//! `/metrics`, encoded by `prometheus-client`: the backup controller's
//! histograms and failure counters and the HTTP request metrics (kept in
//! this process), plus per-cluster recovery points and controller crash
//! counts read at scrape time (so an age keeps growing between backups and
//! nothing of the state is lost on restart). Needs a reader token.
//!
//! OpenMetrics when the scraper asks for it (Prometheus does), else the
//! Prometheus text format 0.0.4 (`promtool check metrics`, curl).

#[cfg(test)]
mod bench;
mod chains;
mod clusters;
pub mod http;

use std::sync::Arc;

use axum::extract::State as AxState;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use omni_api::{Api, ApiError};
use omni_controllers::backup::metrics::BackupMetrics;
use omni_runtime::{Health, LoopCounts};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The metrics this process accumulates, shared by the controllers (across
/// leadership terms) and the HTTP layer.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub backup: BackupMetrics,
    pub http: http::HttpMetrics,
    /// Continuous backup's chains, shared across leadership terms.
    pub chains: omni_controllers::continuous::Chains,
    pub state_reads: StateReads,
}

/// Where reads of an etcd state were answered: this replica's in-memory
/// view, or etcd itself (the API's gets, and reads when the view lagged;
/// a lagging list reads the whole type, so a rising count is the first
/// sign of a state store that cannot keep up).
#[derive(Clone, Default)]
pub struct StateReads(pub Option<Arc<omni_state::EtcdBackend>>);

impl std::fmt::Debug for StateReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateReads")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AnsweredBy {
    answered_by: &'static str,
}

impl StateReads {
    fn register(&self, registry: &mut Registry) {
        let Some(etcd) = &self.0 else {
            return;
        };
        let stats = etcd.read_stats();
        let family = Family::<AnsweredBy, Counter>::default();
        for (answered_by, n) in [("view", stats.from_view), ("etcd", stats.from_etcd)] {
            family.get_or_create(&AnsweredBy { answered_by }).inc_by(n);
        }
        registry.register(
            "omni_state_reads",
            "Reads of the etcd state (lists, and the controllers' gets) answered by this replica's view or by etcd",
            family,
        );
    }
}

#[derive(Clone)]
struct Scrape {
    api: Api,
    health: Arc<Health>,
    metrics: Metrics,
}

pub fn router(api: Api, health: Arc<Health>, metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape {
            api,
            health,
            metrics,
        })
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

/// A counter family read off each controller's loop counts.
type LoopFamily = (&'static str, &'static str, fn(&LoopCounts) -> u64);

async fn scrape(AxState(s): AxState<Scrape>, headers: HeaderMap) -> Result<Response, ApiError> {
    s.api.caller(&headers).await?;
    // A registry per scrape: the process's families are shared into it,
    // the state's are filled from one read of the state.
    let mut registry = Registry::default();
    s.metrics.backup.register(&mut registry);
    s.metrics.http.register(&mut registry);
    clusters::register(&mut registry, s.api.state()).await?;
    chains::register(&mut registry, &s.metrics.chains);
    s.metrics.state_reads.register(&mut registry);
    let loops = s.health.loop_counts();
    let families: [LoopFamily; 3] = [
        (
            "omni_controller_crashes",
            "Panics caught in each controller since the start",
            |c| c.crashes,
        ),
        (
            "omni_controller_reconciles",
            "Reconciles run by each controller since the start",
            |c| c.reconciles,
        ),
        (
            "omni_controller_relists",
            "Whole-world passes of each controller: at start and after its watch fell behind",
            |c| c.relists,
        ),
    ];
    for (name, help, value) in families {
        let family = Family::<ControllerLabels, Counter>::default();
        for (controller, counts) in &loops {
            family
                .get_or_create(&ControllerLabels { controller })
                .inc_by(value(counts));
        }
        registry.register(name, help, family);
    }

    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let mut body = String::new();
    let (encoded, content_type) = if openmetrics {
        (
            prometheus_client::encoding::text::encode(&mut body, &registry),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (
            prometheus_client::encoding::prometheus_text::encode(&mut body, &registry),
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )
    };
    encoded.map_err(|_| ApiError::Internal("encoding the metrics failed".into()))?;
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

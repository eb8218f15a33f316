//! `/metrics` in the Prometheus text format, computed from the state at
//! scrape time (no counters to lose on restart), plus the runtime's crash
//! counters. Needs a reader token.

use axum::extract::State as AxState;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use omni_api::{Api, ApiError};
use omni_resources::specs::backup::{
    EtcdBackupOverallStatusSpec, EtcdBackupStatusSpec, OVERALL_STATUS_ID,
};
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, NS_EPHEMERAL};
use omni_runtime::{Health, LoopCounts};
use std::fmt::Write;
use std::sync::Arc;

pub fn router(api: Api, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state((api, health))
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A metric family read off each cluster's backup status: name, help, value.
type Family = (&'static str, &'static str, fn(&EtcdBackupStatusSpec) -> f64);

/// A counter family read off each controller's loop counts.
type LoopFamily = (&'static str, &'static str, fn(&LoopCounts) -> u64);

async fn metrics(
    AxState((api, health)): AxState<(Api, Arc<Health>)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.caller(&headers).await?;
    let statuses = api
        .state()
        .list(
            NS_EPHEMERAL,
            EtcdBackupStatusSpec::TYPE,
            &LabelSelector::default(),
        )
        .await?;
    let mut out = String::new();
    let families: [Family; 3] = [
        (
            "omni_etcd_backup_status",
            "Backup status per cluster: 0 unknown, 1 ok, 2 error, 3 running.",
            |s| s.status as f64,
        ),
        (
            "omni_etcd_backup_last_success_timestamp_seconds",
            "Time of the newest successful backup.",
            |s| s.lastbackuptime.as_secs_f64(),
        ),
        (
            "omni_etcd_backup_last_attempt_timestamp_seconds",
            "Time of the newest backup attempt.",
            |s| s.lastbackupattempt.as_secs_f64(),
        ),
    ];
    for (name, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for r in &statuses {
            if let Ok(spec) = r.spec_as::<EtcdBackupStatusSpec>() {
                let _ = writeln!(
                    out,
                    "{name}{{cluster=\"{}\"}} {}",
                    label(&r.metadata.id),
                    value(&spec)
                );
            }
        }
    }
    let overall = api
        .state()
        .get_spec::<EtcdBackupOverallStatusSpec>(NS_EPHEMERAL, OVERALL_STATUS_ID)
        .await?;
    let (store, configured) = match overall {
        Some((_, s)) => (s.configurationname, s.configurationerror.is_empty()),
        None => (String::new(), false),
    };
    let _ = writeln!(
        out,
        "# HELP omni_etcd_backup_store_configured Whether the backup store is usable.\n# TYPE omni_etcd_backup_store_configured gauge\nomni_etcd_backup_store_configured{{store=\"{}\"}} {}",
        label(&store),
        u8::from(configured)
    );
    let loops = health.loop_counts();
    let counters: [LoopFamily; 3] = [
        (
            "omni_controller_crashes_total",
            "Panics caught in each controller since the start.",
            |c| c.crashes,
        ),
        (
            "omni_controller_reconciles_total",
            "Reconciles run by each controller since the start.",
            |c| c.reconciles,
        ),
        (
            "omni_controller_relists_total",
            "Whole-world passes of each controller: at start and after its watch fell behind.",
            |c| c.relists,
        ),
    ];
    for (family, help, value) in counters {
        let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} counter");
        for (name, counts) in &loops {
            let _ = writeln!(
                out,
                "{family}{{controller=\"{}\"}} {}",
                label(name),
                value(counts)
            );
        }
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

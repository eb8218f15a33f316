//! Times one `/metrics` scrape over a large fleet (in-memory state, the real
//! router): prints figures, asserts nothing about speed. Run with
//!
//! `OMNI_BENCH_CLUSTERS=10000 cargo test --release -p omni --bin omni scrape_bench -- --ignored --nocapture`

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request};
use omni_api::auth::{create_token, Role};
use omni_api::{Api, ApiSettings};
use omni_resources::duration::ProtoDuration;
use omni_resources::specs::backup::EtcdBackupStatusSpec;
use omni_resources::specs::backup_drill::EtcdBackupDrillStatusSpec;
use omni_resources::specs::cluster::{BackupConfiguration, ClusterSpec};
use omni_resources::specs::Kind;
use omni_resources::{Resource, Timestamp, NS_DEFAULT, NS_EPHEMERAL};
use omni_state::State;
use tower::ServiceExt as _;

async fn fill(state: &State, n: usize) {
    let now = Timestamp::now().seconds;
    for i in 0..n {
        let id = format!("cluster-{i:05}");
        let spec = ClusterSpec {
            backupconfiguration: Some(BackupConfiguration {
                interval: Some(ProtoDuration::from_std(Duration::from_secs(3600))),
                ..Default::default()
            }),
            ..Default::default()
        };
        let cluster = Resource::from_spec(ClusterSpec::TYPE, NS_DEFAULT, &id, &spec);
        state.create(cluster).await.unwrap();
        let status = EtcdBackupStatusSpec {
            status: 1,
            lastbackuptime: Timestamp::from_unix(now - 600),
            lastbackupattempt: Timestamp::from_unix(now - 600),
            nextbackuptime: Timestamp::from_unix(now + 3000),
            lastprovenrestorable: Timestamp::from_unix(now - 600),
            lastdrillrestoreduration: ProtoDuration::from_std(Duration::from_secs(4)),
            ..Default::default()
        };
        let mut r = Resource::from_spec(EtcdBackupStatusSpec::TYPE, NS_EPHEMERAL, &id, &status);
        r.metadata.owner = "EtcdBackupController".into();
        state.create(r).await.unwrap();
        let drill = EtcdBackupDrillStatusSpec {
            status: 1,
            ..Default::default()
        };
        let mut r = Resource::from_spec(EtcdBackupDrillStatusSpec::TYPE, NS_EPHEMERAL, &id, &drill);
        r.metadata.owner = "EtcdBackupDrillController".into();
        state.create(r).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it with --ignored --nocapture"]
async fn scrape_bench() {
    let n: usize = std::env::var("OMNI_BENCH_CLUSTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let state = State::memory();
    fill(&state, n).await;
    let (_, token) = create_token(&state, Role::Reader, "bench").await.unwrap();
    let api = Api::new(state, ApiSettings::default());
    let app = super::router(
        api,
        Arc::new(omni_runtime::Health::default()),
        super::Metrics::default(),
    );
    let mut times = Vec::new();
    let mut body_len = (0, 0);
    for _ in 0..5 {
        let req = Request::get("/metrics")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let t = Instant::now();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        times.push(t.elapsed());
        body_len = (body.len(), body.iter().filter(|b| **b == b'\n').count());
    }
    times.sort();
    println!(
        "scrape of {n} clusters: median {:.1} ms (min {:.1}, max {:.1}, 5 runs), {:.2} MiB, {} lines",
        times[2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[4].as_secs_f64() * 1e3,
        body_len.0 as f64 / (1 << 20) as f64,
        body_len.1
    );
}

//! Wires state, controllers, the API and the backup endpoints, and runs
//! them until a signal. First signal drains; a second one exits at once.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context as _;
use omni_api::{Api, ApiSettings};
use omni_controllers::admission::S3ConfigAdmission;
use omni_controllers::alerts::AlertSettings;
use omni_controllers::backup::{BackupSettings, EtcdBackupController, ScheduleSettings};
use omni_controllers::cluster::ClusterController;
use omni_controllers::cluster_machines::ClusterMachineController;
use omni_controllers::external::EtcdBackupSource;
use omni_controllers::machine_status::{
    ClusterMachineStatusController, MachineStatusController, MachineStatusSettings,
};
use omni_controllers::store::{StoreChoice, StoreController, Stores};
use omni_resources::specs::backup::{EtcdBackupS3ConfigSpec, EtcdBackupSpec};
use omni_resources::specs::Kind;
use omni_runtime::Runtime;
use omni_state::State;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Store};

pub async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let opened = crate::ha::open_state(&config).await?;
    let state = opened.state.clone();
    let token_path = config.data_dir.join("admin-token");
    if omni_api::auth::bootstrap_admin_token(&state, &token_path).await? {
        // The token itself goes only into the 0600 file, never to logs.
        eprintln!(
            "omni: first start; admin token written to {} (mode 0600)",
            token_path.display()
        );
    }

    let choice = match &config.store {
        Store::S3 => StoreChoice::S3,
        Store::Local(dir) => StoreChoice::Local(dir.clone()),
    };
    let stores = Stores::new(choice)
        .context("opening the backup store")?
        .with_default_secondary(config.secondary_store.clone());
    omni_backup::set_transfer_limits(config.upload_limit, config.download_limit);
    let health = Arc::new(omni_runtime::Health::default());
    let scheme = match config.transport {
        crate::listener::Transport::Tls { .. } => "https",
        crate::listener::Transport::Plain => "http",
    };
    let alerts = omni_controllers::alerts::AlertController::new(AlertSettings {
        max_interval: config.max_interval,
        base_url: Some(format!("{scheme}://{}", config.bind)),
        ..AlertSettings::default()
    })
    .context("building the alert HTTP client")?;
    let alerts = Arc::new(alerts);
    let metrics = crate::metrics::Metrics {
        state_reads: crate::metrics::StateReads(opened.etcd()),
        ..Default::default()
    };
    // Built afresh for each leadership term, on that term's fenced state.
    let build_runtime = |state: State| -> anyhow::Result<Runtime> {
        let mut runtime = Runtime::new(state);
        runtime.set_drain_deadline(config.shutdown_timeout);
        // One crash account across leadership terms, for /metrics and /readyz.
        runtime.set_health(health.clone());
        runtime.register(Arc::new(StoreController {
            stores: stores.clone(),
        }))?;
        runtime.register(Arc::new(ClusterMachineController))?;
        runtime.register(Arc::new(ClusterController))?;
        runtime.register(Arc::new(MachineStatusController::new(
            MachineStatusSettings {
                interval: config.machine_probe_interval,
                rate: config.machine_probe_rate,
                ..MachineStatusSettings::default()
            },
        )))?;
        runtime.register(Arc::new(ClusterMachineStatusController))?;
        let settings = BackupSettings {
            schedule: ScheduleSettings {
                min_interval: config.min_interval,
                max_interval: config.max_interval,
                max_jitter: config.jitter,
            },
            tick: config.tick,
            max_concurrent: config.max_concurrent,
            timeout: config.timeout,
            retry_backoff: config.retry_backoff,
            ..BackupSettings::default()
        };
        let chains = metrics.chains.clone();
        runtime.register(Arc::new(
            EtcdBackupController::new(stores.clone(), settings)
                .with_metrics(metrics.backup.clone())
                .with_chains(chains.clone()),
        ))?;
        runtime.register(Arc::new(
            omni_controllers::continuous::ContinuousBackupController::new(
                stores.clone(),
                chains.clone(),
            ),
        ))?;
        // Retention and drills share the leases of backups being read.
        let leases = omni_controllers::leases::BackupLeases::default();
        runtime.register(Arc::new(
            omni_controllers::retention::EtcdBackupRetentionController::new(
                stores.clone(),
                leases.clone(),
                config.retention.clone(),
            )
            .with_chains(chains),
        ))?;
        runtime.register(Arc::new(
            omni_controllers::drill::EtcdBackupDrillController::new(
                stores.clone(),
                leases.clone(),
                config.drill.clone(),
            ),
        ))?;
        runtime.register(Arc::new(
            omni_controllers::store::copy::EtcdBackupCopyController::new(
                stores.clone(),
                leases,
                omni_controllers::store::copy::CopySettings {
                    backoff: config.retry_backoff,
                    ..Default::default()
                },
            ),
        ))?;
        // Shared across leadership terms: its in-flight deliveries too.
        runtime.register(alerts.clone())?;
        Ok(runtime)
    };

    let cancel = CancellationToken::new();
    let source = Arc::new(EtcdBackupSource {
        state: state.clone(),
        stores: stores.clone(),
    });
    let api = Api::new(
        state.clone(),
        ApiSettings {
            min_backup_interval: config.min_interval,
            max_backup_interval: config.max_interval,
            rate_limit: omni_api::RateLimit {
                per_second: config.rate_limit,
                burst: config.rate_burst,
            },
        },
    )
    .with_admission(EtcdBackupS3ConfigSpec::TYPE, Arc::new(S3ConfigAdmission))
    .with_admission(
        omni_resources::specs::backup_store::EtcdBackupStoreSpec::TYPE,
        Arc::new(omni_controllers::admission::StoreAdmission),
    )
    .with_external(EtcdBackupSpec::TYPE, source.clone())
    .with_shutdown(cancel.clone());
    let ready = api.readiness();
    let app = api
        .clone()
        .router()
        .merge(crate::metrics::router(
            api.clone(),
            health.clone(),
            metrics.clone(),
        ))
        .merge(crate::backup_http::router(api.clone(), source.clone()))
        .merge(crate::pitr_http::router(
            api.clone(),
            source.clone(),
            config.drill.clone(),
        ))
        // The merged routes answer errors in the documented JSON too; the
        // console (merged after) keeps its own HTML error pages.
        .layer(axum::middleware::map_response(omni_api::json_errors));
    let app = omni_console::router(api, source, app, cancel.clone());
    let app = crate::metrics::http::track(app, metrics.http.clone());

    // Bad certificate files fail the start, before anything listens.
    let tls = match &config.transport {
        crate::listener::Transport::Tls { cert, key } => {
            Some(Arc::new(crate::listener::server_config(cert, key)?))
        }
        crate::listener::Transport::Plain => None,
    };
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    tokio::spawn(watch_signals(cancel.clone()));
    let replica = format!("{}/{}", config.bind, std::process::id());
    let controllers = crate::ha::run_controllers(&opened, replica, cancel.clone(), build_runtime);
    let controllers = async {
        if let Err(e) = controllers.await {
            tracing::error!(error = %format!("{e:#}"), "controllers failed");
        }
    };
    ready.store(true, Ordering::SeqCst);
    tokio::spawn(track_health(health.clone(), ready, cancel.clone()));
    tracing::info!(addr = %config.bind, tls = tls.is_some(), store = stores.name(), data_dir = %config.data_dir.display(), "omni listening");
    let (served, ()) = tokio::join!(
        async {
            let r = crate::listener::serve(listener, app, tls, cancel.clone()).await;
            cancel.cancel();
            r
        },
        controllers
    );
    served?;
    tracing::info!("omni stopped");
    Ok(())
}

/// `/readyz` turns unready while a controller keeps crashing.
async fn track_health(
    health: Arc<omni_runtime::Health>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    cancel: CancellationToken,
) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        let failing = health.failing();
        let was = ready.swap(failing.is_empty(), Ordering::SeqCst);
        if was && !failing.is_empty() {
            tracing::error!(controllers = ?failing, "controllers keep crashing; not ready");
        }
    }
}

async fn watch_signals(cancel: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for signals");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!("signal received; draining (send another to exit at once)");
    cancel.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    std::process::exit(130);
}

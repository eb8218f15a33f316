//! Wires state, controllers, the API and the backup endpoints, and runs
//! them until a signal. First signal drains; a second one exits at once.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context as _;
use omni_api::{Api, ApiSettings};
use omni_controllers::admission::S3ConfigAdmission;
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
use omni_state::{RedbBackend, State};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, StateKind, Store};

pub async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let state = match config.state {
        StateKind::Embedded => {
            let path = config.data_dir.join("state.redb");
            State::new(
                RedbBackend::open(&path)
                    .with_context(|| format!("opening state {}", path.display()))?,
            )
        }
        StateKind::Memory => State::memory(),
    };
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
    let stores = Stores::new(choice).context("opening the backup store")?;
    let mut runtime = Runtime::new(state.clone());
    runtime.register(Arc::new(StoreController {
        stores: stores.clone(),
    }))?;
    runtime.register(Arc::new(ClusterMachineController))?;
    runtime.register(Arc::new(ClusterController))?;
    runtime.register(Arc::new(MachineStatusController {
        settings: MachineStatusSettings {
            interval: config.machine_probe_interval,
            ..MachineStatusSettings::default()
        },
    }))?;
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
    runtime.register(Arc::new(EtcdBackupController::new(
        stores.clone(),
        settings,
    )))?;
    // Retention and drills share the leases of backups being read.
    let leases = omni_controllers::leases::BackupLeases::default();
    runtime.register(Arc::new(
        omni_controllers::retention::EtcdBackupRetentionController::new(
            stores.clone(),
            leases.clone(),
            config.retention.clone(),
        ),
    ))?;
    runtime.register(Arc::new(
        omni_controllers::drill::EtcdBackupDrillController::new(
            stores.clone(),
            leases,
            config.drill.clone(),
        ),
    ))?;

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
    .with_external(EtcdBackupSpec::TYPE, source.clone());
    let ready = api.readiness();
    let app = api
        .clone()
        .router()
        .merge(crate::metrics::router(api.clone()))
        .merge(crate::backup_http::router(api, source))
        // The merged routes answer errors in the documented JSON too.
        .layer(axum::middleware::map_response(omni_api::json_errors));

    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    let cancel = CancellationToken::new();
    tokio::spawn(watch_signals(cancel.clone()));
    let controllers = tokio::spawn(runtime.run(cancel.clone()));
    ready.store(true, Ordering::SeqCst);
    tracing::info!(addr = %config.bind, store = stores.name(), data_dir = %config.data_dir.display(), "omni listening");
    let shutdown = cancel.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("serving the API")?;
    cancel.cancel();
    let _ = controllers.await;
    tracing::info!("omni stopped");
    Ok(())
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

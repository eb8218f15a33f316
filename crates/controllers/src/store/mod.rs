//! The backup store chosen at start (the `default` store), the named
//! stores beside it ([`named`]), the copies to a cluster's secondary store
//! ([`copy`]), and the controller that keeps the default store configured
//! and publishes the overall status.

pub mod copy;
pub mod named;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use omni_backup::{BackupStore, S3Settings};
use omni_resources::specs::backup::{
    EtcdBackupOverallStatusSpec, EtcdBackupS3ConfigSpec, EtcdBackupStatusSpec, OVERALL_STATUS_ID,
    S3_CONFIG_ID,
};
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, NS_DEFAULT, NS_EPHEMERAL};
use omni_runtime::{Action, BoxError, Context, Controller, Input};

/// Which store the server was started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    Local(PathBuf),
    S3,
}

/// Message while S3 is chosen but not configured, as the seed shows it.
pub const NOT_INITIALIZED: &str = "not initialized";

struct Current {
    store: Option<BackupStore>,
    error: String,
    failed_attempts: u32,
    /// The S3 settings the current store (or error) was built from.
    built_from: Option<EtcdBackupS3ConfigSpec>,
}

/// Shared handle to the current backup store.
#[derive(Clone)]
pub struct Stores {
    choice: StoreChoice,
    current: Arc<RwLock<Current>>,
    /// Named stores as last built, with the spec they were built from.
    named: Arc<Mutex<named::Built>>,
    /// Where copies go for clusters that name no secondary store.
    default_secondary: Option<String>,
}

impl Stores {
    /// Builds the handle; a local store is opened at once.
    pub fn new(choice: StoreChoice) -> Result<Self, omni_backup::StoreError> {
        let (store, error) = match &choice {
            StoreChoice::Local(dir) => (Some(BackupStore::local(dir)?), String::new()),
            StoreChoice::S3 => (None, NOT_INITIALIZED.to_string()),
        };
        Ok(Stores {
            choice,
            current: Arc::new(RwLock::new(Current {
                store,
                error,
                failed_attempts: 0,
                built_from: None,
            })),
            named: Arc::default(),
            default_secondary: None,
        })
    }

    /// Copies every backup of clusters that name no secondary store to the
    /// store called `name` (`--etcd-backup-secondary-store`).
    pub fn with_default_secondary(mut self, name: Option<String>) -> Self {
        self.default_secondary = name.filter(|n| !n.is_empty());
        self
    }

    pub fn name(&self) -> &'static str {
        match self.choice {
            StoreChoice::Local(_) => "local",
            StoreChoice::S3 => "s3",
        }
    }

    /// The store, or why there is none.
    pub fn current(&self) -> Result<BackupStore, String> {
        let c = self.current.read().unwrap_or_else(|e| e.into_inner());
        c.store.clone().ok_or_else(|| {
            if c.error.is_empty() {
                NOT_INITIALIZED.to_string()
            } else {
                format!("backup store: {}", c.error)
            }
        })
    }

    fn snapshot(&self) -> (String, u32) {
        let c = self.current.read().unwrap_or_else(|e| e.into_inner());
        (c.error.clone(), c.failed_attempts)
    }
}

/// Maps the resource's fields onto the store's settings.
pub fn s3_settings(spec: &EtcdBackupS3ConfigSpec) -> S3Settings {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    S3Settings {
        bucket: spec.bucket.clone(),
        region: spec.region.clone(),
        endpoint: opt(&spec.endpoint),
        access_key_id: opt(&spec.accesskeyid),
        secret_access_key: opt(&spec.secretaccesskey),
        session_token: opt(&spec.sessiontoken),
    }
}

/// Builds and tries an S3 store.
pub async fn connect_s3(spec: &EtcdBackupS3ConfigSpec) -> Result<BackupStore, String> {
    let store = BackupStore::s3(&s3_settings(spec)).map_err(|e| e.to_string())?;
    store.validate().await.map_err(|e| e.to_string())?;
    Ok(store)
}

/// Keeps [`Stores`] in line with `EtcdBackupS3Configs` and writes
/// `EtcdBackupOverallStatuses`.
pub struct StoreController {
    pub stores: Stores,
}

const NAME: &str = "EtcdBackupOverallStatusController";

impl StoreController {
    /// Rebuilds the S3 store when its configuration changed (or the last
    /// attempt failed). Returns whether a retry is needed.
    async fn sync_s3(&self, ctx: &Context) -> Result<bool, BoxError> {
        let config = ctx
            .state
            .get_spec::<EtcdBackupS3ConfigSpec>(NS_DEFAULT, S3_CONFIG_ID)
            .await?
            .map(|(_, s)| s);
        let (unchanged, failed) = {
            let c = self
                .stores
                .current
                .read()
                .unwrap_or_else(|e| e.into_inner());
            (c.built_from == config, c.failed_attempts > 0)
        };
        if unchanged && !failed {
            return Ok(false);
        }
        let result = match &config {
            None => Err(NOT_INITIALIZED.to_string()),
            Some(spec) => connect_s3(spec).await,
        };
        let mut c = self
            .stores
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let retry = match result {
            Ok(store) => {
                tracing::info!(bucket = %config.as_ref().map(|c| c.bucket.as_str()).unwrap_or(""), "S3 backup store configured");
                c.store = Some(store);
                c.error.clear();
                c.failed_attempts = 0;
                false
            }
            Err(e) if config.is_none() => {
                c.store = None;
                c.error = e;
                c.failed_attempts = 0;
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "S3 backup store configuration failed");
                c.store = None;
                c.error = e;
                c.failed_attempts = c.failed_attempts.saturating_add(1);
                true
            }
        };
        c.built_from = config;
        Ok(retry)
    }
}

/// Key prefix of one cluster's status; the singleton key is the rest.
const STATUS_KEY: &str = "status:";

impl StoreController {
    /// Takes one cluster's status into the overall status when it is the
    /// most recently attempted.
    async fn fold_one(&self, ctx: &Context, cluster: &str) -> Result<Action, BoxError> {
        let Some((_, st)) = ctx
            .state
            .get_spec::<EtcdBackupStatusSpec>(NS_EPHEMERAL, cluster)
            .await?
        else {
            return Ok(Action::AwaitChange);
        };
        let current = ctx
            .state
            .get_spec::<EtcdBackupOverallStatusSpec>(NS_EPHEMERAL, OVERALL_STATUS_ID)
            .await?;
        let Some((_, overall)) = current else {
            // Not written yet: the singleton pass at start writes it.
            ctx.trigger.poke();
            return Ok(Action::AwaitChange);
        };
        if st.lastbackupattempt < overall.lastbackupstatus.lastbackupattempt {
            return Ok(Action::AwaitChange);
        }
        ctx.state
            .modify::<EtcdBackupOverallStatusSpec>(NS_EPHEMERAL, OVERALL_STATUS_ID, NAME, |s| {
                if st.lastbackupattempt >= s.lastbackupstatus.lastbackupattempt {
                    s.lastbackupstatus = st.seed_fields();
                }
            })
            .await?;
        Ok(Action::AwaitChange)
    }
}

#[async_trait]
impl Controller for StoreController {
    fn name(&self) -> &'static str {
        NAME
    }

    fn inputs(&self) -> Vec<Input> {
        vec![
            Input::kind(EtcdBackupS3ConfigSpec::TYPE),
            // A cluster's status changed: only that one is compared with
            // the overall status, not the whole fleet.
            Input::lookup(EtcdBackupStatusSpec::TYPE, |_, r| {
                Box::pin(async move { vec![format!("{STATUS_KEY}{}", r.metadata.id)] })
            }),
        ]
    }

    fn outputs(&self) -> Vec<&'static str> {
        vec![EtcdBackupOverallStatusSpec::TYPE]
    }

    async fn reconcile(&self, key: &str, ctx: &Context) -> Result<Action, BoxError> {
        if let Some(cluster) = key.strip_prefix(STATUS_KEY) {
            return self.fold_one(ctx, cluster).await;
        }
        let retry = match self.stores.choice {
            StoreChoice::S3 => self.sync_s3(ctx).await?,
            StoreChoice::Local(_) => false,
        };
        let statuses = ctx
            .state
            .list(
                NS_EPHEMERAL,
                EtcdBackupStatusSpec::TYPE,
                &LabelSelector::default(),
            )
            .await?;
        // The overall status shows the most recently attempted cluster.
        let last = statuses
            .iter()
            .filter_map(|r| r.spec_as::<EtcdBackupStatusSpec>().ok())
            .max_by_key(|s| s.lastbackupattempt)
            .unwrap_or_default();
        let (error, attempts) = self.stores.snapshot();
        let name = self.stores.name();
        ctx.state
            .modify::<EtcdBackupOverallStatusSpec>(NS_EPHEMERAL, OVERALL_STATUS_ID, NAME, |s| {
                s.configurationname = name.to_string();
                s.configurationerror = error.clone();
                s.lastbackupstatus = last.seed_fields();
                s.configurationattempt = attempts;
            })
            .await?;
        if retry {
            let backoff = Duration::from_secs(5 * 2u64.pow(attempts.min(6)));
            return Ok(Action::Requeue(backoff));
        }
        Ok(Action::AwaitChange)
    }
}

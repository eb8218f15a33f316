//! The retention controller against a memory state and a real local store,
//! with backup objects placed at injected times.

use super::*;
use omni_backup::keys::format_key;
use omni_state::State;

use crate::store::StoreChoice;

const HOUR: i64 = 3_600;

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    ctx: Context,
    uuid: String,
    controller: EtcdBackupRetentionController,
    leases: BackupLeases,
}

async fn fixture(default_policy: RetentionPolicy, cluster_spec: serde_json::Value) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let stores = Stores::new(StoreChoice::Local(root.clone())).unwrap();
    let state = State::memory();
    state
        .create(Resource::new(
            ClusterSpec::TYPE,
            NS_DEFAULT,
            "c1",
            cluster_spec,
        ))
        .await
        .unwrap();
    let uuid = data::ensure(&state, "c1").await.unwrap().clusteruuid;
    let leases = BackupLeases::default();
    let controller = EtcdBackupRetentionController::new(
        stores,
        leases.clone(),
        RetentionSettings {
            default_policy,
            interval: Duration::from_secs(60),
        },
    );
    let ctx = Context::new(state);
    Fixture {
        _dir: dir,
        root,
        ctx,
        uuid,
        controller,
        leases,
    }
}

impl Fixture {
    fn put(&self, at: i64) {
        let path = self.root.join(format_key(&self.uuid, at).unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"sealed").unwrap();
    }

    /// Backup times in the store, newest first.
    fn listed(&self) -> Vec<i64> {
        let mut times: Vec<i64> = std::fs::read_dir(self.root.join(&self.uuid))
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                omni_backup::keys::parse_key(&format!("{}/{name}", self.uuid))
                    .ok()
                    .map(|(_, t)| t)
            })
            .collect();
        times.sort_unstable_by(|a, b| b.cmp(a));
        times
    }

    async fn run(&self) {
        self.controller.reconcile("c1", &self.ctx).await.unwrap();
    }

    async fn status(&self) -> EtcdBackupRetentionStatusSpec {
        self.ctx
            .state
            .get_spec::<EtcdBackupRetentionStatusSpec>(NS_EPHEMERAL, "c1")
            .await
            .unwrap()
            .unwrap()
            .1
    }

    async fn set_backup_status(&self, code: i32) {
        self.ctx
            .state
            .modify::<EtcdBackupStatusSpec>(NS_EPHEMERAL, "c1", data::OWNER, |s| s.status = code)
            .await
            .unwrap();
    }
}

fn keep_last(n: i64) -> serde_json::Value {
    serde_json::json!({"backupconfiguration": {"interval": {"seconds": 0, "nanos": 0}, "keeplast": n}})
}

#[tokio::test]
async fn prunes_to_the_policy_and_records_what_it_deleted() {
    let f = fixture(RetentionPolicy::default(), keep_last(2)).await;
    let base = 1_700_000_000;
    for i in 0..5 {
        f.put(base + i * HOUR);
    }
    // A temp file of an upload in progress is not a backup: never touched.
    let partial = f.root.join(&f.uuid).join(".tmp-upload");
    std::fs::write(&partial, b"half").unwrap();

    f.run().await;
    assert_eq!(f.listed(), vec![base + 4 * HOUR, base + 3 * HOUR]);
    assert!(partial.exists());
    let st = f.status().await;
    assert_eq!(st.summary, "keep-last=2");
    assert_eq!(st.policysource, "cluster");
    assert_eq!((st.backups, st.deletedtotal), (2, 3));
    let ids: Vec<&str> = st.deleted.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            format!("c1-{}", base + 2 * HOUR),
            format!("c1-{}", base + HOUR),
            format!("c1-{base}"),
        ]
    );
    assert!(st.error.is_empty(), "{}", st.error);
}

#[tokio::test]
async fn waits_while_a_backup_runs_and_spares_leased_backups() {
    let f = fixture(RetentionPolicy::default(), keep_last(1)).await;
    let base = 1_700_000_000;
    for i in 0..3 {
        f.put(base + i * HOUR);
    }
    f.set_backup_status(status::RUNNING).await;
    f.run().await;
    assert_eq!(f.listed().len(), 3, "deleted while a backup was running");

    f.set_backup_status(status::OK).await;
    let lease = f.leases.lease(&format_key(&f.uuid, base + HOUR).unwrap());
    f.run().await;
    assert_eq!(f.listed(), vec![base + 2 * HOUR, base + HOUR]);
    drop(lease);
    f.run().await;
    assert_eq!(f.listed(), vec![base + 2 * HOUR]);
}

#[tokio::test]
async fn server_default_applies_when_the_cluster_sets_none() {
    let default = RetentionPolicy {
        keepdaily: 2,
        ..RetentionPolicy::default()
    };
    let f = fixture(default, serde_json::json!({})).await;
    let day = 86_400;
    let base = 1_700_006_400 - 1_700_006_400 % day; // midnight UTC
    for t in [
        base + 100,
        base + 200,
        base + day + 100,
        base + 2 * day + 50,
    ] {
        f.put(t);
    }
    f.run().await;
    assert_eq!(f.listed(), vec![base + 2 * day + 50, base + day + 100]);
    let st = f.status().await;
    assert_eq!(
        (st.summary.as_str(), st.policysource.as_str()),
        ("keep-daily=2", "server")
    );

    // An empty default keeps everything.
    let f = fixture(RetentionPolicy::default(), serde_json::json!({})).await;
    for i in 0..4 {
        f.put(base + i);
    }
    f.run().await;
    assert_eq!(f.listed().len(), 4);
    assert_eq!(f.status().await.summary, "keep all");
}

#[tokio::test]
async fn a_backup_requested_with_keep_survives_the_policy() {
    let f = fixture(RetentionPolicy::default(), keep_last(1)).await;
    let now = Timestamp::now().seconds;
    f.put(now - 2 * HOUR);
    let mut req = Resource::new(
        EtcdManualBackupSpec::TYPE,
        NS_EPHEMERAL,
        "c1",
        serde_json::json!({"backupat": {"seconds": now, "nanos": 0}, "keep": true}),
    );
    req = f.ctx.state.create(req).await.unwrap();
    let stored = req.metadata.updated.unwrap().seconds;
    f.run().await;
    assert_eq!(f.status().await.pendingkeep, req.metadata.updated.unwrap());

    // The request's backup lands, then newer automatic ones.
    f.put(stored);
    f.run().await;
    assert_eq!(f.status().await.kept, vec![format!("c1-{stored}")]);
    f.put(stored + HOUR);
    f.put(stored + 2 * HOUR);
    f.run().await;
    assert_eq!(f.listed(), vec![stored + 2 * HOUR, stored]);
    let st = f.status().await;
    assert!(st.pendingkeep.is_zero());
    assert_eq!(st.deletedtotal, 2);
}

#[tokio::test]
async fn a_deleted_backup_takes_its_delta_chain_and_a_kept_one_keeps_it() {
    use omni_backup::delta::keys::{segment_key, SegmentName};
    let f = fixture(RetentionPolicy::default(), keep_last(1)).await;
    let base = 1_700_000_000;
    let mut segments = Vec::new();
    for i in 0..2 {
        let at = base + i * HOUR;
        f.put(at);
        for r in 0..3 {
            let name = SegmentName {
                full_unix: at,
                from_rev: 10 * r + 1,
                to_rev: 10 * r + 10,
                until_ms: at * 1000 + r,
            };
            let key = segment_key(&f.uuid, &name).unwrap();
            let path = f.root.join(&key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"sealed").unwrap();
            segments.push((at, path));
        }
    }
    f.run().await;
    assert_eq!(f.listed(), vec![base + HOUR]);
    for (at, path) in &segments {
        assert_eq!(path.exists(), *at == base + HOUR, "{}", path.display());
    }
    assert_eq!(f.status().await.deletedtotal, 1);
}

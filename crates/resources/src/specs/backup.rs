//! Specs of the etcd backup subsystem.

use serde::{Deserialize, Serialize};

use super::{Kind, ValidationContext};
use crate::duration::ProtoDuration;
use crate::kinds::{Column, Writer};
use crate::validate::ValidationError;
use crate::{Timestamp, NS_DEFAULT, NS_EPHEMERAL, NS_EXTERNAL};

/// Only ID the S3 configuration may have.
pub const S3_CONFIG_ID: &str = "etcd-backup-s3-conf";
/// Only ID of the overall status.
pub const OVERALL_STATUS_ID: &str = "etcdbackup-overall-status";
/// How far `backupat` of a manual backup may be from now.
pub const MANUAL_BACKUP_WINDOW_SECS: i64 = 60;

/// S3 credentials and bucket for the backup store.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdBackupS3ConfigSpec {
    pub bucket: String,
    pub region: String,
    pub endpoint: String,
    pub accesskeyid: String,
    pub secretaccesskey: String,
    pub sessiontoken: String,
}

impl Kind for EtcdBackupS3ConfigSpec {
    const TYPE: &'static str = "EtcdBackupS3Configs.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_DEFAULT;
    const ALIASES: &'static [&'static str] = &["etcdbackups3config", "etcdbackups3configs"];
    const COLUMNS: &'static [Column] = &[
        Column::new("BUCKET", "bucket"),
        Column::new("REGION", "region"),
        Column::new("ENDPOINT", "endpoint"),
    ];
    const WRITER: Writer = Writer::User;
    const SECRET_FIELDS: &'static [&'static str] = &["secretaccesskey", "sessiontoken"];

    fn check(&self, _ctx: &ValidationContext) -> Result<(), ValidationError> {
        if self.bucket.trim().is_empty() {
            return Err(ValidationError::field("spec.bucket", "is required"));
        }
        let is_url = self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://");
        if !self.endpoint.is_empty() && !is_url {
            return Err(ValidationError::field(
                "spec.endpoint",
                "must be an http:// or https:// URL",
            ));
        }
        if self.accesskeyid.is_empty() != self.secretaccesskey.is_empty() {
            return Err(ValidationError::field(
                "spec.secretaccesskey",
                "accesskeyid and secretaccesskey must be given together",
            ));
        }
        Ok(())
    }
}

/// A request for one backup of the cluster named by the resource ID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdManualBackupSpec {
    pub backupat: Timestamp,
    /// Keep the backup this request produces (the first one stored after
    /// the request) whatever the retention policy says; only an explicit
    /// delete removes it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keep: bool,
}

impl Kind for EtcdManualBackupSpec {
    const TYPE: &'static str = "EtcdManualBackups.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_EPHEMERAL;
    const ALIASES: &'static [&'static str] = &["etcdmanualbackup", "etcdmanualbackups"];
    const COLUMNS: &'static [Column] = &[Column::new("BACKUP AT", "backupat")];
    const WRITER: Writer = Writer::User;

    fn check(&self, ctx: &ValidationContext) -> Result<(), ValidationError> {
        let delta = self.backupat.seconds - ctx.now.seconds;
        if self.backupat.nanos != 0 {
            return Err(ValidationError::field("spec.backupat.nanos", "must be 0"));
        }
        if delta < -MANUAL_BACKUP_WINDOW_SECS {
            return Err(ValidationError::field(
                "spec.backupat",
                "backup time must not be more than 1 minute in the past",
            ));
        }
        if delta > MANUAL_BACKUP_WINDOW_SECS {
            return Err(ValidationError::field(
                "spec.backupat",
                "backup time must not be more than 1 minute in the future",
            ));
        }
        Ok(())
    }
}

/// Status codes of a cluster's backups.
pub mod status {
    pub const UNKNOWN: i32 = 0;
    pub const OK: i32 = 1;
    pub const ERROR: i32 = 2;
    pub const RUNNING: i32 = 3;
}

/// Per-cluster backup status, written only by the backup controller. The
/// seed's four fields come first; the recovery-point fields after them
/// default to zero, so documents stored before they existed still load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdBackupStatusSpec {
    pub status: i32,
    pub error: String,
    pub lastbackuptime: Timestamp,
    pub lastbackupattempt: Timestamp,
    /// When the next automatic backup is due (zero: none scheduled).
    #[serde(skip_serializing_if = "Timestamp::is_zero")]
    pub nextbackuptime: Timestamp,
    /// Creation time of the newest backup a restore drill proved
    /// restorable: the newest point this cluster is known to come back to.
    #[serde(skip_serializing_if = "Timestamp::is_zero")]
    pub lastprovenrestorable: Timestamp,
    /// How long that drill took, download to health check.
    #[serde(skip_serializing_if = "is_zero_duration")]
    pub lastdrillrestoreduration: ProtoDuration,
    /// Bytes stored for the newest good backup (compressed and encrypted),
    /// so that showing it needs no listing of the store.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub lastbackupsize: u64,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// Unset recovery-point fields stay out of the YAML, so a status (and the
/// overall status) without them reads as the seed shows it.
fn is_zero_duration(d: &ProtoDuration) -> bool {
    *d == ProtoDuration::default()
}

impl EtcdBackupStatusSpec {
    /// Only the seed's fields: what the overall status repeats of the most
    /// recently attempted cluster (a next due time or a drill of one
    /// cluster says nothing about the subsystem).
    pub fn seed_fields(&self) -> Self {
        EtcdBackupStatusSpec {
            status: self.status,
            error: self.error.clone(),
            lastbackuptime: self.lastbackuptime,
            lastbackupattempt: self.lastbackupattempt,
            ..Default::default()
        }
    }
}

impl Kind for EtcdBackupStatusSpec {
    const TYPE: &'static str = "EtcdBackupStatuses.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_EPHEMERAL;
    const ALIASES: &'static [&'static str] = &["etcdbackupstatus", "etcdbackupstatuses"];
    const COLUMNS: &'static [Column] = &[
        Column::new("STATUS", "status"),
        Column::new("ERROR", "error"),
        Column::new("LAST BACKUP TIME", "lastbackuptime"),
        Column::new("LAST BACKUP ATTEMPT", "lastbackupattempt"),
    ];
    const WRITER: Writer = Writer::Controller("EtcdBackupController");
}

/// The state of the whole backup subsystem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdBackupOverallStatusSpec {
    pub configurationname: String,
    pub configurationerror: String,
    pub lastbackupstatus: EtcdBackupStatusSpec,
    /// Consecutive failed attempts to configure the store (0 when it works).
    pub configurationattempt: u32,
}

impl Kind for EtcdBackupOverallStatusSpec {
    const TYPE: &'static str = "EtcdBackupOverallStatuses.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_EPHEMERAL;
    const ALIASES: &'static [&'static str] =
        &["etcdbackupoverallstatus", "etcdbackupoverallstatuses"];
    const COLUMNS: &'static [Column] = &[
        Column::new("CONFIGURATION NAME", "configurationname"),
        Column::new("CONFIGURATION ERROR", "configurationerror"),
        Column::new("LAST BACKUP STATUS", "lastbackupstatus.status"),
        Column::new("LAST BACKUP ERROR", "lastbackupstatus.error"),
        Column::new("LAST BACKUP TIME", "lastbackupstatus.lastbackuptime"),
        Column::new("CONFIGURATION ATTEMPT", "configurationattempt"),
    ];
    const WRITER: Writer = Writer::Controller("EtcdBackupOverallStatusController");
}

/// One backup in the store. Not kept in the state: listed from the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdBackupSpec {
    pub createdat: Timestamp,
    pub snapshot: String,
    pub size: u64,
    /// The stores holding a copy, the cluster's primary first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stores: Vec<String>,
}

impl Kind for EtcdBackupSpec {
    const TYPE: &'static str = "EtcdBackups.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_EXTERNAL;
    const ALIASES: &'static [&'static str] = &["etcdbackup", "etcdbackups"];
    const COLUMNS: &'static [Column] = &[Column::new("CREATED AT", "createdat")];
    const WRITER: Writer = Writer::External;
}

/// Per-cluster backup identity: the store prefix and the age key pair.
/// Kept when the cluster goes, so its backups can still be opened.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupDataSpec {
    pub clusteruuid: String,
    pub agerecipient: String,
    pub ageidentity: String,
}

impl Kind for BackupDataSpec {
    const TYPE: &'static str = "BackupDatas.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_DEFAULT;
    const ALIASES: &'static [&'static str] = &["backupdata", "backupdatas"];
    const COLUMNS: &'static [Column] = &[
        Column::new("CLUSTER UUID", "clusteruuid"),
        Column::new("RECIPIENT", "agerecipient"),
    ];
    const WRITER: Writer = Writer::Controller("EtcdBackupController");
    const SECRET_FIELDS: &'static [&'static str] = &["ageidentity"];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(now: i64) -> ValidationContext {
        ValidationContext {
            now: Timestamp::from_unix(now),
            ..ValidationContext::default()
        }
    }

    #[test]
    fn manual_backup_window_is_one_minute_each_way() {
        let at = |s| EtcdManualBackupSpec {
            backupat: Timestamp::from_unix(s),
            keep: false,
        };
        assert!(at(1000).check(&ctx(1060)).is_ok());
        assert!(at(1000).check(&ctx(940)).is_ok());
        let past = at(1000).check(&ctx(1061)).unwrap_err().to_string();
        assert_eq!(
            past,
            "spec.backupat: backup time must not be more than 1 minute in the past"
        );
        let future = at(1000).check(&ctx(939)).unwrap_err().to_string();
        assert_eq!(
            future,
            "spec.backupat: backup time must not be more than 1 minute in the future"
        );
    }

    #[test]
    fn status_stored_before_the_recovery_point_fields_still_loads() {
        let old = serde_json::json!({
            "status": 1,
            "error": "",
            "lastbackuptime": {"seconds": 1702166400, "nanos": 985220192},
            "lastbackupattempt": {"seconds": 1702166400, "nanos": 985220192},
        });
        let st: EtcdBackupStatusSpec = serde_json::from_value(old).unwrap();
        assert_eq!(st.lastbackuptime.seconds, 1702166400);
        assert!(st.nextbackuptime.is_zero() && st.lastprovenrestorable.is_zero());
        let keys: Vec<String> = match serde_json::to_value(&st).unwrap() {
            serde_json::Value::Object(m) => m.keys().cloned().collect(),
            other => panic!("not an object: {other}"),
        };
        assert_eq!(
            keys[..4],
            ["status", "error", "lastbackuptime", "lastbackupattempt"],
            "the seed's fields stay first"
        );
        let only_seed = EtcdBackupStatusSpec {
            nextbackuptime: Timestamp::from_unix(5),
            ..st.clone()
        }
        .seed_fields();
        assert_eq!(only_seed, st);
        let keys = serde_json::to_value(&only_seed).unwrap();
        assert_eq!(keys.as_object().unwrap().len(), 4, "{keys}");
    }

    #[test]
    fn s3_config_requires_bucket_and_key_pairs() {
        let mut spec = EtcdBackupS3ConfigSpec::default();
        assert_eq!(
            spec.check(&ctx(0)).unwrap_err().to_string(),
            "spec.bucket: is required"
        );
        spec.bucket = "b".into();
        spec.accesskeyid = "a".into();
        assert!(spec
            .check(&ctx(0))
            .unwrap_err()
            .to_string()
            .starts_with("spec.secretaccesskey"));
        spec.secretaccesskey = "s".into();
        assert!(spec.check(&ctx(0)).is_ok());
        spec.endpoint = "127.0.0.1:9000".into();
        assert!(spec
            .check(&ctx(0))
            .unwrap_err()
            .to_string()
            .starts_with("spec.endpoint"));
    }
}

super::debug_redacted!(EtcdBackupS3ConfigSpec { bucket, region, endpoint, accesskeyid ; secretaccesskey, sessiontoken });

super::debug_redacted!(BackupDataSpec { clusteruuid, agerecipient ; ageidentity });

#[cfg(test)]
mod debug_tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let s3 = EtcdBackupS3ConfigSpec {
            bucket: "b".into(),
            secretaccesskey: "TOPSECRET".into(),
            sessiontoken: "TOKENSECRET".into(),
            ..Default::default()
        };
        let data = BackupDataSpec {
            ageidentity: "AGE-SECRET-KEY-1XYZ".into(),
            ..Default::default()
        };
        let text = format!("{s3:?} {data:?}");
        assert!(
            text.contains("bucket: \"b\"") && text.contains("<redacted>"),
            "{text}"
        );
        for secret in ["TOPSECRET", "TOKENSECRET", "AGE-SECRET-KEY"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}

//! Named backup stores beside the server's own (the seed's `default`):
//! clusters choose one with `backupconfiguration.store` and may keep a copy
//! of every backup in a second one (`backupconfiguration.secondarystore`).

use serde::{Deserialize, Serialize};

use super::backup::EtcdBackupS3ConfigSpec;
use super::{Kind, ValidationContext};
use crate::kinds::{Column, Writer};
use crate::validate::ValidationError;
use crate::{Timestamp, NS_DEFAULT, NS_EPHEMERAL};

/// Name of the store the server was started with (`--etcd-backup-s3`, or a
/// local directory): the one every cluster uses unless it names another.
pub const DEFAULT_STORE: &str = "default";

/// A local directory holding backups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalStoreSpec {
    /// Absolute path of the directory (created if missing).
    pub path: String,
}

/// One named store: exactly one of `local` and `s3`. The S3 fields are those
/// of `EtcdBackupS3Configs`, with the same secrets.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdBackupStoreSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalStoreSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<EtcdBackupS3ConfigSpec>,
}

impl std::fmt::Debug for EtcdBackupStoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The S3 spec's own Debug redacts its secrets.
        f.debug_struct("EtcdBackupStoreSpec")
            .field("local", &self.local)
            .field("s3", &self.s3)
            .finish()
    }
}

impl Kind for EtcdBackupStoreSpec {
    const TYPE: &'static str = "EtcdBackupStores.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_DEFAULT;
    const ALIASES: &'static [&'static str] = &["etcdbackupstore", "etcdbackupstores"];
    const COLUMNS: &'static [Column] = &[
        Column::new("PATH", "local.path"),
        Column::new("BUCKET", "s3.bucket"),
        Column::new("ENDPOINT", "s3.endpoint"),
    ];
    const WRITER: Writer = Writer::User;
    const SECRET_FIELDS: &'static [&'static str] = &["s3.secretaccesskey", "s3.sessiontoken"];

    fn check(&self, ctx: &ValidationContext) -> Result<(), ValidationError> {
        match (&self.local, &self.s3) {
            (Some(_), Some(_)) => Err(ValidationError::field(
                "spec",
                "spec.local and spec.s3 are mutually exclusive: set one of them",
            )),
            (None, None) => Err(ValidationError::field(
                "spec",
                "set spec.local (a directory) or spec.s3 (a bucket)",
            )),
            (Some(local), None) => {
                let path = local.path.trim();
                if path.is_empty() {
                    return Err(ValidationError::field("spec.local.path", "is required"));
                }
                if !path.starts_with('/') {
                    return Err(ValidationError::field(
                        "spec.local.path",
                        format!("must be an absolute path, got {path:?}"),
                    ));
                }
                Ok(())
            }
            (None, Some(s3)) => s3.check(ctx).map_err(|e| ValidationError {
                field: e.field.replacen("spec.", "spec.s3.", 1),
                message: e.message,
            }),
        }
    }
}

/// Copies of one cluster's backups to its secondary store, written only by
/// the copy controller. `status` uses the backup status codes: 1 ok (every
/// backup of the primary has its copy), 2 error (retried with backoff),
/// 3 running.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdBackupCopyStatusSpec {
    pub status: i32,
    pub error: String,
    /// Where copies come from and go to.
    pub store: String,
    pub secondarystore: String,
    /// Backups of the primary without their copy yet.
    pub pending: u32,
    /// The backup being copied, or the last one copied.
    pub backup: String,
    pub lastcopytime: Timestamp,
    /// Failed attempts in a row.
    pub attempts: u32,
    pub copiedtotal: u64,
}

impl Kind for EtcdBackupCopyStatusSpec {
    const TYPE: &'static str = "EtcdBackupCopyStatuses.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_EPHEMERAL;
    const ALIASES: &'static [&'static str] = &["etcdbackupcopystatus", "etcdbackupcopystatuses"];
    const COLUMNS: &'static [Column] = &[
        Column::new("STATUS", "status"),
        Column::new("SECONDARY", "secondarystore"),
        Column::new("PENDING", "pending"),
        Column::new("BACKUP", "backup"),
        Column::new("ERROR", "error"),
    ];
    const WRITER: Writer = Writer::Controller(COPY_CONTROLLER);
}

/// Owner of [`EtcdBackupCopyStatusSpec`].
pub const COPY_CONTROLLER: &str = "EtcdBackupCopyController";

/// Checks a store name given in a cluster's backup configuration (`field`):
/// a resource ID of `EtcdBackupStores`, or `default`.
pub fn check_store_name(field: &str, name: &str) -> Result<(), ValidationError> {
    crate::validate::validate_id(name)
        .map_err(|e| ValidationError::field(field, format!("store name {}", e.message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(spec: serde_json::Value) -> Result<(), String> {
        crate::validate::validate_typed::<EtcdBackupStoreSpec>(&spec, &ValidationContext::default())
            .map(drop)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn exactly_one_backend_and_errors_name_the_field() {
        use serde_json::json;
        assert!(check(json!({"local": {"path": "/srv/b"}})).is_ok());
        assert!(check(json!({"s3": {"bucket": "b", "endpoint": "http://x:1"}})).is_ok());
        assert!(check(json!({}))
            .unwrap_err()
            .starts_with("spec: set spec.local"));
        assert!(
            check(json!({"local": {"path": "/a"}, "s3": {"bucket": "b"}}))
                .unwrap_err()
                .contains("mutually exclusive")
        );
        assert_eq!(
            check(json!({"local": {"path": "rel"}})).unwrap_err(),
            "spec.local.path: must be an absolute path, got \"rel\""
        );
        assert_eq!(
            check(json!({"s3": {"region": "x"}})).unwrap_err(),
            "spec.s3.bucket: is required"
        );
        assert!(check(json!({"s3": {"bucket": "b", "accesskeyid": "a"}}))
            .unwrap_err()
            .starts_with("spec.s3.secretaccesskey"));
        assert!(check(json!({"s3": {"bucket": "b", "bukket": "x"}}))
            .unwrap_err()
            .starts_with("spec.s3.bukket"));
    }

    #[test]
    fn secrets_are_redacted_in_nested_fields_only() {
        let info = crate::kinds::TypeInfo::of::<EtcdBackupStoreSpec>();
        let mut spec = serde_json::json!({"s3": {
            "bucket": "b", "accesskeyid": "AK", "secretaccesskey": "SECRET", "sessiontoken": "TOK"
        }});
        info.redact(&mut spec);
        assert_eq!(spec["s3"]["bucket"], "b");
        assert_eq!(spec["s3"]["accesskeyid"], "AK");
        assert_eq!(spec["s3"]["secretaccesskey"], "<redacted>");
        assert_eq!(spec["s3"]["sessiontoken"], "<redacted>");
        let debug = format!(
            "{:?}",
            EtcdBackupStoreSpec {
                s3: Some(EtcdBackupS3ConfigSpec {
                    secretaccesskey: "SECRET".into(),
                    ..Default::default()
                }),
                local: None,
            }
        );
        assert!(!debug.contains("SECRET"), "{debug}");
    }
}

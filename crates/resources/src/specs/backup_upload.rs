//! The journal of open S3 multipart uploads, so that a server killed in the
//! middle of a backup aborts what it left open when it starts again.

use serde::{Deserialize, Serialize};

use super::Kind;
use crate::kinds::{Column, Writer};
use crate::{Timestamp, NS_EPHEMERAL};

/// One multipart upload of a backup that was started and not yet completed or
/// aborted; id `<cluster>-<unix seconds>`, like the backup it would become.
/// Written only by the backup controller: before the upload's first part is
/// sent, and destroyed once it was completed or aborted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdBackupUploadSpec {
    /// Cluster being backed up.
    pub cluster: String,
    /// Object key the upload writes.
    pub key: String,
    /// The upload id the S3 endpoint assigned.
    pub uploadid: String,
    /// Bucket and endpoint of the store the upload went to.
    pub bucket: String,
    pub endpoint: String,
    /// Which run of the server started it (random per start): uploads of an
    /// earlier run are orphans, to be aborted.
    pub serverrun: String,
    pub startedat: Timestamp,
}

impl Kind for EtcdBackupUploadSpec {
    const TYPE: &'static str = "EtcdBackupUploads.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_EPHEMERAL;
    const ALIASES: &'static [&'static str] = &["etcdbackupupload", "etcdbackupuploads"];
    const COLUMNS: &'static [Column] = &[
        Column::new("CLUSTER", "cluster"),
        Column::new("KEY", "key"),
        Column::new("BUCKET", "bucket"),
        Column::new("STARTED AT", "startedat"),
    ];
    const WRITER: Writer = Writer::Controller("EtcdBackupController");
}

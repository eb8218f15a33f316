//! Tries S3 settings before they are stored: a configuration that cannot
//! list its bucket is rejected and the stored one stays.

use async_trait::async_trait;
use omni_api::hooks::Admission;
use omni_api::ApiError;
use omni_resources::specs::backup::EtcdBackupS3ConfigSpec;
use omni_resources::specs::backup_store::EtcdBackupStoreSpec;
use omni_resources::Resource;

use crate::store::connect_s3;

pub struct S3ConfigAdmission;

#[async_trait]
impl Admission for S3ConfigAdmission {
    async fn admit(&self, resource: &Resource) -> Result<(), ApiError> {
        let spec: EtcdBackupS3ConfigSpec = resource
            .spec_as()
            .map_err(|e| ApiError::Invalid(format!("spec: {e}")))?;
        connect_s3(&spec)
            .await
            .map(|_| ())
            .map_err(|e| ApiError::Invalid(format!("incorrect settings for s3 client: {e}")))
    }
}

/// Tries a named store before it is stored: an S3 store must list its
/// bucket, a local one must be a directory omni can create and open.
pub struct StoreAdmission;

#[async_trait]
impl Admission for StoreAdmission {
    async fn admit(&self, resource: &Resource) -> Result<(), ApiError> {
        let spec: EtcdBackupStoreSpec = resource
            .spec_as()
            .map_err(|e| ApiError::Invalid(format!("spec: {e}")))?;
        match (&spec.local, &spec.s3) {
            (_, Some(s3)) => connect_s3(s3).await.map(drop).map_err(|e| {
                ApiError::Invalid(format!("spec.s3: incorrect settings for s3 client: {e}"))
            }),
            (Some(_), None) => crate::store::named::build(&spec)
                .map(drop)
                .map_err(|e| ApiError::Invalid(format!("spec.local.path: {e}"))),
            (None, None) => Err(ApiError::Invalid("spec: set spec.local or spec.s3".into())),
        }
    }
}

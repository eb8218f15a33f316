//! Tries S3 settings before they are stored: a configuration that cannot
//! list its bucket is rejected and the stored one stays.

use async_trait::async_trait;
use omni_api::hooks::Admission;
use omni_api::ApiError;
use omni_resources::specs::backup::EtcdBackupS3ConfigSpec;
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

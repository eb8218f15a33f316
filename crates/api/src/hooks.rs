//! Extension points the server binary wires: checks that need I/O before a
//! write is accepted, and kinds served from outside the state.

use async_trait::async_trait;
use omni_resources::{LabelSelector, Resource};

use crate::ApiError;

/// Checks a user write before it is stored (e.g. S3 credentials are tried).
/// Called only when the spec is new or changed.
#[async_trait]
pub trait Admission: Send + Sync + 'static {
    async fn admit(&self, resource: &Resource) -> Result<(), ApiError>;
}

/// Serves an external kind (EtcdBackups) from its own source.
#[async_trait]
pub trait ExternalSource: Send + Sync + 'static {
    async fn list(&self, kind: &str, selector: &LabelSelector) -> Result<Vec<Resource>, ApiError>;
    async fn get(&self, kind: &str, id: &str) -> Result<Resource, ApiError>;
    async fn delete(&self, kind: &str, id: &str) -> Result<(), ApiError>;
}

//! Typed specs, one per resource kind. Field names are the lowercase ones the
//! seed guide shows; unknown fields are rejected so typos surface at once.

pub mod alert;
pub mod auth;
pub mod backup;
pub mod backup_drill;
pub mod backup_retention;
pub mod backup_store;
pub mod backup_upload;
pub mod cluster;
mod cluster_backup;
pub mod machine;

use crate::kinds::{Column, Writer};
use crate::validate::ValidationError;

/// `Debug` for a spec with secret fields: those print as `<redacted>` (or
/// `""` when empty), so a stray `{:?}` in a log line cannot leak them.
macro_rules! debug_redacted {
    ($ty:ident { $($plain:ident),* ; $($secret:ident),* }) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut d = f.debug_struct(stringify!($ty));
                $(d.field(stringify!($plain), &self.$plain);)*
                $(d.field(stringify!($secret), &if self.$secret.is_empty() { "" } else { "<redacted>" });)*
                d.finish()
            }
        }
    };
}
pub(crate) use debug_redacted;

/// Context for the checks that depend on the server, not just the document.
#[derive(Debug, Clone)]
pub struct ValidationContext {
    pub now: crate::Timestamp,
    pub min_backup_interval: std::time::Duration,
    pub max_backup_interval: std::time::Duration,
}

impl Default for ValidationContext {
    fn default() -> Self {
        ValidationContext {
            now: crate::Timestamp::now(),
            min_backup_interval: std::time::Duration::from_secs(3600),
            max_backup_interval: std::time::Duration::from_secs(24 * 3600),
        }
    }
}

/// A resource kind: a spec type with its registry facts.
pub trait Kind: serde::Serialize + serde::de::DeserializeOwned + Default {
    /// Full type name, e.g. `EtcdBackupS3Configs.omni.sidero.dev`.
    const TYPE: &'static str;
    const DEFAULT_NAMESPACE: &'static str;
    /// Lowercase singular and plural aliases.
    const ALIASES: &'static [&'static str];
    /// Table columns after NAMESPACE TYPE ID VERSION.
    const COLUMNS: &'static [Column] = &[];
    const WRITER: Writer;
    /// Spec fields only admins may read.
    const SECRET_FIELDS: &'static [&'static str] = &[];

    /// Checks beyond the shape of the document.
    fn check(&self, _ctx: &ValidationContext) -> Result<(), ValidationError> {
        Ok(())
    }
}

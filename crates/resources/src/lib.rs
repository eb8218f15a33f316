//! The resource model of the omni server: metadata, typed specs, the type
//! registry with aliases and table columns, label selectors and durations.
//!
//! This crate does no I/O; every other crate builds on it.

pub mod cron;
pub mod duration;
pub mod kinds;
pub mod labels;
pub mod meta;
pub mod pitr;
pub mod retention;
pub mod specs;
pub mod unique;
pub mod validate;

pub use kinds::{registry, Column, TypeInfo, Writer};
pub use labels::{LabelSelector, SelectorError};
pub use meta::{Metadata, Phase, Resource, Timestamp};
pub use validate::ValidationError;

/// Namespace of user-written configuration and clusters.
pub const NS_DEFAULT: &str = "default";
/// Namespace of statuses and requests that do not need to survive forever.
pub const NS_EPHEMERAL: &str = "ephemeral";
/// Namespace of resources served from outside the state (the backup store).
pub const NS_EXTERNAL: &str = "external";

/// Label carrying the cluster a resource belongs to.
pub const LABEL_CLUSTER: &str = "omni.sidero.dev/cluster";
/// Label carrying the UUID of the cluster a backup belongs to (its key prefix in the store).
pub const LABEL_CLUSTER_UUID: &str = "omni.sidero.dev/cluster-uuid";
/// Label marking control-plane cluster members.
pub const LABEL_ROLE_CONTROLPLANE: &str = "omni.sidero.dev/role-controlplane";
/// Label marking worker cluster members.
pub const LABEL_ROLE_WORKER: &str = "omni.sidero.dev/role-worker";
/// Label naming the machine set a node belongs to.
pub const LABEL_MACHINE_SET: &str = "omni.sidero.dev/machine-set";

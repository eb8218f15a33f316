//! The controllers of the omni server.
//!
//! - [`store::StoreController`] keeps the backup store usable (local, or S3
//!   from `EtcdBackupS3Configs`) and writes `EtcdBackupOverallStatuses`.
//! - [`backup::EtcdBackupController`] schedules and runs backups, writes
//!   `EtcdBackupStatuses` and keeps each cluster's `BackupDatas`.
//! - [`cluster_machines::ClusterMachineController`] derives `ClusterMachines`
//!   from `MachineSetNodes`.
//! - [`external`] serves `EtcdBackups` from the store, and [`admission`]
//!   tries S3 settings before they are stored.
//! - [`retention::EtcdBackupRetentionController`] prunes backups by policy
//!   and writes `EtcdBackupRetentionStatuses`.
//! - [`drill::EtcdBackupDrillController`] restores new backups into a
//!   throwaway etcd and writes `EtcdBackupDrillStatuses`.
//! - [`alerts::AlertController`] derives firing alerts from those statuses,
//!   writes `AlertStatuses` and delivers them to `AlertReceivers`.
//! - [`continuous::ContinuousBackupController`] writes delta segments
//!   between full backups; [`continuous::pitr`] restores to a point in time.

pub mod admission;
pub mod alerts;
pub mod backup;
pub mod cluster;
pub mod cluster_finalizer;
pub mod cluster_machines;
pub mod continuous;
pub mod drill;
pub mod external;
mod interest;
pub mod leases;
pub mod machine_status;
mod probe_pace;
pub mod retention;
pub mod store;
mod waitlist;

//! Continuous backup: the changes between full backups, as delta segments
//! in the same store, sealed to the cluster's key like full backups.
//!
//! A chain starts at a full backup: the revision read just before its
//! snapshot began is the chain's base, and a watch from the revision after
//! it writes every change into segments named by revision range
//! ([`keys`]). Each segment's plaintext ([`format`]) carries its own
//! SHA-256. A chain that breaks (compaction, watch failure, member gone)
//! is not resumed: a new full backup starts a new one, so a chain never
//! has a hole.

pub mod format;
pub mod keys;
mod seal;
mod watch;

pub use seal::{open, seal};
pub use watch::{
    current_revision, run_chain, ChainEnd, ChainProgress, ChainSettings, MAX_SEGMENT_BYTES,
};

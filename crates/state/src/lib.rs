//! Resource state: one small interface over pluggable backends.
//!
//! [`State`] adds what every backend shares — versions, timestamps,
//! finalizers, owners and watch events — on top of a [`Backend`] that only
//! needs an atomic compare-and-swap per resource and a change feed. The
//! [`conformance`] suite runs against every backend (memory, redb, etcd).

mod backend;
pub mod conformance;
mod error;
pub mod etcd;
mod feed;
mod index;
mod memory;
mod redb_backend;
mod state;

pub use backend::{Backend, Fence};
pub use error::StateError;
pub use etcd::{EtcdBackend, EtcdOptions, EtcdTls, Leadership};
pub use feed::{Change, ChangeStream};
pub use memory::MemoryBackend;
pub use redb_backend::RedbBackend;
pub use state::{Event, EventKind, State, Watch};

//! Resource state: one small interface over pluggable backends.
//!
//! [`State`] adds what every backend shares — versions, timestamps,
//! finalizers and watch events — on top of a [`Backend`] that only needs an
//! atomic compare-and-swap per resource. The [`conformance`] suite runs
//! against every backend.

mod backend;
pub mod conformance;
mod error;
mod memory;
mod redb_backend;
mod state;

pub use backend::Backend;
pub use error::StateError;
pub use memory::MemoryBackend;
pub use redb_backend::RedbBackend;
pub use state::{Event, EventKind, State, Watch};

//! Cluster templates: one YAML file describing a cluster, its control plane
//! and its workers, as `omnictl cluster template` reads it.
//!
//! ```yaml
//! kind: Cluster
//! name: talos-default
//! kubernetes:
//!   version: v1.28.2
//! talos:
//!   version: v1.5.5
//! features:
//!   backupConfiguration:
//!     interval: 1h
//! ---
//! kind: ControlPlane
//! machines:
//!   - 1dd4397b-37f1-4196-9c37-becef670b64a
//! ---
//! kind: Workers
//! machines:
//!   - 0d1f01c3-0a8a-4560-8745-bb792e3dfaad
//! ```
//!
//! [`parse`] reads and checks a template on its own; [`Template::check`]
//! adds the checks that need the server's [`Facts`] (registered machines,
//! machines already in other clusters). [`Template::resources`] renders the
//! resources the template stands for (`Clusters`, `MachineSets`,
//! `MachineSetNodes`), and [`plan()`] compares them with what exists to say
//! what a sync creates, updates and destroys. Nothing here does I/O.

mod check;
mod model;
mod parse;
pub mod plan;
mod problem;
mod render;

pub use check::Facts;
pub use model::{ClusterTemplate, MachineSetTemplate, Role, Template};
pub use parse::parse;
pub use plan::{plan, Current, Plan, Update};
pub use problem::{Location, Problem, Problems};

/// Parses a template and checks it against the server's facts.
///
/// # Errors
/// Every problem found, in document order.
pub fn validate(text: &str, facts: &Facts) -> Result<Template, Problems> {
    let template = parse(text)?;
    Problems::check(template.check(facts), template)
}

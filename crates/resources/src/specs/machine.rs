//! Machines: hosts running an etcd member, and what a probe saw of them.

use serde::{Deserialize, Serialize};

use super::{Kind, ValidationContext};
use crate::kinds::{Column, Writer};
use crate::validate::ValidationError;
use crate::NS_DEFAULT;

/// How to reach the etcd member on a machine.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MachineSpec {
    /// etcd client URLs, e.g. `https://10.0.0.1:2379`.
    pub etcdendpoints: Vec<String>,
    /// PEM CA bundle to verify the member; empty for plain http.
    pub etcdca: String,
    /// PEM client certificate, when the member requires client auth.
    pub etcdcert: String,
    /// PEM client key (secret).
    pub etcdkey: String,
}

impl Kind for MachineSpec {
    const TYPE: &'static str = "Machines.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_DEFAULT;
    const ALIASES: &'static [&'static str] = &["machine", "machines"];
    const COLUMNS: &'static [Column] = &[Column::new("ENDPOINTS", "etcdendpoints")];
    const WRITER: Writer = Writer::User;
    const SECRET_FIELDS: &'static [&'static str] = &["etcdkey"];

    fn check(&self, _ctx: &ValidationContext) -> Result<(), ValidationError> {
        // No endpoints is a worker: a machine without an etcd member.
        for (i, url) in self.etcdendpoints.iter().enumerate() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ValidationError::field(
                    format!("spec.etcdendpoints[{i}]"),
                    format!("{url:?} must be an http:// or https:// URL"),
                ));
            }
        }
        if self.etcdcert.is_empty() != self.etcdkey.is_empty() {
            return Err(ValidationError::field(
                "spec.etcdkey",
                "etcdcert and etcdkey must be given together",
            ));
        }
        Ok(())
    }
}

/// What the machine status controller saw of a machine's etcd member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MachineStatusSpec {
    pub reachable: bool,
    pub etcdversion: String,
    pub memberid: String,
    pub leader: bool,
    pub dbsize: u64,
    pub error: String,
    pub lastchecked: crate::Timestamp,
}

impl Kind for MachineStatusSpec {
    const TYPE: &'static str = "MachineStatuses.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_DEFAULT;
    const ALIASES: &'static [&'static str] = &["machinestatus", "machinestatuses"];
    const COLUMNS: &'static [Column] = &[
        Column::new("REACHABLE", "reachable"),
        Column::new("ETCD VERSION", "etcdversion"),
        Column::new("LEADER", "leader"),
        Column::new("ERROR", "error"),
    ];
    const WRITER: Writer = Writer::Controller("MachineStatusController");
}

super::debug_redacted!(MachineSpec { etcdendpoints, etcdca, etcdcert ; etcdkey });

#[cfg(test)]
mod tests {
    use crate::specs::machine::MachineSpec;
    use crate::specs::ValidationContext;
    use crate::validate::validate_typed;
    use serde_json::json;

    #[test]
    fn a_worker_needs_no_etcd_endpoint_but_a_given_one_must_be_a_url() {
        let ctx = ValidationContext::default();
        validate_typed::<MachineSpec>(&json!({}), &ctx).expect("a worker registers as is");
        let err = validate_typed::<MachineSpec>(&json!({"etcdendpoints": ["10.0.0.1:2379"]}), &ctx)
            .unwrap_err();
        assert_eq!(err.field, "spec.etcdendpoints[0]");
    }
}

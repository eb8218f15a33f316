//! Resolving a type name or alias, with a helpful error.

use anyhow::anyhow;
use omni_resources::kinds::{lookup, registry};
use omni_resources::TypeInfo;

/// Finds a type by full name or alias; the error lists the known aliases.
pub fn resolve_kind(name: &str) -> anyhow::Result<&'static TypeInfo> {
    lookup(name).ok_or_else(|| {
        let known: Vec<&str> = registry()
            .iter()
            .filter_map(|t| t.aliases.first().copied())
            .collect();
        anyhow!(
            "unknown resource type {name:?} (known types include: {})",
            known.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_type_lists_aliases() {
        assert_eq!(
            resolve_kind("EtcdBackupS3Configs.omni.sidero.dev")
                .unwrap()
                .name,
            "EtcdBackupS3Configs.omni.sidero.dev"
        );
        let err = resolve_kind("etcdbakup").unwrap_err().to_string();
        assert!(
            err.starts_with("unknown resource type \"etcdbakup\" (known types include: "),
            "{err}"
        );
        assert!(
            err.contains("etcdbackup, ") && err.contains("cluster"),
            "{err}"
        );
    }
}

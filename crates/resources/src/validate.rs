//! Validation of untyped resources against their kinds.

use serde_json::Value;
use thiserror::Error;

use crate::specs::{Kind, ValidationContext};

/// A validation failure naming the field and the problem.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Parses the spec as `K` (naming the offending field on failure), runs the
/// kind's checks and returns the spec normalised.
pub fn validate_typed<K: Kind>(
    spec: &Value,
    ctx: &ValidationContext,
) -> Result<Value, ValidationError> {
    let spec = if spec.is_null() {
        Value::Object(Default::default())
    } else {
        spec.clone()
    };
    let typed: K = serde_path_to_error::deserialize(spec).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "spec".to_string()
        } else {
            format!("spec.{path}")
        };
        ValidationError::field(field, e.into_inner().to_string())
    })?;
    typed.check(ctx)?;
    serde_json::to_value(&typed).map_err(|e| ValidationError::field("spec", e.to_string()))
}

/// Checks a resource ID: 1-253 characters of `[A-Za-z0-9._-]`, not `.` or
/// `..`, so an ID can never be a path or break a URL.
pub fn validate_id(id: &str) -> Result<(), ValidationError> {
    if id.is_empty() {
        return Err(ValidationError::field("metadata.id", "is required"));
    }
    if id.len() > 253 {
        return Err(ValidationError::field(
            "metadata.id",
            "must be at most 253 characters",
        ));
    }
    if id == "." || id == ".." || id.starts_with('.') {
        return Err(ValidationError::field(
            "metadata.id",
            format!("{id:?} must not start with '.'"),
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(ValidationError::field(
            "metadata.id",
            format!(
                "{:?} contains {bad:?}; only letters, digits, '-', '_' and '.' are allowed",
                id.escape_debug().to_string()
            ),
        ));
    }
    Ok(())
}

/// Checks labels and annotations keys and values.
pub fn validate_labels(
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<(), ValidationError> {
    for (k, v) in labels {
        crate::labels::check_key(k).map_err(|m| ValidationError::field("metadata.labels", m))?;
        crate::labels::check_value(v)
            .map_err(|m| ValidationError::field(format!("metadata.labels.{k}"), m))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::specs::backup::EtcdBackupS3ConfigSpec;
    use serde_json::json;

    #[test]
    fn names_the_unknown_or_mistyped_field() {
        let ctx = ValidationContext::default();
        let err =
            validate_typed::<EtcdBackupS3ConfigSpec>(&json!({"bucket": "b", "bukket": "c"}), &ctx)
                .unwrap_err();
        assert_eq!(err.field, "spec.bukket");
        assert!(err.message.contains("unknown field `bukket`"), "{err}");
        let err =
            validate_typed::<EtcdBackupS3ConfigSpec>(&json!({"bucket": 5}), &ctx).unwrap_err();
        assert_eq!(err.field, "spec.bucket");
        assert!(err.message.contains("invalid type"), "{err}");
    }

    #[test]
    fn normalises_field_order_like_the_seed() {
        let ctx = ValidationContext::default();
        let v = validate_typed::<EtcdBackupS3ConfigSpec>(
            &json!({"sessiontoken": "", "bucket": "b"}),
            &ctx,
        )
        .unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "bucket",
                "region",
                "endpoint",
                "accesskeyid",
                "secretaccesskey",
                "sessiontoken"
            ]
        );
    }

    #[test]
    fn ids_with_path_characters_are_rejected() {
        for bad in ["", "../x", "a/b", "a\0b", ".", "..", "a b", "é"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "talos-default",
            "etcd-backup-s3-conf",
            "1dd4397b-37f1-4196-9c37-becef670b64a",
            "a.b_c",
        ] {
            assert!(validate_id(good).is_ok(), "{good:?} rejected");
        }
    }
}

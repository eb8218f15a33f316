//! Deserializers that refuse a key given twice in one mapping.
//!
//! `serde_json::Value` and `BTreeMap` keep the last of two equal keys, so a
//! typo such as a second `interval:` under `spec` would silently win. Both the
//! API (JSON bodies) and `omnictl` (YAML manifests) deserialize resources
//! through these, so the refusal is the same everywhere.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

fn duplicate<E: de::Error>(key: &str) -> E {
    E::custom(format_args!("duplicate key {key:?}"))
}

/// A JSON value whose mappings, at every depth, have distinct keys.
struct UniqueValue(Value);

impl<'de> Deserialize<'de> for UniqueValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor).map(UniqueValue)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(duplicate(&key));
            }
            let UniqueValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// For `#[serde(deserialize_with)]` on a `serde_json::Value` field.
pub fn value<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    UniqueValue::deserialize(d).map(|UniqueValue(v)| v)
}

/// For `#[serde(deserialize_with)]` on a string map (labels, annotations).
pub fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct MapVisitor;

    impl<'de> Visitor<'de> for MapVisitor {
        type Value = BTreeMap<String, String>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of strings")
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }

        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                if out.contains_key(&key) {
                    return Err(duplicate(&key));
                }
                let v: String = map.next_value()?;
                out.insert(key, v);
            }
            Ok(out)
        }
    }

    d.deserialize_map(MapVisitor)
}

#[cfg(test)]
mod tests {
    use crate::Resource;

    #[test]
    fn duplicate_spec_key_is_refused_at_any_depth() {
        let err = serde_json::from_str::<Resource>(
            r#"{"metadata": {"type": "x", "id": "a"}, "spec": {"a": 1, "a": 2}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("duplicate key \"a\""), "{err}");
        let err = serde_json::from_str::<Resource>(
            r#"{"metadata": {"type": "x", "id": "a"},
                "spec": {"backupconfiguration": {"interval": {"seconds": 3600}, "interval": {"seconds": 1}}}}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("duplicate key \"interval\""),
            "{err}"
        );
        let err = serde_json::from_str::<Resource>(
            r#"{"metadata": {"type": "x", "id": "a"}, "spec": {"l": [{"k": 1, "k": 1}]}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("duplicate key \"k\""), "{err}");
    }

    #[test]
    fn duplicate_label_or_annotation_is_refused() {
        for field in ["labels", "annotations"] {
            let text = format!(
                r#"{{"metadata": {{"type": "x", "id": "a", "{field}": {{"k": "1", "k": "2"}}}}}}"#
            );
            let err = serde_json::from_str::<Resource>(&text).unwrap_err();
            assert!(err.to_string().contains("duplicate key \"k\""), "{err}");
        }
    }

    #[test]
    fn distinct_keys_keep_values_and_order() {
        let r: Resource = serde_json::from_str(
            r#"{"metadata": {"type": "x", "id": "a", "labels": {"b": "1", "a": ""}},
                "spec": {"z": 1, "a": [1.5, -2, null, true, "s", {"k": {}}], "m": null}}"#,
        )
        .unwrap();
        let keys: Vec<&String> = r.spec.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["z", "a", "m"]);
        assert_eq!(
            r.spec["a"],
            serde_json::json!([1.5, -2, null, true, "s", {"k": {}}])
        );
        assert_eq!(r.metadata.labels["b"], "1");
        // Same value through serde_json::Value as through text.
        let again: Resource = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(again, r);
    }
}

//! Label selectors in the kubectl syntax: `k=v`, `k==v`, `k!=v`, `k`, `!k`,
//! joined with commas; every term must hold.

use std::collections::BTreeMap;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error("invalid label selector {selector:?}: {reason}")]
    Invalid { selector: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    terms: Vec<Term>,
}

impl LabelSelector {
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let invalid = |reason: String| SelectorError::Invalid {
            selector: selector.to_string(),
            reason,
        };
        let mut terms = Vec::new();
        if selector.trim().is_empty() {
            return Ok(LabelSelector { terms });
        }
        for raw in selector.split(',') {
            let term = raw.trim();
            if term.is_empty() {
                return Err(invalid("empty term".into()));
            }
            let parsed = if let Some((k, v)) = term.split_once("!=") {
                Term::NotEquals(
                    check_key(k.trim()).map_err(&invalid)?,
                    check_value(v.trim()).map_err(&invalid)?,
                )
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Term::Equals(
                    check_key(k.trim()).map_err(&invalid)?,
                    check_value(v.trim()).map_err(&invalid)?,
                )
            } else if let Some(k) = term.strip_prefix('!') {
                Term::NotExists(check_key(k.trim()).map_err(&invalid)?)
            } else {
                Term::Exists(check_key(term).map_err(&invalid)?)
            };
            terms.push(parsed);
        }
        Ok(LabelSelector { terms })
    }

    /// A selector requiring `key=value`.
    pub fn equals(key: &str, value: &str) -> Self {
        LabelSelector {
            terms: vec![Term::Equals(key.to_string(), value.to_string())],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.terms.iter().all(|t| match t {
            Term::Equals(k, v) => labels.get(k) == Some(v),
            Term::NotEquals(k, v) => labels.get(k) != Some(v),
            Term::Exists(k) => labels.contains_key(k),
            Term::NotExists(k) => !labels.contains_key(k),
        })
    }

    /// Every term as `(key, operator, value)`; the operator is `=`, `!=`,
    /// `exists` or `!exists` (the last two without a value).
    pub fn terms(&self) -> impl Iterator<Item = (&str, &'static str, Option<&str>)> {
        self.terms.iter().map(|t| match t {
            Term::Equals(k, v) => (k.as_str(), "=", Some(v.as_str())),
            Term::NotEquals(k, v) => (k.as_str(), "!=", Some(v.as_str())),
            Term::Exists(k) => (k.as_str(), "exists", None),
            Term::NotExists(k) => (k.as_str(), "!exists", None),
        })
    }

    /// The value the selector requires for `key` with `=`, if any.
    pub fn required_value(&self, key: &str) -> Option<&str> {
        self.terms.iter().find_map(|t| match t {
            Term::Equals(k, v) if k == key => Some(v.as_str()),
            _ => None,
        })
    }
}

impl std::fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .terms
            .iter()
            .map(|t| match t {
                Term::Equals(k, v) => format!("{k}={v}"),
                Term::NotEquals(k, v) => format!("{k}!={v}"),
                Term::Exists(k) => k.clone(),
                Term::NotExists(k) => format!("!{k}"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Checks a label key: optional `prefix/` then a name of alphanumerics,
/// `-`, `_`, `.`, at most 63 characters, starting and ending alphanumeric.
pub fn check_key(key: &str) -> Result<String, String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty()
            || p.len() > 253
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(format!("label key {key:?} has an invalid prefix"));
        }
    }
    if !is_label_name(name) {
        return Err(format!(
            "label key {key:?} must be 1-63 characters of [A-Za-z0-9-_.], starting and ending with an alphanumeric"
        ));
    }
    Ok(key.to_string())
}

/// Checks a label value: empty, or a label name.
pub fn check_value(value: &str) -> Result<String, String> {
    if value.is_empty() || is_label_name(value) {
        Ok(value.to_string())
    } else {
        Err(format!(
            "label value {value:?} must be at most 63 characters of [A-Za-z0-9-_.], starting and ending with an alphanumeric"
        ))
    }
}

fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matches_terms() {
        let l = labels(&[("omni.sidero.dev/cluster", "talos-default"), ("role", "cp")]);
        assert!(
            LabelSelector::parse("omni.sidero.dev/cluster=talos-default")
                .unwrap()
                .matches(&l)
        );
        assert!(
            LabelSelector::parse("omni.sidero.dev/cluster==talos-default,role")
                .unwrap()
                .matches(&l)
        );
        assert!(!LabelSelector::parse("role!=cp").unwrap().matches(&l));
        assert!(LabelSelector::parse("!missing").unwrap().matches(&l));
        assert!(!LabelSelector::parse("missing").unwrap().matches(&l));
        assert!(LabelSelector::parse("").unwrap().matches(&l));
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in ["a=b,", "=v", "a=b c", "a/=b", "-a=b", "a=b=c", "!"] {
            let err = LabelSelector::parse(bad).unwrap_err();
            assert!(
                err.to_string().contains("invalid label selector"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn required_value_finds_equality() {
        let s = LabelSelector::parse("x,omni.sidero.dev/cluster=c1").unwrap();
        assert_eq!(s.required_value("omni.sidero.dev/cluster"), Some("c1"));
        assert_eq!(s.required_value("x"), None);
    }
}

//! Problems found in a template, each naming its document and field.

use std::fmt;

/// Where a problem is: a document (1-based, counted by `---`) or the
/// template as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Template,
    Document { number: usize, kind: Option<String> },
}

/// One problem: where, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub location: Location,
    /// Dotted path in the document (`features.backupConfiguration.interval`,
    /// `machines[1]`); empty for the document as a whole.
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn template(message: impl Into<String>) -> Self {
        Problem {
            location: Location::Template,
            field: String::new(),
            message: message.into(),
        }
    }

    pub fn document(
        number: usize,
        kind: Option<&str>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            location: Location::Document {
                number,
                kind: kind.map(str::to_string),
            },
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::Template => f.write_str("template")?,
            Location::Document {
                number,
                kind: Some(kind),
            } => write!(f, "document {number} ({kind})")?,
            Location::Document { number, kind: None } => write!(f, "document {number}")?,
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem of a template, in document order; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} problem{} in the template:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.0 {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl Problems {
    /// `Ok(value)` when there are no problems.
    pub fn check<T>(problems: Vec<Problem>, value: T) -> Result<T, Problems> {
        if problems.is_empty() {
            Ok(value)
        } else {
            Err(Problems(problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_document_kind_and_field() {
        assert_eq!(
            Problem::document(2, Some("ControlPlane"), "machines[0]", "bad").to_string(),
            "document 2 (ControlPlane): machines[0]: bad"
        );
        assert_eq!(
            Problem::document(3, None, "", "invalid YAML").to_string(),
            "document 3: invalid YAML"
        );
        assert_eq!(
            Problem::template("a Cluster document is required").to_string(),
            "template: a Cluster document is required"
        );
        let all = Problems(vec![Problem::template("a"), Problem::template("b")]);
        assert_eq!(
            all.to_string(),
            "2 problems in the template:\n  template: a\n  template: b"
        );
    }
}

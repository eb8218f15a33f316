//! API tokens. Only the SHA-256 of a token is kept.

use serde::{Deserialize, Serialize};

use super::Kind;
use crate::kinds::{Column, Writer};

/// Namespace of authentication resources (admins only).
pub const NS_AUTH: &str = "auth";

#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiTokenSpec {
    /// `reader`, `operator` or `admin`.
    pub role: String,
    /// Hex SHA-256 of the token.
    pub tokensha256: String,
    pub description: String,
}

impl Kind for ApiTokenSpec {
    const TYPE: &'static str = "ApiTokens.omni.sidero.dev";
    const DEFAULT_NAMESPACE: &'static str = NS_AUTH;
    const ALIASES: &'static [&'static str] = &["apitoken", "apitokens"];
    const COLUMNS: &'static [Column] = &[
        Column::new("ROLE", "role"),
        Column::new("DESCRIPTION", "description"),
    ];
    const WRITER: Writer = Writer::Controller("AuthService");
    const SECRET_FIELDS: &'static [&'static str] = &["tokensha256"];
}

super::debug_redacted!(ApiTokenSpec { role, description ; tokensha256 });

//! Bearer tokens with roles. Only a token's SHA-256 is stored; a presented
//! token is found by its public ID prefix and compared in constant time.

use std::path::Path;

use axum::http::HeaderMap;
use omni_resources::meta::ResourceKey;
use omni_resources::specs::auth::{ApiTokenSpec, NS_AUTH};
use omni_resources::specs::Kind;
use omni_resources::{LabelSelector, Resource};
use omni_state::State;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ApiError;

/// What a caller may do; ordered by power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Reader,
    Operator,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Result<Role, ApiError> {
        match s {
            "reader" => Ok(Role::Reader),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(ApiError::Invalid(format!(
                "role: {other:?} is not one of reader, operator, admin"
            ))),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: String,
    pub role: Role,
}

impl Caller {
    pub fn require(&self, role: Role, what: &str) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "{what} requires the {} role; this token has {}",
                role.as_str(),
                self.role.as_str()
            )))
        }
    }
}

fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new token `omni-<id>-<secret>`: the ID names the stored resource, the
/// secret is 32 random bytes.
fn new_token() -> (String, String) {
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut id);
    rand::thread_rng().fill_bytes(&mut secret);
    let id = hex::encode(id);
    let token = format!("omni-{id}-{}", hex::encode(secret));
    (id, token)
}

/// Creates a token resource; returns (id, token). The token is not kept.
pub async fn create_token(
    state: &State,
    role: Role,
    description: &str,
) -> Result<(String, String), ApiError> {
    let (id, token) = new_token();
    let spec = ApiTokenSpec {
        role: role.as_str().to_string(),
        tokensha256: sha256_hex(&token),
        description: description.to_string(),
    };
    let mut res = Resource::from_spec(ApiTokenSpec::TYPE, NS_AUTH, &id, &spec);
    res.metadata.owner = "AuthService".into();
    state.create(res).await?;
    Ok((id, token))
}

pub async fn revoke_token(state: &State, id: &str) -> Result<(), ApiError> {
    state
        .destroy(&ResourceKey::new(NS_AUTH, ApiTokenSpec::TYPE, id))
        .await?;
    Ok(())
}

/// Finds the caller of a request from its `Authorization: Bearer` header.
pub async fn authenticate(state: &State, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthenticated("missing Authorization: Bearer token".into()))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::Unauthenticated("Authorization header must be 'Bearer <token>'".into())
        })?;
    let invalid = || ApiError::Unauthenticated("invalid or revoked token".into());
    let id = token
        .strip_prefix("omni-")
        .and_then(|rest| rest.split_once('-'))
        .map(|(id, _)| id)
        .filter(|id| id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or_else(invalid)?;
    let Some((_, spec)) = state.get_spec::<ApiTokenSpec>(NS_AUTH, id).await? else {
        return Err(invalid());
    };
    let presented = sha256_hex(token);
    if !bool::from(presented.as_bytes().ct_eq(spec.tokensha256.as_bytes())) {
        return Err(invalid());
    }
    Ok(Caller {
        token_id: id.to_string(),
        role: Role::parse(&spec.role)?,
    })
}

/// On first start (no tokens at all) creates an admin token and writes it
/// to `path` with mode 0600. Returns whether it did.
pub async fn bootstrap_admin_token(state: &State, path: &Path) -> Result<bool, ApiError> {
    let existing = state
        .list(NS_AUTH, ApiTokenSpec::TYPE, &LabelSelector::default())
        .await?;
    if !existing.is_empty() {
        return Ok(false);
    }
    let (_, token) = create_token(
        state,
        Role::Admin,
        "first admin token, created at first start",
    )
    .await?;
    write_secret_file(path, &token)
        .map_err(|e| ApiError::Internal(format!("writing {}: {e}", path.display())))?;
    Ok(true)
}

/// Writes a file readable only by its owner, atomically.
pub fn write_secret_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn tokens_authenticate_by_hash_and_revoke() {
        let state = State::memory();
        let (id, token) = create_token(&state, Role::Operator, "t").await.unwrap();
        let caller = authenticate(&state, &bearer(&token)).await.unwrap();
        assert_eq!(caller.role, Role::Operator);
        assert_eq!(caller.token_id, id);
        // The stored spec holds only the hash.
        let (_, spec) = state
            .get_spec::<ApiTokenSpec>(NS_AUTH, &id)
            .await
            .unwrap()
            .unwrap();
        assert!(!spec.tokensha256.contains(&token[18..]));
        let mut forged = token.clone();
        forged.pop();
        forged.push('x');
        assert!(authenticate(&state, &bearer(&forged)).await.is_err());
        assert!(authenticate(&state, &HeaderMap::new()).await.is_err());
        assert!(authenticate(&state, &bearer("garbage")).await.is_err());
        revoke_token(&state, &id).await.unwrap();
        assert!(authenticate(&state, &bearer(&token)).await.is_err());
    }

    #[tokio::test]
    async fn bootstrap_writes_a_private_file_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("omni-auth-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("admin-token");
        let state = State::memory();
        assert!(bootstrap_admin_token(&state, &path).await.unwrap());
        assert!(!bootstrap_admin_token(&state, &path).await.unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let token = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            authenticate(&state, &bearer(token.trim()))
                .await
                .unwrap()
                .role,
            Role::Admin
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Bearer-token authentication: tokens are known only by their sha256, and a
//! presented token is hashed and compared with every configured hash in
//! constant time. Roles: `reader` < `trigger` < `admin`, and `approver`
//! (reader + approval decisions) beside them: admin does not imply approver,
//! so whoever runs and reconfigures pipelines does not approve their output.
//!
//! Nothing here logs a token or a header.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::config::TokenEntry;

/// What a token may do ([`Role::allows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read pipelines, runs, logs, records and approved digests.
    Reader,
    /// Reader, plus starting runs.
    Trigger,
    /// Trigger, plus cancelling runs and reloading the configuration.
    Admin,
    /// Reader, plus approving or rejecting builds awaiting approval.
    Approver,
}

impl Role {
    /// Whether this role may make a call that needs `needs`: reader <
    /// trigger < admin include the ones below; approver includes reader only,
    /// and only approver approves.
    pub fn allows(self, needs: Role) -> bool {
        match (self, needs) {
            (_, Role::Reader) => true,
            (Role::Approver, n) => n == Role::Approver,
            (_, Role::Approver) => false,
            (have, n) => have >= n,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Reader => "reader",
            Role::Trigger => "trigger",
            Role::Admin => "admin",
            Role::Approver => "approver",
        })
    }
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's configured name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header.
    #[error("missing bearer token")]
    Missing,
    /// The token matches no configured hash.
    #[error("invalid bearer token")]
    Invalid,
    /// The token is valid but its role is too low.
    #[error("token `{name}` has role `{has}`; this call needs `{needs}`")]
    Forbidden {
        /// The token's name.
        name: String,
        /// Its role.
        has: Role,
        /// The role the call needs.
        needs: Role,
    },
}

/// Lowercase hex sha256 of a token's text (what the config stores).
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Equality that takes the same time wherever the inputs differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks an `Authorization` header value against the configured tokens and
/// the role a call needs. Every configured hash is compared (no early exit),
/// so timing reveals nothing about which one matched.
pub fn authorize(
    tokens: &[TokenEntry],
    authorization: Option<&str>,
    needs: Role,
) -> Result<Principal, AuthError> {
    let token = authorization
        .and_then(|h| {
            let (scheme, rest) = h.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::Missing)?;
    let presented = hash_token(token);
    let mut found: Option<&TokenEntry> = None;
    for entry in tokens {
        if constant_time_eq(presented.as_bytes(), entry.sha256.as_bytes()) {
            found = Some(entry);
        }
    }
    let entry = found.ok_or(AuthError::Invalid)?;
    if !entry.role.allows(needs) {
        return Err(AuthError::Forbidden {
            name: entry.name.clone(),
            has: entry.role,
            needs,
        });
    }
    Ok(Principal {
        name: entry.name.clone(),
        role: entry.role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Vec<TokenEntry> {
        vec![TokenEntry {
            name: "ci".into(),
            role: Role::Trigger,
            sha256: hash_token("s3cret"),
        }]
    }

    #[test]
    fn roles_are_ordered_and_checked() {
        let t = tokens();
        let ok = authorize(&t, Some("Bearer s3cret"), Role::Reader).unwrap();
        assert_eq!(ok.role, Role::Trigger);
        assert!(authorize(&t, Some("bearer s3cret"), Role::Trigger).is_ok());
        assert!(matches!(
            authorize(&t, Some("Bearer s3cret"), Role::Admin),
            Err(AuthError::Forbidden { .. })
        ));
        assert_eq!(
            authorize(&t, Some("Bearer nope"), Role::Reader),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            authorize(&t, Some("Basic s3cret"), Role::Reader),
            Err(AuthError::Missing)
        );
        assert_eq!(authorize(&t, None, Role::Reader), Err(AuthError::Missing));
    }

    #[test]
    fn only_approvers_approve_and_approvers_only_read_besides() {
        use Role::*;
        for (have, needs, ok) in [
            (Approver, Approver, true),
            (Approver, Reader, true),
            (Approver, Trigger, false),
            (Approver, Admin, false),
            (Admin, Approver, false),
            (Trigger, Approver, false),
            (Reader, Approver, false),
            (Admin, Trigger, true),
        ] {
            assert_eq!(have.allows(needs), ok, "{have} for {needs}");
        }
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

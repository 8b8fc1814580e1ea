//! Which key checks the record chain for the commands that read it
//! (`kiln records --verify`, `kiln approved`, approvals): `--key PUB` when
//! given, else the public half of the operator config's signing key, else
//! none (records are unsigned and no signature is checked).

use std::path::Path;

use super::OperatorConfig;
use crate::record::ChainKeys;
use crate::sign::{PublicKey, PublicKeyError};

/// Keys that only check (reading commands never sign).
pub fn verifying_keys(
    operator: &OperatorConfig,
    public: Option<&Path>,
) -> Result<ChainKeys, PublicKeyError> {
    if let Some(path) = public {
        return PublicKey::load(path).map(ChainKeys::verifying);
    }
    Ok(operator
        .signing
        .as_ref()
        .map(|k| ChainKeys::verifying(PublicKey::of(k)))
        .unwrap_or_default())
}

/// Keys that sign what is appended (approval events) and check what is
/// read: the operator's signing key, or none.
pub fn signing_keys(operator: OperatorConfig) -> ChainKeys {
    operator
        .signing
        .map(|k| ChainKeys::signing(std::sync::Arc::new(k)))
        .unwrap_or_default()
}

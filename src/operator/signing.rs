//! `signing.key` of the operator config: a PEM key file (relative to the
//! config, never inside the project) or an AWS KMS key `awskms:///…`,
//! checked (spec, usage, state, public key) before the command does
//! anything, so a wrong key pushes nothing.

use std::path::Path;

use serde_saphyr::Spanned;

use super::{OperatorConfigError, refuse_in_project};
use crate::sign::SigningKey;

/// The key `key` names, for the config file `config`.
pub(super) async fn load(
    config: &Path,
    project: &Path,
    key: &Spanned<String>,
) -> Result<SigningKey, OperatorConfigError> {
    let line = key.referenced.line();
    if key.value.starts_with("awskms:") {
        return SigningKey::kms(&key.value)
            .await
            .map_err(|source| OperatorConfigError::Kms {
                config: config.to_path_buf(),
                line,
                source,
            });
    }
    let key_path = config.parent().unwrap_or(Path::new(".")).join(&key.value);
    refuse_in_project(config, &key_path, project)?;
    SigningKey::load(&key_path).map_err(|source| OperatorConfigError::Key {
        config: config.to_path_buf(),
        line,
        source,
    })
}

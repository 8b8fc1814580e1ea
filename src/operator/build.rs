//! The operator config's `build:` section: the builder of recipes that do
//! not name one (`defaultBuilder: classic | buildkit`, default `classic`)
//! and which build-secret sources recipes may use (`secretSources: [env,
//! file, awsSecretsManager]`, default all). A recipe cannot loosen either.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::load::build_settings::{BuildPolicy, Builder, SecretSourceKind};

/// `build:` as written in the operator config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BuildFile {
    #[serde(default)]
    default_builder: Option<Builder>,
    #[serde(default)]
    secret_sources: Option<BTreeSet<SecretSourceKind>>,
}

impl BuildFile {
    /// The policy the loader applies.
    pub fn policy(self) -> BuildPolicy {
        BuildPolicy {
            default_builder: self.default_builder.unwrap_or_default(),
            secret_sources: self.secret_sources,
        }
    }
}

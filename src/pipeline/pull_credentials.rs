//! Credentials for the daemon's pull of the pinned parents: looked up with
//! the resolver's own sources (`RegistryClient::credentials_for`), one entry
//! per parent registry host, so a parent that resolved can also be pulled
//! and no other host's credentials reach dockerd.

use std::collections::HashMap;

use bollard::auth::DockerCredentials;

use crate::registry::{RegistryClient, RegistryError};
use crate::render::RenderedBuild;

/// `BuildRequest::credentials` for `rendered`: the registries of its parent
/// images that have credentials, keyed by host.
pub async fn pull_credentials(
    registry: &RegistryClient,
    rendered: &RenderedBuild,
) -> Result<HashMap<String, DockerCredentials>, RegistryError> {
    let mut out = HashMap::new();
    for (_, used) in &rendered.base_images {
        if out.contains_key(&used.registry) {
            continue;
        }
        if let Some(c) = registry.credentials_for(&used.registry).await? {
            let creds = DockerCredentials {
                username: Some(c.username),
                password: Some(c.password),
                serveraddress: Some(used.registry.clone()),
                ..DockerCredentials::default()
            };
            out.insert(used.registry.clone(), creds);
        }
    }
    Ok(out)
}

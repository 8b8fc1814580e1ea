//! Connects to the Docker Engine the way the docker CLI does: `DOCKER_HOST`
//! when set, the local unix socket otherwise, then negotiates the API version
//! (the engines kiln meets include 20.10). Private to the test phase until the
//! lead unifies it with the builder's `src/docker.rs`.

use bollard::Docker;

use super::TestPhaseError;

/// Connects and negotiates the API version.
pub async fn connect() -> Result<Docker, TestPhaseError> {
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let docker = Docker::connect_with_defaults().map_err(|source| TestPhaseError::Connect {
        host: host.clone(),
        source,
    })?;
    docker
        .negotiate_version()
        .await
        .map_err(|source| TestPhaseError::Connect { host, source })
}

//! Test support: the dev services (`scripts/services up`) and a Docker
//! connection. Tests that need them fail, never skip, when they are missing.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

/// Addresses of the running dev services.
#[derive(Debug, Clone)]
pub struct Services {
    /// `DOCKER_HOST`.
    pub docker_host: String,
    /// `host:port` of the plain-HTTP registry.
    pub registry: String,
    /// The base image in that registry.
    pub base_image: String,
}

/// The services, from the environment or `<repo>/target/services.env`.
pub fn services() -> Services {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    if !env.contains_key("DOCKER_HOST") {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/services.env");
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e}; run scripts/services up",
                file.display()
            )
        });
        for line in text.lines() {
            if let Some((k, v)) = line
                .trim()
                .strip_prefix("export ")
                .and_then(|l| l.split_once('='))
            {
                env.entry(k.to_string())
                    .or_insert_with(|| v.trim_matches('"').to_string());
            }
        }
    }
    let get = |k: &str| {
        env.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} is not set; run scripts/services up"))
    };
    Services {
        docker_host: get("DOCKER_HOST"),
        registry: get("KILN_TEST_REGISTRY"),
        base_image: get("KILN_TEST_BASE_IMAGE"),
    }
}

impl Services {
    /// A negotiated connection to the test daemon; panics when it does not answer.
    pub async fn docker(&self) -> bollard::Docker {
        let endpoint = kiln::docker::Endpoint {
            host: self.docker_host.clone(),
            tls: None,
        };
        let docker = kiln::docker::client(&endpoint)
            .unwrap_or_else(|e| panic!("{e}; run scripts/services up"));
        docker.negotiate_version().await.unwrap_or_else(|e| {
            panic!(
                "docker at {} does not answer ({e}); run scripts/services up",
                self.docker_host
            )
        })
    }
}

/// A unique lowercase token for names and labels.
pub fn nonce() -> String {
    format!("{:016x}", fastrand::u64(..))
}

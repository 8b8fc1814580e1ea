//! This process as a node of its run queue: its id (`kiln serve
//! --node-id`, the config's `cluster.nodeId`, or the host name), its Docker
//! engine, the platforms that engine builds, its labels and the checkout
//! digest of the project it loaded ([`super::checkout`]). A cluster node
//! registers it; a single host lists it as its one node.

use std::collections::BTreeMap;

use super::cluster::NodeInfo;

/// What the process knows about itself before it opens the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeOptions {
    /// `--node-id`; else the config's `cluster.nodeId`; else the host name.
    pub id: Option<String>,
    /// Its engine (`DOCKER_HOST`); default: the environment's.
    pub docker_host: Option<String>,
    /// The platforms its engine builds; default: this machine's
    /// architecture on Linux.
    pub platforms: Vec<String>,
}

impl NodeOptions {
    /// The node's registration, with the config's labels and default id.
    pub fn info(
        &self,
        config_id: Option<&str>,
        labels: &BTreeMap<String, String>,
        checkout: String,
    ) -> NodeInfo {
        let id = self
            .id
            .clone()
            .or_else(|| config_id.map(str::to_string))
            .unwrap_or_else(crate::test_phase::hostname);
        let docker_host = self.docker_host.clone().unwrap_or_else(|| {
            crate::docker::Endpoint::from_env()
                .map(|e| e.host)
                .unwrap_or_default()
        });
        let platforms = if self.platforms.is_empty() {
            vec![native_platform()]
        } else {
            self.platforms.clone()
        };
        NodeInfo {
            id,
            docker_host,
            platforms,
            labels: serde_json::to_string(labels).unwrap_or_else(|_| "{}".into()),
            checkout,
        }
    }
}

/// `linux/<arch>` of this machine, in Docker's spelling.
pub fn native_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    };
    format!("linux/{arch}")
}

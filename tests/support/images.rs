//! Purpose-built test images: a Dockerfile `FROM` the local base image,
//! built through the Engine API (legacy builder) from an in-memory context.
#![allow(dead_code)]

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptionsBuilder, BuilderVersion};
use futures_util::StreamExt;

/// The local base image (`KILN_TEST_BASE_IMAGE`).
pub fn base() -> String {
    std::env::var("KILN_TEST_BASE_IMAGE").expect("KILN_TEST_BASE_IMAGE is set by scripts/services")
}

/// Connects like kiln does; panics (fails the test) when Docker is missing.
pub async fn docker() -> Docker {
    let d = kiln::docker::connect()
        .await
        .expect("the Docker engine must be running (scripts/services up)");
    d.ping().await.expect("the Docker engine must answer");
    d
}

/// Builds `FROM <base>` + `body` as `tag`.
pub async fn build(docker: &Docker, tag: &str, body: &str) {
    let dockerfile = format!("FROM {}\n{body}\n", base());
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(dockerfile.len() as u64);
    tar.append_data(&mut h, "Dockerfile", dockerfile.as_bytes())
        .unwrap();
    let tar = tar.into_inner().unwrap();
    let options = BuildImageOptionsBuilder::default()
        .t(tag)
        .rm(true)
        .forcerm(true)
        .version(BuilderVersion::BuilderV1)
        .build();
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(tar.into())));
    while let Some(item) = stream.next().await {
        let info = item.unwrap_or_else(|e| panic!("building {tag}: {e}"));
        if let Some(err) = info.error_detail {
            panic!("building {tag}: {err:?}");
        }
    }
}

/// Test containers this test process started (owner label `host:pid`), so a
/// leak check is not confused by other processes using the same engine.
/// `recipe` instead selects a recipe's containers, for a kiln subprocess.
pub async fn own_test_containers(docker: &Docker, recipe: Option<&str>) -> Vec<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let mut labels = vec![format!(
        "{}={}",
        kiln::test_phase::LABEL_ROLE,
        kiln::test_phase::ROLE_TEST
    )];
    labels.push(match recipe {
        Some(r) => format!("{}={r}", kiln::test_phase::LABEL_RECIPE),
        None => format!(
            "{}={}:{}",
            kiln::test_phase::LABEL_OWNER,
            host.trim(),
            std::process::id()
        ),
    });
    let options = bollard::query_parameters::ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&std::collections::HashMap::from([(
            "label".to_string(),
            labels,
        )]))
        .build();
    docker
        .list_containers(Some(options))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

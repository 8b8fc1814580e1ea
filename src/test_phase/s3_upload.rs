//! S3Upload in the test phase: after a component's test script ran, the
//! folders its S3Upload steps staged are copied out of the container (the
//! archive API) and uploaded with [`crate::s3::put_staged`]. One result per
//! upload; a failure is a failed check naming the step.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::time::Instant;

use bollard::Docker;
use bollard::query_parameters::DownloadFromContainerOptionsBuilder;
use futures_util::StreamExt;

use super::report::{CheckKind, CheckResult};
use crate::render::S3Upload;
use crate::s3::StagedUpload;

/// Uploads the staged files of `uploads` whose step passed (`passed` holds
/// the step names that did); `dir` is the script's folder in the container.
pub(crate) async fn upload_staged(
    docker: &Docker,
    id: &str,
    component: &str,
    dir: &str,
    uploads: &[S3Upload],
    passed: &[String],
) -> Vec<CheckResult> {
    let mut results = Vec::new();
    if uploads.iter().all(|u| !passed.contains(&u.shown)) {
        return results;
    }
    let client = crate::s3::client().await;
    for u in uploads.iter().filter(|u| passed.contains(&u.shown)) {
        let start = Instant::now();
        let outcome = match staged(docker, id, &format!("{dir}/{}", u.folder)).await {
            Ok(batches) => crate::s3::put_staged(&client, u, &batches)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!(
                "step {}: copying the staged files out of the container: {e}",
                u.step
            )),
        };
        results.push(CheckResult {
            name: format!("{component}/{} (S3Upload)", u.shown),
            kind: CheckKind::ComponentStep,
            passed: outcome.is_ok(),
            skipped: false,
            duration: start.elapsed(),
            detail: match outcome {
                Ok(n) => format!("uploaded {n} object(s)"),
                Err(e) => e,
            },
        });
    }
    results
}

/// Reads `path` (a folder of `N/destination` + `N/files/…`) from the container.
async fn staged(docker: &Docker, id: &str, path: &str) -> Result<Vec<StagedUpload>, String> {
    let options = DownloadFromContainerOptionsBuilder::default()
        .path(path)
        .build();
    let mut stream = docker.download_from_container(id, Some(options));
    let mut tar_bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        tar_bytes.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
    }
    let mut batches: BTreeMap<String, StagedUpload> = BTreeMap::new();
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        // `<folder>/<N>/destination` or `<folder>/<N>/files/<relative path>`.
        let mut parts = name.splitn(3, '/');
        let (Some(_), Some(n), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        let batch = batches.entry(n.to_string()).or_default();
        if rest == "destination" {
            batch.destination = String::from_utf8_lossy(&bytes).into_owned();
        } else if let Some(rel) = rest.strip_prefix("files/") {
            batch.files.push((rel.to_string(), bytes));
        }
    }
    Ok(batches.into_values().collect())
}

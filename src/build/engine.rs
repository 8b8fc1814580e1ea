//! The Engine API calls the builder makes besides the build itself: find an
//! image by build key, pull a pinned parent, tag, and remove containers a
//! failed or cancelled build left behind.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    CreateImageOptions, ListContainersOptions, ListImagesOptions, RemoveContainerOptions,
    RemoveImageOptions, TagImageOptions,
};
use futures_util::StreamExt;

use super::labels::BUILD_KEY;

/// The newest local image labelled with `build_key`, if any: its id and tags.
pub async fn find_by_key(
    docker: &Docker,
    build_key: &str,
) -> Result<Option<(String, Vec<String>)>, bollard::errors::Error> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{BUILD_KEY}={build_key}")],
    )]);
    let mut images = docker
        .list_images(Some(ListImagesOptions {
            filters: Some(filters),
            ..Default::default()
        }))
        .await?;
    images.sort_by_key(|i| std::cmp::Reverse(i.created));
    Ok(images.into_iter().next().map(|i| (i.id, i.repo_tags)))
}

/// The image `id` when it exists and carries `build_key`: one inspect, the
/// fast path for a no-op rebuild (listing by label scans every image).
pub async fn check_key(
    docker: &Docker,
    id: &str,
    build_key: &str,
) -> Option<(String, Vec<String>)> {
    let image = docker.inspect_image(id).await.ok()?;
    let labels = image.config.as_ref()?.labels.as_ref()?;
    (labels.get(BUILD_KEY).map(String::as_str) == Some(build_key)).then(|| {
        (
            image.id.unwrap_or_else(|| id.to_string()),
            image.repo_tags.unwrap_or_default(),
        )
    })
}

/// Whether `reference` is present locally.
pub async fn has_image(docker: &Docker, reference: &str) -> bool {
    docker.inspect_image(reference).await.is_ok()
}

/// Pulls `reference` (normally `repo@sha256:…`) unless it is present.
pub async fn ensure_image(
    docker: &Docker,
    reference: &str,
    platform: Option<&str>,
    credentials: Option<DockerCredentials>,
) -> Result<bool, bollard::errors::Error> {
    if has_image(docker, reference).await {
        return Ok(false);
    }
    let options = CreateImageOptions {
        from_image: Some(reference.to_string()),
        platform: platform.unwrap_or_default().to_string(),
        ..Default::default()
    };
    let mut stream = docker.create_image(Some(options), None, credentials);
    while let Some(item) = stream.next().await {
        item?;
    }
    Ok(true)
}

/// Tags `image_id` as `repo:tag`.
pub async fn tag(docker: &Docker, image_id: &str, tag: &str) -> Result<(), bollard::errors::Error> {
    let (repo, t) = match tag.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (tag, "latest"),
    };
    docker
        .tag_image(
            image_id,
            Some(TagImageOptions {
                repo: Some(repo.to_string()),
                tag: Some(t.to_string()),
            }),
        )
        .await
}

/// Removes the tag `reference` (the image with it, when nothing else holds
/// the image); 404 is success.
pub async fn remove_tag(docker: &Docker, reference: &str) -> Result<(), bollard::errors::Error> {
    match docker
        .remove_image(reference, None::<RemoveImageOptions>, None)
        .await
    {
        Ok(_) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes an image kiln just built and refuses to keep (best effort: a
/// failure is logged; the build fails either way).
pub async fn remove_image(docker: &Docker, image_id: &str) {
    let opts = bollard::query_parameters::RemoveImageOptions {
        force: true,
        noprune: false,
        ..Default::default()
    };
    if let Err(e) = docker.remove_image(image_id, Some(opts), None).await {
        tracing::warn!("cannot remove refused image {image_id}: {e}");
    }
}

/// Ids of every container on the daemon, running or not.
pub async fn container_ids(docker: &Docker) -> Result<BTreeSet<String>, bollard::errors::Error> {
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await?;
    Ok(list.into_iter().filter_map(|c| c.id).collect())
}

/// Removes what a failed or cancelled build left: the containers it reported
/// (`Running in …`) and containers created since `before` from one of the
/// build's own intermediate images. Gives the daemon one second to clean up
/// by itself, then force-removes, and waits (up to ten seconds) until the
/// containers are gone. Returns the ids kiln removed.
pub async fn remove_leftovers(
    docker: &Docker,
    before: &BTreeSet<String>,
    reported: &[String],
    layers: &[String],
) -> Vec<String> {
    const TICK: Duration = Duration::from_millis(100);
    const GRACE_TICKS: u32 = 10;
    const MAX_TICKS: u32 = 100;
    let mut removed = Vec::new();
    for tick in 0..MAX_TICKS {
        let leftovers = find_leftovers(docker, before, reported, layers).await;
        if leftovers.is_empty() {
            break;
        }
        if tick >= GRACE_TICKS {
            for id in leftovers {
                let opts = RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                };
                match docker.remove_container(&id, Some(opts)).await {
                    Ok(()) => {
                        tracing::info!("removed leftover build container {id}");
                        removed.push(id);
                    }
                    // Already being removed, or gone: look again next tick.
                    Err(e) => tracing::debug!("removing build container {id}: {e}"),
                }
            }
        }
        if tick + 1 == MAX_TICKS {
            tracing::warn!("build containers are still present after 10 s");
        }
        tokio::time::sleep(TICK).await;
    }
    removed
}

async fn find_leftovers(
    docker: &Docker,
    before: &BTreeSet<String>,
    reported: &[String],
    layers: &[String],
) -> Vec<String> {
    let Ok(list) = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
    else {
        return Vec::new();
    };
    let short = |id: &str| id.trim_start_matches("sha256:").to_string();
    list.into_iter()
        .filter_map(|c| {
            let id = c.id?;
            let was_reported = reported.iter().any(|r| id.starts_with(r.as_str()));
            let image = short(c.image_id.as_deref().unwrap_or_default());
            let ours = !before.contains(&id)
                && layers
                    .iter()
                    .any(|l| !l.is_empty() && image.starts_with(l.as_str()));
            (was_reported || ours).then_some(id)
        })
        .collect()
}

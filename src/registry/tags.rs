//! `GET /v2/<repository>/tags/list`: every tag of a repository, so a branch
//! cleanup can tell whether a digest is held by a tag it must not touch
//! before deleting by digest.

use reqwest::Method;

use super::RegistryClient;
use super::error::RegistryError;
use super::transport::Request;
use crate::reference::ImageReference;

/// Most tags asked for in one page.
const PAGE: usize = 1000;

#[derive(serde::Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl RegistryClient {
    /// The tags of `repo`'s repository (its tag or digest is ignored); an
    /// unknown repository has none. Pages (`Link`, `last=`) are followed.
    pub async fn list_tags(&self, repo: &ImageReference) -> Result<Vec<String>, RegistryError> {
        let mut out: Vec<String> = Vec::new();
        loop {
            let last = out.last().map(|t| format!("&last={t}")).unwrap_or_default();
            let req = Request {
                what: "tag list",
                reference: format!("{}/{}", repo.registry, repo.repository),
                registry: &repo.registry,
                repository: &repo.repository,
                method: Method::GET,
                path: format!("{}/tags/list?n={PAGE}{last}", repo.repository),
                accept: Some("application/json".into()),
            };
            let answer = match self.inner.fetch(&req).await {
                Ok(a) => a,
                Err(e) if e.is_not_found() => return Ok(out),
                Err(e) => return Err(e),
            };
            let page: TagList = serde_json::from_slice(&answer.body).map_err(|source| {
                RegistryError::BadTagList {
                    repository: req.reference.clone(),
                    source,
                }
            })?;
            let page = page.tags.unwrap_or_default();
            let more = page.len() >= PAGE && answer.headers.contains_key("link");
            out.extend(page);
            if !more {
                return Ok(out);
            }
        }
    }
}

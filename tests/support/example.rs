//! The repository's example project copied for one test, and the test
//! containers a kiln process left.

use std::path::Path;

use super::{nonce, services};

/// A copy of the repository's example project whose pushes go to a unique
/// repository (returned), so test runs never share tags; `edit` rewrites the
/// recipe text.
pub fn example_project(edit: impl Fn(String) -> String) -> (tempfile::TempDir, String) {
    let dir = copy_project(Path::new(env!("CARGO_MANIFEST_DIR")));
    let repo = format!("kiln-it/hello-{}", nonce());
    let recipe_path = dir.path().join("recipes/hello-web.yaml");
    let text = std::fs::read_to_string(&recipe_path)
        .unwrap()
        .replace("repository: kiln/hello-web", &format!("repository: {repo}"));
    std::fs::write(&recipe_path, edit(text)).unwrap();
    (dir, repo)
}

/// A temporary folder holding a copy of `project`'s `recipes/`,
/// `components/` and `dockerfiles/`.
pub fn copy_project(project: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["recipes", "components", "dockerfiles"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for e in std::fs::read_dir(project.join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.path().join(sub).join(e.file_name())).unwrap();
        }
    }
    dir
}

/// Test containers kiln started on behalf of process `pid` (any host).
pub fn test_containers_of(pid: u32) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "label=dev.kiln.role=test",
            "--format",
            "{{.ID}} {{.Label \"dev.kiln.owner\"}}",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "docker ps failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.ends_with(&format!(":{pid}")))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

/// The tags of `repo` in the test registry (none when it does not exist).
pub async fn registry_tags(repo: &str) -> Vec<String> {
    let s = services();
    let res = reqwest::get(format!("http://{}/v2/{repo}/tags/list", s.registry))
        .await
        .unwrap();
    if res.status() == 404 {
        return Vec::new();
    }
    let v: serde_json::Value = res.json().await.unwrap();
    v["tags"]
        .as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// A pipeline over the test services for project `dir`, under the
/// operator's `governance`.
pub async fn pipeline_under(
    dir: &Path,
    governance: kiln::operator::Governance,
) -> kiln::pipeline::Pipeline {
    let s = services();
    kiln::pipeline::Pipeline {
        project: kiln::project::Project::open(dir).unwrap(),
        docker: s.docker().await,
        registry: kiln::registry::RegistryClient::with_defaults().unwrap(),
        signing: None,
        governance: std::sync::Arc::new(governance),
        records: kiln::record::Records::sqlite(
            kiln::record::db_path(dir),
            kiln::record::ChainKeys::default(),
        ),
    }
}

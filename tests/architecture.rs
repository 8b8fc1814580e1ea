//! ARCHITECTURE.md's single points of truth, checked by scanning the source:
//! which files may use an HTTP client, the Docker API, the AWS SDK or the
//! server framework, which may read or write files directly, and that
//! `src/cli/` only parses and prints. A new use outside its place fails here
//! with the file named; move the code, or change the document and this list
//! in the same commit.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, with its production text (a trailing
/// `#[cfg(test)] mod …` and test-only files removed), paths `/`-separated
/// relative to the crate.
fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut stack = vec![root.join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path: PathBuf = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy();
                let rel = rel.replace('\\', "/");
                if TEST_ONLY.contains(&rel.as_str()) {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((rel, production(&text).to_string()));
            }
        }
    }
    assert!(out.len() > 100, "found only {} source files", out.len());
    out
}

/// Files compiled only for tests.
const TEST_ONLY: &[&str] = &["src/record/tests.rs", "src/record/fixture.rs"];

fn production(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// The files (outside `allowed`, a list of files or `folder/` prefixes)
/// whose production code contains `needle`.
fn offenders(needle: &str, allowed: &[&str]) -> Vec<String> {
    sources()
        .into_iter()
        .filter(|(path, text)| {
            text.contains(needle) && !allowed.iter().any(|a| path.starts_with(a))
        })
        .map(|(path, _)| path)
        .collect()
}

fn assert_only(needle: &str, allowed: &[&str], why: &str) {
    let found = offenders(needle, allowed);
    assert!(
        found.is_empty(),
        "`{needle}` used outside {allowed:?} ({why}): {found:?}"
    );
}

#[test]
fn http_clients_live_in_the_registry_the_daemon_client_and_the_test_probe() {
    assert_only(
        "reqwest",
        &[
            "src/registry/",
            "src/daemon/client.rs",
            "src/test_phase/http.rs",
        ],
        "registries, the CLI's daemon client, the test phase's GET",
    );
}

#[test]
fn the_server_framework_lives_in_the_daemon_api() {
    assert_only(
        "axum",
        &[
            "src/daemon/api.rs",
            "src/daemon/page/",
            "src/daemon/tls.rs",
            "src/daemon/mod.rs",
        ],
        "only the API and the status page know HTTP; tls.rs is axum's listener; mod.rs calls axum::serve",
    );
    assert_only(
        "StatusCode",
        &[
            "src/daemon/api.rs",
            "src/daemon/page/",
            "src/registry/",
            "src/test_phase/http.rs",
        ],
        "status codes are the API's, the registry client's and the probe's",
    );
}

#[test]
fn the_docker_api_is_driven_by_the_stages_that_need_it() {
    assert_only(
        "bollard::",
        &[
            "src/docker.rs",
            "src/build/",
            "src/test_phase/",
            "src/distribute/",
            "src/sbom/export.rs",
            "src/pipeline/run.rs",
            "src/pipeline/tested_image.rs",
            "src/pipeline/pull_credentials.rs",
            "src/pipeline/gate.rs",
            "src/findings/",
        ],
        "connect, build, test, export; the pipeline passes the handle",
    );
}

#[test]
fn ecr_is_reached_only_by_the_registry_and_the_push() {
    assert_only(
        "aws_sdk_ecr",
        &[
            "src/registry/ecr.rs",
            "src/registry/error.rs",
            "src/distribute/ecr.rs",
        ],
        "resolve reads manifests, distribute pushes",
    );
}

#[test]
fn postgres_is_reached_only_by_the_postgres_record_store_and_cluster_queue() {
    for needle in ["tokio_postgres", "deadpool_postgres"] {
        assert_only(
            needle,
            &[
                "src/postgres.rs",
                "src/record/pg/",
                "src/record/error.rs",
                "src/daemon/cluster/",
            ],
            "the PostgreSQL record store, the cluster's run queue and their connection pools",
        );
    }
}

#[test]
fn kms_is_reached_only_by_the_kms_signer() {
    assert_only(
        "aws_sdk_kms",
        &["src/sign/kms.rs"],
        "the signing key's KMS backend",
    );
}

#[test]
fn project_files_are_read_only_through_project_read() {
    // Each allowed file reads something that is not a file named in the
    // project: kiln's own state, the lock kiln writes, the daemon config,
    // docker credentials, the git checkout, /proc; or the build context,
    // which `Project::confined` checked as a folder before it is scanned (and
    // which the daemon's checkout digest hashes, streamed, path by confined
    // path: context files may be binary and large); or
    // the CloudFormation/Terraform/CLI JSON files `kiln import` is given on
    // its command line, which belong to no project; or the operator config
    // and its signing key, which must live outside every project.
    let allowed = [
        "src/operator/mod.rs",
        "src/sign/key.rs",
        "src/sign/public.rs",
        "src/import/mod.rs",
        "src/import/terraform.rs",
        "src/project.rs",
        "src/atomic_file.rs",
        "src/build/context.rs",
        "src/build/revision.rs",
        "src/daemon/checkout.rs",
        "src/build/state.rs",
        "src/daemon/config.rs",
        "src/distribute/cache.rs",
        "src/pipeline/guard.rs",
        "src/registry/credentials.rs",
        "src/resolve/lock.rs",
        "src/test_phase/run.rs",
    ];
    for needle in [
        "fs::read(",
        "fs::read_to_string(",
        "File::open(",
        "tokio::fs::",
    ] {
        assert_only(
            needle,
            &allowed,
            "Project::read enforces confinement and the size limit",
        );
    }
}

#[test]
fn user_facing_files_are_written_only_by_atomic_file() {
    let allowed = ["src/atomic_file.rs", "src/file_lock.rs"];
    for needle in ["fs::write(", "File::create(", "fs::rename("] {
        assert_only(
            needle,
            &allowed,
            "temp + fsync + rename with an explicit mode; file_lock writes its holder line",
        );
    }
}

#[test]
fn the_cli_only_parses_and_prints() {
    for needle in [
        "std::fs",
        "tokio::fs",
        "reqwest",
        "bollard::",
        "rusqlite",
        "Result<_, String>",
    ] {
        let found: Vec<String> = offenders(needle, &[])
            .into_iter()
            .filter(|p| p.starts_with("src/cli/"))
            .collect();
        assert!(found.is_empty(), "`{needle}` in the CLI: {found:?}");
    }
}

#[test]
fn stages_never_reach_the_pipeline_the_daemon_or_the_cli() {
    let stages = [
        "src/load/",
        "src/resolve/",
        "src/registry/",
        "src/render/",
        "src/build/",
        "src/test_phase/",
        "src/distribute/",
        "src/record/",
    ];
    for needle in ["crate::pipeline", "crate::daemon", "crate::cli"] {
        let found: Vec<String> = offenders(needle, &[])
            .into_iter()
            .filter(|p| stages.iter().any(|s| p.starts_with(s)))
            .collect();
        assert!(found.is_empty(), "a stage uses `{needle}`: {found:?}");
    }
}

#[test]
fn stage_errors_are_not_strings_at_the_seam() {
    // SDK errors may be boxed as a `#[source]` inside a stage's enum; the
    // pipeline and the daemon keep every error typed.
    let seam: Vec<String> = [
        "Box<dyn std::error::Error",
        "Result<T, String>",
        "Result<_, String>",
    ]
    .into_iter()
    .flat_map(|needle| offenders(needle, &[]))
    .filter(|p| p.starts_with("src/pipeline/") || p.starts_with("src/daemon/"))
    .collect();
    assert!(seam.is_empty(), "untyped errors at the seam: {seam:?}");
}

#[test]
fn every_source_file_is_on_the_code_map() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let map = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let missing: Vec<String> = sources()
        .into_iter()
        .map(|(path, _)| path)
        .filter(|p| !p.starts_with("src/cli/")) // "one file per command"
        .filter(|p| {
            let name = p.rsplit('/').next().unwrap();
            !map.contains(p.as_str()) && !map.contains(name)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "not on ARCHITECTURE.md's code map: {missing:?}"
    );
}

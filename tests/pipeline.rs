//! `kiln run` end to end on the example recipe, against the real Docker
//! engine, the local registry and moto's ECR: every place that names the
//! image names the same digest; a second run does nothing; failures leave no
//! tag and no passing record.

mod support;

use std::path::Path;

use kiln::digest::Digest;
use kiln::distribute::DistributeError;
use kiln::pipeline::{Pipeline, PipelineError, RunOptions, Stage, StageError, chain};
use kiln::record::{Status, Store};
use kiln::registry::{BasicCredentials, CredentialSource, RegistryClient, RegistryConfig};
use support::example::{example_project, registry_tags};
use support::push::Pusher;
use support::registry_process::RegistryProcess;
use support::{nonce, services};

async fn pipeline(dir: &Path) -> Pipeline {
    support::example::pipeline_under(dir, Default::default()).await
}

async fn registry_digest(repo: &str, tag: &str) -> Option<Digest> {
    let s = services();
    let res = reqwest::Client::new()
        .head(format!("http://{}/v2/{repo}/manifests/{tag}", s.registry))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    if res.status() == 404 {
        return None;
    }
    assert!(
        res.status().is_success(),
        "HEAD {repo}:{tag}: {}",
        res.status()
    );
    Some(
        res.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap(),
    )
}

async fn ecr_digest(repo: &str, tag: &str) -> Option<Digest> {
    services();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let out = aws_sdk_ecr::Client::new(&conf)
        .batch_get_image()
        .repository_name(repo)
        .image_ids(
            aws_sdk_ecr::types::ImageIdentifier::builder()
                .image_tag(tag)
                .build(),
        )
        .send()
        .await
        .ok()?;
    let img = out.images().first()?;
    let manifest = Digest::of(img.image_manifest()?.as_bytes());
    let reported: Digest = img.image_id()?.image_digest()?.parse().unwrap();
    assert_eq!(
        reported, manifest,
        "moto's digest is the manifest bytes' sha256"
    );
    Some(reported)
}

fn kiln(dir: &Path, args: &[&str]) -> (i32, String, String) {
    support::kiln_on(dir, args)
}

#[tokio::test(flavor = "multi_thread")]
async fn example_runs_end_to_end_and_every_digest_agrees() {
    let (dir, repo) = example_project(|t| t);
    let p = pipeline(dir.path()).await;
    let summary = p
        .run("hello-web", &RunOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(summary.status, Status::Passed);
    let rec = summary.record.as_ref().unwrap();
    assert_eq!(rec.record.build.0, 1);
    assert_eq!(rec.record.targets.len(), 2);
    let digest = rec.record.targets[0].manifest_digest.clone();
    assert!(
        rec.record
            .targets
            .iter()
            .all(|t| t.verified && t.manifest_digest == digest)
    );
    assert!(rec.record.tests.as_ref().unwrap().passed);
    assert!(
        rec.record.parents[0].reference.digest.is_some(),
        "parent pinned"
    );

    assert_eq!(
        registry_digest(&repo, "1.0.0-1").await,
        Some(digest.clone()),
        "local registry"
    );
    assert_eq!(
        ecr_digest(&repo, "1.0.0-1").await,
        Some(digest.clone()),
        "moto ECR"
    );
    let (code, out, err) = kiln(dir.path(), &["approved", "hello-web"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines.iter().all(|l| l.ends_with(&format!("@{digest}"))),
        "{out}"
    );
    assert!(
        out.contains(&format!("{}/{repo}@", services().registry)),
        "{out}"
    );

    // Unchanged inputs: nothing is built, pushed, tagged or recorded.
    let again = p.run("hello-web", &RunOptions::default()).await.unwrap();
    assert_eq!(again.status, Status::UpToDate);
    assert!(again.record.is_none() && again.pushed.is_none() && again.image_id.is_none());
    assert_eq!(again.approved.len(), 2);
    assert_eq!(registry_tags(&repo).await, vec!["1.0.0-1".to_string()]);
    let store = Store::open(kiln::record::db_path(dir.path())).unwrap();
    assert_eq!(store.list(Some("hello-web"), None).unwrap().len(), 1);
    let (code, out, err) = kiln(dir.path(), &["records", "--verify"]);
    assert_eq!(code, 0, "{out}{err}");

    // A test setting changed: same image (no build), but the run is not up
    // to date: tests run again and the image gets the next build's tag.
    let recipe = dir.path().join("recipes/hello-web.yaml");
    let text = std::fs::read_to_string(&recipe)
        .unwrap()
        .replace("timeoutSeconds: 30", "timeoutSeconds: 20");
    std::fs::write(&recipe, text).unwrap();
    let third = p.run("hello-web", &RunOptions::default()).await.unwrap();
    assert_eq!(third.status, Status::Passed);
    assert_eq!(
        third.build_key, summary.build_key,
        "the image inputs did not change"
    );
    let rec3 = third.record.unwrap();
    assert_eq!(rec3.record.build.0, 2);
    assert!(
        rec3.record
            .targets
            .iter()
            .all(|t| t.manifest_digest == digest),
        "same image, same digest"
    );
    assert_eq!(registry_tags(&repo).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_test_records_a_failure_and_tags_nothing() {
    let (dir, repo) = example_project(|t| {
        t.replace(
            "expectBodyContains: Hello from kiln",
            "expectBodyContains: Goodbye",
        )
        .replace("timeoutSeconds: 30", "timeoutSeconds: 3")
    });
    let p = pipeline(dir.path()).await;
    let err = p
        .run("hello-web", &RunOptions::default())
        .await
        .unwrap_err();
    let PipelineError::Stage {
        stage,
        record,
        source: StageError::TestsFailed { passed, total },
    } = err
    else {
        panic!("{}", chain(&err))
    };
    assert_eq!(stage, Stage::Test);
    assert!(passed < total, "{passed} of {total} checks passed");
    let record = record.expect("the failure is recorded");
    assert_eq!(record.record.status, Status::Failed);
    assert_eq!(record.record.failure.as_ref().unwrap().stage, "test");
    assert!(
        registry_tags(&repo).await.is_empty(),
        "nothing may be tagged"
    );
    assert_eq!(ecr_digest(&repo, "1.0.0-1").await, None);
    let (code, _, err) = kiln(dir.path(), &["approved", "hello-web"]);
    assert_eq!(code, 1, "no approved image after a failed run: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_that_points_elsewhere_is_never_overwritten() {
    let (dir, repo) = example_project(|t| t);
    let p = pipeline(dir.path()).await;
    let first = p.run("hello-web", &RunOptions::default()).await.unwrap();
    let old = first.record.unwrap().record.targets[0]
        .manifest_digest
        .clone();
    // Lose the state (build numbers restart at 1) and change an input, so the
    // next run wants to push a different image under the same tag.
    std::fs::remove_dir_all(dir.path().join(".kiln")).unwrap();
    let recipe = dir.path().join("recipes/hello-web.yaml");
    let text = std::fs::read_to_string(&recipe)
        .unwrap()
        .replace(
            "Greeting: Hello from kiln",
            "Greeting: Hello again from kiln",
        )
        .replace(
            "expectBodyContains: Hello from kiln",
            "expectBodyContains: Hello again",
        );
    std::fs::write(&recipe, text).unwrap();
    let err = p
        .run("hello-web", &RunOptions::default())
        .await
        .unwrap_err();
    let PipelineError::Stage {
        stage: Stage::Distribute,
        source: StageError::Distribute(DistributeError::Targets { failures, .. }),
        record,
    } = &err
    else {
        panic!("{}", chain(&err))
    };
    assert_eq!(failures.len(), 2, "both targets refuse: {}", chain(&err));
    for f in failures {
        let DistributeError::TagConflict { existing, .. } = f else {
            panic!("{}", chain(f))
        };
        assert_eq!(*existing, old, "names the existing digest");
    }
    assert_eq!(record.as_ref().unwrap().record.status, Status::Failed);
    assert_eq!(
        registry_digest(&repo, "1.0.0-1").await,
        Some(old.clone()),
        "tag unchanged"
    );
    assert_eq!(
        ecr_digest(&repo, "1.0.0-1").await,
        Some(old),
        "ECR tag unchanged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_killed_mid_push_tags_nothing_and_the_rerun_passes_once() {
    use std::sync::{Arc, Mutex};
    let scratch = Arc::new(Mutex::new(
        support::registry_process::RegistryProcess::start_plain(),
    ));
    let host = scratch.lock().unwrap().host.clone();
    let (dir, repo) = example_project(|t| {
        t.replace(
            "        registry: ${KILN_REGISTRY:-127.0.0.1:5000}",
            &format!("        registry: {host}"),
        )
    });
    let p = pipeline(dir.path()).await;
    // Kill the target registry as soon as the push starts moving blobs.
    let killer = scratch.clone();
    let opts = RunOptions {
        events: Arc::new(move |e| {
            if matches!(e, kiln::pipeline::PipelineEvent::Push(_)) {
                killer.lock().unwrap().kill();
            }
        }),
        ..RunOptions::default()
    };
    let err = p.run("hello-web", &opts).await.unwrap_err();
    let PipelineError::Stage {
        stage: Stage::Distribute,
        source: StageError::Distribute(_),
        ..
    } = &err
    else {
        panic!("{}", chain(&err))
    };
    // Nothing tagged anywhere, not even on the target that stayed up.
    assert_eq!(
        ecr_digest(&repo, "1.0.0-1").await,
        None,
        "ECR tagged after a failed push"
    );

    scratch.lock().unwrap().restart();
    let ok = p
        .run("hello-web", &RunOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(ok.status, Status::Passed);
    let rec = ok.record.unwrap().record;
    assert_eq!(rec.build.0, 2, "the failed run kept build 1");
    let digest = rec.targets[0].manifest_digest.clone();
    assert!(
        rec.targets
            .iter()
            .all(|t| t.verified && t.manifest_digest == digest)
    );
    let res = reqwest::Client::new()
        .head(format!("http://{host}/v2/{repo}/manifests/1.0.0-2"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["docker-content-digest"].to_str().unwrap(),
        digest.to_string()
    );
    assert_eq!(ecr_digest(&repo, "1.0.0-2").await, Some(digest));
    let store = Store::open(kiln::record::db_path(dir.path())).unwrap();
    let all = store.list(Some("hello-web"), None).unwrap();
    let statuses: Vec<Status> = all.iter().map(|r| r.record.status).collect();
    assert_eq!(
        statuses,
        vec![Status::Passed, Status::Failed],
        "exactly one passing record"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn freshness_is_up_to_date_after_a_run_and_stale_when_the_parent_moves() {
    use kiln::pipeline::Freshness;
    let s = services();
    let parent = format!("{}/kiln-it/parent-{}:1", s.registry, nonce());
    support::skopeo_copy(&s.base_image, &parent, None);
    let (dir, repo) = example_project(|t| {
        t.replace(
            "parentImage: ${KILN_REGISTRY:-127.0.0.1:5000}/kiln/base:1",
            &format!("parentImage: {parent}"),
        )
    });
    let p = pipeline(dir.path()).await;
    assert!(
        matches!(
            p.freshness("hello-web").await.unwrap(),
            Freshness::Stale { .. }
        ),
        "no record yet"
    );
    let ran = p
        .run("hello-web", &RunOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    let fresh = p.freshness("hello-web").await.unwrap();
    assert_eq!(
        fresh,
        Freshness::UpToDate {
            build_key: ran.build_key.clone()
        }
    );
    // Move the parent's tag to another image: the check sees it at once.
    support::skopeo_copy(&format!("{}/{repo}:1.0.0-1", s.registry), &parent, None);
    match p.freshness("hello-web").await.unwrap() {
        Freshness::Stale { reason, build_key } => {
            assert!(reason.contains("moved"), "{reason}");
            assert_ne!(build_key, ran.build_key);
        }
        other => panic!("{other:?}"),
    }
}

/// A parent in a registry that needs credentials: it resolves with the
/// client's credentials, and the daemon's pull gets the same ones (#13: the
/// build failed with "no basic auth credentials").
#[tokio::test(flavor = "multi_thread")]
async fn a_parent_in_a_private_registry_is_pulled_with_the_resolver_credentials() {
    let s = services();
    let private = RegistryProcess::start_with_htpasswd("kiln", "pa55word");
    let base = kiln::reference::ImageReference::parse(&s.base_image).unwrap();
    Pusher::new(&private.host)
        .with_basic("kiln", "pa55word")
        .copy_from(&s.registry, &base.repository, base.tag.as_deref().unwrap())
        .await;
    let parent = format!("{}/{}:{}", private.host, base.repository, base.tag.unwrap());
    let (dir, _repo) = example_project(|t| {
        t.replace(
            "parentImage: ${KILN_REGISTRY:-127.0.0.1:5000}/kiln/base:1",
            &format!("parentImage: {parent}"),
        )
    });
    let mut config = RegistryConfig {
        docker_config: Some("/nonexistent/config.json".into()),
        ..RegistryConfig::default()
    };
    config.credentials.insert(
        private.host.clone(),
        CredentialSource::Basic(BasicCredentials {
            username: "kiln".into(),
            password: "pa55word".into(),
        }),
    );
    let p = Pipeline {
        registry: RegistryClient::new(config).unwrap(),
        signing: None,
        governance: Default::default(),
        ..pipeline(dir.path()).await
    };
    let summary = p
        .run("hello-web", &RunOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(summary.status, Status::Passed);
    let pinned = &summary.record.as_ref().unwrap().record.parents[0].reference;
    assert_eq!(pinned.registry, private.host);
    let docker = s.docker().await;
    let _ = docker
        .remove_image(
            &pinned.to_string(),
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
}

/// Nothing kiln logs at any verbosity contains a build-arg value (#13: the
/// Engine API `/build` URL with `buildargs=…` was logged at -vv).
#[tokio::test(flavor = "multi_thread")]
async fn run_with_vv_never_prints_a_build_arg_value() {
    services();
    let canary = format!("canary{}", nonce());
    let (dir, _repo) = example_project(|t| format!("{t}buildArgs:\n  MODE: {canary}\n"));
    let (code, out, err) = kiln(dir.path(), &["-vv", "run", "hello-web"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.lines().count() > 20, "-vv printed debug output:\n{err}");
    assert!(
        !out.contains(&canary) && !err.contains(&canary),
        "the build-arg value leaked:\n{out}{err}"
    );
}

/// `kiln --state postgres://… run` records in PostgreSQL only; the reading
/// commands and the next run's up-to-date check read it back from there.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_with_a_postgres_state_records_there_and_nowhere_else() {
    let schema = support::postgres::TestSchema::new().await;
    let (dir, _repo) = example_project(|t| t);
    let url = schema.url.as_str();
    let (code, out, err) = kiln(dir.path(), &["--state", url, "run", "hello-web"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = kiln(dir.path(), &["--state", url, "records", "--verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: 1 records, chain intact"), "{out}{err}");
    let (code, out, err) = kiln(dir.path(), &["--state", url, "approved", "hello-web"]);
    assert_eq!((code, out.lines().count()), (0, 2), "{out}{err}");
    let (code, out, err) = kiln(dir.path(), &["--state", url, "run", "hello-web"]);
    assert_eq!(code, 0, "{out}{err}");
    let location = url.parse().unwrap();
    let records = kiln::record::Records::open(&location, Default::default()).await;
    let list = records.unwrap().list(None, None).await.unwrap();
    assert_eq!(list.len(), 1, "the second run was up to date");
    assert!(
        !kiln::record::db_path(dir.path()).exists(),
        "nothing was written to the project's SQLite file"
    );
    schema.remove().await;
}

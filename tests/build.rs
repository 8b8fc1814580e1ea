//! The builder against the real Docker daemon and registry brought up by
//! `scripts/services up`. Every test gives its images a unique label so the
//! build key is new and the daemon really builds.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptions, ListImagesOptions};
use kiln::build::{self, BuildError, BuildEvent, BuildRequest, BuiltImage, InputChange};
use kiln::digest::Digest;
use kiln::project::Project;
use kiln::render;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A copy of the repository's example project in a temp folder, with the
/// registry address written in.
fn example_project(s: &support::Services) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["recipes", "components", "dockerfiles"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for e in std::fs::read_dir(Path::new(REPO).join(sub)).unwrap() {
            let e = e.unwrap();
            let text = std::fs::read_to_string(e.path()).unwrap();
            let text = text.replace("${KILN_REGISTRY:-127.0.0.1:5000}", &s.registry);
            std::fs::write(dir.path().join(sub).join(e.file_name()), text).unwrap();
        }
    }
    dir
}

struct Run {
    result: Result<BuiltImage, BuildError>,
    events: Vec<BuildEvent>,
}

async fn build_recipe(
    docker: &Docker,
    project: &Path,
    recipe: &str,
    run_label: &str,
    edit: impl FnOnce(&mut BuildRequest),
) -> Run {
    let project = Project::open(project).unwrap();
    let loaded = kiln::load::load_recipe(&project, recipe).unwrap_or_else(|d| panic!("{d}"));
    let pins = support::pin(&loaded.parent_image).await;
    let rendered = render::render(&loaded, &pins);
    let mut request = BuildRequest::for_recipe(&loaded);
    request
        .labels
        .insert("dev.kiln.test-run".into(), run_label.into());
    request.state_dir = Some(project.root().join(".kiln/state"));
    edit(&mut request);
    let mut events = Vec::new();
    let mut on_event = |e: BuildEvent| events.push(e);
    let result = build::build(docker, &rendered, &request, &mut on_event).await;
    Run { result, events }
}

async fn images_labelled(docker: &Docker, label: &str) -> Vec<String> {
    let filters = std::collections::HashMap::from([("label".to_string(), vec![label.to_string()])]);
    docker
        .list_images(Some(ListImagesOptions {
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect()
}

/// Containers (id, command) on the daemon.
async fn containers(docker: &Docker) -> BTreeMap<String, String> {
    docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.id.unwrap_or_default(), c.command.unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn example_builds_is_skipped_when_unchanged_and_rebuilds_on_a_parameter_change() {
    let s = support::services();
    let docker = s.docker().await;
    let project = example_project(&s);
    let run = support::nonce();
    let label = format!("dev.kiln.test-run={run}");

    let first = build_recipe(&docker, project.path(), "hello-web", &run, |r| {
        r.no_cache = true
    })
    .await;
    let first = first.result.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!first.skipped);
    let pinned = &first.base_images[0].1;
    let base_digest = pinned.digest.as_ref().expect("pinned").to_string();
    let inspect = docker.inspect_image(&first.image_id).await.unwrap();
    let labels = inspect.config.unwrap().labels.unwrap();
    assert_eq!(labels["org.opencontainers.image.base.digest"], base_digest);
    assert_eq!(
        labels["org.opencontainers.image.base.name"],
        s.base_image.as_str()
    );
    assert_eq!(labels["dev.kiln.recipe"], "hello-web");
    assert_eq!(labels["org.opencontainers.image.version"], "1.0.0");
    assert_eq!(
        labels["dev.kiln.build-key"],
        first.build_key.digest.to_string()
    );
    assert!(labels.contains_key("org.opencontainers.image.created"));
    assert!(
        first
            .kiln_steps
            .iter()
            .any(|k| k.step == "CheckPages" && k.status == "passed")
    );
    assert!(
        first
            .log
            .contains("::kiln-step phase=build step=WriteIndex")
    );
    assert_eq!(
        images_labelled(&docker, &label).await,
        vec![first.image_id.clone()]
    );

    // Unchanged inputs: skipped, same image, no new image.
    let second = build_recipe(&docker, project.path(), "hello-web", &run, |_| {}).await;
    assert!(
        second
            .events
            .iter()
            .any(|e| matches!(e, BuildEvent::Skipped { build_key, .. } if *build_key == first.build_key.digest.to_string()))
    );
    let second = second.result.unwrap();
    assert!(second.skipped);
    assert_eq!(second.image_id, first.image_id);
    assert_eq!(second.build_key, first.build_key);
    assert_eq!(images_labelled(&docker, &label).await.len(), 1);

    // One component parameter changed: new key, rebuilt, the change named.
    let recipe = project.path().join("recipes/hello-web.yaml");
    let text = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(
        &recipe,
        text.replace("Greeting: Hello from kiln", "Greeting: Hello again"),
    )
    .unwrap();
    let third = build_recipe(&docker, project.path(), "hello-web", &run, |_| {}).await;
    let changed: Vec<String> = third
        .events
        .iter()
        .filter_map(|e| match e {
            BuildEvent::InputsChanged { changes } => Some(changes.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let third = third.result.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!third.skipped);
    assert_ne!(third.build_key.digest, first.build_key.digest);
    assert_ne!(third.image_id, first.image_id);
    let changes = third.changed_inputs.clone().unwrap();
    assert!(
        changes.contains(&InputChange::Changed("component/01-hello-site".into())),
        "{changes:?}"
    );
    assert!(
        changed
            .iter()
            .any(|c| c.starts_with("component/01-hello-site")),
        "{changed:?}"
    );
    assert_eq!(images_labelled(&docker, &label).await.len(), 2);
    cleanup(&docker, &label).await;
}

/// A project with one recipe whose Dockerfile is `dockerfile`.
fn project_with(s: &support::Services, dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["recipes", "components", "dockerfiles"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    std::fs::write(dir.path().join("dockerfiles/t.Dockerfile"), dockerfile).unwrap();
    std::fs::write(
        dir.path().join("recipes/t.yaml"),
        format!(
            "name: t\nversion: 0.1.0\nparentImage: {}\ndockerfile: t.Dockerfile\n",
            s.base_image
        ),
    )
    .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_run_reports_the_step_and_leaves_nothing_behind() {
    let s = support::services();
    let docker = s.docker().await;
    let run = support::nonce();
    let df = format!(
        "FROM {{{{{{ imagebuilder:parentImage }}}}}} AS first\nRUN echo {run} > /n\n\
         FROM {{{{{{ imagebuilder:parentImage }}}}}}\nCOPY --from=first /n /n\n\
         RUN echo {run} && echo about to fail && exit 7\nRUN echo never\n"
    );
    let project = project_with(&s, &df);
    let before = containers(&docker).await;
    let tag = format!("kiln-test/fail:{run}");
    let t = tag.clone();
    let out = build_recipe(&docker, project.path(), "t", &run, move |r| r.tag = Some(t)).await;
    let err = out.result.expect_err("the build fails");
    let msg = err.to_string();
    match &err {
        BuildError::StepFailed(f) => {
            let kiln::build::StepFailure {
                recipe,
                stage,
                step,
                total,
                instruction,
                exit_code,
                last_lines,
                ..
            } = &**f;
            assert_eq!(recipe, "t");
            assert_eq!(*stage, 2);
            // 6 Dockerfile steps, kiln's LABEL, the daemon's `created` label.
            assert_eq!((*step, *total), (5, 8), "{msg}");
            assert!(instruction.contains("exit 7"), "{instruction}");
            assert_eq!(*exit_code, Some(7));
            assert!(
                last_lines.iter().any(|l| l == "about to fail"),
                "{last_lines:?}"
            );
        }
        other => panic!("expected StepFailed, got {other:?}"),
    }
    assert!(
        msg.contains("step 5/8") && msg.contains("exit code 7"),
        "{msg}"
    );
    assert!(
        docker.inspect_image(&tag).await.is_err(),
        "nothing is tagged"
    );
    let after = containers(&docker).await;
    let left: Vec<_> = after
        .iter()
        .filter(|(id, cmd)| !before.contains_key(*id) && cmd.contains(&run))
        .collect();
    assert!(left.is_empty(), "containers left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_build_leaves_no_containers() {
    let s = support::services();
    let docker = s.docker().await;
    let run = support::nonce();
    let df = format!(
        "FROM {{{{{{ imagebuilder:parentImage }}}}}}\nRUN echo started-{run} && sleep 60\n"
    );
    let project = project_with(&s, &df);
    let before = containers(&docker).await;
    let project_dir = project.path().to_path_buf();
    let cancel = tokio_util::sync::CancellationToken::new();
    let c2 = cancel.clone();
    let d2 = docker.clone();
    let r2 = run.clone();
    let handle = tokio::spawn(async move {
        let project = Project::open(&project_dir).unwrap();
        let loaded = kiln::load::load_recipe(&project, "t").unwrap();
        let rendered = render::render(&loaded, &support::pin(&loaded.parent_image).await);
        let mut request = BuildRequest::for_recipe(&loaded);
        request
            .labels
            .insert("dev.kiln.test-run".into(), r2.clone());
        request.cancel = c2.clone();
        let mut on_event = |e: BuildEvent| {
            if matches!(&e, BuildEvent::Output { line } if line.contains("started-")) {
                c2.cancel();
            }
        };
        build::build(&d2, &rendered, &request, &mut on_event).await
    });
    let result = tokio::time::timeout(std::time::Duration::from_secs(50), handle)
        .await
        .expect("cancelled well before the step ends")
        .unwrap();
    assert!(cancel.is_cancelled());
    assert!(
        matches!(result, Err(BuildError::Cancelled { .. })),
        "{result:?}"
    );
    let after = containers(&docker).await;
    let left: Vec<_> = after
        .iter()
        .filter(|(id, cmd)| !before.contains_key(*id) && cmd.contains(&run))
        .collect();
    assert!(left.is_empty(), "containers left behind: {left:?}");
}

fn context_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("src/nested")).unwrap();
    std::fs::create_dir_all(ctx.join("node_modules/x")).unwrap();
    std::fs::write(ctx.join("src/a.txt"), "a").unwrap();
    std::fs::write(ctx.join("src/nested/b.txt"), "b").unwrap();
    std::fs::write(ctx.join("node_modules/x/i.js"), "x").unwrap();
    std::fs::write(ctx.join("debug.log"), "log").unwrap();
    std::fs::write(ctx.join(".dockerignore"), "node_modules\n*.log\n").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("src/a.txt", ctx.join("link")).unwrap();
    dir
}

fn rendered_with_context(ctx: PathBuf) -> render::RenderedBuild {
    render::RenderedBuild {
        dockerfile: "FROM scratch\nCOPY . /\n".into(),
        files: vec![render::GeneratedFile {
            path: ".kiln/01-x/build.sh".into(),
            contents: b"echo hi\n".to_vec(),
            mode: 0o755,
        }],
        context_dir: Some(ctx),
        build_args: BTreeMap::new(),
        target: None,
        test_scripts: Vec::new(),
        base_images: Vec::new(),
        s3_objects: Vec::new(),
    }
}

#[test]
fn the_context_tar_is_reproducible_and_honours_dockerignore() {
    let dir = context_project();
    let rendered = rendered_with_context(dir.path().join("ctx"));
    let tar_of = || {
        let m = build::context::scan(&rendered)
            .unwrap()
            .with_dockerfile(&rendered.dockerfile);
        let mut bytes = Vec::new();
        let (digest, n) = build::context::write_tar(&m, &mut bytes).unwrap();
        assert_eq!(n, bytes.len() as u64);
        assert_eq!(digest, Digest::of(&bytes));
        (digest, bytes)
    };
    let (d1, bytes) = tar_of();
    // Touch a file (new mtime, same bytes): same tar.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(dir.path().join("ctx/src/a.txt"), "a").unwrap();
    let (d2, _) = tar_of();
    assert_eq!(d1, d2);

    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut paths = Vec::new();
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!(h.mtime().unwrap(), build::context::CONTEXT_MTIME);
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
        paths.push(
            e.path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string(),
        );
    }
    assert_eq!(
        paths,
        [
            ".kiln",
            ".kiln/01-x",
            ".kiln/01-x/build.sh",
            ".kiln/Dockerfile",
            "link",
            "src",
            "src/a.txt",
            "src/nested",
            "src/nested/b.txt"
        ]
    );
}

#[test]
fn a_symlink_out_of_the_context_is_an_error() {
    let dir = context_project();
    #[cfg(unix)]
    std::os::unix::fs::symlink("../../etc/passwd", dir.path().join("ctx/src/escape")).unwrap();
    let rendered = rendered_with_context(dir.path().join("ctx"));
    let err = build::context::scan(&rendered).unwrap_err();
    assert!(
        err.to_string().contains("outside the context folder"),
        "{err}"
    );
}

async fn cleanup(docker: &Docker, label: &str) {
    for id in images_labelled(docker, label).await {
        let _ = docker
            .remove_image(
                &id,
                Some(bollard::query_parameters::RemoveImageOptions {
                    force: true,
                    ..Default::default()
                }),
                None,
            )
            .await;
    }
}

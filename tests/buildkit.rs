//! BuildKit builds (issue 17) against the real Docker engine (Debian
//! `docker.io` 20.10, BuildKit built in): cache mounts, concurrent and
//! skipped stages, `--mount` refused for the classic builder, build secrets
//! kept out of the image and of everything kiln writes, component scripts
//! bind-mounted instead of copied, and a platform the engine cannot run.

mod support;

use std::path::Path;
use std::time::Instant;

use bollard::Docker;
use kiln::build::{self, BuildError, BuildEvent, BuildRequest, BuiltImage};
use kiln::project::Project;
use kiln::render;
use support::{kiln_on, nonce, services};

/// A project with one recipe `bk` (BuildKit unless `extra` says otherwise)
/// and its Dockerfile template.
fn project(dockerfile: &str, extra: &str) -> tempfile::TempDir {
    let s = services();
    let dir = tempfile::tempdir().unwrap();
    for sub in ["recipes", "dockerfiles", "components"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let recipe = format!(
        "name: bk\nversion: 1.0.0\nparentImage: {}\ndockerfile: bk.Dockerfile\n{extra}",
        s.base_image
    );
    std::fs::write(dir.path().join("recipes/bk.yaml"), recipe).unwrap();
    std::fs::write(dir.path().join("dockerfiles/bk.Dockerfile"), dockerfile).unwrap();
    dir
}

/// A build's result and its events with the moment each arrived.
struct Run {
    result: Result<BuiltImage, BuildError>,
    events: Vec<(Instant, BuildEvent)>,
}

impl Run {
    fn image(&self) -> &BuiltImage {
        match &self.result {
            Ok(b) => b,
            Err(e) => panic!("build failed: {}", kiln::pipeline::chain(e)),
        }
    }

    fn outputs(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                BuildEvent::Output { line } => Some(line.as_str()),
                _ => None,
            })
            .collect()
    }

    /// When the step whose instruction contains `text` started and ended.
    fn span(&self, text: &str) -> (Instant, Instant, std::time::Duration) {
        let mut open = None;
        for (at, e) in &self.events {
            match e {
                BuildEvent::Step {
                    number,
                    instruction,
                    stage,
                    ..
                } if instruction.contains(text) => open = Some((*at, *number, *stage)),
                BuildEvent::StepDone {
                    stage,
                    number,
                    elapsed,
                    ..
                } if open.is_some_and(|(_, n, s)| n == *number && s == *stage) => {
                    if let Some((start, ..)) = open {
                        return (start, *at, *elapsed);
                    }
                }
                _ => {}
            }
        }
        panic!("no finished step `{text}` in {:#?}", self.events)
    }
}

async fn build_in(docker: &Docker, dir: &Path, edit: impl FnOnce(&mut BuildRequest)) -> Run {
    let project = Project::open(dir).unwrap();
    let loaded = kiln::load::load_recipe(&project, "bk").unwrap_or_else(|d| panic!("{d}"));
    let pins = support::pin(&loaded.parent_image).await;
    let rendered = render::render(&loaded, &pins);
    let mut request = BuildRequest::for_recipe(&loaded);
    request.labels.insert("dev.kiln.test-run".into(), nonce());
    edit(&mut request);
    let mut events = Vec::new();
    let mut on_event = |e: BuildEvent| events.push((Instant::now(), e));
    let result = build::build(docker, &rendered, &request, &mut on_event).await;
    Run { result, events }
}

/// `docker save` of `image` into memory (small test images only).
fn docker_save(image: &str) -> Vec<u8> {
    let out = std::process::Command::new("docker")
        .args(["save", image])
        .output()
        .unwrap();
    assert!(out.status.success(), "docker save {image} failed");
    out.stdout
}

/// Every file path in every layer of a `docker save` archive.
fn layer_paths(saved: &[u8]) -> Vec<String> {
    let mut paths = Vec::new();
    let mut outer = tar::Archive::new(saved);
    for e in outer.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        if !name.ends_with("layer.tar") {
            continue;
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
        let mut inner = tar::Archive::new(bytes.as_slice());
        for f in inner.entries().unwrap() {
            paths.push(f.unwrap().path().unwrap().display().to_string());
        }
    }
    paths
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn remove_image(id: &str) {
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", id])
        .output();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_mount_survives_between_builds() {
    let s = services();
    let docker = s.docker().await;
    let id = nonce();
    let df = format!(
        "FROM {{{{{{ imagebuilder:parentImage }}}}}}\nARG ROUND\nRUN --mount=type=cache,id=kiln-test-{id},target=/cache sh -c 'echo round $ROUND; if [ -f /cache/pkg ]; then echo cache has: $(cat /cache/pkg); else sleep 3; echo pkg-{id} > /cache/pkg; fi'\n"
    );
    let dir = project(
        &df,
        "build:\n  builder: buildkit\nbuildArgs:\n  ROUND: one\n",
    );
    let first = build_in(&docker, dir.path(), |_| {}).await;
    let first_image = first.image().image_id.clone();
    assert!(
        !first.outputs().iter().any(|l| l.contains("cache has")),
        "the cache was empty the first time: {:?}",
        first.outputs()
    );
    let recipe = dir.path().join("recipes/bk.yaml");
    let text = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(&recipe, text.replace("ROUND: one", "ROUND: two")).unwrap();
    let second = build_in(&docker, dir.path(), |_| {}).await;
    let second_image = second.image().image_id.clone();
    assert!(
        second
            .outputs()
            .iter()
            .any(|l| l.contains(&format!("cache has: pkg-{id}"))),
        "the second build sees what the first left in the cache: {:?}",
        second.outputs()
    );
    let (.., slow) = first.span("--mount=type=cache");
    let (.., fast) = second.span("--mount=type=cache");
    println!("cache-mounted step: {slow:?} cold, {fast:?} warm");
    assert!(fast < slow, "warm {fast:?} vs cold {slow:?}");
    remove_image(&first_image);
    remove_image(&second_image);
}

#[tokio::test(flavor = "multi_thread")]
async fn independent_stages_overlap_and_an_unused_stage_is_not_built() {
    let s = services();
    let docker = s.docker().await;
    let n = nonce();
    let df = format!(
        "FROM {{{{{{ imagebuilder:parentImage }}}}}} AS left\nRUN sleep 2 && echo left-{n} > /left\n\
         FROM {{{{{{ imagebuilder:parentImage }}}}}} AS right\nRUN sleep 2 && echo right-{n} > /right\n\
         FROM {{{{{{ imagebuilder:parentImage }}}}}} AS unused\nRUN echo unused-stage-ran-{n}\n\
         FROM {{{{{{ imagebuilder:parentImage }}}}}}\nCOPY --from=left /left /left\nCOPY --from=right /right /right\n"
    );
    let dir = project(&df, "build:\n  builder: buildkit\n");
    let run = build_in(&docker, dir.path(), |_| {}).await;
    let image = run.image().image_id.clone();
    let (l_start, l_end, _) = run.span(&format!("left-{n}"));
    let (r_start, r_end, _) = run.span(&format!("right-{n}"));
    assert!(
        l_start < r_end && r_start < l_end,
        "the two 2-second stages ran at the same time: left {:?}..{:?}, right {:?}..{:?} after the first",
        l_start.duration_since(l_start.min(r_start)),
        l_end.duration_since(l_start.min(r_start)),
        r_start.duration_since(l_start.min(r_start)),
        r_end.duration_since(l_start.min(r_start)),
    );
    let stage_names: Vec<_> = run
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            BuildEvent::Step { stage_name, .. } => stage_name.clone(),
            _ => None,
        })
        .collect();
    assert!(
        stage_names.iter().any(|s| s == "left") && !stage_names.iter().any(|s| s == "unused"),
        "steps of stages: {stage_names:?}"
    );
    assert!(
        !run.image().log.contains(&format!("unused-stage-ran-{n}")),
        "{}",
        run.image().log
    );
    remove_image(&image);
}

#[test]
fn validate_refuses_mount_in_a_classic_recipe() {
    services();
    let df =
        "FROM {{{ imagebuilder:parentImage }}}\n# cache\nRUN --mount=type=cache,target=/c true\n";
    let dir = project(df, "build:\n  builder: classic\n");
    let (code, out, err) = kiln_on(dir.path(), &["validate"]);
    assert_eq!(code, 3, "exit 3: validation failed\n{out}{err}");
    assert!(
        err.contains("dockerfiles/bk.Dockerfile:3:") && err.contains("BuildKit"),
        "{err}"
    );
    assert!(
        err.contains("hint: set `build: {builder: buildkit}`"),
        "{err}"
    );
    // The operator's default builder applies to recipes that name none.
    let dir = project(df, "");
    let (code, _, err) = kiln_on(dir.path(), &["validate"]);
    assert_eq!(code, 3, "classic is the default: {err}");
    let ops = tempfile::tempdir().unwrap();
    let config = ops.path().join("kiln.yaml");
    std::fs::write(&config, "build:\n  defaultBuilder: buildkit\n").unwrap();
    let config = config.display().to_string();
    let (code, out, err) = kiln_on(dir.path(), &["--config", &config, "validate"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn component_scripts_are_bind_mounted_not_copied() {
    let s = services();
    let docker = s.docker().await;
    let canary = format!("greeting{}", nonce());
    let dir = project(
        "FROM {{{ imagebuilder:parentImage }}}\n{{{ imagebuilder:components }}}\n",
        &format!(
            "build:\n  builder: buildkit\ncomponents:\n  - name: hello-site\n    parameters:\n      Greeting: {canary}\n"
        ),
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(
        root.join("components/hello-site.yaml"),
        dir.path().join("components/hello-site.yaml"),
    )
    .unwrap();
    let run = build_in(&docker, dir.path(), |_| {}).await;
    let image = run.image();
    assert!(
        image.kiln_steps.iter().all(|k| k.status == "passed"),
        "{:?}",
        image.kiln_steps
    );
    let saved = docker_save(&image.image_id);
    let paths = layer_paths(&saved);
    assert!(
        paths.iter().any(|p| p.ends_with("site/index.html")),
        "the component ran: {paths:?}"
    );
    assert!(
        !paths
            .iter()
            .any(|p| p.ends_with("build.sh") || p.ends_with("toe.sh")),
        "no layer holds a generated script: {paths:?}"
    );
    assert!(
        !contains(&saved, "toe_finish"),
        "the AWSTOE runtime is in no layer"
    );
    remove_image(&image.image_id.clone());
}

/// A one-file linux/arm64 image whose `/bin/sh` is a static arm64 ELF
/// (kiln's test keep-alive helper; it never gets to run here), pushed to the
/// test registry as an OCI manifest (`docker import --platform` is ignored
/// by the 20.10 engine).
async fn arm64_parent(registry: &str) -> String {
    let elf = kiln::test_phase::keepalive::helper_for("arm64").expect("kiln has an arm64 helper");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(elf.len() as u64);
    b.append_data(&mut h, "bin/sh", elf.as_slice()).unwrap();
    let rootfs = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &rootfs).unwrap();
    let layer = gz.finish().unwrap();
    let config = serde_json::json!({
        "architecture": "arm64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [kiln::digest::Digest::of(&rootfs).to_string()]},
    })
    .to_string();
    let repo = format!("kiln-it/arm64-{}", nonce());
    let client = reqwest::Client::new();
    let mut blobs = Vec::new();
    for bytes in [layer, config.into_bytes()] {
        let digest = kiln::digest::Digest::of(&bytes);
        let url = format!("http://{registry}/v2/{repo}/blobs/uploads/");
        let res = client.post(url).send().await.unwrap();
        assert_eq!(res.status(), 202, "blob upload start");
        let location = res.headers()["location"].to_str().unwrap().to_string();
        let location = if location.starts_with("http") {
            location
        } else {
            format!("http://{registry}{location}")
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let res = client
            .put(format!("{location}{sep}digest={digest}"))
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "blob upload");
        blobs.push((digest, bytes.len()));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": blobs[1].0.to_string(), "size": blobs[1].1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": blobs[0].0.to_string(), "size": blobs[0].1}],
    });
    let res = client
        .put(format!("http://{registry}/v2/{repo}/manifests/1"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "manifest put");
    format!("{registry}/{repo}:1")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_arm64_recipe_on_an_amd64_engine_fails_clearly_for_both_builders() {
    let s = services();
    let docker = s.docker().await;
    let emulated = std::fs::read_dir("/proc/sys/fs/binfmt_misc")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().contains("aarch64"))
        })
        .unwrap_or(false);
    assert!(
        !emulated,
        "this host emulates arm64; the test needs a platform it cannot run"
    );
    let parent = arm64_parent(&s.registry).await;
    for builder in ["buildkit", "classic"] {
        let df = "FROM {{{ imagebuilder:parentImage }}}\nRUN echo built\n";
        let dir = project(
            df,
            &format!("platform: linux/arm64\nbuild:\n  builder: {builder}\n"),
        );
        let recipe = dir.path().join("recipes/bk.yaml");
        let text = std::fs::read_to_string(&recipe).unwrap();
        std::fs::write(&recipe, text.replace(&s.base_image, &parent)).unwrap();
        let label = nonce();
        let run = build_in(&docker, dir.path(), |r| {
            r.labels.insert("dev.kiln.test-arm".into(), label.clone());
        })
        .await;
        let err = run.result.expect_err("an arm64 build cannot succeed here");
        let text = kiln::pipeline::chain(&err);
        assert!(
            matches!(err, BuildError::UnsupportedPlatform { .. }),
            "{builder}: {text}\n{:?}",
            err.last_lines()
        );
        assert!(text.contains("linux/arm64"), "{text}");
        let images = std::process::Command::new("docker")
            .args([
                "images",
                "-q",
                "--filter",
                &format!("label=dev.kiln.test-arm={label}"),
            ])
            .output()
            .unwrap();
        assert!(
            images.stdout.is_empty(),
            "{builder}: no image was kept: {}",
            String::from_utf8_lossy(&images.stdout)
        );
    }
}

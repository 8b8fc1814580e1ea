//! AWSTOE documents (`tests/fixtures/awstoe/`, written in the documented
//! shapes) run by kiln's runtime: built on the base image through the real
//! Docker daemon, with the observed effects asserted (file modes, link
//! targets, encoded bytes, iterations, exit codes, skipped steps), and the
//! build-time errors (UpdateOS without a package manager, AWSTOE's reboot
//! exit code) checked on real builds.

#[path = "support/images.rs"]
mod images;
mod support;

use std::path::Path;

use kiln::build::{self, BuildEvent, BuildRequest, KilnStep};
use kiln::project::Project;
use kiln::render;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/awstoe");

/// A project whose `components/` holds every fixture and whose recipe
/// applies `components` (with the base image from the services).
fn project(s: &support::Services, components: &[&str]) -> tempfile::TempDir {
    project_with(s, components, "")
}

/// Like [`project`]; `params` is YAML added under the last component.
fn project_with(s: &support::Services, components: &[&str], params: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["recipes", "components", "dockerfiles"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    for e in std::fs::read_dir(FIXTURES).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join("components").join(e.file_name())).unwrap();
    }
    let mut recipe = format!(
        "name: awstoe\nversion: 1.0.0\nparentImage: {}\ncomponents:\n",
        s.base_image
    );
    for c in components {
        recipe.push_str(&format!("  - name: {c}\n"));
    }
    recipe.push_str(params);
    std::fs::write(dir.path().join("recipes/awstoe.yaml"), recipe).unwrap();
    dir
}

struct Built {
    /// The build, or why it (or the S3 fetch before it) failed.
    result: Result<build::BuiltImage, String>,
    steps: Vec<KilnStep>,
    log: String,
}

/// Builds the recipe of `project` with a fresh label (so it really builds).
async fn build(project: &Path) -> Built {
    support::services();
    let docker = kiln::docker::connect().await.unwrap();
    let project = Project::open(project).unwrap();
    let loaded = kiln::load::load_recipe(&project, "awstoe").unwrap_or_else(|d| panic!("{d}"));
    let pins = support::pin(&loaded.parent_image).await;
    let mut rendered = render::render(&loaded, &pins);
    if let Err(e) = kiln::s3::fetch_objects(&mut rendered).await {
        return Built {
            result: Err(e.to_string()),
            steps: Vec::new(),
            log: e.to_string(),
        };
    }
    let mut request = BuildRequest::for_recipe(&loaded);
    let run = format!("{}-{}", std::process::id(), rand_suffix());
    request.labels.insert("dev.kiln.test-run".into(), run);
    // The daemon's layer cache would replay the component steps silently.
    request.no_cache = true;
    let mut steps = Vec::new();
    let mut log = String::new();
    let mut on_event = |e: BuildEvent| match e {
        BuildEvent::KilnStep(k) => steps.push(k),
        BuildEvent::Output { line } => {
            log.push_str(&line);
            log.push('\n');
        }
        _ => {}
    };
    let result = build::build(&docker, &rendered, &request, &mut on_event)
        .await
        .map_err(|e| e.to_string());
    Built { result, steps, log }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Runs `script` with bash inside `image` and returns its stdout.
fn in_image(image: &str, script: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["run", "--rm", image, "/bin/bash", "-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status_of<'a>(steps: &'a [KilnStep], step: &str) -> &'a KilnStep {
    steps
        .iter()
        .find(|k| k.step == step)
        .unwrap_or_else(|| panic!("no ::kiln-step for {step}: {steps:?}"))
}

/// Every runnable fixture in one image: the validate phases assert their
/// own effects (a failed check fails the build), and the image is inspected.
#[tokio::test(flavor = "multi_thread")]
async fn documented_shapes_build_on_the_base_image() {
    let s = support::services();
    let dir = project(
        &s,
        &[
            "hello-world",
            "parameters",
            "constants-loop",
            "chaining",
            "execute-bash",
            "file-system",
            "folders",
            "encodings",
            "conditionals",
            "execute-document-main",
            "loops",
        ],
    );
    let built = build(dir.path()).await;
    let image = match &built.result {
        Ok(b) => b.image_id.clone(),
        Err(e) => panic!("{e}\n{}", built.log),
    };
    let k = &built.steps;
    assert_eq!(status_of(k, "SkippedByDefault").status, "skipped");
    assert_eq!(status_of(k, "ElseExecute").status, "passed");
    assert_eq!(status_of(k, "AbortButIgnored").status, "ignored");
    assert_eq!(status_of(k, "KeepsGoing").status, "passed");
    let last = status_of(k, "LastCommandDecides");
    assert_eq!((last.status.as_str(), last.exit), ("ignored", 7));
    assert_eq!(status_of(k, "RunChild/Greet").phase, "build");
    assert_eq!(status_of(k, "RunChild/Check").phase, "validate");
    assert!(!k.iter().any(|s| s.step == "RunChild/NotRun"), "{k:?}");
    assert_eq!(status_of(k, "Check").status, "passed");
    let facts = in_image(
        &image,
        r#"cd /tmp/kiln-awstoe
echo "hosts=$(tr '\n' ' ' < hosts.txt)"
echo "colours=$(ls colours | tr '\n' ' ')"
echo "count=$(tr '\n' ' ' < colours/count.txt)"
echo "reached=$(cat reached.txt) binary=$(cat binary.txt)"
echo "retval=$(cut -d' ' -f1,2 retval.txt)"
echo "wide=$(stat -c %a files/wide.txt) link=$(readlink files/link-to-keep)"
echo "utf16=$(od -An -v -tx1 enc/utf16.txt | tr -d ' \n')"
echo "docs=$(tr '\n' '|' < docs/order.txt)"
"#,
    );
    for want in [
        "hosts=0:alpha 1:beta 2:gamma ",
        "colours=blue count.txt green red ",
        "count=10 5 0 ",
        "reached=reached binary=binary ran",
        "retval=Failed with",
        "wide=777 link=/tmp/kiln-awstoe/files/wide.txt",
        "utf16=4800e900ac203dd800de2100",
        "docs=main-before|child-build main|child-validate|main-after|",
    ] {
        assert!(facts.contains(want), "missing {want:?} in:\n{facts}");
    }
}

/// Builds one failing fixture; returns the error text and the log.
async fn failing_build(component: &str) -> (String, String, Vec<KilnStep>) {
    let s = support::services();
    let dir = project(&s, &[component]);
    let built = build(dir.path()).await;
    let err = match built.result {
        Ok(b) => panic!("{component} built {}; expected a failure", b.image_id),
        Err(e) => e.to_string(),
    };
    (err, built.log, built.steps)
}

#[tokio::test(flavor = "multi_thread")]
async fn update_os_without_a_package_manager_fails_the_build_clearly() {
    let (err, log, steps) = failing_build("update-os").await;
    let all = format!("{err}\n{log}");
    assert!(
        all.contains("UpdateOS: this image has no supported package manager (looked for apt-get, dnf, yum, zypper and apk"),
        "{all}"
    );
    assert_eq!(status_of(&steps, "UpdateMyLinux").status, "failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn reboot_exit_code_names_the_awstoe_convention() {
    let (err, log, steps) = failing_build("reboot-exit-code").await;
    let all = format!("{err}\n{log}");
    assert!(
        all.contains("the step exited 194, AWSTOE's reboot convention"),
        "{all}"
    );
    assert!(
        all.contains("a container image build cannot reboot"),
        "{all}"
    );
    assert_eq!(status_of(&steps, "WantsReboot").exit, 194);
}

/// An S3 client on moto (`AWS_ENDPOINT_URL_S3` set from the services).
async fn moto_s3() -> aws_sdk_s3::Client {
    let s = support::services();
    // SAFETY: set before any client reads it; every S3 test sets the same value.
    unsafe { std::env::set_var("AWS_ENDPOINT_URL_S3", &s.moto) };
    kiln::s3::client().await
}

async fn bucket_with_objects(client: &aws_sdk_s3::Client) -> String {
    let bucket = format!("kiln-awstoe-{}", rand_suffix());
    client.create_bucket().bucket(&bucket).send().await.unwrap();
    for (key, body) in [
        (
            "tools/tool.sh",
            "echo tool-ran > /tmp/kiln-awstoe/s3/ran.txt\n",
        ),
        ("conf/a.txt", "alpha"),
        ("conf/sub/b.txt", "beta"),
    ] {
        client
            .put_object()
            .bucket(&bucket)
            .key(key)
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
    bucket
}

/// A project applying the s3-download fixture to `bucket`.
fn s3_project(bucket: &str) -> tempfile::TempDir {
    let s = support::services();
    let params = format!("    parameters:\n      Bucket: {bucket}\n");
    project_with(&s, &["s3-download"], &params)
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_download_fetches_on_the_host_and_places_in_the_image() {
    let client = moto_s3().await;
    let bucket = bucket_with_objects(&client).await;
    let dir = s3_project(&bucket);
    let built = build(dir.path()).await;
    let image = match &built.result {
        Ok(b) => b.image_id.clone(),
        Err(e) => panic!("{e}\n{}", built.log),
    };
    assert_eq!(status_of(&built.steps, "Placed").status, "passed");
    let facts = in_image(
        &image,
        "cd /tmp/kiln-awstoe/s3 && stat -c '%n %a' tool.sh conf/a.txt conf/sub/b.txt && cat ran.txt && test ! -e /tmp/.kiln/01-s3-download && echo gone",
    );
    assert!(
        facts.contains("tool.sh 644\nconf/a.txt 644\nconf/sub/b.txt 644\ntool-ran\n"),
        "{facts}"
    );
    assert!(
        facts.ends_with("gone\n"),
        "the fetched copies leave no trace: {facts}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_download_missing_object_names_the_step() {
    let client = moto_s3().await;
    let bucket = bucket_with_objects(&client).await;
    client
        .delete_object()
        .bucket(&bucket)
        .key("tools/tool.sh")
        .send()
        .await
        .unwrap();
    let dir = s3_project(&bucket);
    let built = build(dir.path()).await;
    assert!(built.result.is_err());
    assert!(
        built.log.contains("step build.Download: S3Download s3://"),
        "{}",
        built.log
    );
    assert!(built.log.contains("GetObject failed"), "{}", built.log);
}

/// A proxy in front of moto flips one byte of the first object's body: the
/// SHA-256 S3 stores with the object no longer matches and the fetch is
/// refused, naming the step.
#[tokio::test(flavor = "multi_thread")]
async fn s3_download_checksum_mismatch_is_refused_with_the_step_named() {
    let client = moto_s3().await;
    let bucket = bucket_with_objects(&client).await;
    let upstream = support::services()
        .moto
        .trim_start_matches("http://")
        .to_string();
    let proxy = support::fault_proxy::FaultProxy::start(
        &upstream,
        vec![support::fault_proxy::Fault::CorruptBody],
    )
    .await;
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(format!("http://{}", proxy.host()))
        .load()
        .await;
    let damaged = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    let dir = s3_project(&bucket);
    let project = Project::open(dir.path()).unwrap();
    let loaded = kiln::load::load_recipe(&project, "awstoe").unwrap_or_else(|d| panic!("{d}"));
    let mut rendered = render::render(&loaded, &render::Pins::default());
    let err = kiln::s3::fetch_objects_with(&damaged, &mut rendered)
        .await
        .expect_err("a corrupted body must be refused")
        .to_string();
    assert!(
        err.starts_with("step build.Download: S3Download s3://"),
        "{err}"
    );
    assert!(err.contains("checksum mismatch for s3://"), "{err}");
    assert!(
        !rendered.files.iter().any(|f| f.path.contains("/s3/")),
        "nothing fetched is kept: {:?}",
        rendered.files.iter().map(|f| &f.path).collect::<Vec<_>>()
    );
}

/// Builds image `tag` (base image + `body`), then runs the test phase of a
/// recipe applying `component` (with `params`) in it.
async fn test_phase_in(
    tag: &str,
    body: &str,
    component: &str,
    params: &str,
) -> kiln::test_phase::TestReport {
    let s = support::services();
    let docker = kiln::docker::connect().await.unwrap();
    images::build(&docker, tag, body).await;
    let dir = project_with(&s, &[component], params);
    let project = Project::open(dir.path()).unwrap();
    let loaded = kiln::load::load_recipe(&project, "awstoe").unwrap_or_else(|d| panic!("{d}"));
    let rendered = render::render(&loaded, &render::Pins::default());
    let input = kiln::test_phase::TestInput::from_recipe(&loaded, &rendered, tag)
        .unwrap_or_else(|d| panic!("{d}"));
    kiln::test_phase::test_image(&docker, &input).await.unwrap()
}

/// S3Upload in the test phase: the staged files are copied out of the test
/// container and are visible in moto afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn s3_upload_in_the_test_phase_lands_in_moto() {
    let client = moto_s3().await;
    let bucket = format!("kiln-awstoe-up-{}", rand_suffix());
    client.create_bucket().bucket(&bucket).send().await.unwrap();
    let params = format!("    parameters:\n      Bucket: {bucket}\n");
    let body = "CMD [\"/bin/sleep\", \"300\"]";
    let report = test_phase_in("kiln-it/sleeper:1", body, "s3-upload", &params).await;
    let uploads: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.name.ends_with("(S3Upload)"))
        .map(|c| (c.name.as_str(), c.passed, c.detail.as_str()))
        .collect();
    assert_eq!(
        uploads,
        vec![
            (
                "s3-upload/UploadAll (S3Upload)",
                true,
                "uploaded 2 object(s)"
            ),
            (
                "s3-upload/UploadAll (S3Upload)",
                true,
                "uploaded 1 object(s)"
            ),
            (
                "s3-upload/UploadEach (S3Upload)",
                true,
                "uploaded 2 object(s)"
            ),
            (
                "s3-upload/UploadTree (S3Upload)",
                true,
                "uploaded 3 object(s)"
            ),
        ],
        "{:#?}",
        report.checks
    );
    let listed = client
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(
        keys,
        vec![
            "each/a.txt",
            "each/b.txt",
            "results/a.txt",
            "results/b.txt",
            "single/renamed.txt",
            "tree/a.txt",
            "tree/b.txt",
            "tree/deep/c.txt",
        ]
    );
    let body = client
        .get_object()
        .bucket(&bucket)
        .key("single/renamed.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(
        body.body.collect().await.unwrap().into_bytes().as_ref(),
        b"first"
    );
}

/// Renders `component` with `params` and runs its build script with the
/// host's bash (for actions that need a server only the host can reach).
fn run_on_host(component: &str, params: &[(&str, &str)]) -> std::process::Output {
    let s = support::services();
    let mut yaml = String::from("    parameters:\n");
    for (k, v) in params {
        yaml.push_str(&format!("      {k}: '{v}'\n"));
    }
    let dir = project_with(&s, &[component], &yaml);
    let project = Project::open(dir.path()).unwrap();
    let loaded = kiln::load::load_recipe(&project, "awstoe").unwrap_or_else(|d| panic!("{d}"));
    let rendered = render::render(&loaded, &render::Pins::default());
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    for f in &rendered.files {
        std::fs::write(
            scripts.join(f.path.rsplit('/').next().unwrap()),
            &f.contents,
        )
        .unwrap();
    }
    std::process::Command::new("bash")
        .arg(scripts.join("build.sh"))
        .output()
        .unwrap()
}

/// WebDownload against a local server: a destination ending in `/` keeps
/// the URL's file name, the checksum is checked, outputs and inputs chain.
#[tokio::test(flavor = "multi_thread")]
async fn web_download_keeps_the_file_name_and_checks_the_checksum() {
    let app = axum::Router::new().route(
        "/path/to/tool.tar.gz",
        axum::routing::get(|| async { "tool-bytes" }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/path/to/tool.tar.gz?version=2",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let out_dir = tempfile::tempdir().unwrap();
    let dir = out_dir.path().join("ok");
    let real = std::process::Command::new("sh")
        .args(["-c", "printf tool-bytes | md5sum | cut -d' ' -f1"])
        .output()
        .unwrap();
    let real = String::from_utf8(real.stdout).unwrap().trim().to_string();
    let url2 = url.clone();
    let (d, r) = (dir.display().to_string(), real.clone());
    let run = tokio::task::spawn_blocking(move || {
        run_on_host(
            "web-download",
            &[("Source", &url2), ("Md5", &r), ("Dir", &d)],
        )
    })
    .await
    .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        std::fs::read(dir.join("tool.tar.gz")).unwrap(),
        b"tool-bytes"
    );
    assert_eq!(
        std::fs::read(dir.join("renamed.tar.gz")).unwrap(),
        b"tool-bytes"
    );
    let chained = std::fs::read_to_string(dir.join("destinations.txt")).unwrap();
    let d = dir.display();
    assert_eq!(
        chained,
        format!("{d}/tool.tar.gz\n{d}/renamed.tar.gz\n{d}/renamed.tar.gz\n")
    );

    let bad_dir = out_dir.path().join("bad");
    let d = bad_dir.display().to_string();
    let run = tokio::task::spawn_blocking(move || {
        run_on_host(
            "web-download",
            &[
                ("Source", &url),
                ("Md5", "00000000000000000000000000000000"),
                ("Dir", &d),
            ],
        )
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("WebDownload: checksum mismatch for http://"),
        "{stderr}"
    );
    assert!(
        !bad_dir.join("renamed.tar.gz").exists(),
        "a mismatching download is removed"
    );
}

/// UpdateOS picks the image's package manager and passes include minus
/// exclude. No image here has a real one, so this image's `apk` is a stub
/// that records its arguments (exit 1 for the exclude-only step, which apk
/// cannot do, is ignored by onFailure); the no-manager error is tested on a
/// real build.
#[tokio::test(flavor = "multi_thread")]
async fn update_os_passes_include_minus_exclude_to_the_package_manager() {
    let body = "RUN printf '#!/bin/sh\\necho \"apk $*\" >> /tmp/apk.log\\n' > /bin/apk && chmod 755 /bin/apk\nCMD [\"/bin/sleep\", \"300\"]";
    let report = test_phase_in("kiln-it/apk-stub:1", body, "update-os-include", "").await;
    let check = |name: &str| {
        report
            .checks
            .iter()
            .find(|c| c.name == format!("update-os-include/{name}"))
            .unwrap_or_else(|| panic!("no {name}: {:#?}", report.checks))
    };
    assert!(check("UpdateSome").passed, "{:#?}", report.checks);
    assert!(check("Check").passed, "{:#?}", report.checks);
    let ignored = check("ExcludeOnly");
    assert!(
        ignored.passed && ignored.detail.contains("failure ignored"),
        "{ignored:?}"
    );
}

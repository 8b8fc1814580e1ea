//! The distribute stage against the real services: dockerd, the CNCF
//! registry and moto's ECR. Images are built in the daemon from the base
//! image; every test uses its own repositories and a fresh state folder.

mod support;

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use kiln::digest::Digest;
use kiln::distribute::{DistributeError, PushEvent, PushRequest, PushedImage, distribute};
use kiln::load::Target;
use kiln::reference::ImageReference;
use kiln::registry::{RegistryClient, RegistryConfig, RegistryError, RetryPolicy};
use support::push_proxy::{PushProxy, Rule};
use support::upload_proxy::{UploadFault, UploadProxy};
use support::{push_bounded, push_request as request, services, unique};

async fn docker() -> bollard::Docker {
    services();
    bollard::Docker::connect_with_defaults()
        .expect("DOCKER_HOST")
        .negotiate_version()
        .await
        .expect("the docker daemon answers")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running docker");
    assert!(
        out.status.success(),
        "{cmd:?} failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Builds an image FROM the base with one layer per entry of `layer_kib`
/// (random data) plus a unique marker layer; returns its id.
fn build_image(layer_kib: &[u32]) -> String {
    static PULLED: Mutex<bool> = Mutex::new(false);
    let s = services();
    {
        let mut pulled = PULLED.lock().unwrap();
        if !*pulled {
            run(Command::new("docker").args(["pull", "-q", &s.base_image]));
            *pulled = true;
        }
    }
    let mut dockerfile = format!("FROM {}\n", s.base_image);
    for (i, kib) in layer_kib.iter().enumerate() {
        dockerfile.push_str(&format!("RUN head -c {}k /dev/urandom > /r{i}\n", kib));
    }
    dockerfile.push_str(&format!("RUN echo {} > /marker\n", unique("m")));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    let out = run(Command::new("docker")
        .args(["build", "-q", "--pull=false"])
        .arg(dir.path()));
    out.lines().last().unwrap().to_string()
}

fn oci(registry: &str, repository: &str) -> Target {
    Target::Oci {
        registry: registry.into(),
        repository: repository.into(),
    }
}

fn ecr(repository: &str) -> Target {
    Target::Ecr {
        region: "us-east-1".into(),
        repository: repository.into(),
        registry_id: None,
    }
}

async fn push(req: &PushRequest) -> Result<PushedImage, DistributeError> {
    let client = RegistryClient::with_defaults().unwrap();
    distribute(&docker().await, &client, req, &|e: &PushEvent| {
        eprintln!("{e:?}")
    })
    .await
}

/// `HEAD` of a manifest on a plain-HTTP registry: its Docker-Content-Digest.
async fn head_digest(registry: &str, repo: &str, tag: &str) -> Option<Digest> {
    let r = reqwest::Client::new()
        .head(format!("http://{registry}/v2/{repo}/manifests/{tag}"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    (r.status() == 200).then(|| {
        r.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    })
}

async fn ecr_digest(repo: &str, tag: &str) -> Option<(Digest, Digest)> {
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
        .unwrap();
    let img = out.images().first()?;
    let reported = img.image_id()?.image_digest()?.parse().unwrap();
    Some((reported, Digest::of(img.image_manifest()?.as_bytes())))
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_to_registry_and_ecr_with_one_digest_and_a_second_push_is_free() {
    let s = services();
    let image = build_image(&[600, 300, 5000]);
    let (repo, erepo) = (unique("kiln/dist"), unique("dist"));
    let state = tempfile::tempdir().unwrap();
    let mut req = request(
        &image,
        vec![oci(&s.registry, &repo), ecr(&erepo)],
        7,
        state.path(),
    );
    // The parent's compressed layers are reused (mounted on the same registry).
    let base = ImageReference::parse(&s.base_image).unwrap();
    let client = RegistryClient::with_defaults().unwrap();
    req.parent = Some(base.pinned(client.head_manifest(&base).await.unwrap().digest));

    let first = push(&req).await.expect("first push");
    assert!(first.exported);
    assert_eq!(first.config_digest.to_string(), image);
    for t in &first.targets {
        assert!(t.verified, "{t:?}");
        assert_eq!(t.manifest_digest, first.manifest_digest);
        assert_eq!(t.tags, vec!["1.2.3-7".to_string()]);
        assert_eq!(t.tags_added, t.tags);
        assert!(t.bytes_uploaded > 5_000_000, "{t:?}");
    }
    assert!(
        first.targets[0].blobs_mounted >= 1,
        "base layer mounted: {:?}",
        first.targets[0]
    );
    assert!(
        first.targets[1]
            .registry_host
            .ends_with(".dkr.ecr.us-east-1.amazonaws.com")
    );
    assert_eq!(
        head_digest(&s.registry, &repo, "1.2.3-7").await,
        Some(first.manifest_digest.clone())
    );
    let (reported, computed) = ecr_digest(&erepo, "1.2.3-7").await.expect("tag in moto");
    assert_eq!(reported, first.manifest_digest);
    assert_eq!(computed, first.manifest_digest);

    let second = push(&req).await.expect("second push");
    assert_eq!(second.manifest_digest, first.manifest_digest);
    assert!(!second.exported, "a warm push needs no export");
    assert_eq!(second.layers_compressed, 0);
    for t in &second.targets {
        assert_eq!(t.bytes_uploaded, 0, "{t:?}");
        assert_eq!(t.blobs_uploaded + t.blobs_mounted, 0, "{t:?}");
        assert!(t.tags_added.is_empty(), "{t:?}");
        assert!(t.verified);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_tag_on_another_digest_is_a_conflict_that_changes_nothing() {
    let s = services();
    let (repo, erepo) = (unique("kiln/conflict"), unique("conflict"));
    let state = tempfile::tempdir().unwrap();
    let targets = vec![oci(&s.registry, &repo), ecr(&erepo)];
    let old = push(&request(
        &build_image(&[100]),
        targets.clone(),
        1,
        state.path(),
    ))
    .await
    .unwrap();
    let err = push(&request(&build_image(&[100]), targets, 1, state.path()))
        .await
        .expect_err("same tag, different image");
    let text = err.to_string();
    eprintln!("{text}");
    let DistributeError::Targets { failures, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(failures.len(), 2);
    for f in failures {
        let DistributeError::TagConflict {
            existing,
            pushed,
            tag,
            ..
        } = f
        else {
            panic!("{f:?}")
        };
        assert_eq!(existing, &old.manifest_digest);
        assert_ne!(pushed, existing);
        assert_eq!(tag, "1.2.3-1");
        assert!(text.contains(&existing.to_string()) && text.contains(&pushed.to_string()));
    }
    assert_eq!(
        head_digest(&s.registry, &repo, "1.2.3-1").await,
        Some(old.manifest_digest.clone())
    );
    assert_eq!(
        ecr_digest(&erepo, "1.2.3-1").await.unwrap().1,
        old.manifest_digest
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_cut_mid_upload_resumes_and_a_failed_run_reruns_to_the_same_digest() {
    let s = services();
    let image = build_image(&[6000]);
    // Cut once: the upload resumes from the registry's Range in the same run.
    let proxy = UploadProxy::start(&s.registry, UploadFault::CutAfter(2_000_000), 1).await;
    let repo = unique("kiln/resume");
    let state = tempfile::tempdir().unwrap();
    let resumed = push(&request(
        &image,
        vec![oci(&proxy.host(), &repo)],
        1,
        state.path(),
    ))
    .await
    .expect("push resumes after one cut");
    assert_eq!(proxy.damaged.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(resumed.targets[0].verified);

    // Cut always: the run fails; a re-run gives the same manifest digest.
    let proxy = UploadProxy::start(&s.registry, UploadFault::CutAfter(1_000_000), usize::MAX).await;
    let repo = unique("kiln/rerun");
    let state = tempfile::tempdir().unwrap();
    let err = push(&request(
        &image,
        vec![oci(&proxy.host(), &repo)],
        1,
        state.path(),
    ))
    .await
    .expect_err("every upload is cut");
    eprintln!("{err}");
    assert_eq!(
        head_digest(&s.registry, &repo, "1.2.3-1").await,
        None,
        "nothing tagged"
    );
    let rerun = push(&request(
        &image,
        vec![oci(&s.registry, &repo)],
        1,
        state.path(),
    ))
    .await
    .expect("re-run");
    assert_eq!(rerun.manifest_digest, resumed.manifest_digest);
    assert_eq!(
        head_digest(&s.registry, &repo, "1.2.3-1").await,
        Some(rerun.manifest_digest)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_byte_flipped_in_transit_is_rejected_and_nothing_is_tagged() {
    let s = services();
    let image = build_image(&[300, 6000]);
    let proxy = UploadProxy::start(&s.registry, UploadFault::FlipByte, usize::MAX).await;
    let repo = unique("kiln/corrupt");
    let state = tempfile::tempdir().unwrap();
    let err = push(&request(
        &image,
        vec![oci(&proxy.host(), &repo)],
        1,
        state.path(),
    ))
    .await
    .expect_err("corrupted uploads must fail");
    let text = format!(
        "{err} / {:?}",
        std::error::Error::source(&err).map(|e| e.to_string())
    );
    eprintln!("{text}");
    assert!(text.contains("DIGEST_INVALID"), "{text}");
    assert!(proxy.damaged.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert_eq!(head_digest(&s.registry, &repo, "1.2.3-1").await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_failing_its_manifest_put_leaves_no_tag_on_the_others() {
    let s = services();
    let image = build_image(&[300]);
    let refuse = UploadProxy::start(&s.registry, UploadFault::RefuseManifestPut, 0).await;
    let (good, on_ecr, bad) = (
        unique("kiln/tagged"),
        unique("kiln/tagged-ecr"),
        unique("kiln/refused"),
    );
    let state = tempfile::tempdir().unwrap();
    let targets = vec![
        oci(&s.registry, &good),
        ecr(&on_ecr),
        oci(&refuse.host(), &bad),
    ];
    let err = push(&request(&image, targets, 1, state.path()))
        .await
        .expect_err("the refused target fails the push");
    let DistributeError::Tagging { removed, left, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(left.is_empty(), "{err}");
    assert!(
        removed.contains(&format!("{}/{good}:1.2.3-1", s.registry)) && removed.len() == 2,
        "{err}"
    );
    assert_eq!(head_digest(&s.registry, &good, "1.2.3-1").await, None);
    assert_eq!(ecr_digest(&on_ecr, "1.2.3-1").await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_that_cannot_be_removed_is_reported_and_older_tags_are_kept() {
    let s = services();
    let image = build_image(&[300]);
    let repo = unique("kiln/kept");
    let state = tempfile::tempdir().unwrap();
    let first = push(&request(
        &image,
        vec![oci(&s.registry, &repo)],
        1,
        state.path(),
    ))
    .await
    .unwrap();

    // Same image, build 2: the manifest is not new to `repo`, and this
    // registry (distribution 2.x) cannot delete a tag alone, so removing
    // 1.2.3-2 would take 1.2.3-1 with it: it is reported instead.
    let refuse = UploadProxy::start(&s.registry, UploadFault::RefuseManifestPut, 0).await;
    let targets = vec![
        oci(&s.registry, &repo),
        oci(&refuse.host(), &unique("kiln/r")),
    ];
    let err = push(&request(&image, targets, 2, state.path()))
        .await
        .expect_err("the refused target fails the push");
    let DistributeError::Tagging { removed, left, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(removed.is_empty(), "{err}");
    assert_eq!(left, &[format!("{}/{repo}:1.2.3-2", s.registry)], "{err}");
    assert!(err.to_string().contains("could not be removed"), "{err}");
    assert_eq!(
        head_digest(&s.registry, &repo, "1.2.3-1").await,
        Some(first.manifest_digest)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_push_stops_the_export() {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    let s = services();
    let image = build_image(&[40_000, 40_000]);
    let size: u64 =
        run(Command::new("docker").args(["image", "inspect", "-f", "{{.Size}}", &image]))
            .parse()
            .unwrap();
    let state = tempfile::tempdir().unwrap();
    let req = request(
        &image,
        vec![oci(&s.registry, &unique("kiln/dropped"))],
        1,
        state.path(),
    );
    let read = req.options.export_read.clone();
    // Cancel (drop the push) as soon as the export has started.
    let started = async {
        while read.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::select! {
        r = push(&req) => panic!("the push ended before it was dropped: {r:?}"),
        () = started => {}
    }
    // Wait until nothing more is read for a second.
    let mut last = read.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = read.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    eprintln!("export read {last} of ~{size} bytes after the push was dropped");
    assert!(
        last < size / 4,
        "the export ran on: {last} of ~{size} bytes read"
    );
}

/// "No tag on any target unless every target is ready" against a stall:
/// one target's upload `POST`s are never answered (behind a proxy); the push
/// ends in a bounded timeout error and the healthy target gets no tag.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_target_ends_the_push_and_tags_nothing_anywhere() {
    let s = services();
    let image = build_image(&[100]);
    let stall = Rule::stall("POST", "/blobs/uploads/");
    let proxy = PushProxy::start(&s.registry, vec![stall]).await;
    let (healthy, stalled) = (unique("kiln/healthy"), unique("kiln/stalled"));
    let state = tempfile::tempdir().unwrap();
    let targets = vec![oci(&s.registry, &healthy), oci(&proxy.host(), &stalled)];
    let req = request(&image, targets, 1, state.path());
    let client = RegistryClient::new(RegistryConfig {
        retry: RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(1),
        },
        request_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(3),
        ..RegistryConfig::default()
    })
    .unwrap();
    let err = push_bounded(&docker().await, &client, &req)
        .await
        .expect_err("a stalled target fails the push");
    assert!(
        timed_out(&err),
        "expected a registry timeout: {err} / {err:?}"
    );
    assert_eq!(head_digest(&s.registry, &healthy, "1.2.3-1").await, None);
    assert_eq!(head_digest(&s.registry, &stalled, "1.2.3-1").await, None);
}

/// Whether the push failed on a registry request that timed out.
fn timed_out(err: &DistributeError) -> bool {
    match err {
        DistributeError::Registry { source, .. } => match &**source {
            RegistryError::Transport { source, .. } => source.is_timeout(),
            RegistryError::Stalled { .. } => true,
            _ => false,
        },
        DistributeError::Targets { failures, .. } => failures.iter().any(timed_out),
        _ => false,
    }
}

/// A blob of a plain-HTTP registry, checked against its digest.
async fn get_blob(registry: &str, repo: &str, digest: &str) -> Vec<u8> {
    let bytes = reqwest::get(format!("http://{registry}/v2/{repo}/blobs/{digest}"))
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(Digest::of(&bytes).to_string(), digest, "blob digest");
    bytes.to_vec()
}

/// Reads the manifest tagged `tag` and checks every layer: its bytes hash to
/// the descriptor's digest and size, and decompressed (by its media type)
/// hash to the config's diff_id at the same position. Returns the layers'
/// media types in order.
async fn assert_layers_verify(registry: &str, repo: &str, tag: &str, image: &str) -> Vec<String> {
    let manifest: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{registry}/v2/{repo}/manifests/{tag}"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    assert_eq!(config_digest, image, "the config is the daemon's image");
    let config: serde_json::Value =
        serde_json::from_slice(&get_blob(registry, repo, config_digest).await).unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), diff_ids.len());
    let mut types = Vec::new();
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        let bytes = get_blob(registry, repo, layer["digest"].as_str().unwrap()).await;
        assert_eq!(layer["size"].as_u64(), Some(bytes.len() as u64));
        let media = layer["mediaType"].as_str().unwrap().to_string();
        let mut raw = Vec::new();
        use std::io::Read;
        match media.as_str() {
            "application/vnd.oci.image.layer.v1.tar+gzip" => {
                flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut raw)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd" => {
                zstd::stream::read::Decoder::new(&bytes[..])
                    .unwrap()
                    .read_to_end(&mut raw)
            }
            other => panic!("unexpected layer media type {other}"),
        }
        .unwrap();
        assert_eq!(
            Digest::of(&raw).to_string(),
            diff_id.as_str().unwrap(),
            "layer decompresses to the exported layer, in order"
        );
        types.push(media);
    }
    types
}

/// Builds an image with compressible layers of several sizes (the base's
/// binaries copied: larger than one compression block, and small ones).
fn build_compressible_image() -> String {
    let s = services();
    let dockerfile = format!(
        "FROM {}\nRUN mkdir /c && for i in 1 2 3; do cp -r /bin /c/$i; done\nRUN echo small > /small\nRUN head -c 3m /dev/urandom > /random\nRUN echo {} > /marker\n",
        s.base_image,
        unique("m")
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    let out = run(Command::new("docker")
        .args(["build", "-q", "--pull=false"])
        .arg(dir.path()));
    out.lines().last().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_and_zstd_pushes_list_layers_in_order_that_decompress_to_the_export() {
    let s = services();
    let image = build_compressible_image();
    let mut pushed = Vec::new();
    for compression in [kiln::load::Compression::Gzip, kiln::load::Compression::Zstd] {
        let repo = unique("kiln/codec");
        let state = tempfile::tempdir().unwrap();
        let mut req = request(&image, vec![oci(&s.registry, &repo)], 1, state.path());
        req.distribute.compression = compression;
        let p = push(&req).await.expect("push");
        assert!(p.targets[0].verified, "{p:?}");
        let types = assert_layers_verify(&s.registry, &repo, "1.2.3-1", &image).await;
        let want = match compression {
            kiln::load::Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            kiln::load::Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        };
        assert!(types.iter().all(|t| t == want), "{types:?}");
        pushed.push((p.manifest_digest, p.targets[0].bytes_uploaded));
    }
    assert_ne!(
        pushed[0].0, pushed[1].0,
        "zstd layers give another manifest"
    );
}

/// Cancelling a push (dropping its future, as the pipeline does on Ctrl-C)
/// after its first blob reached the registry tags nothing; a push run again
/// completes.
#[tokio::test(flavor = "multi_thread")]
async fn a_push_cancelled_mid_upload_tags_nothing() {
    let s = services();
    let image = build_image(&[6000, 6000, 6000, 6000]);
    let repo = unique("kiln/cancel");
    let state = tempfile::tempdir().unwrap();
    let req = request(&image, vec![oci(&s.registry, &repo)], 1, state.path());
    let client = RegistryClient::with_defaults().unwrap();
    let docker = docker().await;
    let uploaded = tokio::sync::Notify::new();
    let on_event = |e: &PushEvent| {
        if matches!(e, PushEvent::BlobUploaded { .. }) {
            uploaded.notify_one();
        }
    };
    tokio::select! {
        r = distribute(&docker, &client, &req, &on_event) => panic!("the push ended before it was cancelled: {r:?}"),
        () = uploaded.notified() => {}
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(head_digest(&s.registry, &repo, "1.2.3-1").await, None);
    let again = push(&req).await.expect("the push runs again");
    assert!(again.targets[0].verified);
    assert_layers_verify(&s.registry, &repo, "1.2.3-1", &image).await;
}

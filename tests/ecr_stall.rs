//! An ECR API that never answers (`PutImage` held by a proxy in front of
//! moto) ends the push with an error within the SDK timeouts instead of
//! hanging the run. Its own test binary: it points `AWS_ENDPOINT_URL_ECR`
//! at the proxy for the whole process.

#[path = "support/images.rs"]
mod images;
mod support;

use kiln::distribute::DistributeError;
use kiln::load::Target;
use kiln::registry::RegistryClient;
use support::push_proxy::{PushProxy, Rule};
use support::{push_bounded, push_request, services, unique};

#[tokio::test(flavor = "multi_thread")]
async fn an_ecr_put_image_that_never_answers_ends_in_an_error() {
    let s = services();
    let moto = s.moto.trim_start_matches("http://").trim_end_matches('/');
    let proxy = PushProxy::start(moto, vec![Rule::stall("POST", "PutImage")]).await;
    // SAFETY: the only test of this binary, before it starts any other thread
    // that reads the environment (services() has already run).
    unsafe {
        std::env::set_var("AWS_ENDPOINT_URL_ECR", format!("http://{}", proxy.host()));
        std::env::set_var("KILN_ECR_TIMEOUT_SECS", "3");
    }
    let docker = images::docker().await;
    let tag = format!("kiln-it/ecr-stall:{}", unique("t"));
    images::build(&docker, &tag, &format!("RUN echo {} > /m", unique("m"))).await;
    let target = Target::Ecr {
        region: "us-east-1".into(),
        repository: unique("stall"),
        registry_id: None,
    };
    let state = tempfile::tempdir().unwrap();
    let req = push_request(&tag, vec![target], 1, state.path());
    let client = RegistryClient::with_defaults().unwrap();
    let err = push_bounded(&docker, &client, &req)
        .await
        .expect_err("a PutImage that never answers fails the push");
    let text = format!("{err} / {err:?}");
    assert!(
        matches!(
            &err,
            DistributeError::Ecr {
                operation: "PutImage",
                ..
            }
        ) || matches!(&err, DistributeError::Targets { failures, .. }
                if failures.iter().any(|f| matches!(f, DistributeError::Ecr { operation: "PutImage", .. }))),
        "{text}"
    );
    assert!(
        proxy.heads().iter().any(|h| h.contains("PutImage")),
        "the proxy never saw PutImage"
    );
    let _ = docker
        .remove_image(
            &tag,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
}

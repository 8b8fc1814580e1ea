//! `distribute::promote` against the real registry, on images pushed through
//! the OCI API: the exact digest and its `.sig`/`.att` tags arrive, a tag on
//! another digest is never moved (and nothing is tagged), a repeat uploads
//! nothing.

mod support;

use kiln::distribute::{DistributeError, PromoteRequest, promote};
use kiln::load::Target;
use kiln::reference::ImageReference;
use kiln::registry::RegistryClient;
use support::push::Pusher;
use support::{nonce, services};

fn request(registry: &str, from: &str, digest: &kiln::digest::Digest, to: &str) -> PromoteRequest {
    PromoteRequest {
        copy_signature: true,
        source: ImageReference::parse(&format!("{registry}/{from}")).unwrap(),
        digest: digest.clone(),
        to: Target::Oci {
            registry: registry.to_string(),
            repository: to.to_string(),
        },
        tags: vec!["1.0.0-1".into()],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn promotion_copies_attachments_never_moves_a_tag_and_repeats_as_a_no_op() {
    let s = services();
    let pusher = Pusher::new(&s.registry);
    let (src, dst, taken) = (
        format!("kiln-it/promote-src-{}", nonce()),
        format!("kiln-it/promote-dst-{}", nonce()),
        format!("kiln-it/promote-taken-{}", nonce()),
    );
    let image = pusher
        .image(&src, "1.0.0-1", "amd64", b"the tested layer")
        .await;
    let att_tag = format!("sha256-{}.att", image.digest.hex());
    let att = pusher
        .image(&src, &att_tag, "amd64", b"an attestation")
        .await;
    let client = RegistryClient::with_defaults().unwrap();

    let first = promote(&client, &request(&s.registry, &src, &image.digest, &dst))
        .await
        .unwrap();
    assert_eq!(first.manifest_digest, image.digest);
    assert_eq!(first.attached, vec![att_tag.clone()]);
    assert_eq!(
        (first.bytes_uploaded, first.manifests_put),
        (0, 2),
        "same host: mounted"
    );
    assert!(first.blobs_mounted >= 2, "{first:?}");
    let head = |repo: String, tag: String| {
        let client = client.clone();
        async move {
            let r =
                ImageReference::parse(&format!("{}/{repo}:{tag}", services().registry)).unwrap();
            client.get_manifest(&r).await.unwrap().digest
        }
    };
    assert_eq!(head(dst.clone(), "1.0.0-1".into()).await, image.digest);
    assert_eq!(head(dst.clone(), att_tag.clone()).await, att.digest);

    let again = promote(&client, &request(&s.registry, &src, &image.digest, &dst))
        .await
        .unwrap();
    assert_eq!(
        (
            again.bytes_uploaded,
            again.blobs_mounted,
            again.manifests_put
        ),
        (0, 0, 0)
    );

    let other = pusher
        .image(&taken, "1.0.0-1", "amd64", b"someone else's image")
        .await;
    let err = promote(&client, &request(&s.registry, &src, &image.digest, &taken))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DistributeError::TagConflict { existing, pushed, .. }
            if *existing == other.digest && *pushed == image.digest),
        "{err:?}"
    );
    assert_eq!(
        head(taken.clone(), "1.0.0-1".into()).await,
        other.digest,
        "tag not moved"
    );
    let att_there = client
        .get_manifest(&ImageReference::parse(&format!("{}/{taken}:{att_tag}", s.registry)).unwrap())
        .await;
    assert!(att_there.is_err(), "nothing tagged when one tag conflicts");
}

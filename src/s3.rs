//! S3Download on the host: fetches the objects a rendered build's
//! S3Download steps name into its generated context, before the build key is
//! computed (a changed object is a changed input). Uses the AWS default
//! credential chain; `AWS_ENDPOINT_URL_S3` (or `AWS_ENDPOINT_URL`) points the
//! SDK elsewhere (path-style addressing then, as S3-compatible servers
//! expect). Checksums S3 stores with an object are verified, and
//! `expectedBucketOwner` is sent with every request.

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::types::ChecksumMode;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::load::actions::parse_s3_url;
use crate::render::{GeneratedFile, RenderedBuild, S3Request};

/// Objects a prefix may match, as in AWSTOE.
pub const MAX_PREFIX_OBJECTS: usize = 1000;
/// Largest object kiln puts into a build context.
pub const MAX_OBJECT_BYTES: u64 = 512 * 1024 * 1024;

/// Why an S3Download object could not be fetched; every variant names the
/// step (`phase.step`) and the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3Error {
    /// The source is not `s3://bucket/key` or `s3://bucket/prefix/*`.
    #[error(
        "step {step}: `{source_url}` is not an S3 URL (s3://bucket/key or s3://bucket/prefix/*)"
    )]
    BadUrl {
        /// Step.
        step: String,
        /// Source.
        source_url: String,
    },
    /// S3 refused or failed the request.
    #[error("step {step}: S3Download {source_url}: {operation} failed: {message}")]
    Request {
        /// Step.
        step: String,
        /// Source.
        source_url: String,
        /// `GetObject`, `ListObjectsV2`.
        operation: &'static str,
        /// The SDK's error, with its code.
        message: String,
    },
    /// The bytes do not match the checksum S3 stores for the object.
    #[error(
        "step {step}: S3Download {source_url}: checksum mismatch for s3://{bucket}/{key}: S3 stores SHA-256 {expected}, the bytes received hash to {actual}"
    )]
    ChecksumMismatch {
        /// Step.
        step: String,
        /// Source.
        source_url: String,
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// The checksum S3 reported.
        expected: String,
        /// The checksum of the bytes received.
        actual: String,
    },
    /// A prefix matched nothing, too much, or a key that leaves its folder.
    #[error("step {step}: S3Download {source_url}: {message}")]
    Objects {
        /// Step.
        step: String,
        /// Source.
        source_url: String,
        /// What is wrong.
        message: String,
    },
}

/// An S3 client for the default credential chain and region.
pub async fn client() -> aws_sdk_s3::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let custom = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|k| std::env::var_os(k).is_some());
    let s3 = aws_sdk_s3::config::Builder::from(&conf)
        .force_path_style(custom)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// Fetches every `rendered.s3_objects` entry into `rendered.files` with
/// the default [`client`].
pub async fn fetch_objects(rendered: &mut RenderedBuild) -> Result<(), S3Error> {
    if rendered.s3_objects.is_empty() {
        return Ok(());
    }
    fetch_objects_with(&client().await, rendered).await
}

/// [`fetch_objects`] with a given client.
pub async fn fetch_objects_with(
    client: &aws_sdk_s3::Client,
    rendered: &mut RenderedBuild,
) -> Result<(), S3Error> {
    for req in rendered.s3_objects.clone() {
        let files = fetch(client, &req).await?;
        rendered.files.extend(files);
    }
    Ok(())
}

async fn fetch(
    client: &aws_sdk_s3::Client,
    req: &S3Request,
) -> Result<Vec<GeneratedFile>, S3Error> {
    let Some((bucket, key, prefix)) = parse_s3_url(&req.source) else {
        return Err(S3Error::BadUrl {
            step: req.step.clone(),
            source_url: req.source.clone(),
        });
    };
    if !prefix {
        let name = key.rsplit('/').next().unwrap_or(key);
        let bytes = get(client, req, bucket, key).await?;
        return Ok(vec![file(req, name, bytes)]);
    }
    let keys = list(client, req, bucket, key).await?;
    let mut out = Vec::new();
    for k in keys {
        let rel = &k[key.len()..];
        if rel.split('/').any(|p| p == ".." || p == ".") || rel.starts_with('/') {
            return Err(objects(
                req,
                format!("key `{k}` would leave the destination folder"),
            ));
        }
        let bytes = get(client, req, bucket, &k).await?;
        out.push(file(req, rel, bytes));
    }
    Ok(out)
}

fn objects(req: &S3Request, message: String) -> S3Error {
    S3Error::Objects {
        step: req.step.clone(),
        source_url: req.source.clone(),
        message,
    }
}

fn file(req: &S3Request, rel: &str, contents: Vec<u8>) -> GeneratedFile {
    GeneratedFile {
        path: format!("{}/{rel}", req.folder),
        contents,
        mode: 0o644,
    }
}

fn request_error(req: &S3Request, operation: &'static str, message: String) -> S3Error {
    S3Error::Request {
        step: req.step.clone(),
        source_url: req.source.clone(),
        operation,
        message,
    }
}

async fn list(
    client: &aws_sdk_s3::Client,
    req: &S3Request,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, S3Error> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let resp = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_expected_bucket_owner(req.expected_bucket_owner.clone())
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| request_error(req, "ListObjectsV2", DisplayErrorContext(e).to_string()))?;
        keys.extend(
            resp.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string))
                .filter(|k| !k.ends_with('/')),
        );
        if keys.len() > MAX_PREFIX_OBJECTS {
            return Err(objects(
                req,
                format!("more than {MAX_PREFIX_OBJECTS} objects match (AWSTOE's limit)"),
            ));
        }
        token = resp.next_continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    if keys.is_empty() {
        return Err(objects(req, "no object matches the prefix".into()));
    }
    Ok(keys)
}

async fn get(
    client: &aws_sdk_s3::Client,
    req: &S3Request,
    bucket: &str,
    key: &str,
) -> Result<Vec<u8>, S3Error> {
    let resp = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .checksum_mode(ChecksumMode::Enabled)
        .set_expected_bucket_owner(req.expected_bucket_owner.clone())
        .send()
        .await
        .map_err(|e| request_error(req, "GetObject", DisplayErrorContext(e).to_string()))?;
    if resp.content_length().unwrap_or(0) as u64 > MAX_OBJECT_BYTES {
        return Err(objects(
            req,
            format!("s3://{bucket}/{key} is larger than {MAX_OBJECT_BYTES} bytes"),
        ));
    }
    let stored = resp.checksum_sha256().map(str::to_string);
    let mismatch = |expected: String, actual: String| S3Error::ChecksumMismatch {
        step: req.step.clone(),
        source_url: req.source.clone(),
        bucket: bucket.into(),
        key: key.into(),
        expected,
        actual,
    };
    let bytes = match resp.body.collect().await {
        Ok(b) => b.into_bytes().to_vec(),
        Err(e) => {
            // The SDK checks the stored checksum while streaming.
            let text = DisplayErrorContext(e).to_string();
            return Err(match sdk_mismatch(&text) {
                Some((expected, actual)) => mismatch(expected, actual),
                None => request_error(req, "GetObject", text),
            });
        }
    };
    if let Some(expected) = stored.filter(|s| !s.contains('-')) {
        let actual = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes));
        if actual != expected {
            return Err(mismatch(expected, actual));
        }
    }
    Ok(bytes)
}

/// The two checksums of the SDK's "expected body checksum to be X but it
/// was Y" streaming error.
fn sdk_mismatch(text: &str) -> Option<(String, String)> {
    let rest = text.split_once("expected body checksum to be ")?.1;
    let (expected, rest) = rest.split_once(" but it was ")?;
    let actual = rest.split_whitespace().next()?;
    Some((expected.to_string(), actual.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_sdk_checksum_error() {
        let t = "streaming error: body checksum mismatch. expected body checksum to be ab12 but it was cd34 (Error { … })";
        assert_eq!(super::sdk_mismatch(t), Some(("ab12".into(), "cd34".into())));
        assert_eq!(super::sdk_mismatch("timed out"), None);
    }
}

/// One staged S3Upload call: the destination URL (substituted when the step
/// ran) and the files, by path relative to the staged folder.
#[derive(Debug, Clone, Default)]
pub struct StagedUpload {
    /// `s3://bucket/key` or `s3://bucket/prefix/`.
    pub destination: String,
    /// `(relative path, bytes)`.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Uploads what an S3Upload step staged; returns the number of objects.
/// A destination ending in `/` is a key prefix (relative paths kept);
/// otherwise it names the one object.
pub async fn put_staged(
    client: &aws_sdk_s3::Client,
    upload: &crate::render::S3Upload,
    staged: &[StagedUpload],
) -> Result<usize, S3Error> {
    let req = S3Request {
        step: upload.step.clone(),
        source: String::new(),
        expected_bucket_owner: upload.expected_bucket_owner.clone(),
        folder: upload.folder.clone(),
    };
    let mut count = 0;
    for batch in staged {
        let req = S3Request {
            source: batch.destination.clone(),
            ..req.clone()
        };
        let Some((bucket, key, false)) = parse_s3_url(&batch.destination) else {
            return Err(S3Error::BadUrl {
                step: req.step.clone(),
                source_url: batch.destination.clone(),
            });
        };
        let folder = key.ends_with('/');
        if !folder && batch.files.len() != 1 {
            return Err(objects(
                &req,
                format!(
                    "{} files to upload; end the destination with / to upload them under a key prefix",
                    batch.files.len()
                ),
            ));
        }
        for (rel, bytes) in &batch.files {
            let object = if folder {
                format!("{key}{rel}")
            } else {
                key.to_string()
            };
            client
                .put_object()
                .bucket(bucket)
                .key(&object)
                .set_expected_bucket_owner(req.expected_bucket_owner.clone())
                .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
                .body(bytes.clone().into())
                .send()
                .await
                .map_err(|e| {
                    request_error(&req, "PutObject", DisplayErrorContext(e).to_string())
                })?;
            count += 1;
        }
    }
    Ok(count)
}

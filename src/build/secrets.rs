//! Build secrets: the values of a recipe's `build.secrets`, fetched just
//! before a BuildKit build (environment, a confined project file, or AWS
//! Secrets Manager through the default credential chain and
//! `AWS_ENDPOINT_URL_SECRETSMANAGER` or the SDK's `AWS_ENDPOINT_URL_SECRETS_MANAGER`), registered with [`crate::redact`]
//! as they enter the process, and handed to BuildKit only through kiln's
//! session. They are never written anywhere: not into the context, labels,
//! the state file, the build key (which holds ids and sources only) or the
//! record.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use aws_sdk_secretsmanager::error::DisplayErrorContext;

use crate::load::build_settings::{BuildSecret, SecretSource};
use crate::project::Project;

/// Largest secret value (BuildKit's own limit is 500 KiB).
pub const MAX_SECRET_BYTES: usize = 500 * 1024;

/// Secret values by id; `Debug` shows the ids only.
#[derive(Clone, Default)]
pub struct SecretValues(pub(crate) BTreeMap<String, Arc<Vec<u8>>>);

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl SecretValues {
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why a build secret's value could not be had; names the recipe line, the
/// id and the source, never the value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The environment variable is not set.
    #[error("{}:{}: build secret `{id}`: environment variable `{var}` is not set", .at.0.display(), .at.1)]
    MissingEnv {
        /// Recipe file and line.
        at: (PathBuf, u64),
        /// Id.
        id: String,
        /// Variable.
        var: String,
    },
    /// The file is missing, unreadable or outside the project.
    #[error("{}:{}: build secret `{id}`: file `{file}`", .at.0.display(), .at.1)]
    File {
        /// Recipe file and line.
        at: (PathBuf, u64),
        /// Id.
        id: String,
        /// The path as written.
        file: String,
        /// Cause.
        #[source]
        source: Box<crate::project::PathError>,
    },
    /// Secrets Manager refused or failed.
    #[error("{}:{}: build secret `{id}`: AWS Secrets Manager `{name}`: {message}", .at.0.display(), .at.1)]
    Aws {
        /// Recipe file and line.
        at: (PathBuf, u64),
        /// Id.
        id: String,
        /// Secret name or ARN.
        name: String,
        /// The SDK's error with its code.
        message: String,
    },
    /// The value is empty or too large.
    #[error("{}:{}: build secret `{id}` ({source_text}): {why}", .at.0.display(), .at.1)]
    BadValue {
        /// Recipe file and line.
        at: (PathBuf, u64),
        /// Id.
        id: String,
        /// The source, e.g. `env TOKEN`.
        source_text: String,
        /// What is wrong.
        why: String,
    },
}

/// Fetches every secret's value (registering each with the log redactor).
pub async fn resolve(
    project: &Project,
    secrets: &[BuildSecret],
) -> Result<SecretValues, SecretError> {
    let mut out = BTreeMap::new();
    for s in secrets {
        let value = fetch(project, s).await?;
        check_value(s, &value)?;
        if let Ok(text) = std::str::from_utf8(&value) {
            crate::redact::register(text);
            crate::redact::register(text.trim());
        }
        out.insert(s.id.clone(), Arc::new(value));
    }
    Ok(SecretValues(out))
}

fn check_value(s: &BuildSecret, value: &[u8]) -> Result<(), SecretError> {
    let why = if value.is_empty() {
        "the value is empty".to_string()
    } else if value.len() > MAX_SECRET_BYTES {
        format!("the value is larger than {MAX_SECRET_BYTES} bytes")
    } else {
        return Ok(());
    };
    Err(SecretError::BadValue {
        at: s.at.clone(),
        id: s.id.clone(),
        source_text: s.source.to_string(),
        why,
    })
}

async fn fetch(project: &Project, s: &BuildSecret) -> Result<Vec<u8>, SecretError> {
    match &s.source {
        SecretSource::Env(var) => {
            std::env::var(var)
                .map(String::into_bytes)
                .map_err(|_| SecretError::MissingEnv {
                    at: s.at.clone(),
                    id: s.id.clone(),
                    var: var.clone(),
                })
        }
        SecretSource::File(file) => {
            let err = |source| SecretError::File {
                at: s.at.clone(),
                id: s.id.clone(),
                file: file.clone(),
                source: Box::new(source),
            };
            let path = project.confined(".", file).map_err(err)?;
            project.read(&path).map(String::into_bytes).map_err(err)
        }
        SecretSource::AwsSecretsManager(name) => aws(s, name).await,
    }
}

async fn aws(s: &BuildSecret, name: &str) -> Result<Vec<u8>, SecretError> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    // The SDK's own variable is `AWS_ENDPOINT_URL_SECRETS_MANAGER`; kiln's
    // services (and the other `AWS_ENDPOINT_URL_*` kiln reads) spell it
    // without the underscore.
    if let Ok(url) = std::env::var("AWS_ENDPOINT_URL_SECRETSMANAGER") {
        loader = loader.endpoint_url(url);
    }
    let conf = loader.load().await;
    let client = aws_sdk_secretsmanager::Client::new(&conf);
    let err = |message: String| SecretError::Aws {
        at: s.at.clone(),
        id: s.id.clone(),
        name: name.to_string(),
        message,
    };
    let out = client
        .get_secret_value()
        .secret_id(name)
        .send()
        .await
        .map_err(|e| err(aws_message(&e)))?;
    if let Some(text) = out.secret_string() {
        return Ok(text.as_bytes().to_vec());
    }
    match out.secret_binary() {
        Some(b) => Ok(b.as_ref().to_vec()),
        None => Err(err("the secret has no value".into())),
    }
}

/// An SDK error as one line: the service's code and message when the
/// service answered, else the transport error's context.
fn aws_message<E, R>(e: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> String
where
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(se) => format!(
            "{}: {}",
            se.code().unwrap_or("service error"),
            se.message().unwrap_or("(no message)")
        ),
        None => DisplayErrorContext(e).to_string(),
    }
}

/// Replaces every secret value a build step printed (as is, without its
/// trailing newline, or base64-encoded) with `***` before the line reaches
/// any log, event, error or record, as CI systems mask their secrets.
/// Values shorter than 4 characters are not masked (they would blank out
/// ordinary text) — a build secret that short is no secret.
#[derive(Debug, Clone, Default)]
pub struct Masker(Vec<String>);

/// What a masked value is shown as.
pub const MASK: &str = "***";

impl SecretValues {
    /// The masker of these values.
    pub fn masker(&self) -> Masker {
        use base64::Engine as _;
        let mut forms = Vec::new();
        for value in self.0.values() {
            let trimmed = value.strip_suffix(b"\n").unwrap_or(value);
            for bytes in [value.as_slice(), trimmed] {
                if let Ok(text) = std::str::from_utf8(bytes) {
                    forms.push(text.to_string());
                }
                forms.push(base64::engine::general_purpose::STANDARD.encode(bytes));
            }
        }
        forms.retain(|f| f.trim().chars().count() >= 4);
        // Longest first, so a value containing another is masked whole.
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        Masker(forms)
    }
}

impl Masker {
    /// `text` with every secret form replaced by [`MASK`].
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for form in &self.0 {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), MASK);
            }
        }
        out
    }

    /// `event` with its printed text masked.
    pub fn event(&self, event: super::BuildEvent) -> super::BuildEvent {
        use super::BuildEvent;
        if self.0.is_empty() {
            return event;
        }
        match event {
            BuildEvent::Output { line } => BuildEvent::Output {
                line: self.mask(&line),
            },
            BuildEvent::Error { message } => BuildEvent::Error {
                message: self.mask(&message),
            },
            other => other,
        }
    }

    /// `error` with the step's message and last output lines masked.
    pub fn error(&self, error: super::BuildError) -> super::BuildError {
        match error {
            super::BuildError::StepFailed(mut f) if !self.0.is_empty() => {
                f.message = self.mask(&f.message);
                f.last_lines = f.last_lines.iter().map(|l| self.mask(l)).collect();
                super::BuildError::StepFailed(f)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod mask_tests {
    use super::*;

    #[test]
    fn values_plain_trimmed_and_base64_are_masked_short_ones_are_not() {
        let values = SecretValues(
            [
                ("a".to_string(), Arc::new(b"CANARY-7f3a\n".to_vec())),
                ("b".to_string(), Arc::new(b"xy".to_vec())),
            ]
            .into(),
        );
        let m = values.masker();
        assert_eq!(m.mask("db=CANARY-7f3a end"), "db=*** end");
        assert_eq!(m.mask("Q0FOQVJZLTdmM2E="), "***");
        assert_eq!(m.mask("xy stays"), "xy stays");
    }
}

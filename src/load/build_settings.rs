//! The recipe's `build` section: which builder (`buildkit` | `classic`,
//! default from the operator's [`BuildPolicy`]) and the build secrets
//! (`{id, env | file | awsSecretsManager}`), checked against what the
//! operator allows; and the template's `RUN --mount` uses, which the
//! classic builder cannot run (refused here, with file:line, instead of
//! failing at build time).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::model::Template;
use super::recipe_check::Checker;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::project::Project;

/// The image builder of the Docker Engine kiln drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Builder {
    /// The legacy builder (`POST /build`, version 1).
    #[default]
    Classic,
    /// BuildKit (`POST /build?version=2` with kiln's session).
    Buildkit,
}

impl std::fmt::Display for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Builder::Classic => "classic",
            Builder::Buildkit => "buildkit",
        })
    }
}

/// Where a build secret's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum SecretSourceKind {
    /// An environment variable of the kiln process.
    #[serde(rename = "env")]
    Env,
    /// A file inside the project.
    #[serde(rename = "file")]
    File,
    /// AWS Secrets Manager.
    #[serde(rename = "awsSecretsManager")]
    AwsSecretsManager,
}

/// What the operator decides about builds (operator config `build:`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildPolicy {
    /// The builder of recipes that do not name one.
    pub default_builder: Builder,
    /// Secret sources recipes may use (`None`: all).
    pub secret_sources: Option<BTreeSet<SecretSourceKind>>,
}

/// A build secret's source, as checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Environment variable name.
    Env(String),
    /// Path inside the project as written (confined again when read).
    File(String),
    /// Secret name or ARN.
    AwsSecretsManager(String),
}

impl SecretSource {
    /// The kind of source.
    pub fn kind(&self) -> SecretSourceKind {
        match self {
            SecretSource::Env(_) => SecretSourceKind::Env,
            SecretSource::File(_) => SecretSourceKind::File,
            SecretSource::AwsSecretsManager(_) => SecretSourceKind::AwsSecretsManager,
        }
    }
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Env(v) => write!(f, "env {v}"),
            SecretSource::File(p) => write!(f, "file {p}"),
            SecretSource::AwsSecretsManager(n) => write!(f, "awsSecretsManager {n}"),
        }
    }
}

/// One build secret (the value is fetched at build time, never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSecret {
    /// The id `RUN --mount=type=secret,id=…` names.
    pub id: String,
    /// Where the value comes from.
    pub source: SecretSource,
    /// Recipe file and line, for errors at build time.
    pub at: (PathBuf, u64),
}

/// The checked `build` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildSettings {
    /// The builder (recipe's, else the operator's default).
    pub builder: Builder,
    /// Build secrets.
    pub secrets: Vec<BuildSecret>,
}

/// `build:` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BuildSpec {
    /// `buildkit` or `classic`.
    #[serde(default)]
    pub builder: Option<Spanned<String>>,
    /// Build secrets.
    #[serde(default)]
    pub secrets: Vec<SecretSpec>,
}

/// One `build.secrets` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretSpec {
    /// The id.
    pub id: Spanned<String>,
    /// Environment variable.
    #[serde(default)]
    pub env: Option<Spanned<String>>,
    /// Project file.
    #[serde(default)]
    pub file: Option<Spanned<String>>,
    /// AWS Secrets Manager secret name or ARN.
    #[serde(default)]
    pub aws_secrets_manager: Option<Spanned<String>>,
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks `build` against the operator's `policy`.
pub(super) fn check(
    project: &Project,
    cx: &mut Checker<'_>,
    spec: Option<&BuildSpec>,
    policy: &BuildPolicy,
) -> BuildSettings {
    let Some(spec) = spec else {
        return BuildSettings {
            builder: policy.default_builder,
            secrets: Vec::new(),
        };
    };
    let builder = match &spec.builder {
        None => policy.default_builder,
        Some(b) => match b.value.as_str() {
            "buildkit" => Builder::Buildkit,
            "classic" => Builder::Classic,
            other => {
                cx.at(b, format!("unknown builder `{}`", other.escape_debug()))
                    .hint = Some("use `buildkit` or `classic`".into());
                policy.default_builder
            }
        },
    };
    let mut seen = BTreeSet::new();
    let mut secrets = Vec::new();
    for s in &spec.secrets {
        if let Some(secret) = check_secret(project, cx, s, policy, &mut seen) {
            secrets.push(secret);
        }
    }
    if builder == Builder::Classic
        && let Some(first) = spec.secrets.first()
    {
        cx.at(&first.id, "build secrets need the BuildKit builder")
            .hint = Some("set `build.builder: buildkit`".into());
    }
    BuildSettings { builder, secrets }
}

fn check_secret(
    project: &Project,
    cx: &mut Checker<'_>,
    s: &SecretSpec,
    policy: &BuildPolicy,
    seen: &mut BTreeSet<String>,
) -> Option<BuildSecret> {
    if !valid_id(&s.id.value) {
        cx.at(
            &s.id,
            format!(
                "invalid secret id `{}` (letters, digits, `-`, `_`, `.`)",
                s.id.value.escape_debug()
            ),
        );
        return None;
    }
    if !seen.insert(s.id.value.clone()) {
        cx.at(&s.id, format!("secret `{}` is listed twice", s.id.value));
        return None;
    }
    let given = [&s.env, &s.file, &s.aws_secrets_manager];
    let source = match given.iter().filter(|g| g.is_some()).count() {
        1 => source_of(project, cx, s)?,
        _ => {
            cx.at(
                &s.id,
                format!("secret `{}` needs exactly one source", s.id.value),
            )
            .hint = Some("give one of `env`, `file`, `awsSecretsManager`".into());
            return None;
        }
    };
    if let Some(allowed) = &policy.secret_sources
        && !allowed.contains(&source.kind())
    {
        cx.at(
            &s.id,
            format!(
                "secret `{}`: the operator config does not allow secrets from this source ({source})",
                s.id.value
            ),
        )
        .hint = Some(format!(
            "allowed sources: {}",
            allowed.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ")
        ));
        return None;
    }
    Some(BuildSecret {
        id: s.id.value.clone(),
        source,
        at: (cx.path.to_path_buf(), s.id.referenced.line()),
    })
}

fn source_of(project: &Project, cx: &mut Checker<'_>, s: &SecretSpec) -> Option<SecretSource> {
    if let Some(v) = &s.env {
        let ok = !v.value.is_empty()
            && v.value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            cx.at(
                v,
                format!(
                    "invalid environment variable name `{}`",
                    v.value.escape_debug()
                ),
            );
            return None;
        }
        return Some(SecretSource::Env(v.value.clone()));
    }
    if let Some(f) = &s.file {
        return match project.confined(".", &f.value) {
            Ok(_) | Err(crate::project::PathError::Missing(_)) => {
                Some(SecretSource::File(f.value.clone()))
            }
            Err(e) => {
                cx.at(f, format!("secret file: {e}"));
                None
            }
        };
    }
    let n = s.aws_secrets_manager.as_ref()?;
    if n.value.trim().is_empty() || n.value.chars().any(char::is_control) {
        cx.at(n, "invalid Secrets Manager secret name");
        return None;
    }
    Some(SecretSource::AwsSecretsManager(n.value.clone()))
}

/// `RUN --mount=…` lines of the template (line numbers in its file).
pub fn mount_lines(text: &str) -> Vec<u64> {
    super::template::instructions(text)
        .into_iter()
        .filter(|i| i.keyword.eq_ignore_ascii_case("RUN"))
        .filter(|i| {
            i.args
                .split_whitespace()
                .take_while(|w| w.starts_with("--"))
                .any(|w| w.starts_with("--mount"))
        })
        .map(|i| i.line)
        .collect()
}

/// Refuses `RUN --mount` in a template a classic-builder recipe uses.
pub(super) fn check_mounts(
    project: &Project,
    recipe: &Path,
    template: &Template,
    builder: Builder,
) -> Diagnostics {
    let mut diags = Diagnostics::default();
    if builder != Builder::Classic {
        return diags;
    }
    let file = template
        .file
        .clone()
        .unwrap_or_else(|| PathBuf::from("(default template)"));
    let shown = project.display(&file);
    for line in mount_lines(&template.text) {
        diags.push(
            Diagnostic::at(
                &shown,
                &template.text,
                line,
                1,
                format!(
                    "`RUN --mount` needs the BuildKit builder, and recipe `{}` uses the classic builder",
                    recipe.display()
                ),
            )
            .with_hint("set `build: {builder: buildkit}` in the recipe (or `build.defaultBuilder: buildkit` in the operator config)"),
        );
    }
    diags
}

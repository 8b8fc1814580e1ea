//! The recipe file format (`recipes/*.yaml`): camelCase fields like Image
//! Builder's container recipes, unknown fields refused.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// A recipe as written in `recipes/NAME.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RecipeFile {
    /// Pipeline name (`[a-z0-9][a-z0-9-]*`).
    pub name: Spanned<String>,
    /// Semantic version `x.y.z`; images are tagged `x.y.z-<build>`.
    pub version: Spanned<String>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Parent image: a tag, or `repo@sha256:…`. `${KILN_*}` variables expand.
    pub parent_image: Spanned<String>,
    /// Dockerfile template under `dockerfiles/`; a default template when absent.
    #[serde(default)]
    pub dockerfile: Option<Spanned<String>>,
    /// Build context folder under `contexts/`, copied into the build context.
    #[serde(default)]
    pub context: Option<Spanned<String>>,
    /// Target platform of the parent image (default `linux/amd64`).
    #[serde(default)]
    pub platform: Option<Spanned<String>>,
    /// Build only up to this stage of a multi-stage template.
    #[serde(default)]
    pub target: Option<Spanned<String>>,
    /// Components applied in order.
    #[serde(default)]
    pub components: Vec<ComponentUse>,
    /// `--build-arg` values.
    #[serde(default)]
    pub build_args: BTreeMap<String, Spanned<String>>,
    /// Directory inside the image where component steps run (default `/`).
    #[serde(default)]
    pub working_directory: Option<Spanned<String>>,
    /// How the built image is tested.
    #[serde(default)]
    pub test: Option<TestSpec>,
    /// Where the tested image goes.
    #[serde(default)]
    pub distribute: Option<DistributeSpec>,
    /// When the daemon refreshes this pipeline.
    #[serde(default)]
    pub schedule: Option<ScheduleSpec>,
    /// Builder and build secrets.
    #[serde(default)]
    pub build: Option<super::build_settings::BuildSpec>,
}

/// One component applied by a recipe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ComponentUse {
    /// `components/NAME.yaml` (or `.yml`).
    pub name: Spanned<String>,
    /// Values for the component's declared parameters.
    #[serde(default)]
    pub parameters: BTreeMap<String, Spanned<ScalarValue>>,
}

/// A scalar written where a string is expected (`8080`, `true`, `"x"`);
/// deserialized in `scalar_forms.rs`.
#[derive(Debug, Clone, PartialEq)]
pub enum ScalarValue {
    /// A string.
    String(String),
    /// An integer.
    Integer(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl ScalarValue {
    /// The value as text.
    pub fn as_text(&self) -> String {
        match self {
            ScalarValue::String(s) => s.clone(),
            ScalarValue::Integer(i) => i.to_string(),
            ScalarValue::Float(f) => f.to_string(),
            ScalarValue::Bool(b) => b.to_string(),
        }
    }
}

/// The `test` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TestSpec {
    /// Container port to publish and wait for.
    #[serde(default)]
    pub port: Option<Spanned<u16>>,
    /// HTTP readiness probe on `port`.
    #[serde(default)]
    pub http: Option<HttpProbe>,
    /// Ready when a log line matches this regex.
    #[serde(default)]
    pub log_line: Option<Spanned<String>>,
    /// Overall readiness timeout (default 60).
    #[serde(default)]
    pub timeout_seconds: Option<Spanned<u64>>,
    /// Resource limits for the test container.
    #[serde(default)]
    pub limits: Option<Limits>,
    /// container-structure-test files (under `tests/` of the project).
    #[serde(default)]
    pub structure_tests: Vec<Spanned<String>>,
}

/// An HTTP readiness probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpProbe {
    /// Request path (default `/`).
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// Expected status (default 200).
    #[serde(default)]
    pub expect_status: Option<Spanned<u16>>,
    /// Body must contain this text.
    #[serde(default)]
    pub expect_body_contains: Option<String>,
    /// Body must match this regex.
    #[serde(default)]
    pub expect_body_regex: Option<Spanned<String>>,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Resource limits of the test container.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Limits {
    /// Memory, e.g. `256m`, `1g`, or bytes.
    #[serde(default)]
    pub memory: Option<Spanned<ScalarValue>>,
    /// CPUs, e.g. `0.5`.
    #[serde(default)]
    pub cpus: Option<Spanned<f64>>,
    /// Maximum processes.
    #[serde(default)]
    pub pids: Option<Spanned<i64>>,
}

/// The `distribute` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DistributeSpec {
    /// Tag templates (default `["{{ version }}-{{ build }}"]`).
    #[serde(default)]
    pub tags: Vec<Spanned<String>>,
    /// Registries to push to.
    #[serde(default)]
    pub targets: Vec<Spanned<TargetSpec>>,
    /// `required`: a passing run ends `awaiting_approval` (default `none`).
    #[serde(default)]
    pub approval: Option<Spanned<String>>,
    /// Registries an approved build is copied to, digest for digest.
    #[serde(default)]
    pub promote: Vec<Spanned<TargetSpec>>,
}

/// One distribution target.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum TargetSpec {
    /// Any OCI distribution registry.
    Oci {
        /// `host[:port]`; `${KILN_*}` variables expand.
        registry: String,
        /// Repository path.
        repository: String,
        /// Layer compression (default gzip).
        #[serde(default)]
        compression: Option<super::Compression>,
    },
    /// Amazon ECR.
    Ecr {
        /// AWS region.
        region: String,
        /// Repository name.
        repository: String,
        /// Account (registry) id; default: the caller's.
        #[serde(default, rename = "registryId")]
        registry_id: Option<String>,
        /// Layer compression (default gzip).
        #[serde(default)]
        compression: Option<super::Compression>,
    },
}

/// The `schedule` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// Cron expression: 5 fields, or Image Builder's `cron(…)` (6 with a year).
    pub cron: Spanned<String>,
    /// IANA time zone (default UTC).
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
    /// Image Builder's `pipelineExecutionStartCondition`
    /// (default `EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE`).
    #[serde(default)]
    pub start_condition: Option<Spanned<String>>,
    /// Alias of `startCondition`: `true` = build only when a parent digest or
    /// an input changed.
    #[serde(default)]
    pub only_when_dependencies_change: Option<Spanned<bool>>,
}

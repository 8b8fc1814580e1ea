//! The loader's output: plain, validated data (no YAML spans, no IO).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::component::Component;
use crate::digest::Digest;
use crate::reference::ImageReference;

/// A recipe with everything it refers to, validated. Output of [`crate::load`].
#[derive(Debug, Clone)]
pub struct LoadedRecipe {
    /// Pipeline name.
    pub name: String,
    /// Version.
    pub version: semver::Version,
    /// Description.
    pub description: Option<String>,
    /// Recipe file, relative to the project root.
    pub file: PathBuf,
    /// sha256 of the recipe bytes.
    pub digest: Digest,
    /// The parent image as written (env expanded).
    pub parent_image: ImageReference,
    /// Target platform (`os/arch[/variant]`).
    pub platform: String,
    /// The Dockerfile template.
    pub template: Template,
    /// Every external image the template builds `FROM`, parent first.
    pub base_images: Vec<ImageReference>,
    /// Absolute path of the recipe's context folder, if any.
    pub context_dir: Option<PathBuf>,
    /// Stage to build up to.
    pub target: Option<String>,
    /// Components in order, with resolved parameters.
    pub components: Vec<AppliedComponent>,
    /// Build args.
    pub build_args: BTreeMap<String, String>,
    /// Where component steps run inside the image.
    pub working_directory: String,
    /// Test settings.
    pub test: TestConfig,
    /// Distribution settings.
    pub distribute: DistributeConfig,
    /// Schedule.
    pub schedule: Option<Schedule>,
    /// Builder and build secrets (`build:`).
    pub build: super::build_settings::BuildSettings,
}

/// A Dockerfile template.
#[derive(Debug, Clone)]
pub struct Template {
    /// File, relative to the project root; `None` for the default template.
    pub file: Option<PathBuf>,
    /// Text.
    pub text: String,
}

/// A component as a recipe applies it.
#[derive(Debug, Clone)]
pub struct AppliedComponent {
    /// The document.
    pub component: Component,
    /// Every declared parameter's value (recipe value or default).
    pub parameters: BTreeMap<String, String>,
}

/// Test settings with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct TestConfig {
    /// Port to publish and wait for.
    pub port: Option<u16>,
    /// HTTP probe.
    pub http: Option<HttpCheck>,
    /// Log line regex.
    pub log_line: Option<String>,
    /// Readiness timeout.
    pub timeout: Duration,
    /// Limits.
    pub limits: ResourceLimits,
    /// Structure-test files, read and parsed once at load time.
    pub structure_tests: Vec<super::StructureFile>,
}

/// An HTTP readiness check.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    /// Path.
    pub path: String,
    /// Expected status.
    pub expect_status: u16,
    /// Body must contain.
    pub body_contains: Option<String>,
    /// Body must match.
    pub body_regex: Option<String>,
    /// Request headers.
    pub headers: BTreeMap<String, String>,
}

/// Container limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResourceLimits {
    /// Bytes.
    pub memory_bytes: i64,
    /// CPUs × 1e9.
    pub nano_cpus: i64,
    /// Max processes.
    pub pids: i64,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            memory_bytes: 512 * 1024 * 1024,
            nano_cpus: 1_000_000_000,
            pids: 256,
        }
    }
}

/// Distribution settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DistributeConfig {
    /// Tag templates.
    pub tags: Vec<String>,
    /// Targets (staging, when approval is required).
    pub targets: Vec<Target>,
    /// Whether a passing run waits for `kiln approve`.
    pub approval_required: bool,
    /// Where an approved build is promoted (copied registry to registry).
    pub promote: Vec<Target>,
    /// Layer compression of every target (the recipe writes it per target;
    /// targets of one recipe must agree, since one manifest is pushed).
    pub compression: Compression,
}

/// How pushed layers are compressed (`distribute.targets[].*.compression`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip: the default, pulled by every client.
    #[default]
    Gzip,
    /// zstd: smaller and faster; needs containerd ≥ 1.5 / Docker ≥ 23 /
    /// podman to pull (Docker 20.10 cannot).
    Zstd,
}

/// A push target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Target {
    /// An OCI distribution registry.
    Oci {
        /// host[:port].
        registry: String,
        /// Repository.
        repository: String,
    },
    /// Amazon ECR.
    Ecr {
        /// Region.
        region: String,
        /// Repository.
        repository: String,
        /// Account id.
        registry_id: Option<String>,
    },
}

impl Target {
    /// `REGISTRY/REPOSITORY` for OCI, `ecr:REGION/REPOSITORY` for ECR (the
    /// account is known only once AWS answers): how `kiln promote --to`
    /// names a target.
    pub fn label(&self) -> String {
        match self {
            Target::Oci {
                registry,
                repository,
            } => format!("{registry}/{repository}"),
            Target::Ecr {
                region, repository, ..
            } => format!("ecr:{region}/{repository}"),
        }
    }
}

/// A cron schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Cron expression as written.
    pub cron: String,
    /// Time zone.
    pub timezone: chrono_tz::Tz,
    /// Whether a due run first checks that a dependency changed.
    pub start_condition: crate::schedule::StartCondition,
}

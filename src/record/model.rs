//! The build record: plain serde data describing one finished run — every
//! input hash, every pushed digest, test results, timings and status. No IO.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::load::Target;
use crate::reference::ImageReference;

/// One finished run of a pipeline, as the pipeline hands it to the store.
///
/// The store keeps its canonical JSON unchanged forever; see
/// [`ChainedRecord`] for the hashes that link records together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Unique id of the run, handed out with the build number.
    pub id: RecordId,
    /// Pipeline (recipe) name.
    pub pipeline: String,
    /// Recipe version.
    #[serde(with = "version_text")]
    pub version: semver::Version,
    /// Build number within (pipeline, version).
    pub build: BuildNumber,
    /// How the run ended.
    pub status: Status,
    /// Hash of every build input; absent when the run failed before planning.
    pub build_key: Option<Digest>,
    /// Hashes of the recipe, template and component documents.
    pub inputs: Inputs,
    /// External images the build used, parent first, each pinned.
    pub parents: Vec<PinnedImage>,
    /// Digest of the built image's config blob.
    pub image_config: Option<Digest>,
    /// One entry per push target.
    pub targets: Vec<PushedTarget>,
    /// Where the build goes once approved (`distribute.promote`), as the
    /// recipe said when it ran (absent when empty, so older records hash the
    /// same).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promote: Vec<Target>,
    /// Test results, when the test stage ran.
    pub tests: Option<TestSummary>,
    /// Wall time per stage in milliseconds (stage name → ms).
    pub timings_ms: BTreeMap<String, u64>,
    /// The findings gate: every finding, the ignore entries used or
    /// expired, and what blocked (absent when the gate did not run, so
    /// records written before it hash the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<crate::findings::FindingsReport>,
    /// Version of kiln that ran the build.
    pub kiln_version: String,
    /// Where and why the run failed, when it did.
    pub failure: Option<Failure>,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When the run finished.
    pub finished_at: DateTime<Utc>,
    /// The branch of a branch pipeline run (`kiln run --branch`); absent
    /// for the main pipeline, so records written before branches hash the
    /// same. Branch records are never approvable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

impl Record {
    /// `pipeline:version-build`.
    pub fn build_id(&self) -> BuildId {
        BuildId {
            pipeline: self.pipeline.clone(),
            version: self.version.clone(),
            build: self.build,
        }
    }

    /// Whether this record can be handed to downstream teams: not a branch
    /// build, and [`Record::passed_and_verified`]. The run passed,
    /// its tests ran and passed, it pushed at least once, and every push was
    /// verified against the locally computed digest.
    pub fn is_approvable(&self) -> bool {
        self.branch.is_none() && self.passed_and_verified()
    }

    /// Passed, and [`Record::tested_and_verified`]: what an up-to-date check
    /// on a branch needs.
    pub fn passed_and_verified(&self) -> bool {
        self.status == Status::Passed && self.tested_and_verified()
    }

    /// Tests ran and passed, at least one push, every push verified: what
    /// `passed` and `awaiting_approval` records both hold.
    pub fn tested_and_verified(&self) -> bool {
        self.tests.as_ref().is_some_and(|t| t.passed)
            && !self.targets.is_empty()
            && self.targets.iter().all(|t| t.verified)
    }
}

/// A record as stored: the record plus its place in the hash chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainedRecord {
    /// Position in the chain (1-based, increasing).
    pub seq: i64,
    /// Hash of the record before this one; `None` for the first.
    pub prev_hash: Option<Digest>,
    /// sha256 of (previous hash text + canonical JSON).
    pub hash: Digest,
    /// The record.
    pub record: Record,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every stage succeeded, including push verification.
    Passed,
    /// A stage failed; see [`Record::failure`].
    Failed,
    /// Not rebuilt: a passing record with the same build key exists.
    UpToDate,
    /// Stopped before it finished (signal, shutdown).
    Cancelled,
    /// Tested, pushed to its staging targets and verified, but the recipe
    /// requires approval: never approved by itself, only by an approval
    /// event (`kiln approve`).
    AwaitingApproval,
}

impl Status {
    /// The lowercase name stored in the database and shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::UpToDate => "up_to_date",
            Status::Cancelled => "cancelled",
            Status::AwaitingApproval => "awaiting_approval",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Hashes of the files the recipe is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inputs {
    /// The recipe file.
    pub recipe: FileHash,
    /// The Dockerfile template; `None` for kiln's default template.
    pub template: Option<FileHash>,
    /// Component documents in the order the recipe applies them.
    pub components: Vec<ComponentHash>,
    /// Structure-test files the test phase used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub structure_tests: Vec<FileHash>,
}

/// A project file and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileHash {
    /// Path relative to the project root.
    pub file: String,
    /// sha256 of its bytes.
    pub digest: Digest,
}

/// A component document as the build used it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentHash {
    /// Component name.
    pub name: String,
    /// Document file relative to the project root.
    pub file: String,
    /// sha256 of the document bytes.
    pub digest: Digest,
}

/// An external image, as written and as pinned for this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PinnedImage {
    /// The reference as the recipe wrote it (normalised).
    pub reference: ImageReference,
    /// Digest of the image index, when the reference resolved to one.
    pub index_digest: Option<Digest>,
    /// Digest of the manifest actually built from (the platform manifest).
    pub manifest_digest: Digest,
    /// Platform picked from the index (`os/arch[/variant]`).
    pub platform: Option<String>,
}

/// One push target and what was pushed there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushedTarget {
    /// The target as configured in the recipe.
    pub target: Target,
    /// Registry host the image went to (for ECR,
    /// `<account>.dkr.ecr.<region>.amazonaws.com`), recorded at push time.
    pub registry: String,
    /// Repository within the registry.
    pub repository: String,
    /// Tags pushed.
    pub tags: Vec<String>,
    /// Manifest digest, computed locally from the uploaded bytes.
    pub manifest_digest: Digest,
    /// Whether the registry reported the same digest back.
    pub verified: bool,
    /// The cosign signature attached to the digest,
    /// `REGISTRY/REPOSITORY:sha256-<hex>.sig@sha256:…` (absent when unsigned,
    /// so records written before signing hash the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The attestation manifest (provenance and SBOM),
    /// `REGISTRY/REPOSITORY:sha256-<hex>.att@sha256:…` (absent when unsigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestations: Option<String>,
}

impl PushedTarget {
    /// `REGISTRY/REPOSITORY@sha256:…`, what downstream teams pull.
    pub fn pinned_reference(&self) -> String {
        format!(
            "{}/{}@{}",
            self.registry, self.repository, self.manifest_digest
        )
    }
}

/// Summary of the test stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestSummary {
    /// Whether every check passed.
    pub passed: bool,
    /// Checks run.
    pub checks: u32,
    /// Checks that failed.
    pub failed: u32,
    /// Wall time of the test stage in milliseconds.
    pub duration_ms: u64,
}

/// Where a failed run stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// Stage name (`resolve`, `build`, `test`, `distribute`, …).
    pub stage: String,
    /// The error, as shown to the user.
    pub message: String,
}

/// A build number: 1, 2, … per (pipeline, version), never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BuildNumber(pub u32);

impl fmt::Display for BuildNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A random, unique run id (32 lowercase hex characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordId(pub String);

impl RecordId {
    /// A fresh random id.
    pub fn random() -> Self {
        RecordId(format!(
            "{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        ))
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `pipeline:version-build`, e.g. `hello-web:1.0.0-3`; the image version
/// downstream teams see is `version-build`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BuildId {
    /// Pipeline name.
    pub pipeline: String,
    /// Recipe version.
    pub version: semver::Version,
    /// Build number.
    pub build: BuildNumber,
}

impl fmt::Display for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}-{}", self.pipeline, self.version, self.build)
    }
}

/// Why a string is not `pipeline:version-build`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid build `{input}`: {reason}; expected `pipeline:version-build`, e.g. `web:1.0.0-3`")]
pub struct BuildIdParseError {
    /// The text.
    pub input: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl FromStr for BuildId {
    type Err = BuildIdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| BuildIdParseError {
            input: s.escape_debug().to_string(),
            reason,
        };
        let (pipeline, rest) = s.split_once(':').ok_or_else(|| err("missing `:`"))?;
        if pipeline.is_empty() {
            return Err(err("empty pipeline name"));
        }
        let (version, build) = rest
            .rsplit_once('-')
            .ok_or_else(|| err("missing `-build`"))?;
        let version = version
            .parse::<semver::Version>()
            .map_err(|_| err("the version is not semver x.y.z"))?;
        let build = build
            .parse::<u32>()
            .ok()
            .filter(|b| *b > 0)
            .ok_or_else(|| err("the build number is not a positive integer"))?;
        Ok(BuildId {
            pipeline: pipeline.to_string(),
            version,
            build: BuildNumber(build),
        })
    }
}

/// Serialises `semver::Version` as its text.
mod version_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &semver::Version, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<semver::Version, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_id_round_trips_including_prerelease_versions() {
        for s in ["web:1.0.0-3", "base-image:2.1.0-rc.1-12"] {
            let id: BuildId = s.parse().unwrap();
            assert_eq!(id.to_string(), s);
        }
        let id: BuildId = "base-image:2.1.0-rc.1-12".parse().unwrap();
        assert_eq!(id.version.pre.as_str(), "rc.1");
        assert_eq!(id.build, BuildNumber(12));
    }

    #[test]
    fn build_id_rejects_malformed_text() {
        for s in [
            "web",
            ":1.0.0-1",
            "web:1.0.0",
            "web:1.0-1",
            "web:1.0.0-0",
            "web:1.0.0-x",
        ] {
            assert!(s.parse::<BuildId>().is_err(), "{s} parsed");
        }
    }

    #[test]
    fn record_ids_are_32_hex_and_distinct() {
        let a = RecordId::random();
        assert_eq!(a.0.len(), 32);
        assert!(a.0.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, RecordId::random());
    }
}

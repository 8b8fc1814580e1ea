//! SLSA v1 provenance for a record: an in-toto Statement v1 whose subjects
//! are the pushed images and whose predicate names every input by digest.
//! Pure data transformation; no IO.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::RecordError;
use super::model::{PinnedImage, Record};
use crate::digest::Digest;

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// `predicateType` of SLSA provenance v1.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// kiln's build type: a recipe built by kiln's pipeline.
pub const BUILD_TYPE: &str = "https://kiln.dev/build-types/recipe/v1";
/// The builder id kiln reports for local (CLI or daemon) builds.
pub const BUILDER_ID: &str = "https://kiln.dev/builders/local/v1";

/// An in-toto Statement v1 carrying SLSA v1 provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// Always [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub type_: String,
    /// The images the build produced.
    pub subject: Vec<ResourceDescriptor>,
    /// Always [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The provenance.
    pub predicate: Provenance,
}

/// SLSA v1 `ResourceDescriptor` (the fields kiln fills).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the resource lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Algorithm → hex.
    pub digest: BTreeMap<String, String>,
    /// Extra facts (e.g. the index digest of a parent image).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// SLSA v1 `predicate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// What was built and from what.
    pub build_definition: BuildDefinition,
    /// Who built it and when.
    pub run_details: RunDetails,
}

/// SLSA v1 `buildDefinition`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    /// Always [`BUILD_TYPE`].
    pub build_type: String,
    /// What the user controls: the recipe.
    pub external_parameters: serde_json::Value,
    /// What kiln decided: build number and key.
    pub internal_parameters: serde_json::Value,
    /// Parent images, template and component documents, by digest.
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// SLSA v1 `runDetails`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetails {
    /// The builder.
    pub builder: Builder,
    /// The invocation.
    pub metadata: BuildMetadata,
}

/// SLSA v1 `builder`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Builder {
    /// Always [`BUILDER_ID`].
    pub id: String,
    /// Component versions (`kiln` → version).
    pub version: BTreeMap<String, String>,
}

/// SLSA v1 `metadata`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildMetadata {
    /// The record id.
    pub invocation_id: String,
    /// Start of the run.
    pub started_on: DateTime<Utc>,
    /// End of the run.
    pub finished_on: DateTime<Utc>,
}

fn sha256(d: &Digest) -> BTreeMap<String, String> {
    BTreeMap::from([(d.algorithm().to_string(), d.hex().to_string())])
}

fn file(name: String, uri: String, digest: &Digest) -> ResourceDescriptor {
    ResourceDescriptor {
        name: Some(name),
        uri: Some(uri),
        digest: sha256(digest),
        annotations: BTreeMap::new(),
    }
}

fn parent(p: &PinnedImage) -> ResourceDescriptor {
    let mut annotations = BTreeMap::new();
    if let Some(i) = &p.index_digest {
        annotations.insert("indexDigest".to_string(), i.to_string());
    }
    if let Some(platform) = &p.platform {
        annotations.insert("platform".to_string(), platform.clone());
    }
    ResourceDescriptor {
        name: Some(p.reference.to_string()),
        uri: Some(format!(
            "oci://{}",
            p.reference.pinned(p.manifest_digest.clone())
        )),
        digest: sha256(&p.manifest_digest),
        annotations,
    }
}

/// The provenance statement of `record`. Fails when it pushed no image,
/// because a statement needs at least one subject.
pub fn statement(record: &Record) -> Result<Statement, RecordError> {
    if record.targets.is_empty() {
        return Err(RecordError::NoSubjects {
            build: record.build_id().to_string(),
        });
    }
    let subject = record
        .targets
        .iter()
        .map(|t| ResourceDescriptor {
            name: Some(format!("{}/{}", t.registry, t.repository)),
            uri: None,
            digest: sha256(&t.manifest_digest),
            annotations: BTreeMap::new(),
        })
        .collect();
    let inputs = &record.inputs;
    let mut deps: Vec<ResourceDescriptor> = record.parents.iter().map(parent).collect();
    if let Some(t) = &inputs.template {
        deps.push(file(
            "template".into(),
            format!("kiln:file/{}", t.file),
            &t.digest,
        ));
    }
    deps.extend(inputs.components.iter().map(|c| {
        file(
            format!("component:{}", c.name),
            format!("kiln:file/{}", c.file),
            &c.digest,
        )
    }));
    let external = serde_json::json!({
        "recipe": {
            "name": record.pipeline,
            "version": record.version.to_string(),
            "file": inputs.recipe.file,
            "digest": sha256(&inputs.recipe.digest),
        }
    });
    let internal = serde_json::json!({
        "buildNumber": record.build.0,
        "buildKey": record.build_key.as_ref().map(Digest::to_string),
        "imageConfig": record.image_config.as_ref().map(Digest::to_string),
    });
    Ok(Statement {
        type_: STATEMENT_TYPE.into(),
        subject,
        predicate_type: PREDICATE_TYPE.into(),
        predicate: Provenance {
            build_definition: BuildDefinition {
                build_type: BUILD_TYPE.into(),
                external_parameters: external,
                internal_parameters: internal,
                resolved_dependencies: deps,
            },
            run_details: RunDetails {
                builder: Builder {
                    id: BUILDER_ID.into(),
                    version: BTreeMap::from([("kiln".into(), record.kiln_version.clone())]),
                },
                metadata: BuildMetadata {
                    invocation_id: record.id.to_string(),
                    started_on: record.started_at,
                    finished_on: record.finished_at,
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Allocation, BuildId, BuildNumber, RecordId, fixture};

    fn record() -> Record {
        fixture::passing(&Allocation {
            id: RecordId("ab".repeat(16)),
            build: BuildId {
                pipeline: "web".into(),
                version: semver::Version::new(1, 0, 0),
                build: BuildNumber(2),
            },
            allocated_at: Utc::now(),
        })
    }

    #[test]
    fn statement_names_subjects_and_dependencies_by_digest() {
        let r = record();
        let s = statement(&r).unwrap();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["_type"], STATEMENT_TYPE);
        assert_eq!(v["predicateType"], PREDICATE_TYPE);
        assert_eq!(v["subject"][0]["name"], "127.0.0.1:5000/kiln/web");
        assert_eq!(
            v["subject"][0]["digest"]["sha256"],
            r.targets[0].manifest_digest.hex()
        );
        let deps = v["predicate"]["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        assert_eq!(deps.len(), 3, "parent, template, component: {deps:?}");
        assert_eq!(
            deps[0]["uri"],
            format!("oci://127.0.0.1:5000/kiln/base@{}", Digest::of(b"parent"))
        );
        assert_eq!(
            deps[0]["annotations"]["indexDigest"],
            Digest::of(b"index").to_string()
        );
        assert_eq!(deps[2]["name"], "component:install-nginx");
        assert_eq!(
            v["predicate"]["runDetails"]["metadata"]["invocationId"],
            "ab".repeat(16)
        );
    }

    #[test]
    fn a_record_without_pushes_has_no_statement() {
        let mut r = record();
        r.targets.clear();
        assert!(matches!(statement(&r), Err(RecordError::NoSubjects { .. })));
    }
}

//! `kiln export`: the template that recreates a recipe's pipeline in EC2
//! Image Builder — container recipe with `DockerfileTemplateData`,
//! components with their `Data` (the documents unchanged), the pipeline
//! with its schedule (in Image Builder's `cron(…)` form) and start
//! condition, and a distribution configuration for the ECR targets.
//! [`prepare`] gathers that from a loaded recipe; [`cloudformation`] and
//! [`terraform`] only spell it. What Image Builder cannot hold (tests,
//! build args, OCI targets, tag templates, …) is listed in
//! [`Exported::notes`], never dropped silently.

pub mod cloudformation;
pub mod terraform;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::load::{LoadedRecipe, Target};
use crate::project::Project;
use crate::schedule::{CronError, StartCondition, to_image_builder};

/// The pipeline as Image Builder will hold it.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Recipe name.
    pub name: String,
    /// Recipe version.
    pub version: String,
    /// Description.
    pub description: Option<String>,
    /// Parent image reference.
    pub parent_image: String,
    /// Dockerfile template text.
    pub dockerfile: String,
    /// Working directory of component steps.
    pub working_directory: String,
    /// Components in order.
    pub components: Vec<ExportedComponent>,
    /// ECR targets: (region, repository).
    pub ecr: Vec<(String, String)>,
    /// Literal tags.
    pub tags: Vec<String>,
    /// Image Builder schedule: expression, time zone, start condition.
    pub schedule: Option<(String, String, StartCondition)>,
}

/// A component with its document.
#[derive(Debug, Clone)]
pub struct ExportedComponent {
    /// File stem (the recipe's component name).
    pub name: String,
    /// The document, unchanged.
    pub data: String,
    /// Parameter values the recipe applies.
    pub parameters: BTreeMap<String, String>,
}

/// A template and what it could not hold.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The template text.
    pub text: String,
    /// Recipe fields Image Builder has no place for.
    pub notes: Vec<String>,
}

/// Why a recipe cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A component document could not be read.
    #[error("cannot read component `{}`: {message}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The schedule has no Image Builder form.
    #[error("recipe `{recipe}`: schedule")]
    Schedule {
        /// The recipe.
        recipe: String,
        /// Why.
        #[source]
        source: CronError,
    },
}

/// The version written for components (kiln components are not versioned).
pub const COMPONENT_VERSION: &str = "1.0.0";

/// Gathers what Image Builder will hold, and notes on what it cannot.
pub fn prepare(
    project: &Project,
    r: &LoadedRecipe,
) -> Result<(Pipeline, Vec<String>), ExportError> {
    let mut notes = kiln_only(r);
    let mut components = Vec::new();
    for c in &r.components {
        let path = project.root().join(&c.component.file);
        let data = project.read(&path).map_err(|e| ExportError::Read {
            path: c.component.file.clone(),
            message: e.to_string(),
        })?;
        components.push(ExportedComponent {
            name: c.component.name.clone(),
            data,
            parameters: c.parameters.clone(),
        });
    }
    let mut ecr = Vec::new();
    for t in &r.distribute.targets {
        match t {
            Target::Ecr {
                region,
                repository,
                registry_id,
            } => {
                if let Some(id) = registry_id {
                    notes.push(format!("ECR target {repository}: registryId {id} (Image Builder pushes to the pipeline's own account)"));
                }
                ecr.push((region.clone(), repository.clone()));
            }
            Target::Oci {
                registry,
                repository,
            } => notes.push(format!(
                "OCI target {registry}/{repository}: Image Builder distributes to ECR only"
            )),
        }
    }
    if r.distribute.compression == crate::load::Compression::Zstd {
        notes.push("compression: zstd: Image Builder pushes gzip layers".into());
    }
    let (tags, templated): (Vec<String>, Vec<String>) = r
        .distribute
        .tags
        .iter()
        .cloned()
        .partition(|t| !t.contains("{{"));
    for t in templated {
        notes.push(format!(
            "tag template `{t}`: Image Builder tags images with its own version and build"
        ));
    }
    let schedule = match &r.schedule {
        None => None,
        Some(s) => {
            let expr = to_image_builder(&s.cron).map_err(|source| ExportError::Schedule {
                recipe: r.name.clone(),
                source,
            })?;
            Some((expr, s.timezone.name().to_string(), s.start_condition))
        }
    };
    let pipeline = Pipeline {
        name: r.name.clone(),
        version: r.version.to_string(),
        description: r.description.clone(),
        parent_image: r.parent_image.to_string(),
        dockerfile: r.template.text.clone(),
        working_directory: r.working_directory.clone(),
        components,
        ecr,
        tags,
        schedule,
    };
    Ok((pipeline, notes))
}

/// Recipe fields with no Image Builder equivalent.
fn kiln_only(r: &LoadedRecipe) -> Vec<String> {
    let mut notes = Vec::new();
    if !r.build_args.is_empty() {
        notes.push(format!(
            "buildArgs ({}): Image Builder container recipes have no build args",
            r.build_args.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if r.context_dir.is_some() {
        notes.push("context: Image Builder builds without a context folder".into());
    }
    if let Some(t) = &r.target {
        notes.push(format!(
            "target `{t}`: Image Builder builds the whole Dockerfile"
        ));
    }
    if r.platform != "linux/amd64" {
        notes.push(format!(
            "platform {}: Image Builder's platform is chosen by its infrastructure configuration",
            r.platform
        ));
    }
    let t = &r.test;
    if t.port.is_some() || t.http.is_some() || t.log_line.is_some() || !t.structure_tests.is_empty()
    {
        notes.push("test: kiln's readiness probes and structure tests have no Image Builder form (component `test` phases are exported with their documents)".into());
    }
    notes
}

/// A CloudFormation logical id: letters and digits only.
pub fn logical_id(prefix: &str, name: &str) -> String {
    let mut out = prefix.to_string();
    for part in name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
    {
        let mut ch = part.chars();
        if let Some(first) = ch.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(ch);
        }
    }
    out
}

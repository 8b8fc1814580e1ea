//! `kiln import`: brings EC2 Image Builder container pipelines into a kiln
//! project. Every source format is read into the same resources
//! ([`Resource`]: a container recipe, component, pipeline or distribution
//! configuration with its properties as a [`node::Node`] tree), then one
//! mapping ([`mapping`]) turns them into recipes, component documents (the
//! `data` unchanged), Dockerfile templates and schedules, and [`write`]
//! writes them only if every recipe then validates.
//!
//! Nothing is dropped silently: a field kiln has no use for is a
//! [`Note`] (file, line, field, why); a field whose loss would change the
//! image (an AWS-managed component without a kiln equivalent, an image ARN
//! parent, an expression kiln cannot evaluate) is refused and nothing is
//! written.

pub mod arn;
pub mod aws;
pub mod cfn;
pub mod cli_json;
pub mod components;
pub mod mapping;
pub mod node;
pub mod pipeline;
pub mod ssm;
pub mod terraform;
pub mod versions;
pub mod write;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::project::Project;

pub use node::{Node, Value};

/// The Image Builder resource types kiln maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `AWS::ImageBuilder::ContainerRecipe`.
    ContainerRecipe,
    /// `AWS::ImageBuilder::Component`.
    Component,
    /// `AWS::ImageBuilder::ImagePipeline`.
    ImagePipeline,
    /// `AWS::ImageBuilder::DistributionConfiguration`.
    DistributionConfiguration,
}

/// One Image Builder resource read from a source.
#[derive(Debug, Clone)]
pub struct Resource {
    /// The file (or `aws:ARN`) it came from.
    pub file: String,
    /// Its id within the source: CloudFormation logical id, Terraform
    /// `type.name`, or the `name` of a CLI/API document.
    pub id: String,
    /// What it is.
    pub kind: Kind,
    /// Its properties.
    pub props: Node,
    /// Field path of `props` for messages (`Resources.Recipe.Properties`).
    pub path: String,
    /// Its ARN, when the source states one (API responses).
    pub arn: Option<String>,
}

impl Resource {
    /// The message path of a field under `props` (of `props` itself for
    /// an empty key).
    pub fn field(&self, key: &str) -> String {
        if key.is_empty() {
            if self.path.is_empty() {
                self.id.clone()
            } else {
                self.path.clone()
            }
        } else if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

/// A field kiln did not map (or mapped with a caveat), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Source file.
    pub file: String,
    /// Line in it.
    pub line: usize,
    /// Field path.
    pub field: String,
    /// Why.
    pub why: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.field, self.why
        )
    }
}

/// What an import read, mapped and wrote.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// One line per mapped field or resource.
    pub mapped: Vec<String>,
    /// Fields not mapped, and why.
    pub notes: Vec<Note>,
    /// Files written, relative to the project.
    pub written: Vec<PathBuf>,
    /// Recipes written.
    pub recipes: Vec<String>,
    /// Components written (file stems).
    pub components: Vec<String>,
}

/// Creates the folder an import writes into (`--out`), parents included.
pub fn create_out_dir(dir: &Path) -> Result<(), ImportError> {
    std::fs::create_dir_all(dir).map_err(|source| ImportError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

/// Why an import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A source file could not be read.
    #[error("cannot read `{file}`")]
    Read {
        /// The file.
        file: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A source file is not YAML, JSON or HCL.
    #[error("{file}:{line}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// Line of the problem.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A file holds nothing kiln recognises.
    #[error("{file}: {why}")]
    Unrecognised {
        /// The file.
        file: String,
        /// What it looked like.
        why: String,
    },
    /// Fields whose loss would change the image.
    #[error("{} field{} cannot be imported:\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, lines(.0))]
    Refused(Vec<Note>),
    /// A file the import would write exists already.
    #[error("`{}` exists; kiln import never overwrites a file", .0.display())]
    Exists(PathBuf),
    /// Writing failed.
    #[error("cannot write `{}`", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A written recipe or component does not validate; the files were
    /// removed again.
    #[error("the imported {what} does not validate (nothing was kept):\n{diagnostics}")]
    Invalid {
        /// `recipe `NAME`` or `component `NAME``.
        what: String,
        /// `kiln validate`'s report.
        diagnostics: String,
    },
    /// An `ssm:` parent could not be resolved.
    #[error(transparent)]
    Ssm(#[from] ssm::SsmError),
    /// Reading from Image Builder failed.
    #[error(transparent)]
    Aws(#[from] aws::AwsError),
}

fn lines(notes: &[Note]) -> String {
    notes
        .iter()
        .map(|n| format!("  {n}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Options of an import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Region of ECR targets a source does not place in a region (a
    /// container recipe's `targetRepository` without a distribution).
    pub region: Option<String>,
}

/// Reads one source file into resources (and notes on what it skipped).
pub fn read_file(path: &Path) -> Result<(Vec<Resource>, Vec<Note>), ImportError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        file: file.clone(),
        source,
    })?;
    if path.extension().is_some_and(|e| e == "tf") {
        return terraform::read_path(path, &file, &text);
    }
    let root = node::parse_yaml(&text).map_err(|e| ImportError::Parse {
        file: file.clone(),
        line: e.line,
        message: e.message,
    })?;
    if root.get(&["Resources"]).is_some() || root.get(&["AWSTemplateFormatVersion"]).is_some() {
        cfn::read(&file, &root)
    } else {
        cli_json::read(&file, &root)
    }
}

/// Imports `files` into `project`: read, map, resolve `ssm:` parents, write
/// and validate. Nothing is written unless everything maps and validates.
pub async fn import_files(
    files: &[PathBuf],
    project: &Project,
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let mut resources = Vec::new();
    let mut notes = Vec::new();
    for f in files {
        let (r, n) = read_file(f)?;
        resources.extend(r);
        notes.extend(n);
    }
    import_resources(resources, notes, project, opts).await
}

/// The part of an import after reading: shared by files and `--from-aws`.
pub async fn import_resources(
    resources: Vec<Resource>,
    notes: Vec<Note>,
    project: &Project,
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let parents = ssm::resolve_parents(&resources).await?;
    let plan = mapping::plan(&resources, project, opts, &parents)?;
    let mut report = ImportReport {
        notes,
        ..ImportReport::default()
    };
    report.notes.extend(plan.notes.iter().cloned());
    report.mapped.extend(plan.mapped.iter().cloned());
    report.recipes = plan.recipes.clone();
    report.components = plan.components.clone();
    report.written = write::write_plan(project, &plan)?;
    Ok(report)
}

//! The one mapping from Image Builder resources (any source format) to kiln
//! project files: container recipe → `recipes/NAME.yaml` +
//! `dockerfiles/NAME.Dockerfile`; its pipeline → `schedule`; the
//! distribution configuration (or the recipe's `targetRepository`) → ECR
//! targets. Every field is either used, noted (kiln has no use for it) or
//! refused (its loss would change the image); [`Plan`] holds the outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::arn::Arn;
use super::components::Imported;
use super::node::{Node, Value};
use super::{ImportError, ImportOptions, Kind, Note, Resource};
use crate::project::Project;

/// What an import will write.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Files relative to the project, with their text, in write order.
    pub files: Vec<(PathBuf, String)>,
    /// What was mapped.
    pub mapped: Vec<String>,
    /// Fields not mapped, and why.
    pub notes: Vec<Note>,
    /// Recipe names written.
    pub recipes: Vec<String>,
    /// Component file stems written.
    pub components: Vec<String>,
}

/// Why known fields are not mapped.
const REASONS: &[(&str, &str)] = &[
    ("tags", "AWS resource tags; kiln has no resource tags"),
    (
        "kmsKeyId",
        "KMS encryption of Image Builder resources; kiln stores nothing in AWS but images",
    ),
    (
        "instanceConfiguration",
        "kiln builds on the Docker engine, not on an EC2 build instance",
    ),
    (
        "infrastructureConfigurationArn",
        "kiln builds on the Docker engine, not on Image Builder infrastructure",
    ),
    (
        "imageTestsConfiguration",
        "kiln's tests are the recipe's `test` section",
    ),
    (
        "imageScanningConfiguration",
        "kiln does not scan images with Amazon Inspector",
    ),
    (
        "enhancedImageMetadataEnabled",
        "kiln records its own provenance for every build",
    ),
    ("clientToken", "idempotency token of the create call"),
    ("description", "Image Builder's resource description"),
    ("changeDescription", "Image Builder's version notes"),
    (
        "supportedOsVersions",
        "kiln does not filter components by OS version",
    ),
    ("platformOverride", "kiln builds the recipe's `platform`"),
    (
        "imageOsVersionOverride",
        "kiln does not filter components by OS version",
    ),
    (
        "workflows",
        "kiln's stages are fixed: build, test, distribute",
    ),
    ("executionRole", "kiln uses the default credential chain"),
    ("loggingConfiguration", "kiln logs to its own record"),
    (
        "imageTags",
        "tags of Image Builder's image resources; kiln has no resource tags",
    ),
    (
        "timeoutMinutes",
        "Image Builder's distribution timeout; kiln's pushes have their own retry limits",
    ),
];

/// Read-only fields of API responses, not written by a user.
const READ_ONLY: &[&str] = &[
    "arn",
    "owner",
    "dateCreated",
    "dateUpdated",
    "dateLastRun",
    "dateNextRun",
    "encrypted",
    "state",
    "type",
    "publisher",
    "obfuscate",
    "parameters",
    "platform",
    "requestId",
    "osVersion",
    "productCodes",
    "sourcePipelineArn",
    "sourcePipelineName",
    "containerType",
];

/// Builds the plan, collecting refusals; any refusal fails the whole import.
pub struct Mapper<'a> {
    resources: &'a [Resource],
    /// The project written into.
    pub project: &'a Project,
    pub(super) opts: &'a ImportOptions,
    parents: &'a BTreeMap<String, String>,
    pub(super) plan: Plan,
    pub(super) refused: Vec<Note>,
    consumed: BTreeMap<(String, String), BTreeSet<String>>,
}

/// Maps `resources` into files for `project`.
pub fn plan(
    resources: &[Resource],
    project: &Project,
    opts: &ImportOptions,
    parents: &BTreeMap<String, String>,
) -> Result<Plan, ImportError> {
    let mut m = Mapper {
        resources,
        project,
        opts,
        parents,
        plan: Plan::default(),
        refused: Vec::new(),
        consumed: BTreeMap::new(),
    };
    let imported = m.components();
    let recipes = m.of(Kind::ContainerRecipe);
    if recipes.is_empty() && imported.is_empty() {
        return Err(ImportError::Unrecognised {
            file: resources
                .first()
                .map(|r| r.file.clone())
                .unwrap_or_default(),
            why: "no container recipe or component to import".into(),
        });
    }
    for r in recipes {
        m.recipe(r, &imported);
    }
    for r in m.of(Kind::ImagePipeline) {
        if m.text(r, &["imageRecipeArn"]).is_some() {
            m.refuse(
                r,
                "imageRecipeArn",
                "an AMI pipeline: kiln builds container images",
            );
        }
    }
    m.orphans();
    m.leftovers();
    if !m.refused.is_empty() {
        return Err(ImportError::Refused(m.refused));
    }
    Ok(m.plan)
}

impl<'a> Mapper<'a> {
    /// Resources of one kind.
    pub fn of(&self, kind: Kind) -> Vec<&'a Resource> {
        self.resources.iter().filter(|r| r.kind == kind).collect()
    }

    /// Marks fields of `r` as used.
    pub fn consume(&mut self, r: &Resource, keys: &[&str]) {
        let set = self
            .consumed
            .entry((r.file.clone(), r.id.clone()))
            .or_default();
        for (k, _) in r.props.entries() {
            if keys.iter().any(|want| super::node::same_key(k, want)) {
                set.insert(k.clone());
            }
        }
    }

    /// A text field of `r`; refused when it is an unevaluated expression.
    pub fn text(&mut self, r: &Resource, keys: &[&str]) -> Option<String> {
        let (key, n) = r.props.entry(keys)?;
        let key = key.to_string();
        self.consume(r, keys);
        node_text(self, r, &key, n)
    }

    /// Adds a file to write (once).
    pub fn file(&mut self, rel: String, text: String) {
        let rel = PathBuf::from(rel);
        if !self.plan.files.iter().any(|(p, _)| *p == rel) {
            self.plan.files.push((rel, text));
        }
    }

    /// Adds a "mapped" line.
    pub fn mapped(&mut self, line: String) {
        if !self.plan.mapped.contains(&line) {
            self.plan.mapped.push(line);
        }
    }

    /// Refuses a field of `r` (at the field's line).
    pub fn refuse(&mut self, r: &Resource, key: &str, why: &str) {
        let line = r.props.get(&[key]).map_or(r.props.line, |n| n.line);
        self.refuse_at(r, key, line, why);
    }

    /// Refuses a field at `line`.
    pub fn refuse_at(&mut self, r: &Resource, field: &str, line: usize, why: &str) {
        self.refused.push(note(r, field, line, why));
    }

    /// Adds a note on a field of `r`.
    pub fn note(&mut self, r: &Resource, field: &str, line: usize, why: &str) {
        self.plan.notes.push(note(r, field, line, why));
    }

    /// Pipelines and distribution configurations no imported recipe uses
    /// are one note each, not one per field.
    fn orphans(&mut self) {
        for kind in [Kind::ImagePipeline, Kind::DistributionConfiguration] {
            for r in self.of(kind) {
                let key = (r.file.clone(), r.id.clone());
                if self.consumed.get(&key).is_some_and(|used| !used.is_empty()) {
                    continue;
                }
                let why = match kind {
                    Kind::ImagePipeline => {
                        "builds no container recipe of this import: its schedule is not written"
                    }
                    _ => "used by no imported pipeline: its targets are not written",
                };
                self.note(r, "", r.props.line, why);
                let all: Vec<String> = r.props.entries().iter().map(|(k, _)| k.clone()).collect();
                self.consumed.entry(key).or_default().extend(all);
            }
        }
    }

    /// Every field nobody consumed becomes a note.
    fn leftovers(&mut self) {
        for r in self.resources {
            let used = self
                .consumed
                .get(&(r.file.clone(), r.id.clone()))
                .cloned()
                .unwrap_or_default();
            for (k, n) in r.props.entries() {
                if used.contains(k) || READ_ONLY.iter().any(|ro| super::node::same_key(k, ro)) {
                    continue;
                }
                let why = REASONS
                    .iter()
                    .find(|(key, _)| super::node::same_key(k, key))
                    .map_or("kiln has no equivalent", |(_, why)| why);
                self.note(r, k, n.line, why);
            }
        }
    }

    /// One container recipe with its pipeline and distribution.
    fn recipe(&mut self, r: &'a Resource, imported: &[Imported]) {
        self.consume(r, &["containerType"]);
        if let Some(t) = self.text(r, &["containerType"]).filter(|t| t != "DOCKER") {
            self.refuse(
                r,
                "containerType",
                &format!("container type `{t}`: kiln builds Docker images"),
            );
        }
        let Some(written) = self.text(r, &["name"]) else {
            return self.refuse(r, "name", "a container recipe needs a name");
        };
        let name = sanitize(&written);
        if name != written {
            self.note(
                r,
                "name",
                r.props.line,
                &format!("`{written}` is written as `{name}` (kiln names: a-z, 0-9, -)"),
            );
        }
        let mut y = RecipeYaml::new(r, &name);
        y.field("version", self.text(r, &["version", "semanticVersion"]));
        y.field("description", self.text(r, &["description"]));
        y.field("parentImage", self.parent(r));
        if let Some(df) = self.text(r, &["dockerfileTemplateData"]) {
            self.file(format!("dockerfiles/{name}.Dockerfile"), df);
            y.raw(format!("dockerfile: {name}.Dockerfile\n"));
        } else if r.props.get(&["dockerfileTemplateUri"]).is_some() {
            self.consume(r, &["dockerfileTemplateUri"]);
            self.refuse(
                r,
                "dockerfileTemplateUri",
                "kiln reads templates from dockerfiles/, not from S3: use dockerfileTemplateData",
            );
        }
        y.field("workingDirectory", self.text(r, &["workingDirectory"]));
        self.recipe_components(r, imported, &mut y);
        let pipeline = self.pipeline_of(r, &written);
        self.distribution(r, pipeline, &mut y);
        if let Some(p) = pipeline {
            self.schedule(p, &mut y);
        }
        self.file(format!("recipes/{name}.yaml"), y.text);
        self.mapped(format!("container recipe `{}` → recipes/{name}.yaml", r.id));
        self.plan.recipes.push(name);
    }

    fn parent(&mut self, r: &Resource) -> Option<String> {
        let p = self.text(r, &["parentImage"])?;
        if let Some(param) = p.strip_prefix("ssm:") {
            let value = self.parents.get(param).cloned();
            if let Some(v) = &value {
                self.mapped(format!("parentImage `{p}` → `{v}` (SSM parameter)"));
            }
            return value;
        }
        if Arn::parse(&p).is_some() {
            let why = format!(
                "`{p}` is an Image Builder image ARN; kiln needs a registry reference (push that image to a registry and name it)"
            );
            self.refuse(r, "parentImage", &why);
            return None;
        }
        Some(p)
    }

    fn recipe_components(&mut self, r: &Resource, imported: &[Imported], y: &mut RecipeYaml) {
        self.consume(r, &["components", "component"]);
        let Some((key, list)) = r.props.entry(&["components", "component"]) else {
            return;
        };
        let key = key.to_string();
        let mut out = String::new();
        for (i, c) in list.items().into_iter().enumerate() {
            let field = format!("{key}[{i}]");
            let Some(arn) = c.get(&["componentArn"]) else {
                self.refuse_at(r, &field, c.line, "a component entry needs componentArn");
                continue;
            };
            let Some(stem) = self.component_ref(r, &format!("{field}.componentArn"), arn, imported)
            else {
                continue;
            };
            out.push_str(&format!("  - name: {}\n", q(&stem)));
            let params = c
                .get(&["parameters", "parameter"])
                .map(Node::items)
                .unwrap_or_default();
            if !params.is_empty() {
                out.push_str("    parameters:\n");
            }
            for p in params {
                let pname = p.get(&["name"]).and_then(Node::as_text).unwrap_or_default();
                let values: Vec<String> = p
                    .get(&["value"])
                    .map(Node::items)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|v| v.as_text())
                    .collect();
                if values.len() != 1 {
                    self.refuse_at(
                        r,
                        &format!("{field}.parameters.{pname}"),
                        p.line,
                        "kiln parameters take exactly one value",
                    );
                    continue;
                }
                out.push_str(&format!("      {}: {}\n", q(&pname), q(&values[0])));
            }
        }
        if !out.is_empty() {
            y.raw(format!("components:\n{out}"));
        }
    }

    /// The pipeline building this recipe (by reference, ARN or name).
    fn pipeline_of(&mut self, recipe: &Resource, name: &str) -> Option<&'a Resource> {
        let pipelines = self.of(Kind::ImagePipeline);
        let found = pipelines.into_iter().find(|p| {
            match p.props.get(&["containerRecipeArn"]).map(|n| &n.value) {
                Some(Value::Ref(id)) => *id == recipe.id,
                Some(Value::String(s)) => {
                    Arn::parse(s).is_some_and(|a| a.name == name)
                        || recipe.arn.as_deref() == Some(s)
                }
                _ => false,
            }
        })?;
        self.consume(found, &["name", "containerRecipeArn"]);
        self.mapped(format!(
            "image pipeline `{}` → schedule of recipes/{}.yaml",
            found.id,
            sanitize(name)
        ));
        Some(found)
    }
}

fn note(r: &Resource, field: &str, line: usize, why: &str) -> Note {
    Note {
        file: r.file.clone(),
        line,
        field: r.field(field),
        why: why.into(),
    }
}

/// A node's text; refuses unevaluated expressions and deploy-time values.
fn node_text(m: &mut Mapper<'_>, r: &Resource, key: &str, n: &Node) -> Option<String> {
    match &n.value {
        Value::Unresolved(why) => {
            m.refuse_at(r, key, n.line, why);
            None
        }
        _ => {
            let t = n.as_text()?;
            if t.contains("${AWS::") {
                m.refuse_at(
                    r,
                    key,
                    n.line,
                    "uses a pseudo parameter known only when the stack is deployed",
                );
                return None;
            }
            Some(t)
        }
    }
}

/// A kiln name: lowercase letters, digits and `-`.
pub fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.trim_matches('-').to_string()
}

/// A YAML scalar: JSON strings are valid double-quoted YAML.
pub fn q(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// The recipe file as it is built up.
pub struct RecipeYaml {
    /// The text so far.
    pub text: String,
}

impl RecipeYaml {
    fn new(r: &Resource, name: &str) -> RecipeYaml {
        RecipeYaml {
            text: format!(
                "# Imported by `kiln import` from {} ({}).\nname: {name}\n",
                r.file, r.id
            ),
        }
    }

    /// `key: "value"` when there is a value.
    pub fn field(&mut self, key: &str, value: Option<String>) {
        if let Some(v) = value {
            self.text.push_str(&format!("{key}: {}\n", q(&v)));
        }
    }

    /// Raw YAML lines.
    pub fn raw(&mut self, text: String) {
        self.text.push_str(&text);
    }
}

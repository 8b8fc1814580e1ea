//! Stage 3 — render: turns a loaded recipe plus its pinned parents into the
//! final Dockerfile and the generated build-context files (component
//! scripts). Pure: no IO, no Docker.

mod toe_actions;
pub use toe_actions::{S3Request, S3Upload};
pub mod toe_script;
mod write_dir;

pub use write_dir::{WriteDirError, write_context_dir};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::load::build_settings::Builder;
use crate::load::component::PhaseKind;
use crate::load::template::{self, COMPONENTS, ENVIRONMENTS};
use crate::load::{LoadedRecipe, canonical_placeholder_line};
use crate::reference::ImageReference;

/// Where generated files live in the build context.
pub const GENERATED_DIR: &str = ".kiln";
/// Where component scripts are copied inside the image during the build.
pub const IMAGE_SCRIPT_DIR: &str = "/tmp/.kiln";

/// Pinned references: the image as written → `repo@sha256:…`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins(pub BTreeMap<ImageReference, ImageReference>);

impl Pins {
    /// The pinned form of `r`, or `r` itself when not pinned.
    pub fn get<'a>(&'a self, r: &'a ImageReference) -> &'a ImageReference {
        self.0.get(r).unwrap_or(r)
    }
}

/// A file kiln generates into the build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Path inside the context, `/`-separated.
    pub path: String,
    /// Bytes.
    pub contents: Vec<u8>,
    /// Unix mode.
    pub mode: u32,
}

/// A component's test phase, run later inside the built container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestScript {
    /// Component name.
    pub component: String,
    /// The script (source `toe.sh` beside it).
    pub script: String,
    /// Files its S3Upload steps stage; folders relative to the script's.
    pub uploads: Vec<S3Upload>,
}

/// Output of [`render`]: everything the builder needs.
#[derive(Debug, Clone)]
pub struct RenderedBuild {
    /// The final Dockerfile.
    pub dockerfile: String,
    /// Generated context files (component scripts).
    pub files: Vec<GeneratedFile>,
    /// The recipe's context folder, copied under the generated files.
    pub context_dir: Option<PathBuf>,
    /// Build args.
    pub build_args: BTreeMap<String, String>,
    /// Target stage.
    pub target: Option<String>,
    /// Component test phases, in recipe order.
    pub test_scripts: Vec<TestScript>,
    /// Base images as written and as used (pinned or not).
    pub base_images: Vec<(ImageReference, ImageReference)>,
    /// S3Download objects to fetch into the context before building
    /// (`crate::s3::fetch_objects`); folders are context paths.
    pub s3_objects: Vec<S3Request>,
}

fn component_dir(index: usize, name: &str) -> String {
    format!("{:02}-{}", index + 1, name)
}

/// Renders the recipe's template with `pins` applied.
pub fn render(recipe: &LoadedRecipe, pins: &Pins) -> RenderedBuild {
    let mut files = Vec::new();
    let mut component_lines = String::new();
    let mut test_scripts = Vec::new();
    let mut s3_objects = Vec::new();
    for (i, applied) in recipe.components.iter().enumerate() {
        let c = &applied.component;
        let dir = component_dir(i, &c.name);
        let build = toe_script::phase_script_with_s3(
            c,
            &applied.parameters,
            &[PhaseKind::Build, PhaseKind::Validate],
            &recipe.working_directory,
        );
        if let Some(toe_script::PhaseScript {
            mut script,
            downloads: s3,
            ..
        }) = build
        {
            s3_objects.extend(s3.into_iter().map(|mut o| {
                o.folder = format!("{GENERATED_DIR}/{dir}/{}", o.folder);
                o
            }));
            let buildkit = recipe.build.builder == Builder::Buildkit;
            if !buildkit {
                // The scripts leave nothing behind in the final filesystem
                // (but the COPY layer below still holds them).
                script = script.replace(
                    "\ntoe_finish\n",
                    "\nrm -rf \"$(dirname \"${BASH_SOURCE[0]}\")\"\ntoe_finish\n",
                );
            }
            files.push(GeneratedFile {
                path: format!("{GENERATED_DIR}/{dir}/toe.sh"),
                contents: toe_script::TOE_RUNTIME.as_bytes().to_vec(),
                mode: 0o644,
            });
            files.push(GeneratedFile {
                path: format!("{GENERATED_DIR}/{dir}/build.sh"),
                contents: script.into_bytes(),
                mode: 0o755,
            });
            let _ = writeln!(
                component_lines,
                "# kiln component {}: {} ({})",
                i + 1,
                c.name,
                c.digest
            );
            let _ = if buildkit {
                // Bind-mounted (writes discarded): no layer holds the scripts.
                writeln!(
                    component_lines,
                    "RUN --mount=type=bind,source={GENERATED_DIR}/{dir},target={IMAGE_SCRIPT_DIR}/{dir},rw [\"/bin/bash\", \"{IMAGE_SCRIPT_DIR}/{dir}/build.sh\"]"
                )
            } else {
                writeln!(
                    component_lines,
                    "COPY {GENERATED_DIR}/{dir}/ {IMAGE_SCRIPT_DIR}/{dir}/\nRUN [\"/bin/bash\", \"{IMAGE_SCRIPT_DIR}/{dir}/build.sh\"]"
                )
            };
        }
        if let Some(p) = toe_script::phase_script_with_s3(
            c,
            &applied.parameters,
            &[PhaseKind::Test],
            &recipe.working_directory,
        ) {
            test_scripts.push(TestScript {
                component: c.name.clone(),
                script: p.script,
                uploads: p.uploads,
            });
        }
    }
    let mut env_lines = String::new();
    for name in recipe.build_args.keys() {
        let _ = writeln!(env_lines, "ARG {name}");
    }
    let dockerfile = rewrite(
        recipe,
        pins,
        env_lines.trim_end(),
        component_lines.trim_end(),
    );
    RenderedBuild {
        dockerfile,
        files,
        context_dir: recipe.context_dir.clone(),
        build_args: recipe.build_args.clone(),
        target: recipe.target.clone(),
        test_scripts,
        base_images: recipe
            .base_images
            .iter()
            .map(|r| (r.clone(), pins.get(r).clone()))
            .collect(),
        s3_objects,
    }
}

fn rewrite(recipe: &LoadedRecipe, pins: &Pins, env_lines: &str, component_lines: &str) -> String {
    let text = &recipe.template.text;
    let lines: Vec<&str> = text.lines().collect();
    let instructions = template::instructions(text);
    let mut out = String::new();
    let mut skip_until = 0u64;
    let mut stages: Vec<String> = Vec::new();
    for (i, raw) in lines.iter().enumerate() {
        let n = i as u64 + 1;
        if n <= skip_until {
            continue;
        }
        let ins = instructions.iter().find(|ins| ins.line == n);
        match ins {
            Some(ins) if ins.keyword == "{{{" => match canonical_placeholder_line(&ins.args) {
                Some(ENVIRONMENTS) => {
                    if !env_lines.is_empty() {
                        let _ = writeln!(out, "{env_lines}");
                    }
                }
                Some(COMPONENTS) => {
                    if !component_lines.is_empty() {
                        let _ = writeln!(out, "{component_lines}");
                    }
                }
                _ => {
                    let _ = writeln!(out, "{raw}");
                }
            },
            Some(ins) if ins.keyword == "FROM" => {
                skip_until = ins.end_line;
                let Ok(from) = template::parse_from(ins) else {
                    let _ = writeln!(out, "{raw}");
                    continue;
                };
                let image = if from.image.contains("imagebuilder:parentImage") {
                    pins.get(&recipe.parent_image).to_string()
                } else if from.image == "scratch"
                    || stages.contains(&from.image.to_ascii_lowercase())
                {
                    from.image.clone()
                } else {
                    match ImageReference::parse(&from.image) {
                        Ok(r) => pins.get(&r).to_string(),
                        Err(_) => from.image.clone(),
                    }
                };
                if let Some(s) = &from.stage {
                    stages.push(s.clone());
                }
                let _ = write!(out, "FROM ");
                if let Some(p) = &from.platform {
                    let _ = write!(out, "--platform={p} ");
                }
                let _ = write!(out, "{image}");
                if let Some(s) = &from.stage {
                    let _ = write!(out, " AS {s}");
                }
                out.push('\n');
            }
            _ => {
                let _ = writeln!(out, "{raw}");
            }
        }
    }
    out
}

//! Stage 1 — load: reads a recipe, the components it uses and its Dockerfile
//! template, and validates all of it into a [`LoadedRecipe`]. Every problem
//! becomes a positioned [`Diagnostic`]; all of them are reported at once.

pub mod action_inputs;
pub mod actions;
pub mod build_settings;
pub mod component;
pub mod component_doc;
mod component_steps;
pub mod condition;
mod dotenv;
mod env;
pub mod model;
pub mod nested;
pub mod overrides;
pub mod recipe;
mod recipe_check;
pub mod rules;
mod scalar_forms;
mod schedule_check;
pub mod structure_check;
pub mod structure_test;
pub mod template;
mod template_check;

use std::path::{Path, PathBuf};

pub use model::*;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::project::Project;

pub use component::Component;
pub use env::expand_env;
pub use recipe_check::{TAG_VARIABLES, render_tag, tag_vars};
pub use structure_test::{StructureFile, StructureTests};

/// Finds the file a recipe argument names: `NAME` → `recipes/NAME.yaml` (or
/// `.yml`); anything with a `/` or a YAML extension is a path.
pub fn recipe_path(project: &Project, arg: &str) -> Result<PathBuf, Diagnostic> {
    let looks_like_path = arg.contains('/') || arg.ends_with(".yaml") || arg.ends_with(".yml");
    if looks_like_path {
        let p = Path::new(arg);
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir()
                .map(|d| d.join(p))
                .unwrap_or_else(|_| p.to_path_buf())
        };
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Diagnostic::file(arg, "recipe file does not exist"))
        };
    }
    for ext in ["yaml", "yml"] {
        let p = project.dir("recipes").join(format!("{arg}.{ext}"));
        if p.is_file() {
            return Ok(p);
        }
    }
    let known = list_recipes(project);
    let hint = crate::diagnostic::closest(arg, known.iter().map(String::as_str));
    let mut d = Diagnostic::file(
        format!("recipes/{arg}.yaml"),
        format!("no recipe named `{arg}`"),
    );
    if let Some(h) = hint {
        d = d.with_hint(format!("did you mean `{h}`?"));
    } else if !known.is_empty() {
        d = d.with_hint(format!("recipes in this project: {}", known.join(", ")));
    }
    Err(d)
}

/// Names of every recipe in `recipes/`, sorted.
pub fn list_recipes(project: &Project) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(project.dir("recipes"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".yaml")
                .or_else(|| name.strip_suffix(".yml"))
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Loads and validates one recipe (by name or path) with its components and
/// template.
pub fn load_recipe(project: &Project, arg: &str) -> Result<LoadedRecipe, Diagnostics> {
    load_recipe_with(project, arg, &overrides::Overrides::default())
}

/// [`load_recipe`] with a recipe test's parameter values over the recipe's.
pub fn load_recipe_with(
    project: &Project,
    arg: &str,
    overrides: &overrides::Overrides,
) -> Result<LoadedRecipe, Diagnostics> {
    let path = recipe_path(project, arg)?;
    let shown = project.display(&path);
    let source = project
        .read(&path)
        .map_err(|e| Diagnostic::file(&shown, e.to_string()))?;
    let file: recipe::RecipeFile = crate::yaml::decode(&shown, &source)?;
    recipe_check::check(project, &shown, &source, file, overrides)
}

/// Loads a component document by name from `components/`.
pub fn load_component(project: &Project, name: &str) -> Result<Component, Diagnostics> {
    let mut found = None;
    for ext in ["yaml", "yml"] {
        match project.confined("components", &format!("{name}.{ext}")) {
            Ok(p) => {
                found = Some(p);
                break;
            }
            Err(crate::project::PathError::Missing(_)) => continue,
            Err(e) => {
                return Err(
                    Diagnostic::file(format!("components/{name}.{ext}"), e.to_string()).into(),
                );
            }
        }
    }
    let path = found.ok_or_else(|| {
        Diagnostic::file(
            format!("components/{name}.yaml"),
            "component file does not exist",
        )
    })?;
    nested::load_document(project, name, &path, &mut Vec::new())
}

/// The canonical placeholder a whole placeholder line holds, if any.
pub fn canonical_placeholder_line(args: &str) -> Option<&'static str> {
    template::canonical_placeholder(args.trim())
}

//! Writes a [`Plan`] into the project, all or nothing: no existing file is
//! overwritten (an identical one is left alone), and when an imported
//! component or recipe does not pass the loader (`kiln validate`), every
//! file written is removed again and the loader's diagnostics are the error.

use std::path::PathBuf;

use super::ImportError;
use super::mapping::Plan;
use crate::atomic_file;
use crate::project::Project;

/// Writes the plan's files and validates its recipes; returns the files
/// written, relative to the project.
pub fn write_plan(project: &Project, plan: &Plan) -> Result<Vec<PathBuf>, ImportError> {
    let mut todo = Vec::new();
    for (rel, text) in &plan.files {
        let path = project.root().join(rel);
        if !path.exists() {
            todo.push((rel, path, text));
            continue;
        }
        match project.read(&path) {
            Ok(existing) if existing == *text => continue,
            _ => return Err(ImportError::Exists(rel.clone())),
        }
    }
    let mut written = Vec::new();
    for (rel, path, text) in todo {
        let result = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| atomic_file::write(&path, text.as_bytes(), atomic_file::USER_FILE));
        if let Err(source) = result {
            undo(project, &written);
            return Err(ImportError::Write { path, source });
        }
        written.push(rel.clone());
    }
    let checks = plan
        .components
        .iter()
        .map(|c| {
            (
                format!("component `{c}`"),
                crate::load::load_component(project, c).err(),
            )
        })
        .chain(plan.recipes.iter().map(|r| {
            (
                format!("recipe `{r}`"),
                crate::load::load_recipe(project, r).err(),
            )
        }));
    for (what, err) in checks {
        if let Some(d) = err {
            undo(project, &written);
            return Err(ImportError::Invalid {
                what,
                diagnostics: d.to_string(),
            });
        }
    }
    Ok(written)
}

fn undo(project: &Project, written: &[PathBuf]) {
    for rel in written {
        let _ = std::fs::remove_file(project.root().join(rel));
    }
}

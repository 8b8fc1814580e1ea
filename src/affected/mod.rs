//! `kiln affected --since REF`: the recipes whose inputs changed between a
//! git revision and the work tree, so a monorepo's CI builds only what a
//! change touched (`kiln run --affected-since REF`). A recipe's inputs are
//! its own file, every component it applies (nested ExecuteDocument
//! documents too), its Dockerfile template, its context folder, its
//! structure-test files, and its section of
//! `kiln.lock` (compared by pin, not by `resolvedAt`). A recipe that does
//! not load is listed (its inputs cannot be known, and running it shows why).

mod git;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::load::actions::Action;
use crate::load::{self, Component, LoadedRecipe};
use crate::project::Project;
use crate::resolve::{LOCK_FILE_NAME, LockFile};

/// Why the affected set could not be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AffectedError {
    /// git could not be started.
    #[error("cannot run git (is it installed?)")]
    Spawn {
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The project is not inside a git work tree.
    #[error("`{}` is not inside a git work tree: {stderr}", dir.display())]
    NotARepository {
        /// The project folder.
        dir: PathBuf,
        /// What git said.
        stderr: String,
    },
    /// The revision does not name a commit.
    #[error("`{reference}` is not a revision to compare with: {why}")]
    BadRef {
        /// As given.
        reference: String,
        /// Why.
        why: String,
    },
    /// A git command failed.
    #[error("`{command}` failed: {stderr}")]
    Git {
        /// The command.
        command: String,
        /// What git said.
        stderr: String,
    },
}

/// One affected recipe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AffectedRecipe {
    /// The recipe's name (its file stem).
    pub recipe: String,
    /// The changed inputs, project-relative (`kiln.lock` for a moved pin;
    /// the recipe file when it does not load).
    pub changed: Vec<PathBuf>,
}

/// The answer of [`affected`].
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Affected {
    /// The commit `since` named.
    pub since: String,
    /// Every changed file under the project, project-relative.
    pub changed_files: Vec<PathBuf>,
    /// The affected recipes, by name.
    pub recipes: Vec<AffectedRecipe>,
}

/// The recipes of `project` whose inputs differ between `since` and the
/// work tree (uncommitted and untracked changes count).
pub fn affected(project: &Project, since: &str) -> Result<Affected, AffectedError> {
    let dir = project.root();
    let commit = git::commit_of(dir, since)?;
    let changed = git::changed_files(dir, &commit)?;
    let lock_moved = if changed.iter().any(|p| p == Path::new(LOCK_FILE_NAME)) {
        Some(lock_then(dir, &commit)?)
    } else {
        None
    };
    let lock_now = LockFile::load(&project.root().join(LOCK_FILE_NAME)).unwrap_or_default();
    let mut recipes = Vec::new();
    for name in load::list_recipes(project) {
        let hits = match load::load_recipe(project, &name) {
            Ok(r) => {
                let mut hits = touched(&inputs(project, &r), &changed);
                if let Some(then) = &lock_moved
                    && lock_section_moved(then, &lock_now, &r.name)
                {
                    hits.push(PathBuf::from(LOCK_FILE_NAME));
                }
                hits
            }
            Err(_) => vec![recipe_file(project, &name)],
        };
        if !hits.is_empty() {
            recipes.push(AffectedRecipe {
                recipe: name,
                changed: hits,
            });
        }
    }
    Ok(Affected {
        since: commit,
        changed_files: changed,
        recipes,
    })
}

fn recipe_file(project: &Project, name: &str) -> PathBuf {
    load::recipe_path(project, name)
        .map(|p| project.display(&p))
        .unwrap_or_else(|_| PathBuf::from(format!("recipes/{name}.yaml")))
}

/// `kiln.lock` at `commit` (empty when it did not exist or does not parse).
fn lock_then(dir: &Path, commit: &str) -> Result<LockFile, AffectedError> {
    let text = git::show(dir, commit, Path::new(LOCK_FILE_NAME))?;
    Ok(text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default())
}

/// Whether `recipe`'s pins differ between the two locks.
fn lock_section_moved(then: &LockFile, now: &LockFile, recipe: &str) -> bool {
    let (a, b) = (then.recipes.get(recipe), now.recipes.get(recipe));
    match (a, b) {
        (None, None) => false,
        (Some(a), Some(b)) => {
            a.len() != b.len()
                || a.iter()
                    .any(|(k, e)| b.get(k).is_none_or(|other| !e.same_pin(other)))
        }
        _ => true,
    }
}

/// The changed files that are inputs: exact files, or files under an
/// input folder.
fn touched(inputs: &Inputs, changed: &[PathBuf]) -> Vec<PathBuf> {
    changed
        .iter()
        .filter(|c| inputs.files.contains(*c) || inputs.folders.iter().any(|f| c.starts_with(f)))
        .cloned()
        .collect()
}

/// A recipe's input files and folders, project-relative.
#[derive(Debug, Default)]
struct Inputs {
    files: BTreeSet<PathBuf>,
    folders: Vec<PathBuf>,
}

fn inputs(project: &Project, r: &LoadedRecipe) -> Inputs {
    let rel = |p: &Path| project.display(&project.root().join(p));
    let mut i = Inputs::default();
    i.files.insert(rel(&r.file));
    if let Some(t) = &r.template.file {
        i.files.insert(rel(t));
    }
    if let Some(c) = &r.context_dir {
        i.folders.push(rel(c));
    }
    for c in &r.components {
        component_files(&c.component, &mut |p| {
            i.files.insert(rel(p));
        });
    }
    for s in &r.test.structure_tests {
        i.files.insert(rel(&s.shown));
    }
    i
}

/// `c`'s file and those of the documents it runs, depth first.
fn component_files(c: &Component, add: &mut dyn FnMut(&Path)) {
    add(&c.file);
    for step in c.phases.iter().flat_map(|p| &p.steps) {
        if let Action::ExecuteDocument(d) = &step.action
            && let Some(nested) = &d.component
        {
            component_files(nested, add);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(hex: char, resolved_at: &str) -> LockFile {
        let digest = format!("sha256:{}", hex.to_string().repeat(64));
        serde_json::from_value(serde_json::json!({
            "version": 1,
            "recipes": {"web": {"127.0.0.1:5000/kiln/base:1": {
                "digest": digest,
                "manifestDigest": digest,
                "pinned": format!("127.0.0.1:5000/kiln/base@{digest}"),
                "platform": "linux/amd64",
                "resolvedAt": resolved_at,
            }}}
        }))
        .unwrap()
    }

    #[test]
    fn a_lock_section_moves_with_its_pins_not_with_resolved_at() {
        let then = lock('a', "2026-01-01T00:00:00Z");
        assert!(!lock_section_moved(
            &then,
            &lock('a', "2026-02-01T00:00:00Z"),
            "web"
        ));
        assert!(lock_section_moved(
            &then,
            &lock('b', "2026-01-01T00:00:00Z"),
            "web"
        ));
        assert!(lock_section_moved(&then, &LockFile::default(), "web"));
        assert!(!lock_section_moved(
            &then,
            &lock('b', "2026-01-01T00:00:00Z"),
            "api"
        ));
    }
}

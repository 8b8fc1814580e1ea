//! ExecuteDocument: finds, loads and checks nested documents. A document is
//! a file name in `components/` or a project path (confined like every
//! project file); S3 URIs and Image Builder ARNs are refused, as are cycles
//! and nesting deeper than [`MAX_DOCUMENT_DEPTH`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::actions::NestedDocument;
use super::component::{self, Component, placeholders};
use super::component_doc::ComponentDoc;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::project::Project;

/// Documents deep, the main one included (main → child → grandchild).
pub const MAX_DOCUMENT_DEPTH: usize = 3;

/// Why a nested document could not be used.
#[derive(Debug)]
pub enum NestedError {
    /// A problem with the ExecuteDocument inputs.
    Message(String),
    /// The nested document itself has errors (positioned in its own file).
    Child(Diagnostics),
}

/// Loads a nested document by the name written in `document`.
pub type Resolver<'a> = dyn FnMut(&str) -> Result<Component, NestedError> + 'a;

/// Loads `path` as a component document named `name`, resolving its own
/// ExecuteDocument steps; `stack` holds the documents that led here.
pub(crate) fn load_document(
    project: &Project,
    name: &str,
    path: &Path,
    stack: &mut Vec<PathBuf>,
) -> Result<Component, Diagnostics> {
    let shown = project.display(path);
    let source = project
        .read(path)
        .map_err(|e| Diagnostic::file(&shown, e.to_string()))?;
    let doc: ComponentDoc = crate::yaml::decode(&shown, &source)?;
    stack.push(path.to_path_buf());
    let mut resolver = |document: &str| resolve(project, document, stack);
    let result = component::validate(name, &shown, &source, doc, &mut resolver);
    stack.pop();
    result
}

fn resolve(
    project: &Project,
    document: &str,
    stack: &mut Vec<PathBuf>,
) -> Result<Component, NestedError> {
    let msg = |m: String| Err(NestedError::Message(m));
    if document.contains("://") || document.starts_with("arn:") {
        return msg(format!(
            "`document: {document}`: kiln reads nested documents from the project (a file in components/ or a project path), not from S3 or Image Builder ARNs"
        ));
    }
    if !placeholders(document).is_empty() {
        return msg(format!("`document: {document}` must be a literal path"));
    }
    if stack.len() >= MAX_DOCUMENT_DEPTH {
        return msg(format!(
            "`document: {document}` nests documents more than {MAX_DOCUMENT_DEPTH} deep"
        ));
    }
    let (folder, rel) = if document.contains('/') {
        (".", document.to_string())
    } else {
        ("components", document.to_string())
    };
    let path = project
        .confined(folder, &rel)
        .map_err(|e| NestedError::Message(format!("`document: {document}`: {e}")))?;
    if stack.contains(&path) {
        let chain: Vec<String> = stack
            .iter()
            .chain([&path])
            .map(|p| project.display(p).display().to_string())
            .collect();
        return msg(format!(
            "`document: {document}` runs itself ({})",
            chain.join(" → ")
        ));
    }
    let stem = Path::new(document)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| document.to_string());
    load_document(project, &stem, &path, stack).map_err(NestedError::Child)
}

/// Resolves `d` and checks its phases and parameters against the nested
/// document. Parameter values may use the parent's parameters and
/// constants (substituted at render time), nothing known only at run time.
pub(crate) fn check(
    d: &mut NestedDocument,
    parent_values: &BTreeMap<String, ()>,
    resolver: &mut Resolver<'_>,
) -> Result<(), NestedError> {
    let child = resolver(&d.input.document)?;
    let err = |m: String| Err(NestedError::Message(m));
    if let Some(phases) = &d.input.phases {
        for p in phases.split(',').map(str::trim) {
            if !child.phases.iter().any(|c| c.kind.as_str() == p) {
                let have: Vec<&str> = child.phases.iter().map(|c| c.kind.as_str()).collect();
                return err(format!(
                    "`phases: {phases}`: `{}` has no phase `{p}` (it has {})",
                    d.input.document,
                    have.join(", ")
                ));
            }
        }
    }
    let mut given = BTreeMap::new();
    for p in &d.input.parameters {
        if !child.parameters.contains_key(&p.name) {
            return err(format!(
                "parameter `{}` is not declared by `{}`",
                p.name, d.input.document
            ));
        }
        if given.insert(p.name.as_str(), ()).is_some() {
            return err(format!("parameter `{}` is given twice", p.name));
        }
        if let Some(ph) = placeholders(&p.value)
            .into_iter()
            .find(|ph| !parent_values.contains_key(*ph))
        {
            return err(format!(
                "parameter `{}` uses `{{{{ {ph} }}}}`; nested document parameters take literals or this document's parameters and constants",
                p.name
            ));
        }
    }
    if let Some((name, _)) = child
        .parameters
        .iter()
        .find(|(k, v)| v.is_none() && !given.contains_key(k.as_str()))
    {
        return err(format!(
            "`{}` needs parameter `{name}` (it has no default)",
            d.input.document
        ));
    }
    d.component = Some(child);
    Ok(())
}

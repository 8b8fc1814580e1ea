//! Component parameter values put over a recipe's own by a recipe test's
//! `variables` (`tests/*.kilntest.yaml`). They are checked where the
//! recipe's parameters are (`recipe_check`), and their problems point into
//! the test file that wrote them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use super::recipe::ScalarValue;
use crate::diagnostic::Diagnostic;

/// Values by component name, then parameter name, with the file they come from.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The file that wrote them (for diagnostics).
    pub path: PathBuf,
    /// Its text (for snippets).
    pub source: String,
    /// component → parameter → value.
    pub values: BTreeMap<String, BTreeMap<String, Spanned<ScalarValue>>>,
}

impl Overrides {
    /// The values for one component (empty when none).
    pub(super) fn of(&self, component: &str) -> Option<&BTreeMap<String, Spanned<ScalarValue>>> {
        self.values.get(component)
    }

    /// A diagnostic at `value`'s position in the test file.
    pub(super) fn at(&self, value: &Spanned<ScalarValue>, msg: impl Into<String>) -> Diagnostic {
        let l = &value.referenced;
        Diagnostic::at(&self.path, &self.source, l.line(), l.column(), msg)
    }

    /// One diagnostic per component the recipe does not use.
    pub(super) fn unused(&self, used: &[&str], recipe: &Path) -> Vec<Diagnostic> {
        let recipe = recipe.display();
        self.values
            .iter()
            .filter(|(name, _)| !used.contains(&name.as_str()))
            .map(|(name, params)| {
                let msg = format!("variables name component `{name}`, which {recipe} does not use");
                match params.values().next() {
                    Some(v) => self.at(v, msg),
                    None => Diagnostic::file(&self.path, msg),
                }
                .with_rule(&super::rules::UNKNOWN_COMPONENT)
            })
            .collect()
    }
}

//! The AWSTOE component document format (`components/*.yaml`), loaded as
//! AWSTOE writes it: `name`, `description`, `schemaVersion`, `parameters`,
//! `constants`, `phases` of `steps`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// A component document as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ComponentDoc {
    /// Document name (optional in AWSTOE).
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Must be `1.0`.
    pub schema_version: Spanned<SchemaVersion>,
    /// Declared parameters: a list of single-key maps.
    #[serde(default)]
    pub parameters: Vec<BTreeMap<String, ParameterDecl>>,
    /// Constants: a list of single-key maps.
    #[serde(default)]
    pub constants: Vec<BTreeMap<String, ConstantDecl>>,
    /// Phases (`build`, `validate`, `test`).
    pub phases: Vec<PhaseDoc>,
}

/// `schemaVersion`, written as `1.0` or `"1.0"`; deserialized in
/// `scalar_forms.rs`.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaVersion {
    /// Written as a number.
    Number(f64),
    /// Written as a string.
    Text(String),
}

impl SchemaVersion {
    /// Whether this is 1.0.
    pub fn is_supported(&self) -> bool {
        match self {
            SchemaVersion::Number(n) => (*n - 1.0).abs() < f64::EPSILON,
            SchemaVersion::Text(s) => s == "1.0",
        }
    }
}

/// A parameter declaration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ParameterDecl {
    /// Only `string` is supported, like AWSTOE.
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// Default value; a parameter without one must be given by the recipe.
    #[serde(default)]
    pub default: Option<Spanned<crate::load::recipe::ScalarValue>>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

/// A constant declaration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConstantDecl {
    /// Only `string` is supported.
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// The value.
    pub value: Spanned<crate::load::recipe::ScalarValue>,
}

/// A phase.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PhaseDoc {
    /// `build`, `validate` or `test`.
    pub name: Spanned<String>,
    /// Steps in order.
    pub steps: Vec<StepDoc>,
}

/// A step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StepDoc {
    /// Step name, unique within its phase.
    pub name: Spanned<String>,
    /// Action module (`ExecuteBash`, `CreateFile`, …).
    pub action: Spanned<String>,
    /// `Abort` (default), `Continue` or `Ignore`.
    #[serde(default)]
    pub on_failure: Option<Spanned<String>>,
    /// Per attempt; -1 or absent means no limit.
    #[serde(default)]
    pub timeout_seconds: Option<Spanned<i64>>,
    /// Attempts before the step fails (default 1).
    #[serde(default)]
    pub max_attempts: Option<Spanned<i64>>,
    /// Repeat the step.
    #[serde(default, rename = "loop")]
    pub loop_: Option<Spanned<LoopDoc>>,
    /// Run, skip or abort the step depending on a conditional expression.
    #[serde(default, rename = "if")]
    pub if_: Option<Spanned<serde_json::Value>>,
    /// Action inputs; checked per action.
    #[serde(default)]
    pub inputs: Option<Spanned<serde_json::Value>>,
}

/// A step loop: `for` a range or `forEach` over a list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoopDoc {
    /// Loop name, for `{{ name.value }}`.
    #[serde(default)]
    pub name: Option<String>,
    /// A numeric range.
    #[serde(default, rename = "for")]
    pub for_: Option<ForRange>,
    /// A list, or `{list, delimiter}`.
    #[serde(default)]
    pub for_each: Option<ForEach>,
}

/// `for: {start, end, updateBy}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ForRange {
    /// First value.
    pub start: i64,
    /// Last value (inclusive).
    pub end: i64,
    /// Step (non-zero).
    pub update_by: i64,
}

/// `forEach` values; deserialized in `scalar_forms.rs`.
#[derive(Debug, Clone, PartialEq)]
pub enum ForEach {
    /// A YAML list.
    List(Vec<crate::load::recipe::ScalarValue>),
    /// A delimited string, split at run time after substitution.
    Delimited(DelimitedList),
}

/// `forEach: {list, delimiter}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelimitedList {
    /// The text; may hold parameters, constants and chained outputs.
    pub list: crate::load::recipe::ScalarValue,
    /// One separator character (default `,`).
    #[serde(default)]
    pub delimiter: Option<String>,
}

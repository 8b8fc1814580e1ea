//! The validation rules a diagnostic can carry
//! ([`crate::diagnostic::Diagnostic::rule`]): what a recipe test's
//! `expectFailures` lists. Policy rules are named by their operator config
//! key (`allowedParents`, `forbiddenActions`, …) the same way.

pub use crate::diagnostic::Rule;

/// A component the recipe (or a test's `variables`) names does not exist or is not used.
pub static UNKNOWN_COMPONENT: Rule = Rule("unknownComponent");
/// A parameter value for a parameter the component does not declare.
pub static UNKNOWN_PARAMETER: Rule = Rule("unknownParameter");
/// A declared parameter without a default that nobody gives a value.
pub static MISSING_PARAMETER: Rule = Rule("missingParameter");
/// A parameter or build-arg value with a control character.
pub static CONTROL_CHARACTER: Rule = Rule("controlCharacter");
/// A build arg whose name looks like a secret.
pub static SECRET_BUILD_ARG: Rule = Rule("secretBuildArg");
/// A field a file format does not have, or a value of the wrong type.
pub static SCHEMA: Rule = Rule("schema");

/// Every rule above, for "did you mean" hints.
pub static ALL: &[&Rule] = &[
    &UNKNOWN_COMPONENT,
    &UNKNOWN_PARAMETER,
    &MISSING_PARAMETER,
    &CONTROL_CHARACTER,
    &SECRET_BUILD_ARG,
    &SCHEMA,
];

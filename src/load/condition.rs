//! AWSTOE conditional expressions, shared by a step's `if` and the `Assert`
//! action: comparison operators (`stringEquals: a` + `value: b`, …) and the
//! logical operators `and`, `or`, `not`, nested at most
//! [`MAX_LOGICAL_DEPTH`] deep. Evaluated at run time by `toe.sh`, because
//! operands may be chained outputs.

use serde_json::{Map, Value};

/// Deepest nesting of `and`/`or`/`not` AWSTOE accepts.
pub const MAX_LOGICAL_DEPTH: usize = 4;

/// Comparison operators that test one value.
pub const UNARY_OPERATORS: &[&str] = &[
    "stringIsEmpty",
    "stringIsWhitespace",
    "fileExists",
    "folderExists",
    "binaryExists",
];

/// Comparison operators that compare their value with `value`.
pub const BINARY_OPERATORS: &[&str] = &[
    "stringEquals",
    "stringLessThan",
    "stringLessThanEquals",
    "stringGreaterThan",
    "stringGreaterThanEquals",
    "patternMatches",
    "numberEquals",
    "numberLessThan",
    "numberLessThanEquals",
    "numberGreaterThan",
    "numberGreaterThanEquals",
    "fileMD5Equals",
    "fileSHA1Equals",
    "fileSHA256Equals",
    "fileSHA512Equals",
];

/// A conditional expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// A comparison operator: its own operand and, for binary ones, `value`.
    Compare {
        /// AWSTOE operator name.
        op: &'static str,
        /// The operator's operand.
        operand: String,
        /// `value`, for binary operators.
        value: Option<String>,
    },
    /// Every one is true (evaluated in order, stops at the first false).
    And(Vec<Condition>),
    /// One is true (evaluated in order, stops at the first true).
    Or(Vec<Condition>),
    /// Negation.
    Not(Box<Condition>),
}

/// What a step does when its `if` is true (`then`) or false (`else`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepAction {
    /// Run the step.
    Execute,
    /// Do not run it; it counts as a success.
    Skip,
    /// Mark the step failed (its `onFailure` applies).
    Abort,
}

impl StepAction {
    /// AWSTOE's name.
    pub fn as_str(self) -> &'static str {
        match self {
            StepAction::Execute => "Execute",
            StepAction::Skip => "Skip",
            StepAction::Abort => "Abort",
        }
    }
}

/// A step's `if`: by default true runs the step and false skips it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepIf {
    /// The expression.
    pub condition: Condition,
    /// When true (default Execute).
    pub then: StepAction,
    /// When false (default Skip).
    pub otherwise: StepAction,
}

fn text(v: &Value, what: &str) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(
            super::action_inputs::scalars_as_text(&Value::Number(n.clone()))
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!("{what} must be a string or a number")),
    }
}

/// Parses a step's `if` (`then`/`else` beside the expression's operator).
pub fn parse_if(v: &Value) -> Result<StepIf, String> {
    let v = match v {
        Value::Array(items) if items.len() == 1 => &items[0],
        other => other,
    };
    let Value::Object(map) = v else {
        return Err("`if` must be a conditional expression (a map)".into());
    };
    let mut map = map.clone();
    let mut take = |key: &str, default| -> Result<StepAction, String> {
        match map.remove(key) {
            None => Ok(default),
            Some(Value::String(s)) => match s.as_str() {
                "Execute" => Ok(StepAction::Execute),
                "Skip" => Ok(StepAction::Skip),
                "Abort" => Ok(StepAction::Abort),
                _ => Err(format!(
                    "`{key}: {s}` is not a step action (Abort, Execute or Skip)"
                )),
            },
            Some(_) => Err(format!("`{key}` must be Abort, Execute or Skip")),
        }
    };
    let then = take("then", StepAction::Execute)?;
    let otherwise = take("else", StepAction::Skip)?;
    Ok(StepIf {
        condition: parse_map(&map, 0)?,
        then,
        otherwise,
    })
}

/// Parses a conditional expression (the inputs of `Assert`).
pub fn parse(v: &Value) -> Result<Condition, String> {
    match v {
        Value::Object(map) => parse_map(map, 0),
        _ => Err("a conditional expression must be a map with one operator".into()),
    }
}

fn parse_map(map: &Map<String, Value>, depth: usize) -> Result<Condition, String> {
    let ops: Vec<&String> = map.keys().filter(|k| k.as_str() != "value").collect();
    let [op] = ops.as_slice() else {
        return Err(format!(
            "a conditional expression needs exactly one operator, found {}",
            if ops.is_empty() {
                "none".to_string()
            } else {
                ops.iter()
                    .map(|o| format!("`{o}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
    };
    let arg = &map[op.as_str()];
    let value = map.get("value");
    if matches!(op.as_str(), "and" | "or" | "not") {
        if value.is_some() {
            return Err(format!("`{op}` takes no `value`"));
        }
        if depth + 1 > MAX_LOGICAL_DEPTH {
            return Err(format!(
                "logical operators are nested more than {MAX_LOGICAL_DEPTH} levels deep"
            ));
        }
        return parse_logical(op, arg, depth + 1);
    }
    let known = UNARY_OPERATORS
        .iter()
        .chain(BINARY_OPERATORS)
        .find(|o| **o == op.as_str());
    let Some(&name) = known else {
        let all = UNARY_OPERATORS
            .iter()
            .chain(BINARY_OPERATORS)
            .chain(&["and", "or", "not"])
            .copied();
        return Err(match crate::diagnostic::closest(op, all) {
            Some(h) => format!("unknown operator `{op}` (did you mean `{h}`?)"),
            None => format!("unknown operator `{op}`"),
        });
    };
    let operand = text(arg, &format!("`{op}`"))?;
    let binary = BINARY_OPERATORS.contains(&name);
    let value = match (binary, value) {
        (true, Some(v)) => Some(text(v, "`value`")?),
        (true, None) => return Err(format!("`{op}` needs a `value` to compare with")),
        (false, Some(_)) => return Err(format!("`{op}` takes no `value`")),
        (false, None) => None,
    };
    Ok(Condition::Compare {
        op: name,
        operand,
        value,
    })
}

fn parse_logical(op: &str, arg: &Value, depth: usize) -> Result<Condition, String> {
    let one = |v: &Value| match v {
        Value::Object(m) => parse_map(m, depth),
        _ => Err(format!(
            "each operand of `{op}` must be a conditional expression"
        )),
    };
    match (op, arg) {
        ("not", Value::Array(items)) if items.len() == 1 => {
            Ok(Condition::Not(Box::new(one(&items[0])?)))
        }
        ("not", v @ Value::Object(_)) => Ok(Condition::Not(Box::new(one(v)?))),
        ("not", _) => Err("`not` takes one conditional expression".into()),
        (_, Value::Array(items)) if !items.is_empty() => {
            let parts = items.iter().map(one).collect::<Result<Vec<_>, _>>()?;
            Ok(if op == "and" {
                Condition::And(parts)
            } else {
                Condition::Or(parts)
            })
        }
        _ => Err(format!("`{op}` takes a list of conditional expressions")),
    }
}

impl Condition {
    /// Every operand, for placeholder checks.
    pub fn strings(&self) -> Vec<&str> {
        match self {
            Condition::Compare { operand, value, .. } => {
                let mut v = vec![operand.as_str()];
                v.extend(value.as_deref());
                v
            }
            Condition::And(c) | Condition::Or(c) => c.iter().flat_map(|c| c.strings()).collect(),
            Condition::Not(c) => c.strings(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_nested_logic_with_then_and_else() {
        let i = parse_if(&json!({
            "and": [{"binaryExists": "bash"}, {"not": {"stringEquals": "a", "value": 1}}],
            "then": "Execute", "else": "Abort"
        }))
        .unwrap();
        assert_eq!(i.otherwise, StepAction::Abort);
        assert_eq!(
            i.condition,
            Condition::And(vec![
                Condition::Compare {
                    op: "binaryExists",
                    operand: "bash".into(),
                    value: None
                },
                Condition::Not(Box::new(Condition::Compare {
                    op: "stringEquals",
                    operand: "a".into(),
                    value: Some("1".into())
                })),
            ])
        );
    }

    #[test]
    fn depth_four_is_the_limit() {
        let leaf = json!({"fileExists": "/x"});
        let nest = |v: Value| json!({"not": v});
        let four = nest(nest(nest(nest(leaf.clone()))));
        assert!(parse(&four).is_ok());
        let err = parse(&nest(four)).unwrap_err();
        assert!(err.contains("more than 4 levels"), "{err}");
    }

    #[test]
    fn operator_mistakes_are_named() {
        assert!(
            parse(&json!({"stringEqual": "a", "value": "b"}))
                .unwrap_err()
                .contains("did you mean `stringEquals`")
        );
        assert!(
            parse(&json!({"stringEquals": "a"}))
                .unwrap_err()
                .contains("needs a `value`")
        );
        assert!(
            parse(&json!({"fileExists": "a", "value": "b"}))
                .unwrap_err()
                .contains("takes no `value`")
        );
        assert!(
            parse_if(&json!({"fileExists": "a", "then": "Run"}))
                .unwrap_err()
                .contains("not a step action")
        );
    }
}

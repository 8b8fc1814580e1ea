//! One tree for every source format: YAML and JSON (CloudFormation, CLI
//! JSON) are read from the YAML parser's events, so each node keeps its line
//! and its tag (`!Ref`, `!Sub`, `!GetAtt`); Terraform builds the same tree.
//! Keys are matched loosely (`ParentImage` = `parentImage` = `parent_image`)
//! so one mapping serves CloudFormation, the CLI/API and Terraform.

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

/// The most nodes one file may expand to (aliases included).
const NODE_BUDGET: usize = 200_000;

/// A value with the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Line in the source file.
    pub line: usize,
    /// The value.
    pub value: Value,
}

/// A source value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number, as written.
    Number(String),
    /// A string.
    String(String),
    /// A list.
    Seq(Vec<Node>),
    /// A mapping, in source order.
    Map(Vec<(String, Node)>),
    /// A YAML node with an application tag (`!Ref X`): tag without `!`.
    Tagged(String, Box<Node>),
    /// A reference to another resource of the same source (CloudFormation
    /// `Ref`/`GetAtt`, a Terraform resource attribute): its id.
    Ref(String),
    /// A value kiln could not evaluate, and why.
    Unresolved(String),
}

impl Node {
    /// A node on `line`.
    pub fn new(line: usize, value: Value) -> Node {
        Node { line, value }
    }

    /// The entry whose key matches one of `keys` (case, `_` and `-`
    /// ignored), with the key as written.
    pub fn entry(&self, keys: &[&str]) -> Option<(&str, &Node)> {
        let Value::Map(entries) = &self.value else {
            return None;
        };
        entries
            .iter()
            .find(|(k, _)| keys.iter().any(|want| same_key(k, want)))
            .map(|(k, v)| (k.as_str(), v))
    }

    /// The value under one of `keys`.
    pub fn get(&self, keys: &[&str]) -> Option<&Node> {
        self.entry(keys).map(|(_, v)| v)
    }

    /// The mapping's entries (empty for anything else).
    pub fn entries(&self) -> &[(String, Node)] {
        match &self.value {
            Value::Map(e) => e,
            _ => &[],
        }
    }

    /// A scalar as text (strings, numbers, booleans).
    pub fn as_text(&self) -> Option<String> {
        match &self.value {
            Value::String(s) | Value::Number(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A list's items; a single non-list value counts as a list of one
    /// (Terraform writes one nested block where CloudFormation writes a list).
    pub fn items(&self) -> Vec<&Node> {
        match &self.value {
            Value::Seq(items) => items.iter().collect(),
            Value::Null => Vec::new(),
            _ => vec![self],
        }
    }

    /// A mapping, or the only item of a one-item list (a Terraform block).
    pub fn object(&self) -> Option<&Node> {
        match &self.value {
            Value::Map(_) => Some(self),
            Value::Seq(items) if items.len() == 1 => items[0].object(),
            _ => None,
        }
    }
}

/// Keys compare without case, `_` or `-`.
pub fn same_key(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect::<String>()
    };
    norm(a) == norm(b)
}

/// Why a YAML or JSON file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// Line of the problem.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses the first document of a YAML or JSON text.
pub fn parse_yaml(text: &str) -> Result<Node, ParseError> {
    let mut b = Builder::default();
    for ev in Parser::new_from_str(text) {
        let (ev, span) = ev.map_err(|e| ParseError {
            line: e.marker().line(),
            message: e.info(),
        })?;
        if b.event(ev, span.start.line())? {
            break;
        }
    }
    b.root.ok_or(ParseError {
        line: 1,
        message: "the file holds no document".into(),
    })
}

/// Open collections while events stream in.
#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: Vec<(usize, Node)>,
    root: Option<Node>,
    count: usize,
}

struct Open {
    node: Node,
    anchor: usize,
    tag: Option<String>,
    /// The pending key and its line.
    key: Option<(String, usize)>,
}

impl Builder {
    /// Feeds one event; `true` when the first document is complete.
    fn event(&mut self, ev: Event<'_>, line: usize) -> Result<bool, ParseError> {
        self.count += 1;
        if self.count > NODE_BUDGET {
            return Err(ParseError {
                line,
                message: format!("more than {NODE_BUDGET} nodes"),
            });
        }
        let is_map = matches!(ev, Event::MappingStart(..));
        let (node, anchor) = match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag.and_then(|t| app_tag(t.handle(), t.suffix()));
                (tagged(tag, Node::new(line, scalar(&text, style))), anchor)
            }
            Event::SequenceStart(_, anchor, tag) | Event::MappingStart(_, anchor, tag) => {
                self.stack.push(Open {
                    node: Node::new(
                        line,
                        if is_map {
                            Value::Map(Vec::new())
                        } else {
                            Value::Seq(Vec::new())
                        },
                    ),
                    anchor,
                    tag: tag.and_then(|t| app_tag(t.handle(), t.suffix())),
                    key: None,
                });
                return Ok(false);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let open = self.stack.pop().expect("balanced events");
                (tagged(open.tag, open.node), open.anchor)
            }
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(a, _)| *a == id)
                    .map(|(_, n)| n.clone())
                    .ok_or_else(|| ParseError {
                        line,
                        message: "alias to an unknown anchor".into(),
                    })?;
                (node, 0)
            }
            Event::DocumentEnd => return Ok(self.root.is_some()),
            _ => return Ok(false),
        };
        if anchor != 0 {
            self.anchors.push((anchor, node.clone()));
        }
        self.attach(node, line)
    }

    fn attach(&mut self, node: Node, line: usize) -> Result<bool, ParseError> {
        let Some(parent) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(false);
        };
        match &mut parent.node.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match parent.key.take() {
                None => {
                    let key = node.as_text().ok_or_else(|| ParseError {
                        line,
                        message: "a mapping key must be a scalar".into(),
                    })?;
                    if entries.iter().any(|(k, _)| *k == key) {
                        return Err(ParseError {
                            line,
                            message: format!("duplicate key `{key}`"),
                        });
                    }
                    parent.key = Some((key, line));
                }
                // A field is where its key is written (a block value starts
                // on the next line).
                Some((key, key_line)) => entries.push((
                    key,
                    Node {
                        line: key_line,
                        ..node
                    },
                )),
            },
            _ => unreachable!("only collections are open"),
        }
        Ok(false)
    }
}

/// An application tag (`!Ref`) without its `!`; core tags (`!!str`) are none.
fn app_tag(handle: &str, suffix: &str) -> Option<String> {
    (handle == "!").then(|| suffix.to_string())
}

fn tagged(tag: Option<String>, node: Node) -> Node {
    match tag {
        Some(t) => Node::new(node.line, Value::Tagged(t, Box::new(node))),
        None => node,
    }
}

/// YAML 1.2 core schema for plain scalars; quoted scalars are strings.
fn scalar(text: &str, style: ScalarStyle) -> Value {
    if style != ScalarStyle::Plain {
        return Value::String(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        t if t.parse::<f64>().is_ok() && !t.starts_with('+') => Value::Number(t.to_string()),
        t => Value::String(t.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_keeps_lines_and_short_form_tags() {
        let n = parse_yaml("A:\n  B: !Ref Thing\n  C: !GetAtt [X, Arn]\n  D: \"1.0\"\n  E: 1.0\n")
            .unwrap();
        let a = n.get(&["a"]).unwrap();
        let b = a.get(&["b"]).unwrap();
        assert_eq!(b.line, 2);
        assert_eq!(
            b.value,
            Value::Tagged(
                "Ref".into(),
                Box::new(Node::new(2, Value::String("Thing".into())))
            )
        );
        assert!(
            matches!(&a.get(&["c"]).unwrap().value, Value::Tagged(t, inner)
            if t == "GetAtt" && matches!(inner.value, Value::Seq(_)))
        );
        assert_eq!(a.get(&["d"]).unwrap().value, Value::String("1.0".into()));
        assert_eq!(a.get(&["e"]).unwrap().value, Value::Number("1.0".into()));
    }

    #[test]
    fn json_is_read_with_lines() {
        let n = parse_yaml(
            "{\n  \"name\": \"x\",\n  \"components\": [\n    {\"componentArn\": \"a\"}\n  ]\n}\n",
        )
        .unwrap();
        let c = n.get(&["Components"]).unwrap().items();
        assert_eq!(c[0].get(&["component_arn"]).unwrap().line, 4);
    }

    #[test]
    fn duplicate_keys_and_bad_yaml_are_errors() {
        assert_eq!(parse_yaml("a: 1\na: 2\n").unwrap_err().line, 2);
        assert!(parse_yaml("a: [1\n").is_err());
    }
}

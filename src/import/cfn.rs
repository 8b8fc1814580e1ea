//! CloudFormation templates (YAML with `!Ref`/`!Sub`/`!GetAtt`/`!Join`
//! short forms, or JSON with `Ref`/`Fn::*`): the `AWS::ImageBuilder::*`
//! resources, with intrinsic functions evaluated where the template alone
//! decides them — a reference to another resource becomes [`Value::Ref`],
//! a parameter its `Default`, `!Sub`/`!Join` of literals a string. Pseudo
//! parameters stay verbatim inside strings (`${AWS::Region}`), so an ARN
//! still names its resource; anything else is [`Value::Unresolved`].

use std::collections::BTreeMap;

use super::node::{Node, Value};
use super::{ImportError, Kind, Note, Resource};

/// Template sections kiln reads.
const READ: &[&str] = &[
    "AWSTemplateFormatVersion",
    "Description",
    "Parameters",
    "Resources",
];

/// Reads a parsed template.
pub fn read(file: &str, root: &Node) -> Result<(Vec<Resource>, Vec<Note>), ImportError> {
    let mut notes = Vec::new();
    for (key, n) in root.entries() {
        if !READ.contains(&key.as_str()) {
            notes.push(note(
                file,
                n.line,
                key,
                "template section not used by a kiln project",
            ));
        }
    }
    let resources = root
        .get(&["Resources"])
        .ok_or_else(|| ImportError::Unrecognised {
            file: file.into(),
            why: "a CloudFormation template without `Resources`".into(),
        })?;
    let cx = Cx {
        params: root
            .get(&["Parameters"])
            .map(|p| {
                p.entries()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.get(&["Default"]).cloned()))
                    .collect()
            })
            .unwrap_or_default(),
        ids: resources.entries().iter().map(|(k, _)| k.clone()).collect(),
    };
    let mut out = Vec::new();
    for (id, res) in resources.entries() {
        let path = format!("Resources.{id}");
        let ty = res
            .get(&["Type"])
            .and_then(Node::as_text)
            .unwrap_or_default();
        let Some(kind) = kind_of(&ty) else {
            let why = format!("resource of type `{ty}` is not part of a kiln container pipeline");
            notes.push(note(file, res.line, &path, &why));
            continue;
        };
        for (key, n) in res.entries() {
            if key != "Type" && key != "Properties" {
                let why = match (key.as_str(), n.as_text()) {
                    ("Condition", Some(c)) => format!(
                        "the stack creates this resource only when condition `{c}` holds; kiln imports it unconditionally"
                    ),
                    _ => "resource attribute of the stack, not of the pipeline".into(),
                };
                notes.push(note(file, n.line, &format!("{path}.{key}"), &why));
            }
        }
        let props = res
            .get(&["Properties"])
            .map(|p| cx.resolve(p))
            .unwrap_or(Node::new(res.line, Value::Map(Vec::new())));
        out.push(Resource {
            file: file.into(),
            id: id.clone(),
            kind,
            props,
            path: format!("{path}.Properties"),
            arn: None,
        });
    }
    Ok((out, notes))
}

fn note(file: &str, line: usize, field: &str, why: &str) -> Note {
    Note {
        file: file.into(),
        line,
        field: field.into(),
        why: why.into(),
    }
}

/// The kiln kind of a CloudFormation resource type.
pub fn kind_of(ty: &str) -> Option<Kind> {
    Some(match ty {
        "AWS::ImageBuilder::ContainerRecipe" => Kind::ContainerRecipe,
        "AWS::ImageBuilder::Component" => Kind::Component,
        "AWS::ImageBuilder::ImagePipeline" => Kind::ImagePipeline,
        "AWS::ImageBuilder::DistributionConfiguration" => Kind::DistributionConfiguration,
        _ => return None,
    })
}

/// What intrinsic functions may refer to.
struct Cx {
    params: BTreeMap<String, Option<Node>>,
    ids: Vec<String>,
}

impl Cx {
    fn resolve(&self, n: &Node) -> Node {
        let value = match &n.value {
            Value::Tagged(tag, inner) => self.intrinsic(tag, inner),
            Value::Map(e) if e.len() == 1 && (e[0].0 == "Ref" || e[0].0.starts_with("Fn::")) => {
                let name = e[0].0.trim_start_matches("Fn::");
                self.intrinsic(name, &e[0].1)
            }
            Value::Map(e) => Value::Map(
                e.iter()
                    .map(|(k, v)| (k.clone(), self.resolve(v)))
                    .collect(),
            ),
            Value::Seq(items) => Value::Seq(items.iter().map(|v| self.resolve(v)).collect()),
            other => other.clone(),
        };
        Node::new(n.line, value)
    }

    fn intrinsic(&self, name: &str, arg: &Node) -> Value {
        match name {
            "Ref" => self.reference(&arg.as_text().unwrap_or_default()),
            "GetAtt" => {
                let target = match &arg.value {
                    Value::Seq(p) => p.first().and_then(Node::as_text),
                    _ => arg
                        .as_text()
                        .and_then(|t| t.split('.').next().map(str::to_string)),
                };
                match target {
                    Some(t) if self.ids.contains(&t) => Value::Ref(t),
                    t => Value::Unresolved(format!(
                        "`GetAtt` of `{}`, which is not a resource of this template",
                        t.unwrap_or_default()
                    )),
                }
            }
            "Sub" => self.sub(arg),
            "Join" => self.join(arg),
            other => Value::Unresolved(format!("`{other}` is evaluated only by CloudFormation")),
        }
    }

    fn reference(&self, name: &str) -> Value {
        if self.ids.iter().any(|i| i == name) {
            return Value::Ref(name.into());
        }
        match self.params.get(name) {
            Some(Some(default)) => self.resolve(default).value,
            Some(None) => Value::Unresolved(format!("parameter `{name}` has no `Default`")),
            None if name.starts_with("AWS::") => {
                Value::Unresolved(format!("`{name}` is known only when the stack is deployed"))
            }
            None => Value::Unresolved(format!("`{name}` is neither a parameter nor a resource")),
        }
    }

    /// `!Sub "text"` or `!Sub [text, {vars}]`.
    fn sub(&self, arg: &Node) -> Value {
        let (text, vars) = match &arg.value {
            Value::Seq(p) if p.len() == 2 => (p[0].as_text(), Some(self.resolve(&p[1]))),
            _ => (arg.as_text(), None),
        };
        let Some(text) = text else {
            return Value::Unresolved("`Sub` without a string".into());
        };
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let Some(end) = rest[start..].find('}') else {
                return Value::Unresolved("`Sub` with an unclosed `${`".into());
            };
            let var = &rest[start + 2..start + end];
            rest = &rest[start + end + 1..];
            if let Some(lit) = var.strip_prefix('!') {
                out.push_str(&format!("${{{lit}}}"));
                continue;
            }
            let from_vars = vars
                .as_ref()
                .and_then(|v| v.get(&[var]))
                .map(|n| n.value.clone());
            let value =
                from_vars.unwrap_or_else(|| self.reference(var.split('.').next().unwrap_or(var)));
            match value {
                Value::Ref(id) if out.is_empty() && rest.is_empty() => return Value::Ref(id),
                _ if var.starts_with("AWS::") => out.push_str(&format!("${{{var}}}")),
                v => match Node::new(0, v).as_text() {
                    Some(t) => out.push_str(&t),
                    None => {
                        return Value::Unresolved(format!(
                            "`Sub` uses `${{{var}}}`, known only when the stack is deployed"
                        ));
                    }
                },
            }
        }
        out.push_str(rest);
        Value::String(out)
    }

    /// `!Join [delimiter, [parts]]` of parts that resolve to text.
    fn join(&self, arg: &Node) -> Value {
        let Value::Seq(p) = &arg.value else {
            return Value::Unresolved("`Join` without `[delimiter, [parts]]`".into());
        };
        let (Some(delim), Some(parts)) = (p.first().and_then(Node::as_text), p.get(1)) else {
            return Value::Unresolved("`Join` without `[delimiter, [parts]]`".into());
        };
        let texts: Option<Vec<String>> = parts
            .items()
            .iter()
            .map(|n| self.resolve(n).as_text())
            .collect();
        match texts {
            Some(t) => Value::String(t.join(&delim)),
            None => {
                Value::Unresolved("`Join` of values known only when the stack is deployed".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::node::parse_yaml;
    use super::*;

    const T: &str = "AWSTemplateFormatVersion: '2010-09-09'
Parameters:
  Tag:
    Type: String
    Default: v1
Resources:
  Comp:
    Type: AWS::ImageBuilder::Component
    Condition: IsProd
    Properties:
      Name: c
  Recipe:
    Type: AWS::ImageBuilder::ContainerRecipe
    DependsOn: Comp
    Properties:
      A: !Ref Comp
      B: !GetAtt Comp.Arn
      C: !Sub 'arn:${AWS::Partition}:imagebuilder:${AWS::Region}:aws:component/update-linux/x.x.x'
      D: !Sub '${Tag}-x'
      E: {'Fn::Join': ['-', [a, !Ref Tag]]}
      F: !Ref AWS::AccountId
      G: !If [Cond, a, b]
  Role:
    Type: AWS::IAM::Role
Outputs: {}
";

    #[test]
    fn intrinsics_are_evaluated_where_the_template_decides_them() {
        let (res, notes) = read("t.yaml", &parse_yaml(T).unwrap()).unwrap();
        let r = &res[1];
        assert_eq!(r.kind, Kind::ContainerRecipe);
        let v = |k: &str| r.props.get(&[k]).unwrap().value.clone();
        assert_eq!(v("A"), Value::Ref("Comp".into()));
        assert_eq!(v("B"), Value::Ref("Comp".into()));
        assert_eq!(
            v("C"),
            Value::String("arn:${AWS::Partition}:imagebuilder:${AWS::Region}:aws:component/update-linux/x.x.x".into())
        );
        assert_eq!(v("D"), Value::String("v1-x".into()));
        assert_eq!(v("E"), Value::String("a-v1".into()));
        assert!(matches!(v("F"), Value::Unresolved(m) if m.contains("deployed")));
        assert!(matches!(v("G"), Value::Unresolved(m) if m.contains("`If`")));
        let fields: Vec<&str> = notes.iter().map(|n| n.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "Outputs",
                "Resources.Comp.Condition",
                "Resources.Recipe.DependsOn",
                "Resources.Role"
            ]
        );
        assert!(notes[1].why.contains("only when condition `IsProd` holds"));
        assert_eq!(notes[2].line, 14);
    }
}

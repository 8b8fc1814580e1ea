//! Terraform (`*.tf`): the `aws_imagebuilder_*` resources, parsed with
//! hcl-edit (for line numbers) and evaluated with hcl-rs against what the
//! file alone decides: literals, heredocs, `local.*` (from `locals` blocks)
//! and `var.*` defaults. A reference to another resource
//! (`aws_imagebuilder_component.x.arn`) becomes [`Value::Ref`]; anything
//! else (functions, data sources, modules) is [`Value::Unresolved`] with
//! hcl-rs's reason. Nested blocks become lists of maps, so the mapping sees
//! `component { … }` like CloudFormation's `Components: [ … ]`.
//! `file(PATH)` reads a file beside the `.tf` file (`path.module` is that
//! folder; absolute paths and `..` are refused), as modules keep component
//! documents in their own files.

use std::cell::RefCell;
use std::path::{Component, Path, PathBuf};

use hcl::edit::Span as _;
use hcl::edit::structure::{Block, Body, Structure};
use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};

use super::node::{Node, Value};
use super::{ImportError, Kind, Note, Resource};

/// Marks a resource reference inside evaluated values.
const REF: &str = "\u{1}kiln-ref:";

/// Resource meta-arguments and blocks that are Terraform's, not Image Builder's.
const META: &[&str] = &[
    "count",
    "for_each",
    "provider",
    "depends_on",
    "lifecycle",
    "timeouts",
];

/// The largest file `file()` reads.
const FILE_LIMIT: u64 = 1024 * 1024;

thread_local! {
    /// The folder `file()` reads from while one `.tf` file is evaluated
    /// (hcl-rs functions are plain `fn`s and cannot capture it).
    static MODULE_DIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// Terraform's `file(PATH)`, confined to the `.tf` file's folder.
fn file_func(args: FuncArgs) -> Result<hcl::Value, String> {
    let rel = args[0].as_str().unwrap_or_default().to_string();
    let escapes = Path::new(&rel)
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if escapes {
        return Err(format!(
            "file(\"{rel}\"): only files beside the .tf file are read"
        ));
    }
    let Some(dir) = MODULE_DIR.with(|d| d.borrow().clone()) else {
        return Err(format!("file(\"{rel}\"): no folder to read from"));
    };
    let path = dir.join(&rel);
    let len = std::fs::metadata(&path)
        .map_err(|e| format!("file(\"{rel}\"): {e}"))?
        .len();
    if len > FILE_LIMIT {
        return Err(format!("file(\"{rel}\"): larger than 1 MiB"));
    }
    std::fs::read_to_string(&path)
        .map(hcl::Value::String)
        .map_err(|e| format!("file(\"{rel}\"): {e}"))
}

/// Reads a Terraform file; `file()` reads beside `path` (the file's own path).
pub fn read_path(
    path: &Path,
    file: &str,
    text: &str,
) -> Result<(Vec<Resource>, Vec<Note>), ImportError> {
    let dir = path.parent().map(Path::to_path_buf);
    MODULE_DIR.with(|d| *d.borrow_mut() = dir);
    let result = read(file, text);
    MODULE_DIR.with(|d| *d.borrow_mut() = None);
    result
}

/// Reads a Terraform file (`file()` refuses everything without a folder).
pub fn read(file: &str, text: &str) -> Result<(Vec<Resource>, Vec<Note>), ImportError> {
    let body = hcl::edit::parser::parse_body(text).map_err(|e| ImportError::Parse {
        file: file.into(),
        line: e.location().line(),
        message: e.message().to_string(),
    })?;
    let src = Src { file, text };
    let ctx = context(&body);
    let mut resources = Vec::new();
    let mut notes = Vec::new();
    for s in body.iter() {
        let Structure::Block(b) = s else { continue };
        let labels: Vec<&str> = b.labels.iter().map(|l| l.as_str()).collect();
        let ident = b.ident.as_str();
        match (ident, labels.as_slice()) {
            ("resource", [ty, name]) => match kind_of(ty) {
                Some(kind) => resources.push(src.resource(b, kind, ty, name, &ctx, &mut notes)),
                None => notes.push(src.note(
                    b,
                    &format!("resource.{ty}.{name}"),
                    "not part of a kiln container pipeline",
                )),
            },
            ("locals" | "variable", _) => {}
            _ => notes.push(src.note(b, ident, "not part of a kiln container pipeline")),
        }
    }
    Ok((resources, notes))
}

/// The kiln kind of a Terraform resource type.
pub fn kind_of(ty: &str) -> Option<Kind> {
    Some(match ty {
        "aws_imagebuilder_container_recipe" => Kind::ContainerRecipe,
        "aws_imagebuilder_component" => Kind::Component,
        "aws_imagebuilder_image_pipeline" => Kind::ImagePipeline,
        "aws_imagebuilder_distribution_configuration" => Kind::DistributionConfiguration,
        _ => return None,
    })
}

struct Src<'a> {
    file: &'a str,
    text: &'a str,
}

impl Src<'_> {
    fn line(&self, span: Option<std::ops::Range<usize>>) -> usize {
        span.map_or(1, |r| {
            self.text[..r.start.min(self.text.len())]
                .matches('\n')
                .count()
                + 1
        })
    }

    fn note(&self, b: &Block, field: &str, why: &str) -> Note {
        Note {
            file: self.file.into(),
            line: self.line(b.span()),
            field: field.into(),
            why: why.into(),
        }
    }

    fn resource(
        &self,
        b: &Block,
        kind: Kind,
        ty: &str,
        name: &str,
        ctx: &Context,
        notes: &mut Vec<Note>,
    ) -> Resource {
        let path = format!("resource.{ty}.{name}");
        let props = self.body(&b.body, ctx, &path, notes);
        Resource {
            file: self.file.into(),
            id: format!("{ty}.{name}"),
            kind,
            props: Node::new(self.line(b.span()), props),
            path,
            arn: None,
        }
    }

    /// A block body as a map; nested blocks as lists of maps.
    fn body(&self, body: &Body, ctx: &Context, path: &str, notes: &mut Vec<Note>) -> Value {
        let mut entries: Vec<(String, Node)> = Vec::new();
        for s in body.iter() {
            let (key, node) = match s {
                Structure::Attribute(a) => {
                    let line = self.line(a.span());
                    (
                        a.key.as_str().to_string(),
                        Node::new(line, self.eval(&a.value, ctx)),
                    )
                }
                Structure::Block(b) => {
                    let line = self.line(b.span());
                    let inner =
                        self.body(&b.body, ctx, &format!("{path}.{}", b.ident.as_str()), notes);
                    (b.ident.as_str().to_string(), Node::new(line, inner))
                }
            };
            if META.contains(&key.as_str()) {
                notes.push(Note {
                    file: self.file.into(),
                    line: node.line,
                    field: format!("{path}.{key}"),
                    why: "a Terraform meta-argument".into(),
                });
                continue;
            }
            let is_block = matches!(s, Structure::Block(_));
            let pos = entries.iter().position(|(k, _)| *k == key);
            match (pos, is_block) {
                (Some(i), true) => {
                    if let Value::Seq(items) = &mut entries[i].1.value {
                        items.push(node);
                    }
                }
                (None, true) => entries.push((key, Node::new(node.line, Value::Seq(vec![node])))),
                _ => entries.push((key, node)),
            }
        }
        Value::Map(entries)
    }

    fn eval(&self, expr: &hcl::edit::expr::Expression, ctx: &Context) -> Value {
        let shown = expr
            .span()
            .and_then(|r| self.text.get(r))
            .unwrap_or("expression")
            .trim()
            .to_string();
        match hcl::Expression::from(expr.clone()).evaluate(ctx) {
            Ok(v) => from_hcl(v),
            Err(e) => Value::Unresolved(format!(
                "`{}` cannot be evaluated without Terraform: {e}",
                first_line(&shown)
            )),
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// An evaluated value as a node value; resource markers become references.
fn from_hcl(v: hcl::Value) -> Value {
    match v {
        hcl::Value::Null => Value::Null,
        hcl::Value::Bool(b) => Value::Bool(b),
        hcl::Value::Number(n) => Value::Number(n.to_string()),
        hcl::Value::String(s) => match s.strip_prefix(REF) {
            Some(id) if !id.contains(REF) => Value::Ref(id.to_string()),
            _ if s.contains(REF) => Value::Unresolved(
                "a resource attribute inside a string is known only when applied".into(),
            ),
            _ => Value::String(s),
        },
        hcl::Value::Array(items) => Value::Seq(
            items
                .into_iter()
                .map(|v| Node::new(0, from_hcl(v)))
                .collect(),
        ),
        hcl::Value::Object(map) => Value::Map(
            map.into_iter()
                .map(|(k, v)| (k, Node::new(0, from_hcl(v))))
                .collect(),
        ),
    }
}

/// Variables the file decides: `var.*` defaults, `local.*`, and a marker
/// for every resource's `arn`/`id`.
fn context(body: &Body) -> Context<'static> {
    let mut refs: hcl::Map<String, hcl::Value> = hcl::Map::new();
    let mut vars: hcl::Map<String, hcl::Value> = hcl::Map::new();
    let mut local_exprs = Vec::new();
    for s in body.iter() {
        let Structure::Block(b) = s else { continue };
        let labels: Vec<&str> = b.labels.iter().map(|l| l.as_str()).collect();
        match (b.ident.as_str(), labels.as_slice()) {
            ("resource", [ty, name]) => {
                let marker = hcl::Value::String(format!("{REF}{ty}.{name}"));
                let attrs: hcl::Map<String, hcl::Value> = [
                    ("arn".to_string(), marker.clone()),
                    ("id".to_string(), marker),
                ]
                .into_iter()
                .collect();
                let by_type = refs
                    .entry(ty.to_string())
                    .or_insert_with(|| hcl::Value::Object(hcl::Map::new()));
                if let hcl::Value::Object(m) = by_type {
                    m.insert(name.to_string(), hcl::Value::Object(attrs));
                }
            }
            ("variable", [name]) => {
                let default = b
                    .body
                    .iter()
                    .find(|s| matches!(s, Structure::Attribute(a) if a.key.as_str() == "default"));
                if let Some(Structure::Attribute(a)) = default
                    && let Ok(v) = hcl::Expression::from(a.value.clone()).evaluate(&Context::new())
                {
                    vars.insert(name.to_string(), v);
                }
            }
            ("locals", []) => {
                for s in b.body.iter() {
                    if let Structure::Attribute(a) = s {
                        local_exprs.push((a.key.as_str().to_string(), a.value.clone()));
                    }
                }
            }
            _ => {}
        }
    }
    let mut ctx = Context::new();
    ctx.declare_func("file", FuncDef::new(file_func, [ParamType::String]));
    let here: hcl::Map<String, hcl::Value> = ["module", "root", "cwd"]
        .into_iter()
        .map(|k| (k.to_string(), hcl::Value::String(".".into())))
        .collect();
    ctx.declare_var("path", hcl::Value::Object(here));
    for (ty, v) in refs {
        ctx.declare_var(ty, v);
    }
    ctx.declare_var("var", hcl::Value::Object(vars));
    // Locals may use each other in any order: evaluate until nothing changes.
    let mut locals: hcl::Map<String, hcl::Value> = hcl::Map::new();
    for _ in 0..=local_exprs.len() {
        ctx.declare_var("local", hcl::Value::Object(locals.clone()));
        let before = locals.len();
        for (k, e) in &local_exprs {
            if !locals.contains_key(k)
                && let Ok(v) = hcl::Expression::from(e.clone()).evaluate(&ctx)
            {
                locals.insert(k.clone(), v);
            }
        }
        if locals.len() == before {
            break;
        }
    }
    ctx.declare_var("local", hcl::Value::Object(locals));
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    const TF: &str = r#"locals {
  repo = "${local.prefix}/web"
  prefix = "team"
}
variable "tz" {
  default = "Europe/Berlin"
}
resource "aws_imagebuilder_component" "hello" {
  name     = "hello"
  version  = "1.0.0"
  platform = "Linux"
  data     = <<-EOT
    name: hello
  EOT
}
resource "aws_imagebuilder_container_recipe" "web" {
  name = "web"
  component {
    component_arn = aws_imagebuilder_component.hello.arn
  }
  component {
    component_arn = data.aws_imagebuilder_component.x.arn
  }
  target_repository {
    repository_name = local.repo
    service         = "ECR"
  }
  working_directory = var.tz
  lifecycle {
    create_before_destroy = true
  }
}
provider "aws" {}
"#;

    #[test]
    fn resources_locals_variables_and_references() {
        let (res, notes) = read("main.tf", TF).unwrap();
        assert_eq!(res.len(), 2);
        let c = &res[0];
        assert_eq!(c.kind, Kind::Component);
        assert_eq!(
            c.props.get(&["data"]).unwrap().as_text().unwrap(),
            "name: hello\n"
        );
        let r = &res[1];
        assert_eq!(r.id, "aws_imagebuilder_container_recipe.web");
        assert_eq!(r.props.line, 16);
        let comps = r.props.get(&["components", "component"]).unwrap().items();
        assert_eq!(comps.len(), 2);
        assert_eq!(
            comps[0].get(&["componentArn"]).unwrap().value,
            Value::Ref("aws_imagebuilder_component.hello".into())
        );
        let unresolved = comps[1].get(&["componentArn"]).unwrap();
        assert_eq!(unresolved.line, 22);
        assert!(
            matches!(&unresolved.value, Value::Unresolved(m) if m.contains("data.aws_imagebuilder_component.x.arn")),
            "{unresolved:?}"
        );
        let repo = r
            .props
            .get(&["targetRepository"])
            .unwrap()
            .object()
            .unwrap();
        assert_eq!(
            repo.get(&["repositoryName"]).unwrap().as_text().unwrap(),
            "team/web"
        );
        assert_eq!(
            r.props
                .get(&["workingDirectory"])
                .unwrap()
                .as_text()
                .unwrap(),
            "Europe/Berlin"
        );
        let fields: Vec<String> = notes
            .iter()
            .map(|n| format!("{}:{}", n.line, n.field))
            .collect();
        assert_eq!(
            fields,
            [
                "29:resource.aws_imagebuilder_container_recipe.web.lifecycle",
                "33:provider"
            ]
        );
    }

    #[test]
    fn file_reads_beside_the_tf_file_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("comp.yaml"), "name: c\n").unwrap();
        let tf = "resource \"aws_imagebuilder_component\" \"c\" {\n  data = file(\"${path.module}/comp.yaml\")\n  uri = file(\"../secret\")\n}\n";
        let path = dir.path().join("main.tf");
        let (res, _) = read_path(&path, "main.tf", tf).unwrap();
        assert_eq!(
            res[0].props.get(&["data"]).unwrap().as_text().unwrap(),
            "name: c\n"
        );
        let uri = &res[0].props.get(&["uri"]).unwrap().value;
        assert!(
            matches!(uri, Value::Unresolved(m) if m.contains("only files beside the .tf file")),
            "{uri:?}"
        );
        let (res, _) = read("main.tf", tf).unwrap();
        assert!(matches!(
            &res[0].props.get(&["data"]).unwrap().value,
            Value::Unresolved(_)
        ));
    }
}

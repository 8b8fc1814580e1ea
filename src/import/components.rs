//! Components: imported `Component` resources become
//! `components/NAME.yaml` with their `data` unchanged (`NAME-X_Y_Z.yaml`
//! when one import holds several versions of a name); component references
//! resolve to those, to the project's `components/NAME-X_Y_Z.yaml` (version
//! selectors pick the highest match), or to AWS-managed components that
//! make sense in a container (`update-linux` → an UpdateOS step). Every
//! other AWS-managed component is refused by name.

use semver::Version;

use super::arn::Arn;
use super::mapping::{Mapper, sanitize};
use super::node::{Node, Value};
use super::versions;
use super::{Kind, Resource};

/// The document written for AWS's `update-linux`.
const UPDATE_LINUX: &str = "# Written by `kiln import` for the AWS-managed component `update-linux`:\n\
# update the image's OS packages with AWSTOE's UpdateOS action.\n\
name: update-linux\n\
description: Updates the OS packages (AWS-managed update-linux, mapped by kiln import).\n\
schemaVersion: 1.0\n\
phases:\n  - name: build\n    steps:\n      - name: UpdateOS\n        action: UpdateOS\n";

/// An imported component.
#[derive(Debug, Clone)]
pub struct Imported {
    /// Resource id in its source.
    pub id: String,
    /// Its `name`.
    pub name: String,
    /// Its version, when stated.
    pub version: Option<Version>,
    /// The file stem it is written under.
    pub stem: String,
}

impl Mapper<'_> {
    /// Writes every `Component` resource; returns what was imported.
    pub fn components(&mut self) -> Vec<Imported> {
        let res: Vec<&Resource> = self.of(Kind::Component);
        let named: Vec<(usize, String, Option<Version>)> = res
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let name = self.text(r, &["name"])?;
                let version = self
                    .text(r, &["version", "semanticVersion"])
                    .and_then(|v| Version::parse(&v).ok());
                Some((i, name, version))
            })
            .collect();
        let mut out = Vec::new();
        for (i, name, version) in &named {
            let r = res[*i];
            let several = named.iter().filter(|(_, n, _)| n == name).count() > 1;
            let stem = match (several, version) {
                (true, Some(v)) => versions::stem(&sanitize(name), v),
                _ => sanitize(name),
            };
            if self.component_doc(r, &stem) {
                out.push(Imported {
                    id: r.id.clone(),
                    name: name.clone(),
                    version: version.clone(),
                    stem,
                });
            }
        }
        out
    }

    /// Writes one component's `data`; `false` when refused.
    fn component_doc(&mut self, r: &Resource, stem: &str) -> bool {
        self.consume(
            r,
            &[
                "name",
                "version",
                "semanticVersion",
                "data",
                "platform",
                "uri",
            ],
        );
        if let Some(p) = self.text(r, &["platform"])
            && p != "Linux"
        {
            self.refuse(
                r,
                "platform",
                &format!("platform `{p}`: kiln builds Linux containers"),
            );
            return false;
        }
        if r.props.get(&["uri"]).is_some() {
            let why = "kiln reads component documents from the project, not from S3: put the document in `data`";
            self.refuse(r, "uri", why);
            return false;
        }
        let Some(data) = self.text(r, &["data"]) else {
            self.refuse(r, "data", "a component needs its document in `data`");
            return false;
        };
        self.file(format!("components/{stem}.yaml"), data);
        self.plan.components.push(stem.to_string());
        self.mapped(format!(
            "component `{}` → components/{stem}.yaml (data unchanged)",
            r.id
        ));
        true
    }

    /// The file stem a component reference resolves to, or `None` (refused).
    pub fn component_ref(
        &mut self,
        r: &Resource,
        field: &str,
        n: &Node,
        imported: &[Imported],
    ) -> Option<String> {
        match &n.value {
            Value::Ref(id) => match imported.iter().find(|c| &c.id == id) {
                Some(c) => Some(c.stem.clone()),
                None => {
                    self.refuse_at(
                        r,
                        field,
                        n.line,
                        &format!("`{id}` is not an imported component"),
                    );
                    None
                }
            },
            Value::Unresolved(why) => {
                self.refuse_at(r, field, n.line, why);
                None
            }
            _ => {
                let text = n.as_text().unwrap_or_default();
                match Arn::parse(&text).filter(|a| a.kind == "component") {
                    Some(arn) if arn.is_aws_managed() => self.managed(r, field, n.line, &arn),
                    Some(arn) => self.by_version(r, field, n.line, &arn, imported),
                    None => {
                        self.refuse_at(
                            r,
                            field,
                            n.line,
                            &format!("`{text}` is not an Image Builder component ARN"),
                        );
                        None
                    }
                }
            }
        }
    }

    fn managed(&mut self, r: &Resource, field: &str, line: usize, arn: &Arn) -> Option<String> {
        if arn.name != "update-linux" {
            let why = format!(
                "AWS-managed component `{}` has no kiln equivalent (only `update-linux` maps, to UpdateOS): write a component document for what it does",
                arn.name
            );
            self.refuse_at(r, field, line, &why);
            return None;
        }
        self.file("components/update-linux.yaml".into(), UPDATE_LINUX.into());
        if !self.plan.components.iter().any(|c| c == "update-linux") {
            self.plan.components.push("update-linux".into());
        }
        self.mapped("AWS-managed `update-linux` → components/update-linux.yaml (UpdateOS)".into());
        Some("update-linux".into())
    }

    fn by_version(
        &mut self,
        r: &Resource,
        field: &str,
        line: usize,
        arn: &Arn,
        imported: &[Imported],
    ) -> Option<String> {
        let selector = arn.version.clone().unwrap_or_else(|| "x.x.x".into());
        if !versions::valid_selector(&selector) {
            self.refuse_at(
                r,
                field,
                line,
                &format!("version `{selector}` is not `X.Y.Z` or a selector such as `1.x.x`"),
            );
            return None;
        }
        let mut candidates: Vec<(Version, String)> = imported
            .iter()
            .filter(|c| c.name == arn.name)
            .filter_map(|c| Some((c.version.clone()?, c.stem.clone())))
            .collect();
        candidates.extend(versions::local_versions(self.project, &sanitize(&arn.name)));
        match versions::highest(&selector, &candidates) {
            Some((v, stem)) => {
                let stem = stem.clone();
                self.mapped(format!(
                    "component `{}/{selector}` → {stem} (version {v})",
                    arn.name
                ));
                Some(stem)
            }
            None => {
                candidates.sort();
                let have: Vec<String> = candidates.iter().map(|(v, _)| v.to_string()).collect();
                let why = format!(
                    "no version of component `{}` matching `{selector}` is imported or in components/ (have: {})",
                    arn.name,
                    if have.is_empty() {
                        "none".into()
                    } else {
                        have.join(", ")
                    }
                );
                self.refuse_at(r, field, line, &why);
                None
            }
        }
    }
}

//! The pipeline side of the mapping: the image pipeline's schedule becomes
//! the recipe's `schedule` (checked by `crate::schedule`, never rewritten),
//! and its distribution configuration (or the recipe's `targetRepository`
//! in `--region`) becomes ECR targets and tags.

use super::arn::Arn;
use super::mapping::{Mapper, RecipeYaml, q};
use super::node::{Node, Value, same_key};
use super::{Kind, Note, Resource};
use crate::schedule::{StartCondition, parse_cron};

impl<'a> Mapper<'a> {
    /// The pipeline's schedule as the recipe's `schedule` section.
    pub(super) fn schedule(&mut self, p: &Resource, y: &mut RecipeYaml) {
        self.consume(p, &["schedule", "status"]);
        if let Some(s) = self.text(p, &["status"]).filter(|s| s == "DISABLED") {
            let why = format!(
                "status {s}: the schedule is not written (a kiln recipe without a schedule runs only when triggered)"
            );
            self.note(p, "status", p.props.line, &why);
            return;
        }
        let Some((key, s)) = p.props.entry(&["schedule"]) else {
            return;
        };
        let Some(s) = s.object() else {
            return self.refuse(p, key, "a schedule is a mapping");
        };
        let sched = Resource {
            props: s.clone(),
            path: p.field(key),
            ..p.clone()
        };
        let Some(expr) = self.text(&sched, &["scheduleExpression"]) else {
            return;
        };
        if let Err(e) = parse_cron(&expr) {
            let why = format!("`{expr}`: {e} ({})", e.hint());
            return self.refuse(&sched, "scheduleExpression", &why);
        }
        let tz = self.text(&sched, &["timezone"]);
        let cond = self.text(&sched, &["pipelineExecutionStartCondition"]);
        let cond = match cond.as_deref().map(StartCondition::parse) {
            None => StartCondition::ExpressionMatchAndDependencyUpdatesAvailable,
            Some(Some(c)) => c,
            Some(None) => {
                return self.refuse(
                    &sched,
                    "pipelineExecutionStartCondition",
                    "not a start condition",
                );
            }
        };
        y.raw(format!("schedule:\n  cron: {}\n", q(&expr)));
        if let Some(tz) = tz {
            y.raw(format!("  timezone: {}\n", q(&tz)));
        }
        y.raw(format!("  startCondition: {}\n", cond.as_str()));
        for (k, n) in s.entries() {
            if ![
                "scheduleExpression",
                "timezone",
                "pipelineExecutionStartCondition",
            ]
            .iter()
            .any(|w| same_key(k, w))
            {
                self.note(&sched, k, n.line, "kiln has no equivalent");
            }
        }
    }

    /// ECR targets and tags from the pipeline's distribution configuration,
    /// else from the recipe's `targetRepository` in `--region`.
    pub(super) fn distribution(
        &mut self,
        r: &Resource,
        pipeline: Option<&'a Resource>,
        y: &mut RecipeYaml,
    ) {
        self.consume(r, &["targetRepository"]);
        let dist = pipeline.and_then(|p| {
            self.consume(p, &["distributionConfigurationArn"]);
            let n = p.props.get(&["distributionConfigurationArn"])?;
            self.of(Kind::DistributionConfiguration)
                .into_iter()
                .find(|d| match &n.value {
                    Value::Ref(id) => *id == d.id,
                    Value::String(s) => {
                        Arn::parse(s).is_some_and(|a| a.name == d.id) || d.arn.as_deref() == Some(s)
                    }
                    _ => false,
                })
        });
        let (mut targets, mut tags) = (Vec::new(), Vec::new());
        if let Some(d) = dist {
            self.dist_targets(d, &mut targets, &mut tags);
        } else if let Some(repo) = r.props.get(&["targetRepository"]).and_then(Node::object) {
            let Some(repo) = repo.get(&["repositoryName"]).and_then(Node::as_text) else {
                return self.refuse(r, "targetRepository", "needs a literal repositoryName");
            };
            match self.opts.region.clone() {
                Some(region) => {
                    self.mapped(format!(
                        "targetRepository `{repo}` → ECR target in {region} (--region)"
                    ));
                    targets.push((region, repo));
                }
                None => self.refuse(
                    r,
                    "targetRepository",
                    "the ECR region is not in the source: pass --region",
                ),
            }
        }
        if targets.is_empty() {
            return;
        }
        let mut out = String::from("distribute:\n");
        if !tags.is_empty() {
            out.push_str("  tags:\n");
            for t in &tags {
                out.push_str(&format!("    - {}\n", q(t)));
            }
        }
        out.push_str("  targets:\n");
        for (region, repo) in &targets {
            out.push_str(&format!(
                "    - ecr:\n        region: {}\n        repository: {}\n",
                q(region),
                q(repo)
            ));
        }
        y.raw(out);
    }

    fn dist_targets(
        &mut self,
        d: &Resource,
        targets: &mut Vec<(String, String)>,
        tags: &mut Vec<String>,
    ) {
        self.consume(d, &["name", "distributions", "distribution"]);
        self.mapped(format!(
            "distribution configuration `{}` → distribute targets",
            d.id
        ));
        let Some((key, list)) = d.props.entry(&["distributions", "distribution"]) else {
            return;
        };
        for (i, entry) in list.items().into_iter().enumerate() {
            let field = d.field(&format!("{key}[{i}]"));
            let region = entry
                .get(&["region"])
                .and_then(Node::as_text)
                .unwrap_or_default();
            for (k, n) in entry.entries() {
                let known = ["region", "containerDistributionConfiguration"]
                    .iter()
                    .any(|w| same_key(k, w));
                if !known {
                    self.plan.notes.push(Note {
                        file: d.file.clone(),
                        line: n.line,
                        field: format!("{field}.{k}"),
                        why: "kiln distributes container images only".into(),
                    });
                }
            }
            let Some(c) = entry
                .get(&["containerDistributionConfiguration"])
                .and_then(Node::object)
            else {
                continue;
            };
            for (k, n) in c.entries() {
                if !["targetRepository", "containerTags"]
                    .iter()
                    .any(|w| same_key(k, w))
                {
                    self.plan.notes.push(Note {
                        file: d.file.clone(),
                        line: n.line,
                        field: format!("{field}.containerDistributionConfiguration.{k}"),
                        why: "kiln has no equivalent".into(),
                    });
                }
            }
            let repo = c.get(&["targetRepository"]).and_then(Node::object);
            let service = repo
                .and_then(|t| t.get(&["service"]))
                .and_then(Node::as_text);
            if service.as_deref().is_some_and(|s| s != "ECR") {
                self.refused.push(Note {
                    file: d.file.clone(),
                    line: c.line,
                    field: format!("{field}.targetRepository.service"),
                    why: "only ECR targets exist in Image Builder and kiln".into(),
                });
            }
            if let Some(name) = repo
                .and_then(|t| t.get(&["repositoryName"]))
                .and_then(Node::as_text)
                && !targets.contains(&(region.clone(), name.clone()))
            {
                targets.push((region.clone(), name));
            }
            for t in c
                .get(&["containerTags"])
                .map(Node::items)
                .unwrap_or_default()
            {
                let line = t.line;
                if let Some(t) = t.as_text().filter(|t| !tags.contains(t)) {
                    let why = format!(
                        "container tag `{t}` is fixed: kiln never moves a tag, so only the first build can push it"
                    );
                    if !t.contains("{{") {
                        self.plan.notes.push(Note {
                            file: d.file.clone(),
                            line,
                            field: format!("{field}.containerTags"),
                            why,
                        });
                    }
                    tags.push(t);
                }
            }
        }
    }
}

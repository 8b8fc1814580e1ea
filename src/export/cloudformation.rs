//! Spells a [`Pipeline`] as a CloudFormation template (YAML): one
//! `AWS::ImageBuilder::Component` per component, the `ContainerRecipe`, an
//! `InfrastructureConfiguration` (Image Builder needs one; its instance
//! profile is a template parameter), a `DistributionConfiguration` for the
//! ECR targets and the `ImagePipeline`. Multi-line text is written as
//! literal blocks when that keeps it byte-identical, else as a quoted
//! scalar, so `kiln import` reads the same documents back.

use std::fmt::Write as _;

use super::{COMPONENT_VERSION, Pipeline, logical_id};
use crate::import::mapping::q;

/// The template text.
pub fn render(p: &Pipeline) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "AWSTemplateFormatVersion: \"2010-09-09\"");
    let _ = writeln!(
        t,
        "Description: {}",
        q(&format!(
            "kiln recipe {} {}, exported by kiln export",
            p.name, p.version
        ))
    );
    t.push_str("Parameters:\n  InstanceProfileName:\n    Type: String\n    Description: Instance profile of the Image Builder build instances.\n");
    if p.ecr.is_empty() {
        t.push_str("  TargetRepositoryName:\n    Type: String\n    Description: ECR repository the container recipe pushes to.\n");
    }
    t.push_str("Resources:\n");
    for c in &p.components {
        let _ = writeln!(
            t,
            "  {}:\n    Type: AWS::ImageBuilder::Component\n    Properties:",
            logical_id("Component", &c.name)
        );
        let _ = writeln!(
            t,
            "      Name: {}\n      Version: {}\n      Platform: Linux",
            q(&c.name),
            q(COMPONENT_VERSION)
        );
        let _ = writeln!(t, "      Data: {}", block(&c.data, 8));
    }
    recipe(&mut t, p);
    let _ = writeln!(
        t,
        "  Infrastructure:\n    Type: AWS::ImageBuilder::InfrastructureConfiguration\n    Properties:"
    );
    let _ = writeln!(
        t,
        "      Name: {}\n      InstanceProfileName: !Ref InstanceProfileName",
        q(&p.name)
    );
    if !p.ecr.is_empty() {
        distribution(&mut t, p);
    }
    let _ = writeln!(
        t,
        "  Pipeline:\n    Type: AWS::ImageBuilder::ImagePipeline\n    Properties:"
    );
    let _ = writeln!(
        t,
        "      Name: {}\n      ContainerRecipeArn: !Ref ContainerRecipe\n      InfrastructureConfigurationArn: !Ref Infrastructure",
        q(&p.name)
    );
    if !p.ecr.is_empty() {
        t.push_str("      DistributionConfigurationArn: !Ref Distribution\n");
    }
    if let Some((expr, tz, cond)) = &p.schedule {
        let _ = writeln!(
            t,
            "      Schedule:\n        ScheduleExpression: {}\n        PipelineExecutionStartCondition: {}",
            q(expr),
            cond.as_str()
        );
        if tz != "UTC" {
            let _ = writeln!(t, "        Timezone: {}", q(tz));
        }
        t.push_str("      Status: ENABLED\n");
    }
    t
}

fn recipe(t: &mut String, p: &Pipeline) {
    let _ = writeln!(
        t,
        "  ContainerRecipe:\n    Type: AWS::ImageBuilder::ContainerRecipe\n    Properties:"
    );
    let _ = writeln!(
        t,
        "      Name: {}\n      Version: {}\n      ContainerType: DOCKER",
        q(&p.name),
        q(&p.version)
    );
    if let Some(d) = &p.description {
        let _ = writeln!(t, "      Description: {}", q(d));
    }
    let _ = writeln!(t, "      ParentImage: {}", q(&p.parent_image));
    let _ = writeln!(t, "      WorkingDirectory: {}", q(&p.working_directory));
    let _ = writeln!(
        t,
        "      DockerfileTemplateData: {}",
        block(&p.dockerfile, 8)
    );
    if !p.components.is_empty() {
        t.push_str("      Components:\n");
    }
    for c in &p.components {
        let _ = writeln!(
            t,
            "        - ComponentArn: !Ref {}",
            logical_id("Component", &c.name)
        );
        if !c.parameters.is_empty() {
            t.push_str("          Parameters:\n");
        }
        for (k, v) in &c.parameters {
            let _ = writeln!(
                t,
                "            - Name: {}\n              Value:\n                - {}",
                q(k),
                q(v)
            );
        }
    }
    let repo = match p.ecr.first() {
        Some((_, repo)) => q(repo),
        None => "!Ref TargetRepositoryName".into(),
    };
    let _ = writeln!(
        t,
        "      TargetRepository:\n        Service: ECR\n        RepositoryName: {repo}"
    );
}

fn distribution(t: &mut String, p: &Pipeline) {
    let _ = writeln!(
        t,
        "  Distribution:\n    Type: AWS::ImageBuilder::DistributionConfiguration\n    Properties:"
    );
    let _ = writeln!(t, "      Name: {}\n      Distributions:", q(&p.name));
    for (region, repo) in &p.ecr {
        let _ = writeln!(
            t,
            "        - Region: {}\n          ContainerDistributionConfiguration:",
            q(region)
        );
        let _ = writeln!(
            t,
            "            TargetRepository:\n              Service: ECR\n              RepositoryName: {}",
            q(repo)
        );
        if !p.tags.is_empty() {
            t.push_str("            ContainerTags:\n");
            for tag in &p.tags {
                let _ = writeln!(t, "              - {}", q(tag));
            }
        }
    }
}

/// A literal block (`|`) indented by `indent` when it reads back
/// byte-identical (one trailing newline, no tabs or `\r`, first line not
/// indented); a double-quoted scalar otherwise.
pub fn block(text: &str, indent: usize) -> String {
    let plain = text.ends_with('\n')
        && !text.ends_with("\n\n")
        && !text.contains(['\r', '\t'])
        && !text.starts_with([' ', '\n'])
        && !text.lines().any(|l| l.ends_with(' '));
    if !plain {
        return q(text);
    }
    let pad = " ".repeat(indent);
    let mut out = String::from("|");
    for line in text.lines() {
        out.push('\n');
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_read_back_unchanged() {
        for text in [
            "a\n  b\n\nc\n",
            "no newline",
            "two\n\n",
            " lead\n",
            "tab\there\n",
        ] {
            let yaml = format!("k: {}\n", block(text, 2));
            let n = crate::import::node::parse_yaml(&yaml).unwrap();
            assert_eq!(n.get(&["k"]).unwrap().as_text().unwrap(), text, "{yaml}");
        }
    }
}

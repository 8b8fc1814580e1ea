//! Spells a [`Pipeline`] as Terraform (`aws_imagebuilder_*` resources).
//! Strings are HCL quoted strings with `${` and `%{` escaped, so component
//! documents and templates come back byte-identical.

use std::fmt::Write as _;

use super::{COMPONENT_VERSION, Pipeline};

/// An HCL string literal: JSON escapes plus `$${` and `%%{`.
pub fn hq(s: &str) -> String {
    serde_json::to_string(s)
        .expect("strings serialize")
        .replace("${", "$${")
        .replace("%{", "%%{")
}

fn ident(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The Terraform text.
pub fn render(p: &Pipeline) -> String {
    let mut t = String::from("variable \"instance_profile_name\" {\n  type = string\n}\n");
    for c in &p.components {
        let _ = writeln!(
            t,
            "\nresource \"aws_imagebuilder_component\" \"{}\" {{",
            ident(&c.name)
        );
        let _ = writeln!(
            t,
            "  name     = {}\n  version  = {}\n  platform = \"Linux\"\n  data     = {}\n}}",
            hq(&c.name),
            hq(COMPONENT_VERSION),
            hq(&c.data)
        );
    }
    let _ = writeln!(
        t,
        "\nresource \"aws_imagebuilder_container_recipe\" \"recipe\" {{"
    );
    let _ = writeln!(
        t,
        "  name              = {}\n  version           = {}\n  container_type    = \"DOCKER\"",
        hq(&p.name),
        hq(&p.version)
    );
    let _ = writeln!(
        t,
        "  parent_image      = {}\n  working_directory = {}",
        hq(&p.parent_image),
        hq(&p.working_directory)
    );
    if let Some(d) = &p.description {
        let _ = writeln!(t, "  description       = {}", hq(d));
    }
    let _ = writeln!(t, "  dockerfile_template_data = {}", hq(&p.dockerfile));
    for c in &p.components {
        let _ = writeln!(
            t,
            "  component {{\n    component_arn = aws_imagebuilder_component.{}.arn",
            ident(&c.name)
        );
        for (k, v) in &c.parameters {
            let _ = writeln!(
                t,
                "    parameter {{\n      name  = {}\n      value = {}\n    }}",
                hq(k),
                hq(v)
            );
        }
        t.push_str("  }\n");
    }
    let repo = p
        .ecr
        .first()
        .map_or_else(|| "var.target_repository_name".to_string(), |(_, r)| hq(r));
    let _ = writeln!(
        t,
        "  target_repository {{\n    service         = \"ECR\"\n    repository_name = {repo}\n  }}\n}}"
    );
    if p.ecr.is_empty() {
        t.push_str("\nvariable \"target_repository_name\" {\n  type = string\n}\n");
    }
    let _ = writeln!(
        t,
        "\nresource \"aws_imagebuilder_infrastructure_configuration\" \"infrastructure\" {{\n  name                  = {}\n  instance_profile_name = var.instance_profile_name\n}}",
        hq(&p.name)
    );
    if !p.ecr.is_empty() {
        let _ = writeln!(
            t,
            "\nresource \"aws_imagebuilder_distribution_configuration\" \"distribution\" {{\n  name = {}",
            hq(&p.name)
        );
        for (region, repo) in &p.ecr {
            let _ = writeln!(
                t,
                "  distribution {{\n    region = {}\n    container_distribution_configuration {{",
                hq(region)
            );
            if !p.tags.is_empty() {
                let tags: Vec<String> = p.tags.iter().map(|s| hq(s)).collect();
                let _ = writeln!(t, "      container_tags = [{}]", tags.join(", "));
            }
            let _ = writeln!(
                t,
                "      target_repository {{\n        service         = \"ECR\"\n        repository_name = {}\n      }}\n    }}\n  }}",
                hq(repo)
            );
        }
        t.push_str("}\n");
    }
    let _ = writeln!(
        t,
        "\nresource \"aws_imagebuilder_image_pipeline\" \"pipeline\" {{\n  name                             = {}",
        hq(&p.name)
    );
    t.push_str(
        "  container_recipe_arn             = aws_imagebuilder_container_recipe.recipe.arn\n",
    );
    t.push_str("  infrastructure_configuration_arn = aws_imagebuilder_infrastructure_configuration.infrastructure.arn\n");
    if !p.ecr.is_empty() {
        t.push_str("  distribution_configuration_arn   = aws_imagebuilder_distribution_configuration.distribution.arn\n");
    }
    if let Some((expr, tz, cond)) = &p.schedule {
        let _ = writeln!(
            t,
            "  schedule {{\n    schedule_expression                = {}\n    pipeline_execution_start_condition = {}",
            hq(expr),
            hq(cond.as_str())
        );
        let _ = writeln!(
            t,
            "    timezone                           = {}\n  }}",
            hq(tz)
        );
    }
    t.push_str("}\n");
    t
}

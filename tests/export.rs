//! `kiln export`: the CloudFormation template of the example recipe passes
//! cfn-lint (installed by `scripts/services up`), and exporting then
//! importing again (CloudFormation and Terraform) gives the same rendered
//! Dockerfile and the same build key.

mod support;

use std::path::{Path, PathBuf};

use support::kiln_on;

/// The cfn-lint of `scripts/services up` (fails, never skips, without it).
fn cfn_lint() -> PathBuf {
    let from_env = std::env::var("KILN_TEST_CFN_LINT").ok();
    let from_file = || {
        let env = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/services.env");
        std::fs::read_to_string(env).ok()?.lines().find_map(|l| {
            l.strip_prefix("export KILN_TEST_CFN_LINT=")
                .map(str::to_string)
        })
    };
    let path = PathBuf::from(from_env.or_else(from_file).unwrap_or_else(|| {
        panic!("KILN_TEST_CFN_LINT is not set: run `scripts/services up` (it installs cfn-lint)")
    }));
    assert!(
        path.is_file(),
        "{} is missing: run `scripts/services up`",
        path.display()
    );
    path
}

/// A copy of the example project (no kiln.lock, so both sides render tags).
fn example() -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for rel in [
        "recipes/hello-web.yaml",
        "components/hello-site.yaml",
        "dockerfiles/hello-web.Dockerfile",
    ] {
        let to = dir.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root.join(rel), to).unwrap();
    }
    dir
}

fn build_key(dir: &Path) -> String {
    let project = kiln::project::Project::open(dir).unwrap();
    let recipe = kiln::load::load_recipe(&project, "hello-web").unwrap();
    let rendered = kiln::render::render(&recipe, &kiln::render::Pins::default());
    let request = kiln::build::BuildRequest::for_recipe(&recipe);
    kiln::build::prepare(&rendered, &request)
        .unwrap()
        .build_key
        .digest
        .to_string()
}

/// Exports in `format`, imports the result into a fresh project and checks
/// that both render the same Dockerfile and have the same build key.
fn round_trip(format: &str, file: &str) -> (String, String) {
    let orig = example();
    let (code, template, notes) = kiln_on(orig.path(), &["export", format, "hello-web"]);
    assert_eq!(code, 0, "{template}{notes}");
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join(file);
    std::fs::write(&file, &template).unwrap();
    let out = work.path().join("imported");
    let (code, o, e) = kiln_on(
        work.path(),
        &[
            "import",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "import: {o}{e}\n{template}");
    let (_, before, _) = kiln_on(orig.path(), &["render", "hello-web"]);
    let (code, after, e) = kiln_on(&out, &["render", "hello-web"]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(before, after, "rendered Dockerfiles differ");
    assert_eq!(build_key(orig.path()), build_key(&out), "build keys differ");
    (template, notes)
}

#[test]
fn cloudformation_export_passes_cfn_lint_and_round_trips() {
    let lint = cfn_lint();
    let (template, notes) = round_trip("cloudformation", "template.yaml");
    for want in [
        "Type: AWS::ImageBuilder::ContainerRecipe",
        "DockerfileTemplateData: |",
        "ComponentArn: !Ref ComponentHelloSite",
        "ScheduleExpression: \"cron(0 3 * * ? *)\"",
        "PipelineExecutionStartCondition: EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE",
        "Region: \"us-east-1\"",
    ] {
        assert!(template.contains(want), "missing {want:?} in\n{template}");
    }
    assert!(notes.contains("not exported: OCI target"), "{notes}");
    assert!(notes.contains("not exported: test:"), "{notes}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("template.yaml");
    std::fs::write(&file, &template).unwrap();
    let out = std::process::Command::new(&lint)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cfn-lint failed:\n{}{}\n{template}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn terraform_export_round_trips() {
    let (template, _) = round_trip("terraform", "main.tf");
    assert!(
        template.contains("resource \"aws_imagebuilder_container_recipe\" \"recipe\""),
        "{template}"
    );
    assert!(
        template.contains("schedule_expression                = \"cron(0 3 * * ? *)\""),
        "{template}"
    );
}

#[test]
fn a_schedule_image_builder_cannot_say_is_an_error() {
    let dir = example();
    let recipe = dir.path().join("recipes/hello-web.yaml");
    let text = std::fs::read_to_string(&recipe)
        .unwrap()
        .replace("cron: \"0 3 * * *\"", "cron: \"0 3 1 * 1\"");
    std::fs::write(&recipe, text).unwrap();
    let (code, out, err) = kiln_on(dir.path(), &["export", "cloudformation", "hello-web"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("error: recipe `hello-web`: schedule")
            && err.contains("`0 3 1 * 1` has no Image Builder form"),
        "{err}"
    );
    assert!(out.is_empty());
}

//! `kiln import` on CloudFormation (YAML and JSON), CLI JSON and Terraform
//! fixtures written from the AWS and Terraform documentation's shapes: the
//! result passes `kiln validate` and renders; every unmapped field is
//! reported with file and line; refusals write nothing. `ssm:` parents are
//! read from moto's SSM.

mod support;

use std::path::{Path, PathBuf};

use support::{kiln_on, services};

fn fixture(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/imagebuilder")
        .join(rel)
        .display()
        .to_string()
}

/// Imports `files` into a new project; returns (project, exit, stdout, stderr).
fn import(files: &[&str], extra: &[&str]) -> (tempfile::TempDir, i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["import"];
    args.extend_from_slice(files);
    args.extend_from_slice(extra);
    let (code, out, err) = kiln_on(dir.path(), &args);
    (dir, code, out, err)
}

fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(dir).unwrap().to_path_buf())
        .collect()
}

/// `kiln validate` and `kiln render` of an imported recipe.
fn validate_and_render(dir: &Path, recipe: &str) -> String {
    let (code, out, err) = kiln_on(dir, &["validate", recipe]);
    assert_eq!(code, 0, "validate: {out}{err}");
    let (code, out, err) = kiln_on(dir, &["render", recipe]);
    assert_eq!(code, 0, "render: {out}{err}");
    out
}

#[test]
fn cloudformation_yaml_pipeline() {
    let file = fixture("cfn/pipeline.yaml");
    let (dir, code, out, err) = import(&[&file], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let d = dir.path();
    let data = read(d, "components/greeting.yaml");
    assert!(
        data.starts_with("name: greeting\n") && data.contains("echo '{{ Greeting }}'"),
        "{data}"
    );
    let recipe = read(d, "recipes/web.yaml");
    for want in [
        "version: \"2.1.0\"",
        "parentImage: \"127.0.0.1:5000/kiln/base:1\"",
        "dockerfile: web.Dockerfile",
        "workingDirectory: \"/tmp\"",
        "  - name: \"greeting\"\n    parameters:\n      \"Greeting\": \"Hello from CloudFormation\"",
        "region: \"eu-west-1\"\n        repository: \"team/web\"",
        "tags:\n    - \"stable\"",
        "cron: \"cron(30 2 ? * FRI *)\"",
        "startCondition: EXPRESSION_MATCH_ONLY",
    ] {
        assert!(recipe.contains(want), "missing {want:?} in\n{recipe}");
    }
    // Every field kiln does not use is reported with its file and line.
    for want in [
        "pipeline.yaml:23: Resources.GreetingComponent.Properties.Description: ",
        "pipeline.yaml:47: Resources.GreetingComponent.Properties.Tags: AWS resource tags",
        "pipeline.yaml:57: Resources.WebRecipe.Properties.PlatformOverride: ",
        "pipeline.yaml:73: Resources.WebRecipe.Properties.InstanceConfiguration: kiln builds on the Docker engine",
        "pipeline.yaml:78: Resources.Infrastructure: resource of type `AWS::ImageBuilder::InfrastructureConfiguration`",
        "pipeline.yaml:100: Resources.WebPipeline.Properties.InfrastructureConfigurationArn: kiln builds on the Docker engine",
        "pipeline.yaml:94: Resources.Distribution.Properties.Distributions[0].containerTags: container tag `stable` is fixed",
        ": Outputs: template section not used",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    let rendered = validate_and_render(d, "web");
    assert!(
        rendered.contains("FROM 127.0.0.1:5000/kiln/base:1"),
        "{rendered}"
    );
    assert!(
        rendered.contains("CMD [\"/bin/sh\", \"-c\", \"cat /srv/greeting.txt\"]"),
        "{rendered}"
    );
    let (code, out, err) = kiln_on(
        d,
        &[
            "schedule",
            "web",
            "--next",
            "2",
            "--after",
            "2026-12-04T12:00:00Z",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("2026-12-11T02:30:00Z") && out.contains("2026-12-18T02:30:00Z"),
        "{out}"
    );
}

#[test]
fn cloudformation_json_pipeline() {
    let file = fixture("cfn/pipeline.json");
    let (dir, code, out, err) = import(&[&file], &["--region", "us-east-1"]);
    assert_eq!(code, 0, "{out}{err}");
    let recipe = read(dir.path(), "recipes/web-json.yaml");
    assert!(
        recipe.contains("region: \"us-east-1\"\n        repository: \"team/web-json\""),
        "{recipe}"
    );
    assert!(recipe.contains("cron: \"cron(0 10 * * ? *)\""), "{recipe}");
    assert!(
        out.contains("targetRepository `team/web-json` → ECR target in us-east-1 (--region)"),
        "{out}"
    );
    assert!(
        recipe.contains("startCondition: EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE"),
        "{recipe}"
    );
    assert!(
        out.contains("pipeline.json:26: Resources.WebRecipe.Properties.KmsKeyId: KMS encryption"),
        "{out}"
    );
    let rendered = validate_and_render(dir.path(), "web-json");
    assert!(
        rendered.contains("FROM 127.0.0.1:5000/kiln/base:1"),
        "{rendered}"
    );
}

#[test]
fn cli_json_documents_with_a_version_selector() {
    let files = [
        "cli/create-component.json",
        "cli/create-container-recipe.json",
        "cli/create-distribution-configuration.json",
        "cli/create-image-pipeline.json",
    ]
    .map(fixture);
    let refs: Vec<&str> = files.iter().map(String::as_str).collect();
    let (dir, code, out, err) = import(&refs, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let d = dir.path();
    assert!(
        out.contains("component `motd/1.x.x` → motd (version 1.3.0)"),
        "{out}"
    );
    let recipe = read(d, "recipes/shell-box.yaml");
    for want in [
        "version: \"1.0.4\"",
        "workingDirectory: \"/var/tmp\"",
        "region: \"us-west-2\"\n        repository: \"tools/shell-box\"",
        "region: \"eu-central-1\"\n        repository: \"tools/shell-box\"",
        "cron: \"cron(15 1 * * ? *)\"\n  timezone: \"America/New_York\"",
    ] {
        assert!(recipe.contains(want), "missing {want:?} in\n{recipe}");
    }
    for want in [
        "create-component.json:5: changeDescription: Image Builder's version notes",
        "create-component.json:9: clientToken: idempotency token",
        "create-container-recipe.json:17: instanceConfiguration: kiln builds on the Docker engine",
        "create-container-recipe.json:25: tags: AWS resource tags",
        "create-image-pipeline.json:8: imageTestsConfiguration: kiln's tests are the recipe's `test` section",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    validate_and_render(d, "shell-box");
}

#[test]
fn terraform_with_locals_variables_and_references() {
    let file = fixture("terraform/main.tf");
    let (dir, code, out, err) = import(&[&file], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let d = dir.path();
    let banner = read(d, "components/banner.yaml");
    assert!(
        banner.starts_with("name: banner\nschemaVersion: 1.0\n"),
        "{banner}"
    );
    let recipe = read(d, "recipes/api.yaml");
    for want in [
        "parentImage: \"127.0.0.1:5000/kiln/base:1\"",
        "\"Text\": \"API api\"",
        "region: \"ap-southeast-2\"\n        repository: \"services/api\"",
        "cron: \"cron(0 4 ? * MON#1 *)\"",
        "startCondition: EXPRESSION_MATCH_ONLY",
    ] {
        assert!(recipe.contains(want), "missing {want:?} in\n{recipe}");
    }
    for want in [
        "main.tf:33: resource.aws_imagebuilder_component.banner.tags: AWS resource tags",
        "main.tf:63: resource.aws_imagebuilder_container_recipe.api.lifecycle: a Terraform meta-argument",
        "main.tf:92: resource.aws_iam_instance_profile.builder: not part of a kiln container pipeline",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    let rendered = validate_and_render(d, "api");
    assert!(rendered.contains("EXPOSE 8080"), "{rendered}");
}

#[test]
fn an_expression_terraform_alone_can_evaluate_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let tf = dir.path().join("main.tf");
    std::fs::write(
        &tf,
        "resource \"aws_imagebuilder_container_recipe\" \"r\" {\n  name = \"r\"\n  version = \"1.0.0\"\n  parent_image = data.aws_ssm_parameter.base.value\n  dockerfile_template_data = \"FROM {{{ imagebuilder:parentImage }}}\\n\"\n}\n",
    )
    .unwrap();
    let out_dir = dir.path().join("project");
    let (code, out, err) = kiln_on(
        dir.path(),
        &[
            "import",
            tf.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("main.tf:4: resource.aws_imagebuilder_container_recipe.r.parent_image: `data.aws_ssm_parameter.base.value` cannot be evaluated without Terraform"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert!(files_in(&out_dir).is_empty(), "{:?}", files_in(&out_dir));
}

fn recipe_json(component_arn: &str, parent: &str) -> String {
    format!(
        r#"{{"name": "r", "semanticVersion": "1.0.0", "containerType": "DOCKER", "parentImage": "{parent}",
  "components": [{{"componentArn": "{component_arn}"}}],
  "dockerfileTemplateData": "FROM {{{{{{ imagebuilder:parentImage }}}}}}\n{{{{{{ imagebuilder:components }}}}}}\n",
  "targetRepository": {{"service": "ECR", "repositoryName": "r"}}}}"#
    )
}

fn import_json(project: &Path, json: &str) -> (i32, String, String) {
    let file = project.join("recipe.json");
    std::fs::write(&file, json).unwrap();
    kiln_on(
        project,
        &["import", file.to_str().unwrap(), "--region", "us-east-1"],
    )
}

#[test]
fn aws_managed_components_other_than_update_linux_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let arn = "arn:aws:imagebuilder:us-east-1:aws:component/aws-cli-version-2-linux/1.0.0";
    let (code, out, err) = import_json(dir.path(), &recipe_json(arn, "127.0.0.1:5000/kiln/base:1"));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("recipe.json:2: components[0].componentArn: AWS-managed component `aws-cli-version-2-linux` has no kiln equivalent"), "{err}");
    assert!(!dir.path().join("recipes").exists());
}

#[test]
fn update_linux_maps_to_an_update_os_component() {
    let dir = tempfile::tempdir().unwrap();
    let arn = "arn:aws:imagebuilder:us-east-1:aws:component/update-linux/x.x.x";
    let (code, out, err) = import_json(dir.path(), &recipe_json(arn, "127.0.0.1:5000/kiln/base:1"));
    // The mapping writes an UpdateOS step; whether it is kept depends on the
    // loader supporting UpdateOS (it is refused by name until it does).
    if code == 0 {
        assert!(read(dir.path(), "components/update-linux.yaml").contains("action: UpdateOS"));
        validate_and_render(dir.path(), "r");
    } else {
        assert!(
            err.contains("does not validate") && err.contains("UpdateOS"),
            "{out}{err}"
        );
        assert!(
            files_in(dir.path()) == [PathBuf::from("recipe.json")],
            "{:?}",
            files_in(dir.path())
        );
    }
}

#[test]
fn version_selectors_pick_the_highest_local_version() {
    let dir = tempfile::tempdir().unwrap();
    let comps = dir.path().join("components");
    std::fs::create_dir_all(&comps).unwrap();
    let doc = |v: &str| {
        format!(
            "name: tool\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: S\n        action: ExecuteBash\n        inputs:\n          commands:\n            - echo {v}\n"
        )
    };
    for v in ["1.2.0", "1.10.0", "2.0.0"] {
        std::fs::write(
            comps.join(format!("tool-{}.yaml", v.replace('.', "_"))),
            doc(v),
        )
        .unwrap();
    }
    let arn = "arn:aws:imagebuilder:us-east-1:123456789012:component/tool/1.x.x";
    let (code, out, err) = import_json(dir.path(), &recipe_json(arn, "127.0.0.1:5000/kiln/base:1"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(read(dir.path(), "recipes/r.yaml").contains("- name: \"tool-1_10_0\""));
    let none = "arn:aws:imagebuilder:us-east-1:123456789012:component/tool/3.x.x";
    std::fs::remove_file(dir.path().join("recipes/r.yaml")).unwrap();
    let (code, _, err) = import_json(dir.path(), &recipe_json(none, "127.0.0.1:5000/kiln/base:1"));
    assert_eq!(code, 1);
    assert!(err.contains("no version of component `tool` matching `3.x.x` is imported or in components/ (have: 1.2.0, 1.10.0, 2.0.0)"), "{err}");
}

#[test]
fn image_arn_parents_are_refused_and_existing_files_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let parent = "arn:aws:imagebuilder:us-east-1:aws:image/amazon-linux-x86-2023/x.x.x";
    let comp = "arn:aws:imagebuilder:us-east-1:aws:component/update-linux/x.x.x";
    let (code, _, err) = import_json(dir.path(), &recipe_json(comp, parent));
    assert_eq!(code, 1);
    assert!(err.contains("parentImage: `arn:aws:imagebuilder:us-east-1:aws:image/amazon-linux-x86-2023/x.x.x` is an Image Builder image ARN"), "{err}");

    std::fs::create_dir_all(dir.path().join("dockerfiles")).unwrap();
    std::fs::write(
        dir.path().join("dockerfiles/web.Dockerfile"),
        "FROM scratch\n",
    )
    .unwrap();
    let (code, _, err) = kiln_on(dir.path(), &["import", &fixture("cfn/pipeline.yaml")]);
    assert_eq!(code, 1);
    assert!(
        err.contains("`dockerfiles/web.Dockerfile` exists; kiln import never overwrites a file"),
        "{err}"
    );
    assert!(!dir.path().join("recipes/web.yaml").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn ssm_parents_are_read_from_ssm() {
    let s = services();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&s.moto)
        .load()
        .await;
    let ssm = aws_sdk_ssm::Client::new(&conf);
    let name = format!("/kiln-it/{}/parent", support::nonce());
    ssm.put_parameter()
        .name(&name)
        .value(&s.base_image)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let comp = "arn:aws:imagebuilder:us-east-1:123456789012:component/none/1.0.0";
    let json = recipe_json(comp, &format!("ssm:{name}")).replace(
        r#""components": [{"componentArn": "arn:aws:imagebuilder:us-east-1:123456789012:component/none/1.0.0"}],"#,
        "",
    );
    let file = dir.path().join("recipe.json");
    std::fs::write(&file, json).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "--project",
            dir.path().to_str().unwrap(),
            "import",
            file.to_str().unwrap(),
        ])
        .env("AWS_ENDPOINT_URL_SSM", &s.moto)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "parentImage `ssm:{name}` → `{}` (SSM parameter)",
            s.base_image
        )),
        "{stdout}"
    );
    assert!(
        read(dir.path(), "recipes/r.yaml").contains(&format!("parentImage: \"{}\"", s.base_image))
    );

    let gone = format!("{name}-missing");
    std::fs::write(&file, recipe_json(comp, &format!("ssm:{gone}")).replace(
        r#""components": [{"componentArn": "arn:aws:imagebuilder:us-east-1:123456789012:component/none/1.0.0"}],"#,
        "",
    ))
    .unwrap();
    std::fs::remove_file(dir.path().join("recipes/r.yaml")).unwrap();
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "--project",
            dir.path().to_str().unwrap(),
            "import",
            file.to_str().unwrap(),
        ])
        .env("AWS_ENDPOINT_URL_SSM", &s.moto)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("parentImage `ssm:{gone}`"))
            && stderr.contains("ParameterNotFound"),
        "{stderr}"
    );
}

#[test]
fn a_component_kiln_cannot_load_is_refused_and_nothing_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("component.json");
    let data = "name: bad\\nschemaVersion: 1.0\\nphases:\\n  - name: build\\n    steps:\\n      - name: Boot\\n        action: Reboot\\n";
    let json = format!(
        r#"{{"name": "bad", "semanticVersion": "1.0.0", "platform": "Linux", "data": "{data}"}}"#
    );
    std::fs::write(&file, json).unwrap();
    let (code, out, err) = kiln_on(dir.path(), &["import", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("the imported component `bad` does not validate"),
        "{err}"
    );
    assert!(err.contains("components/bad.yaml:7:"), "{err}");
    assert!(!dir.path().join("components/bad.yaml").exists());
}

#[test]
fn a_pipeline_without_its_recipe_is_one_note() {
    let files = [
        "cli/create-component.json",
        "cli/create-image-pipeline.json",
    ]
    .map(fixture);
    let refs: Vec<&str> = files.iter().map(String::as_str).collect();
    let (dir, code, out, err) = import(&refs, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("create-image-pipeline.json:1: shell-box-pipeline: builds no container recipe of this import: its schedule is not written"), "{out}");
    assert!(!out.contains("create-image-pipeline.json:8:"), "{out}");
    assert!(
        out.contains("imported 0 recipes and 1 component (motd)"),
        "{out}"
    );
    assert!(dir.path().join("components/motd.yaml").is_file());
}

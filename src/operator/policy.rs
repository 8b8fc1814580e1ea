//! `policy:` in the operator config: what every recipe and every image must
//! satisfy, whatever the project says. Each rule is named by its config key
//! ([`Rule::key`]) in every violation, so tests and tools can match it.
//! Checked at load (`policy_check.rs`: recipe, components, template, with
//! `path:line:column`) and again before distribute ([`Policy::check_image`]:
//! the built image's size, user and labels).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::diagnostic::Diagnostic;
use crate::load::actions::SUPPORTED_ACTIONS;

/// The policy rules, by config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// `allowedParents`: globs over `registry/repository`.
    AllowedParents,
    /// `allowedActions`: the only AWSTOE actions components may use.
    AllowedActions,
    /// `forbiddenActions`: AWSTOE actions components may not use.
    ForbiddenActions,
    /// `requireTests`: a readiness check or structure tests.
    RequireTests,
    /// `forbidRootUser`: the final `USER` must be set and not root.
    ForbidRootUser,
    /// `forbidAddFromUrl`: no `ADD https://…`.
    ForbidAddFromUrl,
    /// `requiredLabels`: labels the built image must carry.
    RequiredLabels,
    /// `maxImageSize`: the built image's size limit.
    MaxImageSize,
    /// `requireApproval`: pushes wait for an approval.
    RequireApproval,
}

impl Rule {
    /// The config key, which is also the rule's machine-readable id.
    pub fn key(self) -> &'static str {
        match self {
            Rule::AllowedParents => "allowedParents",
            Rule::AllowedActions => "allowedActions",
            Rule::ForbiddenActions => "forbiddenActions",
            Rule::RequireTests => "requireTests",
            Rule::ForbidRootUser => "forbidRootUser",
            Rule::ForbidAddFromUrl => "forbidAddFromUrl",
            Rule::RequiredLabels => "requiredLabels",
            Rule::MaxImageSize => "maxImageSize",
            Rule::RequireApproval => "requireApproval",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// `maxImageSize` as written: bytes, or a number with `KB`/`MB`/`GB`
/// (powers of 1000) or `KiB`/`MiB`/`GiB` (powers of 1024).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Size {
    /// Bytes.
    Bytes(u64),
    /// With a unit.
    Text(String),
}

impl Size {
    /// The size in bytes, or why the text is not a size.
    pub fn bytes(&self) -> Result<u64, String> {
        let text = match self {
            Size::Bytes(b) => return Ok(*b),
            Size::Text(t) => t.trim(),
        };
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (num, unit) = text.split_at(split);
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" => 1000,
            "MB" => 1000 * 1000,
            "GB" => 1000 * 1000 * 1000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => {
                return Err(format!(
                    "`policy.maxImageSize`: `{text}` is not a size (bytes, or a whole number with B, KB, MB, GB, KiB, MiB or GiB)"
                ));
            }
        };
        num.parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(factor))
            .ok_or_else(|| format!("`policy.maxImageSize`: `{text}` is not a size"))
    }
}

/// `policy:` as written. Everything is off by default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    /// Globs over `registry/repository` of every external image a recipe
    /// builds from (`*` stays within one path segment, `**` crosses them);
    /// absent: any.
    #[serde(default)]
    pub allowed_parents: Option<Vec<String>>,
    /// The only AWSTOE actions allowed; absent: any.
    #[serde(default)]
    pub allowed_actions: Option<Vec<String>>,
    /// AWSTOE actions refused.
    #[serde(default)]
    pub forbidden_actions: Vec<String>,
    /// Every recipe needs a readiness check or structure tests.
    #[serde(default)]
    pub require_tests: bool,
    /// The final `USER` must be set and not root (`root`, `0`, `0:…`).
    #[serde(default)]
    pub forbid_root_user: bool,
    /// No `ADD` from an `http://` or `https://` URL in a template.
    #[serde(default)]
    pub forbid_add_from_url: bool,
    /// Labels every built image must carry.
    #[serde(default)]
    pub required_labels: Vec<String>,
    /// The largest image (uncompressed, as the engine reports it).
    #[serde(default)]
    pub max_image_size: Option<Size>,
    /// Every build waits at the approval gate, as with the recipe's
    /// `distribute.approval: required`; a recipe saying `approval: none` is
    /// a violation.
    #[serde(default)]
    pub require_approval: bool,
}

/// One broken rule, with where (file, line, column) or what (the image).
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The rule, by config key.
    pub rule: Rule,
    /// `path:line:column: policy `RULE`: …`, with a hint.
    pub diagnostic: Diagnostic,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.diagnostic)
    }
}

impl Violation {
    /// A violation of `rule` at `diagnostic`'s place; the message is
    /// prefixed with the rule's key.
    pub fn new(rule: Rule, mut diagnostic: Diagnostic) -> Self {
        diagnostic.message = format!("policy `{}`: {}", rule.key(), diagnostic.message);
        if diagnostic.hint.is_none() {
            diagnostic.hint = Some(format!(
                "`policy.{}` is set in the operator config (--config); a project cannot change it",
                rule.key()
            ));
        }
        Violation { rule, diagnostic }
    }
}

/// The violations of one check, all of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Violations(pub Vec<Violation>);

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

impl Violations {
    /// The rule keys, in order (what `expectFailures` names).
    pub fn rules(&self) -> Vec<&'static str> {
        self.0.iter().map(|v| v.rule.key()).collect()
    }
}

/// What [`Policy::check_image`] looks at: facts of the built image.
#[derive(Debug, Clone, Default)]
pub struct ImageFacts {
    /// The image reference or id (for messages).
    pub image: String,
    /// Size in bytes as the engine reports it.
    pub size: u64,
    /// `Config.User` (empty: unset, which runs as root).
    pub user: String,
    /// `Config.Labels`.
    pub labels: BTreeMap<String, String>,
}

/// True when `user` (a `USER` argument or `Config.User`) runs as root.
pub fn is_root_user(user: &str) -> bool {
    let name = user.trim().split(':').next().unwrap_or("");
    name.is_empty() || name == "root" || name == "0"
}

impl Policy {
    /// The `policy:` of the operator config `file` (the whole file is
    /// validated, strictly; no key is loaded).
    pub fn from_file(file: &std::path::Path) -> Result<Policy, crate::daemon::config::ConfigError> {
        crate::daemon::config::DaemonConfig::load(file).map(|c| c.policy)
    }

    /// Checks the values (globs compile, action names exist, the size
    /// parses); the problem names the key.
    pub fn validate(&self) -> Result<(), String> {
        for g in self.allowed_parents.iter().flatten() {
            crate::operator::policy_check::parent_glob(g)
                .map_err(|e| format!("`policy.allowedParents`: `{g}` is not a glob: {e}"))?;
        }
        let named = (self.allowed_actions.iter().flatten())
            .map(|n| ("allowedActions", n))
            .chain(
                self.forbidden_actions
                    .iter()
                    .map(|n| ("forbiddenActions", n)),
            );
        for (key, name) in named {
            let known = SUPPORTED_ACTIONS.contains(&name.as_str())
                || crate::load::actions::unsupported_reason(name).is_some();
            if !known {
                let hint = crate::diagnostic::closest(name, SUPPORTED_ACTIONS.iter().copied())
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                return Err(format!(
                    "`policy.{key}`: `{name}` is not an AWSTOE action{hint}"
                ));
            }
        }
        if let Some(s) = &self.max_image_size {
            s.bytes()?;
        }
        Ok(())
    }

    /// The rules that apply to the built image `facts` (before distribute):
    /// `maxImageSize`, `forbidRootUser`, `requiredLabels`.
    pub fn check_image(&self, facts: &ImageFacts) -> Violations {
        let mut out = Vec::new();
        let at = |message: String| Diagnostic::file(format!("image {}", facts.image), message);
        if let Some(max) = self.max_image_size.as_ref().and_then(|s| s.bytes().ok())
            && facts.size > max
        {
            let m = format!(
                "the image is {} bytes, more than the {max} allowed",
                facts.size
            );
            out.push(Violation::new(Rule::MaxImageSize, at(m)));
        }
        if self.forbid_root_user && is_root_user(&facts.user) {
            let m = match facts.user.trim() {
                "" => "the image's user is unset, so it runs as root".to_string(),
                u => format!("the image runs as `{u}` (root)"),
            };
            out.push(Violation::new(Rule::ForbidRootUser, at(m)));
        }
        for l in &self.required_labels {
            if !facts.labels.contains_key(l) {
                let m = format!("the image lacks the required label `{l}`");
                out.push(Violation::new(Rule::RequiredLabels, at(m)));
            }
        }
        Violations(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(Size::Bytes(5).bytes(), Ok(5));
        assert_eq!(Size::Text("2MiB".into()).bytes(), Ok(2 << 20));
        assert_eq!(Size::Text("3 GB".into()).bytes(), Ok(3_000_000_000));
        assert!(Size::Text("3 parsecs".into()).bytes().is_err());
    }

    #[test]
    fn unknown_actions_are_refused_with_a_hint() {
        let p = Policy {
            forbidden_actions: vec!["ExecuteBsh".into()],
            ..Default::default()
        };
        let e = p.validate().unwrap_err();
        assert!(
            e.contains("forbiddenActions") && e.contains("ExecuteBash"),
            "{e}"
        );
    }

    #[test]
    fn the_image_check_names_each_rule() {
        let p = Policy {
            forbid_root_user: true,
            required_labels: vec!["org.opencontainers.image.source".into()],
            max_image_size: Some(Size::Text("1KiB".into())),
            ..Default::default()
        };
        let v = p.check_image(&ImageFacts {
            image: "x".into(),
            size: 4096,
            user: "0:0".into(),
            labels: BTreeMap::new(),
        });
        assert_eq!(
            v.rules(),
            ["maxImageSize", "forbidRootUser", "requiredLabels"]
        );
        assert!(v.to_string().contains("policy `forbidRootUser`"), "{v}");
        let ok = p.check_image(&ImageFacts {
            image: "x".into(),
            size: 10,
            user: "nobody".into(),
            labels: [("org.opencontainers.image.source".to_string(), String::new())].into(),
        });
        assert!(ok.0.is_empty(), "{ok}");
    }
}

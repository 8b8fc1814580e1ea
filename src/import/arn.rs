//! Image Builder ARNs:
//! `arn:PARTITION:imagebuilder:REGION:ACCOUNT:TYPE/NAME[/VERSION[/BUILD]]`.
//! `ACCOUNT` is `aws` for AWS-managed resources.

/// A parsed Image Builder ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn {
    /// Region.
    pub region: String,
    /// Account id, or `aws` for AWS-managed resources.
    pub account: String,
    /// Resource type: `component`, `container-recipe`, `image`, …
    pub kind: String,
    /// Resource name.
    pub name: String,
    /// Version or version selector (`1.x.x`), when given.
    pub version: Option<String>,
}

impl Arn {
    /// Parses an Image Builder ARN; `None` for anything else.
    pub fn parse(s: &str) -> Option<Arn> {
        let mut parts = s.splitn(6, ':');
        let (arn, _partition, service) = (parts.next()?, parts.next()?, parts.next()?);
        if arn != "arn" || service != "imagebuilder" {
            return None;
        }
        let region = parts.next()?.to_string();
        let account = parts.next()?.to_string();
        let mut path = parts.next()?.split('/');
        let kind = path.next()?.to_string();
        let name = path.next().filter(|n| !n.is_empty())?.to_string();
        let version = path.next().map(str::to_string);
        Some(Arn {
            region,
            account,
            kind,
            name,
            version,
        })
    }

    /// Whether AWS owns it.
    pub fn is_aws_managed(&self) -> bool {
        self.account == "aws"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_component_and_recipe_arns() {
        let a =
            Arn::parse("arn:aws:imagebuilder:us-east-1:aws:component/update-linux/x.x.x").unwrap();
        assert!(a.is_aws_managed());
        assert_eq!(
            (a.kind.as_str(), a.name.as_str()),
            ("component", "update-linux")
        );
        assert_eq!(a.version.as_deref(), Some("x.x.x"));
        let r =
            Arn::parse("arn:aws:imagebuilder:eu-west-1:123456789012:container-recipe/web/1.0.0")
                .unwrap();
        assert_eq!(r.account, "123456789012");
        assert_eq!(r.kind, "container-recipe");
        assert!(Arn::parse("arn:aws:ecr:us-east-1:1:repository/x").is_none());
        assert!(Arn::parse("amazonlinux:2023").is_none());
    }
}

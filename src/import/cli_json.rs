//! The CLI/API JSON shapes: `--cli-input-json` documents of
//! `create-container-recipe`, `create-component`, `create-image-pipeline`
//! and `create-distribution-configuration`, and the matching `get-*`
//! responses (`{"containerRecipe": {…}}`). The shape is told by its keys.

use super::node::Node;
use super::{ImportError, Kind, Note, Resource};

/// Response wrappers of the `get-*` calls, and the kind inside.
const WRAPPERS: &[(&str, Kind)] = &[
    ("containerRecipe", Kind::ContainerRecipe),
    ("component", Kind::Component),
    ("imagePipeline", Kind::ImagePipeline),
    ("distributionConfiguration", Kind::DistributionConfiguration),
];

/// Reads one CLI/API JSON (or YAML) document.
pub fn read(file: &str, root: &Node) -> Result<(Vec<Resource>, Vec<Note>), ImportError> {
    for (key, kind) in WRAPPERS {
        if let Some((written, inner)) = root.entry(&[key])
            && inner.object().is_some()
        {
            return Ok((vec![resource(file, inner, *kind, written)], Vec::new()));
        }
    }
    let kind = detect(root).ok_or_else(|| ImportError::Unrecognised {
        file: file.into(),
        why: "neither a CloudFormation template nor an Image Builder CLI/API document \
              (create-container-recipe, create-component, create-image-pipeline, \
              create-distribution-configuration or their get-* responses)"
            .into(),
    })?;
    Ok((vec![resource(file, root, kind, "")], Vec::new()))
}

/// The kind of a `--cli-input-json` document, by its characteristic keys.
pub fn detect(n: &Node) -> Option<Kind> {
    let has = |k: &str| n.get(&[k]).is_some();
    if has("containerType") || has("dockerfileTemplateData") || has("dockerfileTemplateUri") {
        Some(Kind::ContainerRecipe)
    } else if has("containerRecipeArn")
        || has("imageRecipeArn")
        || has("infrastructureConfigurationArn")
    {
        Some(Kind::ImagePipeline)
    } else if has("distributions") {
        Some(Kind::DistributionConfiguration)
    } else if has("platform") || has("data") || has("uri") {
        Some(Kind::Component)
    } else {
        None
    }
}

fn resource(file: &str, n: &Node, kind: Kind, path: &str) -> Resource {
    let name = n.get(&["name"]).and_then(Node::as_text).unwrap_or_default();
    Resource {
        file: file.into(),
        id: name,
        kind,
        props: n.clone(),
        path: path.into(),
        arn: n.get(&["arn"]).and_then(Node::as_text),
    }
}

#[cfg(test)]
mod tests {
    use super::super::node::parse_yaml;
    use super::*;

    #[test]
    fn shapes_are_told_by_their_keys() {
        let kinds = [
            (
                r#"{"name": "r", "containerType": "DOCKER"}"#,
                Kind::ContainerRecipe,
            ),
            (
                r#"{"name": "c", "semanticVersion": "1.0.0", "platform": "Linux", "data": "x"}"#,
                Kind::Component,
            ),
            (
                r#"{"name": "p", "containerRecipeArn": "a"}"#,
                Kind::ImagePipeline,
            ),
            (
                r#"{"name": "d", "distributions": []}"#,
                Kind::DistributionConfiguration,
            ),
            (
                r#"{"requestId": "1", "component": {"name": "c", "arn": "arn:x"}}"#,
                Kind::Component,
            ),
        ];
        for (json, kind) in kinds {
            let (r, _) = read("f.json", &parse_yaml(json).unwrap()).unwrap();
            assert_eq!(r[0].kind, kind, "{json}");
        }
        assert!(read("f.json", &parse_yaml(r#"{"foo": 1}"#).unwrap()).is_err());
    }
}

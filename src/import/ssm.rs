//! `ssm:NAME` parent images: Image Builder reads the parent image reference
//! from an SSM parameter; kiln reads it once at import time (aws-sdk-ssm,
//! default credential chain, `AWS_ENDPOINT_URL_SSM`) and writes the value.

use std::collections::BTreeMap;

use super::node::Node;
use super::{Kind, Resource};

/// An `ssm:` parameter that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{file}: parentImage `ssm:{parameter}`: {message}")]
pub struct SsmError {
    /// The source file.
    pub file: String,
    /// The parameter name.
    pub parameter: String,
    /// What SSM said.
    pub message: String,
}

/// Reads every `ssm:` parent of the container recipes: parameter → value.
pub async fn resolve_parents(resources: &[Resource]) -> Result<BTreeMap<String, String>, SsmError> {
    let wanted: Vec<(String, String)> = resources
        .iter()
        .filter(|r| r.kind == Kind::ContainerRecipe)
        .filter_map(|r| {
            let p = r.props.get(&["parentImage"]).and_then(Node::as_text)?;
            Some((r.file.clone(), p.strip_prefix("ssm:")?.to_string()))
        })
        .collect();
    let mut out = BTreeMap::new();
    if wanted.is_empty() {
        return Ok(out);
    }
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let client = aws_sdk_ssm::Client::new(&conf);
    for (file, parameter) in wanted {
        let fail = |message: String| SsmError {
            file: file.clone(),
            parameter: parameter.clone(),
            message,
        };
        let resp = client
            .get_parameter()
            .name(&parameter)
            .send()
            .await
            .map_err(|e| fail(aws_sdk_ssm::error::DisplayErrorContext(&e).to_string()))?;
        let value = resp
            .parameter()
            .and_then(|p| p.value())
            .ok_or_else(|| fail("the parameter has no value".into()))?;
        out.insert(parameter, value.to_string());
    }
    Ok(out)
}

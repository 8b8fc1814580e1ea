//! `kiln import --from-aws ARN`: reads a container recipe or an image
//! pipeline (with its recipe and distribution configuration) from Image
//! Builder through aws-sdk-imagebuilder (default credential chain,
//! `AWS_ENDPOINT_URL_IMAGEBUILDER`), and the account's components it uses:
//! an exact build version with `GetComponent`, a version or selector
//! (`1.x.x`) through the paginated `ListComponents` and
//! `ListComponentBuildVersions` (highest match). The answers become the same
//! [`Resource`]s as a CLI JSON file, so one mapping serves both.

use aws_sdk_imagebuilder::Client;
use aws_sdk_imagebuilder::types::{Filter, Ownership};
use semver::Version;

use super::arn::Arn;
use super::node::{Node, Value};
use super::{ImportError, ImportOptions, ImportReport, Kind, Resource, versions};
use crate::project::Project;

/// An Image Builder call that failed.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// The ARN is not a container recipe or image pipeline ARN.
    #[error("`{0}` is not an Image Builder container-recipe or image-pipeline ARN")]
    NotSupported(String),
    /// The service does not know the resource.
    #[error("{call} `{arn}`: not found in Image Builder ({message})")]
    NotFound {
        /// The API call.
        call: &'static str,
        /// The ARN asked for.
        arn: String,
        /// The service's message.
        message: String,
    },
    /// Any other failure of a call.
    #[error("{call} `{arn}`: {message}")]
    Call {
        /// The API call.
        call: &'static str,
        /// The ARN asked for.
        arn: String,
        /// The SDK's error with its causes.
        message: String,
    },
    /// No component version matches a reference.
    #[error("component `{name}`: no version matching `{selector}` in Image Builder (have: {have})")]
    NoVersion {
        /// Component name.
        name: String,
        /// The selector.
        selector: String,
        /// Versions listed.
        have: String,
    },
}

fn call_error<E, R>(
    call: &'static str,
    arn: &str,
    e: aws_sdk_imagebuilder::error::SdkError<E, R>,
) -> AwsError
where
    E: aws_sdk_imagebuilder::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = e
        .as_service_error()
        .and_then(|s| s.code())
        .unwrap_or_default()
        .to_string();
    let message = aws_sdk_imagebuilder::error::DisplayErrorContext(&e).to_string();
    if code == "ResourceNotFoundException" {
        AwsError::NotFound {
            call,
            arn: arn.into(),
            message: code,
        }
    } else {
        AwsError::Call {
            call,
            arn: arn.into(),
            message,
        }
    }
}

/// Imports the recipe or pipeline `arn` into `project`.
pub async fn import_arn(
    arn: &str,
    project: &Project,
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let client = Client::new(&conf);
    let resources = fetch(&client, arn).await?;
    super::import_resources(resources, Vec::new(), project, opts).await
}

/// Fetches the resources `arn` names, references rewritten to ids.
pub async fn fetch(client: &Client, arn: &str) -> Result<Vec<Resource>, AwsError> {
    let parsed = Arn::parse(arn).ok_or_else(|| AwsError::NotSupported(arn.into()))?;
    let mut out = Vec::new();
    let recipe_arn = match parsed.kind.as_str() {
        "container-recipe" => arn.to_string(),
        "image-pipeline" => {
            let p = client
                .get_image_pipeline()
                .image_pipeline_arn(arn)
                .send()
                .await;
            let p = p.map_err(|e| call_error("GetImagePipeline", arn, e))?;
            let Some(p) = p.image_pipeline().cloned() else {
                return Err(AwsError::NotFound {
                    call: "GetImagePipeline",
                    arn: arn.into(),
                    message: "empty answer".into(),
                });
            };
            if let Some(d) = p.distribution_configuration_arn() {
                let r = client
                    .get_distribution_configuration()
                    .distribution_configuration_arn(d)
                    .send()
                    .await;
                let r = r.map_err(|e| call_error("GetDistributionConfiguration", d, e))?;
                if let Some(d) = r.distribution_configuration() {
                    out.push(resource(
                        arn,
                        Kind::DistributionConfiguration,
                        d.arn(),
                        distribution(d),
                    ));
                }
            }
            let recipe = p.container_recipe_arn().unwrap_or_default().to_string();
            out.push(resource(arn, Kind::ImagePipeline, p.arn(), pipeline(&p)));
            recipe
        }
        _ => return Err(AwsError::NotSupported(arn.into())),
    };
    let r = client
        .get_container_recipe()
        .container_recipe_arn(&recipe_arn)
        .send()
        .await;
    let r = r.map_err(|e| call_error("GetContainerRecipe", &recipe_arn, e))?;
    let Some(recipe) = r.container_recipe() else {
        return Err(AwsError::NotFound {
            call: "GetContainerRecipe",
            arn: recipe_arn,
            message: "empty answer".into(),
        });
    };
    for c in recipe.components() {
        let Some(carn) = Arn::parse(c.component_arn()).filter(|a| !a.is_aws_managed()) else {
            continue;
        };
        let build_arn = build_version_arn(client, c.component_arn(), &carn).await?;
        let got = client
            .get_component()
            .component_build_version_arn(&build_arn)
            .send()
            .await;
        let got = got.map_err(|e| call_error("GetComponent", &build_arn, e))?;
        if let Some(comp) = got.component() {
            out.push(resource(
                &build_arn,
                Kind::Component,
                comp.arn(),
                component(comp),
            ));
        }
    }
    out.push(resource(
        &recipe_arn,
        Kind::ContainerRecipe,
        recipe.arn(),
        container_recipe(recipe),
    ));
    Ok(out)
}

/// The build-version ARN a component reference names: as written when it
/// has a build number, else the highest matching version's newest build.
async fn build_version_arn(client: &Client, written: &str, arn: &Arn) -> Result<String, AwsError> {
    if written.split('/').count() == 4 {
        return Ok(written.to_string());
    }
    let selector = arn.version.clone().unwrap_or_else(|| "x.x.x".into());
    let mut versions: Vec<(Version, String)> = Vec::new();
    let name_filter = Filter::builder().name("name").values(&arn.name).build();
    let mut pages = client
        .list_components()
        .owner(Ownership::SelfValue)
        .filters(name_filter)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| call_error("ListComponents", written, e))?;
        for v in page.component_version_list() {
            if v.name() == Some(arn.name.as_str())
                && let (Some(ver), Some(varn)) =
                    (v.version().and_then(|s| Version::parse(s).ok()), v.arn())
            {
                versions.push((ver, varn.to_string()));
            }
        }
    }
    let Some((_, version_arn)) = versions::highest(&selector, &versions) else {
        let have: Vec<String> = versions.iter().map(|(v, _)| v.to_string()).collect();
        return Err(AwsError::NoVersion {
            name: arn.name.clone(),
            selector,
            have: if have.is_empty() {
                "none".into()
            } else {
                have.join(", ")
            },
        });
    };
    let builds = client
        .list_component_build_versions()
        .component_version_arn(version_arn)
        .send()
        .await;
    let builds = builds.map_err(|e| call_error("ListComponentBuildVersions", version_arn, e))?;
    builds
        .component_summary_list()
        .iter()
        .filter_map(|s| s.arn())
        .max_by_key(|a| {
            a.rsplit('/')
                .next()
                .and_then(|b| b.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .map(str::to_string)
        .ok_or_else(|| AwsError::NotFound {
            call: "ListComponentBuildVersions",
            arn: version_arn.clone(),
            message: "no build versions".into(),
        })
}

fn resource(source: &str, kind: Kind, arn: Option<&str>, props: Node) -> Resource {
    let id = arn.unwrap_or(source).to_string();
    Resource {
        file: format!("imagebuilder:{source}"),
        id,
        kind,
        props,
        path: String::new(),
        arn: arn.map(str::to_string),
    }
}

/// A map node from fields that are set.
fn obj(fields: Vec<(&str, Option<Value>)>) -> Node {
    let entries = fields
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), Node::new(1, v?))))
        .collect();
    Node::new(1, Value::Map(entries))
}

fn s(v: Option<&str>) -> Option<Value> {
    v.map(|t| Value::String(t.to_string()))
}

fn list(items: Vec<Node>) -> Option<Value> {
    (!items.is_empty()).then_some(Value::Seq(items))
}

fn set<T>(v: Option<T>) -> Option<Value> {
    v.map(|_| Value::String("(set)".into()))
}

fn container_recipe(r: &aws_sdk_imagebuilder::types::ContainerRecipe) -> Node {
    let comps = r.components().iter().map(|c| {
        let params = c
            .parameters()
            .iter()
            .map(|p| {
                obj(vec![
                    ("name", s(Some(p.name()))),
                    (
                        "value",
                        list(
                            p.value()
                                .iter()
                                .map(|v| Node::new(1, Value::String(v.clone())))
                                .collect(),
                        ),
                    ),
                ])
            })
            .collect();
        obj(vec![
            ("componentArn", s(Some(c.component_arn()))),
            ("parameters", list(params)),
        ])
    });
    let repo = r.target_repository().map(|t| {
        obj(vec![
            ("service", s(Some(t.service().as_str()))),
            ("repositoryName", s(Some(t.repository_name()))),
        ])
        .value
    });
    obj(vec![
        ("name", s(r.name())),
        ("version", s(r.version())),
        ("description", s(r.description())),
        ("containerType", s(r.container_type().map(|t| t.as_str()))),
        ("parentImage", s(r.parent_image())),
        ("dockerfileTemplateData", s(r.dockerfile_template_data())),
        ("workingDirectory", s(r.working_directory())),
        ("components", list(comps.collect())),
        ("targetRepository", repo),
        ("instanceConfiguration", set(r.instance_configuration())),
        ("kmsKeyId", s(r.kms_key_id())),
        ("tags", set(r.tags().filter(|t| !t.is_empty()))),
    ])
}

fn component(c: &aws_sdk_imagebuilder::types::Component) -> Node {
    obj(vec![
        ("name", s(c.name())),
        ("version", s(c.version())),
        ("platform", s(c.platform().map(|p| p.as_str()))),
        ("data", s(c.data())),
        ("description", s(c.description())),
        ("changeDescription", s(c.change_description())),
        (
            "supportedOsVersions",
            set((!c.supported_os_versions().is_empty()).then_some(())),
        ),
        ("kmsKeyId", s(c.kms_key_id())),
        ("tags", set(c.tags().filter(|t| !t.is_empty()))),
    ])
}

fn pipeline(p: &aws_sdk_imagebuilder::types::ImagePipeline) -> Node {
    let schedule = p.schedule().map(|sc| {
        obj(vec![
            ("scheduleExpression", s(sc.schedule_expression())),
            ("timezone", s(sc.timezone())),
            (
                "pipelineExecutionStartCondition",
                s(sc.pipeline_execution_start_condition().map(|c| c.as_str())),
            ),
            ("autoDisablePolicy", set(sc.auto_disable_policy())),
        ])
        .value
    });
    obj(vec![
        ("name", s(p.name())),
        ("description", s(p.description())),
        ("containerRecipeArn", s(p.container_recipe_arn())),
        ("imageRecipeArn", s(p.image_recipe_arn())),
        (
            "infrastructureConfigurationArn",
            s(p.infrastructure_configuration_arn()),
        ),
        (
            "distributionConfigurationArn",
            s(p.distribution_configuration_arn()),
        ),
        ("schedule", schedule),
        ("status", s(p.status().map(|st| st.as_str()))),
        (
            "imageTestsConfiguration",
            set(p.image_tests_configuration()),
        ),
        (
            "enhancedImageMetadataEnabled",
            p.enhanced_image_metadata_enabled().map(Value::Bool),
        ),
        (
            "imageScanningConfiguration",
            set(p.image_scanning_configuration()),
        ),
        ("executionRole", s(p.execution_role())),
        ("imageTags", set(p.image_tags().filter(|t| !t.is_empty()))),
        ("workflows", set((!p.workflows().is_empty()).then_some(()))),
        ("loggingConfiguration", set(p.logging_configuration())),
        ("tags", set(p.tags().filter(|t| !t.is_empty()))),
    ])
}

fn distribution(d: &aws_sdk_imagebuilder::types::DistributionConfiguration) -> Node {
    let entries = d.distributions().iter().map(|e| {
        let c = e.container_distribution_configuration().map(|c| {
            let repo = c.target_repository().map(|t| {
                obj(vec![
                    ("service", s(Some(t.service().as_str()))),
                    ("repositoryName", s(Some(t.repository_name()))),
                ])
                .value
            });
            let tags = c
                .container_tags()
                .iter()
                .map(|t| Node::new(1, Value::String(t.clone())))
                .collect();
            obj(vec![
                ("targetRepository", repo),
                ("containerTags", list(tags)),
            ])
            .value
        });
        obj(vec![
            ("region", s(Some(e.region()))),
            ("containerDistributionConfiguration", c),
            (
                "amiDistributionConfiguration",
                set(e.ami_distribution_configuration()),
            ),
            (
                "launchTemplateConfigurations",
                set((!e.launch_template_configurations().is_empty()).then_some(())),
            ),
            ("s3ExportConfiguration", set(e.s3_export_configuration())),
        ])
    });
    obj(vec![
        ("name", s(d.name())),
        ("description", s(d.description())),
        ("distributions", list(entries.collect())),
        (
            "timeoutMinutes",
            (d.timeout_minutes() != 0).then(|| Value::Number(d.timeout_minutes().to_string())),
        ),
        ("tags", set(d.tags().filter(|t| !t.is_empty()))),
    ])
}

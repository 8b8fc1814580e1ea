//! Stage 6 — test: runs the built image under limits, waits until it really
//! serves, runs the components' `test` phases and the structure tests inside
//! it, and removes it on every path. Input [`TestInput`], output
//! [`TestReport`].
//!
//! Test failures (not ready, a failing step) are data in the report;
//! [`TestPhaseError`] is for when the phase itself could not run (no engine,
//! no image, a Docker call failed, interrupted).

mod checks;
mod exec;
mod http;
mod metadata;
mod readiness;
pub mod report;
mod run;
mod s3_upload;
pub mod structure;

pub use checks::go_mode_string;
pub use exec::{StepLine, declared_steps, parse_step_line};
pub use readiness::{POLL, PROXY_CONFIRM, served_via_proxy};
pub use report::{CheckKind, CheckResult, ReadinessOutcome, TestReport};
pub use run::{
    LABEL_OWNER, LABEL_RECIPE, LABEL_ROLE, LABEL_RUN, PortAccess, ROLE_TEST, cleanup_leftovers,
    labelled_containers, labelled_networks, last_log_lines,
};
pub use structure::StructureTests;

mod flow;

pub use flow::{find_recipe_image, test_image, test_image_until};

use std::path::PathBuf;
use std::time::Duration;

use crate::diagnostic::Diagnostic;
use crate::load::{LoadedRecipe, TestConfig};
use crate::render::{RenderedBuild, TestScript};

/// Default cap on one component test script's run time.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(600);

/// What the test phase needs.
#[derive(Debug, Clone)]
pub struct TestInput {
    /// Image reference or id to run.
    pub image: String,
    /// Recipe name (labels, report).
    pub recipe: String,
    /// The recipe's `test` section.
    pub config: TestConfig,
    /// Component test phases, in recipe order.
    pub test_scripts: Vec<TestScript>,
    /// Parsed structure-test files.
    pub structure_tests: Vec<(PathBuf, StructureTests)>,
    /// Cap on one component test script.
    pub exec_timeout: Duration,
}

impl TestInput {
    /// The input for `image` built from `recipe`; reads its structure tests.
    pub fn from_recipe(
        recipe: &LoadedRecipe,
        rendered: &RenderedBuild,
        image: impl Into<String>,
    ) -> Result<Self, Diagnostic> {
        let structure_tests = recipe
            .test
            .structure_tests
            .iter()
            .map(|p| Ok((p.clone(), structure::load(p)?)))
            .collect::<Result<_, Diagnostic>>()?;
        Ok(TestInput {
            image: image.into(),
            recipe: recipe.name.clone(),
            config: recipe.test.clone(),
            test_scripts: rendered.test_scripts.clone(),
            structure_tests,
            exec_timeout: DEFAULT_EXEC_TIMEOUT,
        })
    }
}

/// Why the test phase could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestPhaseError {
    /// The engine did not answer.
    #[error("cannot connect to the docker engine at `{host}`")]
    Connect {
        /// `DOCKER_HOST` or the default socket.
        host: String,
        /// Cause.
        #[source]
        source: bollard::errors::Error,
    },
    /// The image is not in the local engine.
    #[error("image `{image}` not found in the docker engine")]
    ImageNotFound {
        /// Reference.
        image: String,
    },
    /// No image given and none labelled for the recipe.
    #[error("no image to test for recipe `{recipe}`: pass --image or build the recipe first")]
    NoImage {
        /// Recipe.
        recipe: String,
    },
    /// Inspecting the image failed.
    #[error("error inspecting image `{image}`")]
    InspectImage {
        /// Reference.
        image: String,
        /// Cause.
        #[source]
        source: bollard::errors::Error,
    },
    /// Creating the test container failed.
    #[error("error creating the test container from `{image}`")]
    CreateContainer {
        /// Reference.
        image: String,
        /// Cause.
        #[source]
        source: bollard::errors::Error,
    },
    /// Another Docker call failed.
    #[error("error trying to {action} `{container}`")]
    Docker {
        /// What kiln was doing.
        action: &'static str,
        /// Container (or network) id.
        container: String,
        /// Cause.
        #[source]
        source: bollard::errors::Error,
    },
    /// The engine did not publish the test port.
    #[error("port {port} of container `{container}` was not published")]
    PortNotPublished {
        /// Container id.
        container: String,
        /// Container port.
        port: u16,
    },
    /// An exec could not be created or started.
    #[error("error running `{command}` in container `{container}`")]
    Exec {
        /// Command line.
        command: String,
        /// Container id.
        container: String,
        /// Cause.
        #[source]
        source: bollard::errors::Error,
    },
    /// Building or reading a tar archive failed.
    #[error("error handling a tar archive for the test container")]
    Archive {
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A regex in the recipe's `test` section does not compile.
    #[error("invalid regex `{pattern}` in the recipe's test.{field}")]
    InvalidRegex {
        /// Field.
        field: &'static str,
        /// Pattern.
        pattern: String,
        /// Cause.
        #[source]
        source: regex::Error,
    },
    /// Shutdown was requested (Ctrl-C); the container was removed.
    #[error("interrupted; the test container was removed")]
    Interrupted,
}

impl TestPhaseError {
    pub(crate) fn docker(
        action: &'static str,
        container: &str,
        source: bollard::errors::Error,
    ) -> Self {
        TestPhaseError::Docker {
            action,
            container: container.to_string(),
            source,
        }
    }
}

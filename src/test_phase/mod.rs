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
mod files;
mod http;
pub mod keepalive;
mod metadata;
mod policy;
mod readiness;
pub mod report;
mod run;
mod s3_upload;

pub use crate::load::structure_test as structure;
pub use checks::go_mode_string;
pub use exec::{StepLine, declared_steps, parse_step_line};
pub use keepalive::{HELPER_PATH, helper_for};
pub use policy::TestPolicy;
pub use readiness::{POLL, PROXY_CONFIRM, served_via_proxy};
pub use report::{CheckKind, CheckResult, ContainerKind, ReadinessOutcome, TestReport};
pub use run::{
    LABEL_DAEMON_RUN, LABEL_OWNER, LABEL_RECIPE, LABEL_ROLE, LABEL_RUN, PortAccess, ROLE_TEST,
    cleanup_leftovers, cleanup_run, hostname, labelled_containers, labelled_networks,
    last_log_lines,
};
pub use structure::{StructureFile, StructureTests};

mod flow;

pub use flow::{find_built_image, test_image, test_image_until};

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
    /// The recipe's `test` section (its structure-test files already loaded).
    pub config: TestConfig,
    /// Component test phases, in recipe order.
    pub test_scripts: Vec<TestScript>,
    /// Cap on one component test script.
    pub exec_timeout: Duration,
    /// What the operator allows `containerRunOptions` to ask for.
    pub policy: TestPolicy,
    /// The daemon run this test is part of (`None` outside the daemon):
    /// its containers carry it ([`LABEL_DAEMON_RUN`]) so a restarted
    /// daemon can remove them once it knows the run is dead.
    pub daemon_run: Option<String>,
}

impl TestInput {
    /// The input for `image` built from `recipe`, with nothing loosened
    /// (the default [`TestPolicy`]); see [`TestInput::under`].
    pub fn from_recipe(
        recipe: &LoadedRecipe,
        rendered: &RenderedBuild,
        image: impl Into<String>,
    ) -> Result<Self, Diagnostic> {
        Self::under(recipe, rendered, image, TestPolicy::default())
    }

    /// The input for `image` built from `recipe`, under the operator's
    /// `policy` (`testContainers:` of the operator config). Unknown-key
    /// warnings of the structure-test files are logged; a privileged
    /// container or a bind mount the operator does not allow is a positioned
    /// error.
    pub fn under(
        recipe: &LoadedRecipe,
        rendered: &RenderedBuild,
        image: impl Into<String>,
        policy: TestPolicy,
    ) -> Result<Self, Diagnostic> {
        for w in recipe.test.warnings() {
            tracing::warn!("{w}");
        }
        policy.check(&recipe.test.structure_tests)?;
        Ok(TestInput {
            image: image.into(),
            recipe: recipe.name.clone(),
            config: recipe.test.clone(),
            test_scripts: rendered.test_scripts.clone(),
            exec_timeout: DEFAULT_EXEC_TIMEOUT,
            policy,
            daemon_run: None,
        })
    }

    /// Service (a readiness check is set) or image container.
    pub fn kind(&self) -> ContainerKind {
        let c = &self.config;
        if c.port.is_some() || c.http.is_some() || c.log_line.is_some() {
            ContainerKind::Service
        } else {
            ContainerKind::Image
        }
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
    /// No local image carries this project's build key for the recipe.
    #[error(
        "no image built from this project's inputs for recipe `{recipe}` (build key {build_key}): run `kiln build {recipe}` first, or pass --image"
    )]
    NotBuilt {
        /// Recipe.
        recipe: String,
        /// The key the project's inputs give.
        build_key: String,
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
    /// The container stopped while kiln was running a command in it; the
    /// flow turns this into a failed check (exit code and last log lines).
    #[error(
        "container `{container}` exited with code {exit_code} during the tests; last log lines:\n{logs}"
    )]
    ContainerExited {
        /// Container id.
        container: String,
        /// Its exit code.
        exit_code: i64,
        /// Its last log lines.
        logs: String,
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

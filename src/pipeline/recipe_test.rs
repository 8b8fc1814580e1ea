//! Runs recipe tests ([`crate::recipe_test`]): a `plan` run loads the
//! recipe with the test's `variables`, pins its parents (from `kiln.lock`,
//! else from the registry without writing the lock), renders it and
//! computes its build key and labels, then checks the assertions or the
//! expected failures. An `apply` run then builds the image under a scratch
//! tag (`kiln-test/<recipe>:<run>-<nonce>`, never pushed, no record, no
//! build state), runs the recipe's tests on it, and removes the tag — and
//! the image with it unless something else holds it — pass or fail. Test
//! containers are removed by the test phase itself.

use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{Pipeline, pins};
use crate::build::{self, BuildRequest, Prepared};
use crate::diagnostic::Diagnostics;
use crate::load::{self, LoadedRecipe};
use crate::recipe_test::{self, Command, PlanView, Run, RunResult};
use crate::render::{self, Pins, RenderedBuild};
use crate::test_phase;

/// A planned run: what the assertions and the apply step need.
struct Planned {
    recipe: LoadedRecipe,
    rendered: RenderedBuild,
    request: BuildRequest,
    prepared: Prepared,
}

/// How a plan ended before its assertions.
enum PlanEnd {
    Planned(Box<Planned>),
    /// The recipe was refused (validation or policy).
    Refused(Diagnostics),
    /// Something else failed (resolve, context scan), as a message.
    Broken(String),
}

impl Pipeline {
    /// Runs one `run` block of `file` and reports how it went.
    pub async fn test_recipe_run(
        &self,
        file: &recipe_test::TestFile,
        run: &Run,
        cancel: &CancellationToken,
    ) -> RunResult {
        let started = Instant::now();
        let (passed, messages) = match self.plan(run).await {
            PlanEnd::Refused(diags) if !run.expect_failures.is_empty() => {
                let problems = recipe_test::check_failures(&run.expect_failures, &diags);
                (problems.is_empty(), problems)
            }
            PlanEnd::Refused(diags) => {
                let lines = diags
                    .0
                    .iter()
                    .map(|d| recipe_test::one_line(&d.to_string()));
                (false, lines.collect())
            }
            PlanEnd::Broken(message) => (false, vec![message]),
            PlanEnd::Planned(_) if !run.expect_failures.is_empty() => {
                let rules = run.expect_failures.join(", ");
                (
                    false,
                    vec![format!("expected [{rules}] to fail, but the recipe passed")],
                )
            }
            PlanEnd::Planned(planned) => self.assert_and_apply(run, *planned, cancel).await,
        };
        RunResult {
            file: file.shown.clone(),
            name: run.name.clone(),
            command: run.command,
            passed,
            messages,
            elapsed: started.elapsed(),
        }
    }

    /// Load (with the test's variables) → pins → render → key and labels.
    /// A refusal is [`PlanEnd::Refused`] with the diagnostics and their
    /// rules; an operator policy check belongs right after the load, its
    /// violations refused the same way (rule = the policy key).
    async fn plan(&self, run: &Run) -> PlanEnd {
        let arg = if run.recipe.contains('/') {
            self.project.root().join(&run.recipe).display().to_string()
        } else {
            run.recipe.clone()
        };
        let recipe = match load::load_recipe_with(&self.project, &arg, &run.overrides) {
            Ok(r) => r,
            Err(d) => return PlanEnd::Refused(d),
        };
        let pins = match self.plan_pins(&recipe).await {
            Ok(p) => p,
            Err(e) => return PlanEnd::Broken(format!("resolve: {}", super::chain(&e))),
        };
        let mut rendered = render::render(&recipe, &pins);
        if let Err(e) = crate::s3::fetch_objects(&mut rendered).await {
            return PlanEnd::Broken(format!("render: {}", super::chain(&e)));
        }
        let request = BuildRequest::for_recipe(&recipe);
        let (r, q) = (rendered.clone(), request.clone());
        let prepared = match tokio::task::spawn_blocking(move || build::prepare(&r, &q)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return PlanEnd::Broken(format!("render: {}", super::chain(&e))),
            Err(e) => return PlanEnd::Broken(format!("render: {e}")),
        };
        PlanEnd::Planned(Box::new(Planned {
            recipe,
            rendered,
            request,
            prepared,
        }))
    }

    /// The lock's pins, else the registry's (the lock is not written: a
    /// test never changes the project).
    async fn plan_pins(&self, recipe: &LoadedRecipe) -> Result<Pins, pins::LockProblem> {
        if let Some(p) = pins::locked(&self.project, recipe)? {
            return Ok(p);
        }
        let refs = [pins::references(recipe)];
        let resolved =
            crate::resolve::resolve_all(&self.registry, &refs, &pins::options(recipe)).await?;
        let mut out = Pins::default();
        for image in resolved.into_iter().flat_map(|(_, images)| images) {
            out.0.insert(image.written.clone(), image.pinned.clone());
        }
        Ok(out)
    }

    async fn assert_and_apply(
        &self,
        run: &Run,
        planned: Planned,
        cancel: &CancellationToken,
    ) -> (bool, Vec<String>) {
        let view = PlanView {
            dockerfile: &planned.rendered.dockerfile,
            labels: &planned.prepared.labels,
            build_key: planned.prepared.build_key.digest.to_string(),
            components: planned
                .recipe
                .components
                .iter()
                .map(|c| c.component.name.clone())
                .collect(),
        };
        let misses = recipe_test::check_plan(&run.assert, &view);
        if !misses.is_empty() {
            return (false, misses);
        }
        if run.command == Command::Plan {
            return (true, vec![format!("build key {}", view.build_key)]);
        }
        let tag = scratch_tag(&planned.recipe.name, &run.name);
        let outcome = self.apply(planned, &tag, cancel).await;
        let removed = build::remove_tag(&self.docker, &run.name, &tag).await;
        let passed = outcome.is_ok();
        let mut messages = vec![outcome.unwrap_or_else(|m| m)];
        if let Err(e) = removed {
            messages.push(format!("cleanup: {}", super::chain(&e)));
        }
        (passed, messages)
    }

    /// Build under `tag` and test; `Ok` note or `Err` reason.
    async fn apply(
        &self,
        planned: Planned,
        tag: &str,
        cancel: &CancellationToken,
    ) -> Result<String, String> {
        let Planned {
            recipe,
            rendered,
            mut request,
            prepared,
        } = planned;
        request.tag = Some(tag.to_string());
        request.cancel = cancel.child_token();
        request.credentials = super::pull_credentials(&self.registry, &rendered)
            .await
            .map_err(|e| format!("build: {}", super::chain(&e)))?;
        let built = build::build_prepared(&self.docker, &rendered, &request, prepared, &mut |_| {})
            .await
            .map_err(|e| format!("build: {}", super::chain(&e)))?;
        let input = test_phase::TestInput::from_recipe(&recipe, &rendered, &built.image_id)
            .map_err(|d| format!("test: {}", recipe_test::one_line(&d.to_string())))?;
        let cancel = cancel.clone();
        let report =
            test_phase::test_image_until(
                &self.docker,
                &input,
                async move { cancel.cancelled().await },
            )
            .await
            .map_err(|e| format!("test: {}", super::chain(&e)))?;
        let passed = report.checks.iter().filter(|c| c.passed).count();
        let total = report.checks.len();
        if !report.passed {
            let failed: Vec<String> = report
                .failures()
                .map(|c| format!("{}: {}", c.name, c.detail.lines().next().unwrap_or("")))
                .collect();
            return Err(format!(
                "test: {passed} of {total} checks passed; failed: {}",
                failed.join("; ")
            ));
        }
        Ok(format!("built {tag}, {passed} of {total} checks passed"))
    }
}

/// `kiln-test/<recipe>:<run>-<nonce>`: the scratch tag of one apply run
/// (the run name reduced to tag characters).
fn scratch_tag(recipe: &str, run: &str) -> String {
    let run: String = run
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(80)
        .collect();
    let run = run.trim_start_matches(['-', '.']);
    format!(
        "kiln-test/{recipe}:{}{}-{:08x}",
        run,
        if run.is_empty() { "run" } else { "" },
        fastrand::u32(..)
    )
}

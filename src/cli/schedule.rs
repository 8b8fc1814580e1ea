//! `kiln schedule RECIPE [--next N]`: what a recipe's cron expression means —
//! its next fire times in UTC and in the recipe's time zone, as the daemon
//! would fire them.

use chrono::{DateTime, Utc};
use kiln::project::Project;
use kiln::schedule::{CronForm, parse_cron, upcoming};

use super::Outcome;

/// Arguments of `kiln schedule`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recipe name or path.
    pub recipe: String,
    /// How many fire times to print.
    #[arg(long, default_value_t = 5)]
    pub next: usize,
    /// Count from this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    pub after: Option<DateTime<Utc>>,
    /// Print the schedule and fire times as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Prints the schedule and its next fire times.
pub fn run(project: &Project, args: Args) -> Outcome {
    let recipe = match kiln::load::load_recipe(project, &args.recipe) {
        Ok(r) => r,
        Err(d) => {
            let summary = format!("recipe `{}` is invalid", args.recipe);
            return super::output::fail_invalid(d.0, summary);
        }
    };
    let Some(s) = &recipe.schedule else {
        return super::fail_msg(
            Outcome::Failed,
            format_args!("recipe `{}` has no schedule", recipe.name),
        );
    };
    let cron = match parse_cron(&s.cron) {
        Ok(c) => c,
        Err(e) => return super::fail(Outcome::Invalid, &e),
    };
    let form = match cron.form {
        CronForm::Kiln => "5-field cron",
        CronForm::ImageBuilder => "Image Builder cron",
    };
    let after = args.after.unwrap_or_else(Utc::now);
    let times = upcoming(&cron, s.timezone, after, args.next);
    if args.json {
        return super::output::json_result(&serde_json::json!({
            "recipe": recipe.name, "cron": s.cron, "form": form,
            "timezone": s.timezone.name(), "startCondition": s.start_condition.as_str(),
            "next": times.iter().map(|t| t.to_rfc3339()).collect::<Vec<_>>(),
        }));
    }
    outln!(
        "{}: `{}` ({form}) in {}, startCondition {}",
        recipe.name,
        s.cron,
        s.timezone.name(),
        s.start_condition.as_str()
    );
    for t in &times {
        let local = t.with_timezone(&s.timezone);
        outln!(
            "{}  {}",
            t.format("%Y-%m-%dT%H:%M:%SZ"),
            local.format("%a %Y-%m-%d %H:%M %Z")
        );
    }
    if times.len() < args.next {
        outln!("(no further fire times)");
    }
    Outcome::Ok
}

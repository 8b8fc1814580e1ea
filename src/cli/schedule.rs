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
}

/// Prints the schedule and its next fire times.
pub fn run(project: &Project, args: Args) -> Outcome {
    let recipe = match kiln::load::load_recipe(project, &args.recipe) {
        Ok(r) => r,
        Err(d) => {
            eprintln!("{d}");
            return Outcome::Failed;
        }
    };
    let Some(s) = &recipe.schedule else {
        eprintln!("error: recipe `{}` has no schedule", recipe.name);
        return Outcome::Failed;
    };
    let cron = match parse_cron(&s.cron) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Failed;
        }
    };
    let form = match cron.form {
        CronForm::Kiln => "5-field cron",
        CronForm::ImageBuilder => "Image Builder cron",
    };
    println!(
        "{}: `{}` ({form}) in {}, startCondition {}",
        recipe.name,
        s.cron,
        s.timezone.name(),
        s.start_condition.as_str()
    );
    let after = args.after.unwrap_or_else(Utc::now);
    let times = upcoming(&cron, s.timezone, after, args.next);
    for t in &times {
        let local = t.with_timezone(&s.timezone);
        println!(
            "{}  {}",
            t.format("%Y-%m-%dT%H:%M:%SZ"),
            local.format("%a %Y-%m-%d %H:%M %Z")
        );
    }
    if times.len() < args.next {
        println!("(no further fire times)");
    }
    Outcome::Ok
}

//! Progress of long steps (build steps, export + compression, uploads): an
//! indicatif bar on a terminal (`output::mode().progress`), the plain lines
//! kiln always printed otherwise (logs, CI, `--json`).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// One progress display for a command; lines printed through it appear
/// above the bar instead of garbling it.
#[derive(Default)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts (or restarts) a bar of `len` steps named `what`; without a
    /// terminal this only prints `what` when `plain` is set.
    pub fn start(&mut self, what: &str, len: u64) {
        self.finish();
        if !super::output::mode().progress {
            return;
        }
        let bar = ProgressBar::new(len);
        let style =
            ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        self.bar = Some(bar);
    }

    /// Moves the bar to `pos` with `message`.
    pub fn set(&self, pos: u64, message: &str) {
        if let Some(b) = &self.bar {
            b.set_position(pos);
            b.set_message(message.to_string());
        }
    }

    /// One more step done.
    pub fn inc(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }

    /// Whether a bar is showing (then per-step lines are left out).
    pub fn active(&self) -> bool {
        self.bar.is_some()
    }

    /// A line above the bar, or on stderr.
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(b) => b.println(text),
            None => errln!("{text}"),
        }
    }

    /// Removes the bar.
    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

//! Parses the Engine API build stream (classic builder text: `Step N/M : …`,
//! ` ---> Running in …`, output lines, `::kiln-step …` lines from component
//! scripts) into typed [`BuildEvent`]s, and keeps the full log. Pure: fed
//! strings, no Docker types.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Output lines kept per step for error reports.
pub const TAIL_LINES: usize = 20;

/// One `::kiln-step` line printed by the AWSTOE runtime.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KilnStep {
    /// Phase (`build`, `validate`).
    pub phase: String,
    /// Step name.
    pub step: String,
    /// `passed`, `failed`, `skipped`, …
    pub status: String,
    /// Exit code.
    pub exit: i32,
    /// Attempts made.
    pub attempts: u32,
    /// Duration in milliseconds.
    pub ms: u64,
}

impl KilnStep {
    /// Parses `::kiln-step phase=P step=S status=… exit=N attempts=A ms=T`.
    pub fn parse(line: &str) -> Option<KilnStep> {
        let rest = line.trim().strip_prefix("::kiln-step ")?;
        let mut s = KilnStep {
            phase: String::new(),
            step: String::new(),
            status: String::new(),
            exit: 0,
            attempts: 0,
            ms: 0,
        };
        for kv in rest.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            match k {
                "phase" => s.phase = v.to_string(),
                "step" => s.step = v.to_string(),
                "status" => s.status = v.to_string(),
                "exit" => s.exit = v.parse().ok()?,
                "attempts" => s.attempts = v.parse().ok()?,
                "ms" => s.ms = v.parse().ok()?,
                _ => {}
            }
        }
        Some(s)
    }
}

/// Something that happened during a build.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildEvent {
    /// An image with the same build key exists; nothing is built.
    Skipped {
        /// The existing image.
        image_id: String,
        /// The key.
        build_key: String,
    },
    /// These inputs changed since the last build of the recipe.
    InputsChanged {
        /// Human-readable changes, e.g. `dockerfile (changed)`.
        changes: Vec<String>,
    },
    /// A parent image is being pulled.
    Pulling {
        /// The reference.
        image: String,
    },
    /// A Dockerfile step started.
    Step {
        /// 1-based stage index.
        stage: usize,
        /// Stage name (`AS …`), if any.
        stage_name: Option<String>,
        /// Step number.
        number: u32,
        /// Steps in total.
        total: u32,
        /// The instruction as the daemon shows it.
        instruction: String,
    },
    /// A step finished.
    StepDone {
        /// 1-based stage index (under BuildKit several stages' steps
        /// can be open at once).
        stage: usize,
        /// Step number.
        number: u32,
        /// How long it took.
        elapsed: Duration,
        /// Whether the daemon's cache was used.
        cached: bool,
    },
    /// A line of output from a step.
    Output {
        /// The line, without colour codes.
        line: String,
    },
    /// A component step reported its result.
    KilnStep(KilnStep),
    /// The daemon reported an error.
    Error {
        /// The message.
        message: String,
    },
}

/// The step that is running.
#[derive(Debug, Clone, Default)]
pub struct CurrentStep {
    /// 1-based stage index.
    pub stage: usize,
    /// Stage name.
    pub stage_name: Option<String>,
    /// Step number.
    pub number: u32,
    /// Total steps.
    pub total: u32,
    /// Instruction.
    pub instruction: String,
    /// Last output lines.
    pub tail: VecDeque<String>,
}

/// Turns stream text into events; remembers what a report needs.
#[derive(Debug, Default)]
pub struct ProgressParser {
    partial: String,
    log: String,
    started: Option<Instant>,
    cached: bool,
    /// The running step.
    pub current: CurrentStep,
    /// Containers the daemon said it started (`Running in …`).
    pub containers: Vec<String>,
    /// Image ids of finished steps (` ---> …`), short form.
    pub layers: Vec<String>,
    /// Image id from `Successfully built …` or the `aux` record.
    pub image_id: Option<String>,
    /// Every `::kiln-step` line seen.
    pub kiln_steps: Vec<KilnStep>,
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else if c != '\r' {
            out.push(c);
        }
    }
    out
}

fn parse_step(line: &str) -> Option<(u32, u32, String)> {
    let rest = line.strip_prefix("Step ")?;
    let (nums, instruction) = rest.split_once(" : ")?;
    let (n, m) = nums.split_once('/')?;
    Some((n.parse().ok()?, m.parse().ok()?, instruction.to_string()))
}

fn stage_name(instruction: &str) -> Option<String> {
    let words: Vec<&str> = instruction.split_whitespace().collect();
    match words.as_slice() {
        [.., kw, name] if kw.eq_ignore_ascii_case("as") => Some(name.to_string()),
        _ => None,
    }
}

impl ProgressParser {
    /// A parser for a new build.
    pub fn new() -> Self {
        Self::default()
    }

    /// The full log so far.
    pub fn log(&self) -> &str {
        &self.log
    }

    /// Consumes the parser, returning the full log.
    pub fn into_log(self) -> String {
        self.log
    }

    /// Feeds a `stream` chunk; returns the events of every complete line.
    pub fn feed(&mut self, chunk: &str) -> Vec<BuildEvent> {
        self.partial.push_str(chunk);
        let mut events = Vec::new();
        while let Some(i) = self.partial.find('\n') {
            let raw: String = self.partial.drain(..=i).collect();
            self.line(&raw[..raw.len() - 1], &mut events);
        }
        events
    }

    /// Flushes a trailing line without a newline.
    pub fn finish(&mut self) -> Vec<BuildEvent> {
        let mut events = Vec::new();
        if !self.partial.is_empty() {
            let raw = std::mem::take(&mut self.partial);
            self.line(&raw, &mut events);
        }
        events.extend(self.end_step());
        events
    }

    /// Records a daemon error message.
    pub fn error(&mut self, message: &str) -> BuildEvent {
        self.log.push_str(message);
        self.log.push('\n');
        BuildEvent::Error {
            message: message.to_string(),
        }
    }

    fn end_step(&mut self) -> Option<BuildEvent> {
        let started = self.started.take()?;
        Some(BuildEvent::StepDone {
            stage: self.current.stage,
            number: self.current.number,
            elapsed: started.elapsed(),
            cached: std::mem::take(&mut self.cached),
        })
    }

    fn line(&mut self, raw: &str, events: &mut Vec<BuildEvent>) {
        let line = strip_ansi(raw);
        self.log.push_str(&line);
        self.log.push('\n');
        if let Some((number, total, instruction)) = parse_step(&line) {
            events.extend(self.end_step());
            let is_from = instruction
                .split_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case("FROM"));
            let (stage, name) = if is_from || self.current.stage == 0 {
                (self.current.stage + 1, stage_name(&instruction))
            } else {
                (self.current.stage, self.current.stage_name.clone())
            };
            self.current = CurrentStep {
                stage,
                stage_name: name.clone(),
                number,
                total,
                instruction: instruction.clone(),
                tail: VecDeque::new(),
            };
            self.started = Some(Instant::now());
            events.push(BuildEvent::Step {
                stage,
                stage_name: name,
                number,
                total,
                instruction,
            });
            return;
        }
        let trimmed = line.trim();
        if let Some(id) = trimmed.strip_prefix("---> Running in ") {
            self.containers.push(id.trim().to_string());
            return;
        }
        if trimmed == "---> Using cache" {
            self.cached = true;
            return;
        }
        if let Some(id) = trimmed.strip_prefix("---> ") {
            self.layers.push(id.trim().to_string());
            return;
        }
        if trimmed.starts_with("Removing intermediate container") {
            return;
        }
        if let Some(id) = trimmed.strip_prefix("Successfully built ") {
            self.image_id = Some(id.trim().to_string());
            events.extend(self.end_step());
            return;
        }
        if trimmed.starts_with("Successfully tagged ") || trimmed.is_empty() {
            return;
        }
        if self.current.tail.len() == TAIL_LINES {
            self.current.tail.pop_front();
        }
        self.current.tail.push_back(line.clone());
        match KilnStep::parse(&line) {
            Some(step) => {
                self.kiln_steps.push(step.clone());
                events.push(BuildEvent::KilnStep(step));
            }
            None => events.push(BuildEvent::Output { line }),
        }
    }
}

/// The exit code in a daemon error such as "The command '/bin/sh -c false'
/// returned a non-zero code: 3".
pub fn exit_code(message: &str) -> Option<i32> {
    for marker in ["returned a non-zero code: ", "exit code: "] {
        if let Some(i) = message.find(marker) {
            let digits: String = message[i + marker.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            return digits.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_classic_builder_stream() {
        let mut p = ProgressParser::new();
        let mut ev = p.feed("Step 1/3 : FROM base AS site\n ---> 70d9\nStep 2/3 : RUN x");
        ev.extend(p.feed("\n ---> Running in a8c4\n\u{1b}[91mkiln-toe: ==> build/A\n\u{1b}[0m"));
        ev.extend(p.feed("::kiln-step phase=build step=A status=passed exit=0 attempts=1 ms=5\n"));
        ev.extend(p.feed("Step 3/3 : FROM base\n"));
        ev.extend(p.feed("Successfully built 4c29f6e8b90e\n"));
        ev.extend(p.finish());
        let steps: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                BuildEvent::Step {
                    stage,
                    stage_name,
                    number,
                    ..
                } => Some((*stage, stage_name.clone(), *number)),
                _ => None,
            })
            .collect();
        assert_eq!(
            steps,
            vec![
                (1, Some("site".into()), 1),
                (1, Some("site".into()), 2),
                (2, None, 3)
            ]
        );
        assert!(ev.contains(&BuildEvent::Output {
            line: "kiln-toe: ==> build/A".into()
        }));
        assert_eq!(p.kiln_steps.len(), 1);
        assert_eq!(p.kiln_steps[0].ms, 5);
        assert_eq!(p.containers, vec!["a8c4"]);
        assert_eq!(p.image_id.as_deref(), Some("4c29f6e8b90e"));
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e, BuildEvent::StepDone { .. }))
                .count(),
            3
        );
    }

    #[test]
    fn finds_exit_codes() {
        assert_eq!(
            exit_code("The command '/bin/sh -c exit 3' returned a non-zero code: 3"),
            Some(3)
        );
        assert_eq!(
            exit_code("process did not complete: exit code: 42"),
            Some(42)
        );
        assert_eq!(exit_code("no such file"), None);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any build output line ends without a panic, also fed in pieces.
        #[test]
        fn arbitrary_lines_never_panic(text in "(::kiln-step |Step 1/2 : | ---> |\\PC|\n){0,100}") {
            let _ = KilnStep::parse(&text);
            let mut p = ProgressParser::new();
            for piece in text.as_bytes().chunks(7) {
                let _ = p.feed(&String::from_utf8_lossy(piece));
            }
        }

        /// The line toe.sh prints parses back to its fields.
        #[test]
        fn toe_lines_round_trip(
            phase in "build|validate",
            step in "[A-Za-z0-9_-]{1,20}",
            status in "passed|failed|ignored",
            exit in any::<i32>(),
            attempts in any::<u32>(),
            ms in any::<u64>(),
        ) {
            let line = format!("::kiln-step phase={phase} step={step} status={status} exit={exit} attempts={attempts} ms={ms}");
            let want = KilnStep { phase, step, status, exit, attempts, ms };
            prop_assert_eq!(KilnStep::parse(&line), Some(want));
        }
    }
}

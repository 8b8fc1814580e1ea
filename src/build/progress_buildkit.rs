//! Turns BuildKit's status stream (`StatusResponse` messages: vertices,
//! their logs) into the same [`BuildEvent`]s as the classic builder's text:
//! a vertex named `[stage n/m] INSTRUCTION` is a step, its completion a
//! `StepDone` (with `cached`), its log lines `Output` / `KilnStep`. Other
//! vertices (`[internal] …`, `exporting to image`) only go to the log.
//! Independent stages run at once, so several steps can be open together.
//! Pure: fed decoded messages, no IO.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bollard_buildkit_proto::google::protobuf::Timestamp;
use bollard_buildkit_proto::moby::buildkit::v1::{StatusResponse, Vertex};

use super::progress::{BuildEvent, CurrentStep, KilnStep, TAIL_LINES};

/// One vertex as far as the stream told.
#[derive(Debug, Default)]
struct VertexState {
    step: Option<CurrentStep>,
    announced: bool,
    done: bool,
    partial: String,
}

/// The BuildKit counterpart of [`super::progress::ProgressParser`].
#[derive(Debug, Default)]
pub struct BuildkitProgress {
    /// Stage names in Dockerfile order (`None` for an unnamed stage).
    stages: Vec<Option<String>>,
    vertices: HashMap<String, VertexState>,
    log: String,
    /// The first vertex that reported an error.
    pub failed: Option<CurrentStep>,
    /// Every `::kiln-step` line seen.
    pub kiln_steps: Vec<KilnStep>,
    /// Steps that ran (not cached), by their `[stage n/m] instruction` text.
    pub ran: Vec<String>,
    /// Steps answered from the cache.
    pub cached: Vec<String>,
}

/// `[NAME n/m] INSTRUCTION` or `[n/m] INSTRUCTION` → (name, n, m, instruction).
fn parse_name(name: &str) -> Option<(Option<&str>, u32, u32, &str)> {
    let rest = name.strip_prefix('[')?;
    let (head, instruction) = rest.split_once("] ")?;
    let (stage, nums) = match head.rsplit_once(' ') {
        Some((s, n)) => (Some(s), n),
        None => (None, head),
    };
    let (n, m) = nums.split_once('/')?;
    Some((stage, n.parse().ok()?, m.parse().ok()?, instruction))
}

fn seconds(t: &Option<Timestamp>) -> Option<f64> {
    t.as_ref()
        .map(|t| t.seconds as f64 + f64::from(t.nanos) / 1e9)
}

impl BuildkitProgress {
    /// A parser for a Dockerfile whose stages have these names, in order.
    pub fn new(stages: Vec<Option<String>>) -> Self {
        BuildkitProgress {
            stages,
            ..Default::default()
        }
    }

    /// The full log so far.
    pub fn log(&self) -> &str {
        &self.log
    }

    /// Consumes the parser, returning the full log.
    pub fn into_log(self) -> String {
        self.log
    }

    /// 1-based stage index and name for a vertex's stage label.
    fn stage(&self, label: Option<&str>) -> (usize, Option<String>) {
        let Some(label) = label else {
            return (self.stages.len().max(1), None);
        };
        if let Some(i) = self.stages.iter().position(|s| s.as_deref() == Some(label)) {
            return (i + 1, Some(label.to_string()));
        }
        match label
            .strip_prefix("stage-")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(i) => (i + 1, None),
            None => (0, Some(label.to_string())),
        }
    }

    /// Feeds one status message; returns what happened.
    pub fn feed(&mut self, status: &StatusResponse) -> Vec<BuildEvent> {
        let mut events = Vec::new();
        for v in &status.vertexes {
            self.vertex(v, &mut events);
        }
        for l in &status.logs {
            let text = String::from_utf8_lossy(&l.msg).into_owned();
            self.output(&l.vertex, &text, &mut events);
        }
        events
    }

    fn vertex(&mut self, v: &Vertex, events: &mut Vec<BuildEvent>) {
        let parsed = parse_name(&v.name).map(|(s, n, m, i)| (self.stage(s), n, m, i.to_string()));
        let state = self.vertices.entry(v.digest.clone()).or_default();
        if v.started.is_some() && !state.announced {
            state.announced = true;
            self.log.push_str(&format!("#> {}\n", v.name));
            if let Some(((stage, stage_name), number, total, instruction)) = parsed {
                let step = CurrentStep {
                    stage,
                    stage_name: stage_name.clone(),
                    number,
                    total,
                    instruction: instruction.clone(),
                    tail: VecDeque::new(),
                };
                state.step = Some(step);
                events.push(BuildEvent::Step {
                    stage,
                    stage_name,
                    number,
                    total,
                    instruction,
                });
            }
        }
        if !v.error.is_empty() && self.failed.is_none() {
            self.log.push_str(&format!("#! {}: {}\n", v.name, v.error));
            let step = state.step.clone().unwrap_or(CurrentStep {
                instruction: v.name.clone(),
                ..Default::default()
            });
            self.failed = Some(step);
        }
        if v.completed.is_some() && !state.done {
            state.done = true;
            let Some(step) = &state.step else {
                return;
            };
            let elapsed = match (seconds(&v.started), seconds(&v.completed)) {
                (Some(a), Some(b)) if b >= a => Duration::from_secs_f64(b - a),
                _ => Duration::ZERO,
            };
            let text = format!(
                "[{} {}/{}] {}",
                step.stage, step.number, step.total, step.instruction
            );
            if v.cached {
                self.cached.push(text);
            } else if v.error.is_empty() {
                self.ran.push(text);
            }
            self.log.push_str(&format!(
                "#= {} done in {:.1}s{}\n",
                v.name,
                elapsed.as_secs_f64(),
                if v.cached { " (cached)" } else { "" }
            ));
            events.push(BuildEvent::StepDone {
                stage: step.stage,
                number: step.number,
                elapsed,
                cached: v.cached,
            });
        }
    }

    fn output(&mut self, vertex: &str, text: &str, events: &mut Vec<BuildEvent>) {
        let state = self.vertices.entry(vertex.to_string()).or_default();
        state.partial.push_str(text);
        let mut lines = Vec::new();
        while let Some(i) = state.partial.find('\n') {
            let raw: String = state.partial.drain(..=i).collect();
            lines.push(raw[..raw.len() - 1].trim_end_matches('\r').to_string());
        }
        for line in lines {
            self.line(vertex, line, events);
        }
    }

    fn line(&mut self, vertex: &str, line: String, events: &mut Vec<BuildEvent>) {
        self.log.push_str(&line);
        self.log.push('\n');
        if let Some(step) = self.vertices.get_mut(vertex).and_then(|s| s.step.as_mut()) {
            if step.tail.len() == TAIL_LINES {
                step.tail.pop_front();
            }
            step.tail.push_back(line.clone());
        }
        match KilnStep::parse(&line) {
            Some(step) => {
                self.kiln_steps.push(step.clone());
                events.push(BuildEvent::KilnStep(step));
            }
            None => events.push(BuildEvent::Output { line }),
        }
    }

    /// The step that failed, with its last lines (refreshed from the
    /// vertex, whose logs may have come after its error).
    pub fn failed_step(&self) -> Option<CurrentStep> {
        let failed = self.failed.as_ref()?;
        let fresh = self
            .vertices
            .values()
            .filter_map(|v| v.step.as_ref())
            .find(|s| {
                s.stage == failed.stage
                    && s.number == failed.number
                    && s.instruction == failed.instruction
            });
        Some(fresh.unwrap_or(failed).clone())
    }

    /// Records a daemon error message.
    pub fn error(&mut self, message: &str) -> BuildEvent {
        self.log.push_str(message);
        self.log.push('\n');
        BuildEvent::Error {
            message: message.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_buildkit_proto::moby::buildkit::v1::VertexLog;

    fn ts(s: i64) -> Option<Timestamp> {
        Some(Timestamp {
            seconds: s,
            nanos: 0,
        })
    }

    fn vertex(
        d: &str,
        name: &str,
        started: Option<i64>,
        done: Option<i64>,
        cached: bool,
    ) -> Vertex {
        Vertex {
            digest: d.into(),
            name: name.into(),
            started: started.and_then(ts),
            completed: done.and_then(ts),
            cached,
            ..Default::default()
        }
    }

    #[test]
    fn names_parse_with_and_without_a_stage() {
        assert_eq!(
            parse_name("[build 2/3] RUN x"),
            Some((Some("build"), 2, 3, "RUN x"))
        );
        assert_eq!(parse_name("[1/2] FROM a"), Some((None, 1, 2, "FROM a")));
        assert_eq!(parse_name("[internal] load .dockerignore"), None);
        assert_eq!(parse_name("exporting to image"), None);
    }

    #[test]
    fn steps_logs_and_cache_hits_become_events() {
        let mut p = BuildkitProgress::new(vec![Some("a".into()), None]);
        let mut msg = StatusResponse {
            vertexes: vec![
                vertex("d1", "[a 2/2] RUN echo hi", Some(10), None, false),
                vertex("d2", "[stage-1 1/2] FROM base", Some(10), Some(10), true),
                vertex(
                    "d0",
                    "[internal] load build context",
                    Some(9),
                    Some(9),
                    false,
                ),
            ],
            ..Default::default()
        };
        let ev = p.feed(&msg);
        assert!(
            matches!(&ev[0], BuildEvent::Step { stage: 1, number: 2, stage_name: Some(n), .. } if n == "a")
        );
        assert!(matches!(
            &ev[1],
            BuildEvent::Step {
                stage: 2,
                number: 1,
                stage_name: None,
                ..
            }
        ));
        assert!(matches!(&ev[2], BuildEvent::StepDone { cached: true, .. }));
        assert_eq!(ev.len(), 3);
        msg.vertexes = vec![vertex(
            "d1",
            "[a 2/2] RUN echo hi",
            Some(10),
            Some(13),
            false,
        )];
        msg.logs = vec![VertexLog {
            vertex: "d1".into(),
            msg: b"hi\n::kiln-step phase=build step=s status=passed exit=0 attempts=1 ms=5\n"
                .to_vec(),
            ..Default::default()
        }];
        let ev = p.feed(&msg);
        assert!(
            matches!(&ev[0], BuildEvent::StepDone { number: 2, cached: false, elapsed, .. } if elapsed.as_secs() == 3)
        );
        assert!(matches!(&ev[1], BuildEvent::Output { line } if line == "hi"));
        assert!(matches!(&ev[2], BuildEvent::KilnStep(_)));
        assert_eq!(p.cached, vec!["[2 1/2] FROM base"]);
        assert_eq!(p.ran, vec!["[1 2/2] RUN echo hi"]);
    }

    #[test]
    fn a_failed_vertex_keeps_its_last_lines() {
        let mut p = BuildkitProgress::new(vec![None]);
        let mut v = vertex("d1", "[2/2] RUN exit 3", Some(1), None, false);
        p.feed(&StatusResponse {
            vertexes: vec![v.clone()],
            logs: vec![VertexLog {
                vertex: "d1".into(),
                msg: b"boom\n".to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        });
        v.error = "exit code: 3".into();
        v.completed = ts(2);
        p.feed(&StatusResponse {
            vertexes: vec![v],
            ..Default::default()
        });
        let f = p.failed_step().unwrap();
        assert_eq!((f.number, f.total), (2, 2));
        assert_eq!(f.tail, vec!["boom".to_string()]);
    }
}

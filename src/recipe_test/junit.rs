//! JUnit XML for `kiln test-recipes --junit FILE`: one `<testsuite>` per
//! test file, one `<testcase>` per run (classname = the file, name = the
//! run), a `<failure>` carrying every message of a failed run.

use std::fmt::Write;
use std::path::PathBuf;

use super::RunResult;
use crate::test_phase::report::xml_escape;

/// The report of `results` (in the order they ran).
pub fn to_junit(results: &[RunResult]) -> String {
    let mut files: Vec<&PathBuf> = Vec::new();
    for r in results {
        if !files.contains(&&r.file) {
            files.push(&r.file);
        }
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    let total: f64 = results.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"kiln test-recipes\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" time=\"{total:.3}\">",
        results.len()
    );
    for file in files {
        let runs: Vec<&RunResult> = results.iter().filter(|r| &r.file == file).collect();
        let failed = runs.iter().filter(|r| !r.passed).count();
        let time: f64 = runs.iter().map(|r| r.elapsed.as_secs_f64()).sum();
        let name = xml_escape(&file.display().to_string());
        let _ = writeln!(
            x,
            "  <testsuite name=\"{name}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" skipped=\"0\" time=\"{time:.3}\">",
            runs.len()
        );
        for r in runs {
            let _ = write!(
                x,
                "    <testcase name=\"{}\" classname=\"{name}\" time=\"{:.3}\"",
                xml_escape(&r.name),
                r.elapsed.as_secs_f64()
            );
            if r.passed {
                x.push_str("/>\n");
            } else {
                let first = r.messages.first().map(String::as_str).unwrap_or("failed");
                let _ = writeln!(
                    x,
                    ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
                    xml_escape(first),
                    r.command.as_str(),
                    xml_escape(&r.messages.join("\n"))
                );
            }
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

//! The body of one step's bash function: each action input becomes a call
//! to the matching `toe_a_*` function of `toe.sh`. Every value is one
//! single-quoted word; values holding runtime placeholders (loop variables,
//! chained outputs and inputs) are substituted by `toe_s` first.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::toe_script::{shell_quote, substitute};
use crate::load::actions::{Action, Encoding};
use crate::load::component::placeholders;
use crate::load::condition::Condition;

/// Writes `toe_s 'text'; local aN=$TOE_R` lines and the action calls.
pub(crate) struct Body<'a> {
    /// The function body so far.
    pub text: String,
    n: usize,
    values: &'a BTreeMap<String, String>,
    /// Chained input names other steps use (`build.S.inputs[0].path`).
    referenced: &'a BTreeSet<String>,
    /// `phase.step` of this step.
    key: String,
    /// The step's number in the script (names its S3 folder).
    pub step_no: usize,
    /// S3 objects the step places, fetched into the context before the build.
    pub s3: Vec<S3Request>,
    /// Files the step stages for upload (test phase).
    pub uploads: Vec<S3Upload>,
}

/// An S3Upload input: the step stages the files (and the destination URL,
/// substituted at run time) in `folder`; the test phase copies that folder
/// out of the container and uploads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Upload {
    /// `phase.step`, for messages.
    pub step: String,
    /// Step name as the `::kiln-step` line shows it (`Parent/Step` in a
    /// nested document).
    pub shown: String,
    /// Account id the bucket must belong to.
    pub expected_bucket_owner: Option<String>,
    /// `upload/<step>-<input>`, relative to the script's folder.
    pub folder: String,
}

/// An S3Download input: kiln fetches `source` into `folder` (under the
/// component's generated folder) before the build; the step places it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Request {
    /// The step, for messages.
    pub step: String,
    /// `s3://bucket/key` or `s3://bucket/prefix/*`, parameters substituted.
    pub source: String,
    /// Account id the bucket must belong to.
    pub expected_bucket_owner: Option<String>,
    /// `s3/<step>-<input>`, relative to the component's generated folder.
    pub folder: String,
}

impl<'a> Body<'a> {
    pub(crate) fn new(
        values: &'a BTreeMap<String, String>,
        referenced: &'a BTreeSet<String>,
        key: String,
    ) -> Self {
        Body {
            text: String::new(),
            n: 0,
            values,
            referenced,
            key,
            step_no: 0,
            s3: Vec::new(),
            uploads: Vec::new(),
        }
    }

    /// One bash word for `text`: parameters and constants substituted now,
    /// runtime placeholders when the step runs.
    pub(crate) fn arg(&mut self, text: &str) -> String {
        let text = substitute(text, self.values);
        if placeholders(&text).is_empty() {
            return shell_quote(&text);
        }
        self.n += 1;
        let _ = writeln!(
            self.text,
            "  toe_s {}; local a{}=$TOE_R",
            shell_quote(&text),
            self.n
        );
        format!("\"$a{}\"", self.n)
    }

    /// [`Body::arg`] of an optional value (`''` when absent).
    fn opt(&mut self, text: Option<&str>) -> String {
        text.map(|t| self.arg(t)).unwrap_or_else(|| shell_quote(""))
    }

    /// Like [`Body::arg`], and records the value when a later step chains
    /// it as `{{ phase.step.inputs[i].field }}`.
    fn field(&mut self, index: Option<usize>, field: &str, text: &str) -> String {
        let word = self.arg(text);
        let name = match index {
            Some(i) => format!("{}.inputs[{i}].{field}", self.key),
            None => format!("{}.inputs.{field}", self.key),
        };
        if self.referenced.contains(&name) {
            let _ = writeln!(self.text, "  TOE_OUT[{}]={word}", shell_quote(&name));
        }
        word
    }

    fn call(&mut self, func: &str, args: &[String]) {
        let _ = writeln!(self.text, "  toe_a_{func} {} || return $?", args.join(" "));
    }

    /// A bash command list that succeeds when `c` is true.
    pub(crate) fn condition(&mut self, c: &Condition) -> String {
        match c {
            Condition::Compare { op, operand, value } => {
                let mut s = format!("toe_cmp {op} {}", self.arg(operand));
                if let Some(v) = value {
                    s.push(' ');
                    s.push_str(&self.arg(v));
                }
                s
            }
            Condition::And(parts) | Condition::Or(parts) => {
                let sep = if matches!(c, Condition::And(_)) {
                    " && "
                } else {
                    " || "
                };
                let parts: Vec<String> = parts.iter().map(|p| self.condition(p)).collect();
                format!("{{ {}; }}", parts.join(sep))
            }
            Condition::Not(inner) => format!("{{ ! {}; }}", self.condition(inner)),
        }
    }
}

fn owner_call(
    b: &mut Body<'_>,
    n: usize,
    path: &str,
    owner: &str,
    group: Option<&str>,
    recursive: &str,
) {
    let args = [
        b.field(Some(n), "path", path),
        b.arg(owner),
        b.opt(group),
        recursive.to_string(),
    ];
    b.call("SetOwner", &args);
}

/// `toe_a_S3Download`/`toe_a_S3Upload FOLDER SOURCE DESTINATION FLAG`.
fn s3_call(
    b: &mut Body<'_>,
    func: &str,
    folder: &str,
    n: usize,
    (source, destination): (&str, &str),
    last: String,
) {
    let args = [
        format!("\"$TOE_DIR\"/{folder}"),
        b.field(Some(n), "source", source),
        b.field(Some(n), "destination", destination),
        last,
    ];
    b.call(func, &args);
}

fn flag(b: Option<bool>, default: bool) -> String {
    if b.unwrap_or(default) {
        "true"
    } else {
        "false"
    }
    .to_string()
}

fn enc(e: Option<Encoding>) -> String {
    e.unwrap_or(Encoding::Utf8).as_str().to_string()
}

/// The body of the step function for `action`; `nested` is the function
/// that runs a nested document (ExecuteDocument).
pub(crate) fn step_body(b: &mut Body<'_>, action: &Action, nested: Option<&str>) {
    let q = |s: &str| shell_quote(s);
    let oq = |s: &Option<String>| shell_quote(s.as_deref().unwrap_or(""));
    match action {
        Action::ExecuteBash { commands } => {
            let s = b.arg(&commands.join("\n"));
            b.call("ExecuteBash", &[s]);
        }
        Action::ExecuteBinary(i) => {
            let mut args = vec![b.field(None, "path", &i.path)];
            for x in &i.arguments {
                args.push(b.arg(x));
            }
            b.call("ExecuteBinary", &args);
        }
        Action::ExecuteDocument(_) => {
            let f = nested.expect("nested document rendered");
            let _ = writeln!(b.text, "  ( {f} ) || return $?");
        }
        Action::Assert(c) => {
            let expr = b.condition(c);
            let _ = writeln!(
                b.text,
                "  {expr} || {{ toe_log 'Assert: the expression is false'; return 1; }}"
            );
        }
        Action::CreateFile(v) => v.iter().enumerate().for_each(|(n, i)| {
            let args = [
                b.field(Some(n), "path", &i.path),
                b.field(Some(n), "content", &i.content),
                enc(i.encoding),
                oq(&i.permissions),
                oq(&i.owner),
                oq(&i.group),
                flag(i.overwrite, true),
            ];
            b.call("CreateFile", &args);
        }),
        Action::AppendFile(v) => v.iter().enumerate().for_each(|(n, i)| {
            let args = [
                b.field(Some(n), "path", &i.path),
                b.field(Some(n), "content", &i.content),
                enc(i.encoding),
            ];
            b.call("AppendFile", &args);
        }),
        Action::CreateFolder(v) => v.iter().enumerate().for_each(|(n, i)| {
            let args = [
                b.field(Some(n), "path", &i.path),
                oq(&i.permissions),
                oq(&i.owner),
                oq(&i.group),
                flag(i.overwrite, true),
            ];
            b.call("CreateFolder", &args);
        }),
        Action::CopyFile(v)
        | Action::CopyFolder(v)
        | Action::MoveFile(v)
        | Action::MoveFolder(v) => {
            let kind = match action {
                Action::CopyFile(_) => "copy file",
                Action::CopyFolder(_) => "copy folder",
                Action::MoveFile(_) => "move file",
                _ => "move folder",
            };
            for (n, i) in v.iter().enumerate() {
                let args = [
                    q(kind),
                    b.field(Some(n), "source", &i.source),
                    b.field(Some(n), "destination", &i.destination),
                    flag(i.overwrite, true),
                ];
                b.call("Transfer", &args);
            }
        }
        Action::DeleteFile(v) => v.iter().enumerate().for_each(|(n, i)| {
            let args = [b.field(Some(n), "path", &i.path)];
            b.call("DeleteFile", &args);
        }),
        Action::DeleteFolder(v) => v.iter().enumerate().for_each(|(n, i)| {
            let args = [b.field(Some(n), "path", &i.path), flag(i.force, false)];
            b.call("DeleteFolder", &args);
        }),
        Action::ListFiles(v) => v.iter().enumerate().for_each(|(n, i)| {
            let pattern = b.opt(i.file_name_pattern.as_deref());
            let args = [
                b.field(Some(n), "path", &i.path),
                pattern,
                flag(i.recursive, false),
            ];
            b.call("ListFiles", &args);
        }),
        Action::ReadFile(v) => v.iter().enumerate().for_each(|(n, i)| {
            let args = [
                b.field(Some(n), "path", &i.path),
                enc(i.encoding),
                flag(i.print_file_content, false),
            ];
            b.call("ReadFile", &args);
        }),
        Action::SetFileEncoding(v) => v.iter().enumerate().for_each(|(n, i)| {
            let args = [b.field(Some(n), "path", &i.path), enc(i.encoding)];
            b.call("SetFileEncoding", &args);
        }),
        Action::SetFilePermissions(v) => v.iter().enumerate().for_each(|(n, i)| {
            let args = [
                b.field(Some(n), "path", &i.path),
                b.arg(&i.permissions),
                q("false"),
            ];
            b.call("SetPermissions", &args);
        }),
        Action::SetFolderPermissions(v) => v.iter().enumerate().for_each(|(n, i)| {
            let args = [
                b.field(Some(n), "path", &i.path),
                b.arg(&i.permissions),
                flag(i.recursive, true),
            ];
            b.call("SetPermissions", &args);
        }),
        Action::SetFileOwner(v) => v
            .iter()
            .enumerate()
            .for_each(|(n, i)| owner_call(b, n, &i.path, &i.owner, i.group.as_deref(), "false")),
        Action::SetFolderOwner(v) => v.iter().enumerate().for_each(|(n, i)| {
            let recursive = flag(i.recursive, true);
            owner_call(b, n, &i.path, &i.owner, i.group.as_deref(), &recursive)
        }),
        Action::CreateSymlink(v) => v.iter().enumerate().for_each(|(n, i)| {
            let args = [
                b.field(Some(n), "path", &i.path),
                b.field(Some(n), "target", &i.target),
                flag(i.force, false),
            ];
            b.call("CreateSymlink", &args);
        }),
        Action::WebDownload(v) => v.iter().enumerate().for_each(|(n, i)| {
            let checksum = b.opt(i.checksum.as_deref());
            let algorithm = b.opt(i.algorithm.as_deref());
            let args = [
                b.field(Some(n), "source", &i.source),
                b.field(Some(n), "destination", &i.destination),
                flag(i.overwrite, true),
                checksum,
                algorithm,
                flag(i.ignore_certificate_errors, false),
            ];
            b.call("WebDownload", &args);
        }),
        Action::S3Download(v) => v.iter().enumerate().for_each(|(n, i)| {
            let folder = format!("s3/{}-{n}", b.step_no);
            b.s3.push(S3Request {
                step: b.key.clone(),
                source: substitute(&i.source, b.values),
                expected_bucket_owner: i
                    .expected_bucket_owner
                    .as_ref()
                    .map(|o| substitute(o, b.values)),
                folder: folder.clone(),
            });
            let overwrite = flag(i.overwrite, true);
            s3_call(
                b,
                "S3Download",
                &folder,
                n,
                (&i.source, &i.destination),
                overwrite,
            );
        }),
        Action::S3Upload(v) => v.iter().enumerate().for_each(|(n, i)| {
            let folder = format!("upload/{}-{n}", b.step_no);
            b.uploads.push(S3Upload {
                step: b.key.clone(),
                shown: String::new(), // set by the script writer
                expected_bucket_owner: i
                    .expected_bucket_owner
                    .as_ref()
                    .map(|o| substitute(o, b.values)),
                folder: folder.clone(),
            });
            let recurse = flag(i.recurse, false);
            s3_call(
                b,
                "S3Upload",
                &folder,
                n,
                (&i.source, &i.destination),
                recurse,
            );
        }),
        Action::UpdateOS(u) => {
            let mut args = vec![u.include.len().to_string()];
            for p in u.include.iter().chain(&u.exclude) {
                args.push(b.arg(p));
            }
            b.call("UpdateOS", &args);
        }
    }
}

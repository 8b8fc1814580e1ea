//! AWSTOE action modules that make sense inside a Linux container image,
//! with their typed inputs ([`super::action_inputs`]). Anything else is
//! refused at load time with the true reason.

pub use super::action_inputs::*;
use super::component::Component;
use super::condition::{self, Condition};

/// Actions kiln runs, by AWSTOE name.
pub const SUPPORTED_ACTIONS: &[&str] = &[
    "ExecuteBash",
    "ExecuteBinary",
    "ExecuteDocument",
    "Assert",
    "CreateFile",
    "AppendFile",
    "CreateFolder",
    "CopyFile",
    "CopyFolder",
    "MoveFile",
    "MoveFolder",
    "DeleteFile",
    "DeleteFolder",
    "ListFiles",
    "ReadFile",
    "SetFileEncoding",
    "SetFilePermissions",
    "SetFolderPermissions",
    "SetFileOwner",
    "SetFolderOwner",
    "CreateSymlink",
    "WebDownload",
    "UpdateOS",
    "S3Download",
    "S3Upload",
];

/// Why a known AWSTOE action is refused.
pub fn unsupported_reason(action: &str) -> Option<&'static str> {
    Some(match action {
        "Reboot" => {
            "a container build cannot reboot: each build step is a fresh process in a container, there is no machine to restart and resume; remove the step (AWSTOE's reboot-and-resume does not apply to container images)"
        }
        "ExecutePowerShell" | "InstallMSI" | "UninstallMSI" | "SetRegistry" => {
            "it is a Windows-only AWSTOE action module and kiln builds Linux container images"
        }
        _ => return None,
    })
}

/// A validated action with its inputs.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `inputs.commands`, run by bash as one script.
    ExecuteBash {
        /// Commands, joined into one bash script.
        commands: Vec<String>,
    },
    /// `inputs.path` with `inputs.arguments`.
    ExecuteBinary(ExecuteBinaryInput),
    /// Runs phases of a nested document.
    ExecuteDocument(Box<NestedDocument>),
    /// Fails the step when the expression is false.
    Assert(Condition),
    /// Creates files.
    CreateFile(Vec<FileInput>),
    /// Appends to existing files.
    AppendFile(Vec<AppendInput>),
    /// Creates folders.
    CreateFolder(Vec<FolderInput>),
    /// Copies files.
    CopyFile(Vec<CopyInput>),
    /// Copies folders.
    CopyFolder(Vec<CopyInput>),
    /// Moves files.
    MoveFile(Vec<CopyInput>),
    /// Moves folders.
    MoveFolder(Vec<CopyInput>),
    /// Deletes files.
    DeleteFile(Vec<PathInput>),
    /// Deletes folders.
    DeleteFolder(Vec<DeleteFolderInput>),
    /// Lists files (output `files`).
    ListFiles(Vec<ListFilesInput>),
    /// Reads files (output `content`).
    ReadFile(Vec<ReadFileInput>),
    /// Re-encodes UTF-8 files.
    SetFileEncoding(Vec<EncodingInput>),
    /// chmod files.
    SetFilePermissions(Vec<FilePermissionsInput>),
    /// chmod folders.
    SetFolderPermissions(Vec<FolderPermissionsInput>),
    /// chown files.
    SetFileOwner(Vec<FileOwnerInput>),
    /// chown folders.
    SetFolderOwner(Vec<FolderOwnerInput>),
    /// ln -s.
    CreateSymlink(Vec<SymlinkInput>),
    /// Downloads over HTTP(S) (output `destination`).
    WebDownload(Vec<WebDownloadInput>),
    /// Upgrades packages with the image's package manager.
    UpdateOS(UpdateOsInput),
    /// Objects kiln fetches on the host into the build context; the step
    /// places them.
    S3Download(Vec<S3DownloadInput>),
    /// Files the test phase stages in the container; kiln copies them out
    /// and uploads them.
    S3Upload(Vec<S3UploadInput>),
}

/// An ExecuteDocument step: the inputs and, once loaded, the document.
#[derive(Debug, Clone, PartialEq)]
pub struct NestedDocument {
    /// As written.
    pub input: ExecuteDocumentInput,
    /// The nested document, resolved by the loader.
    pub component: Option<Component>,
}

impl Action {
    /// Outputs other steps can chain as `{{ phase.step.outputs.NAME }}`.
    pub fn outputs(&self) -> &'static [&'static str] {
        match self {
            Action::ExecuteBash { .. } | Action::ExecuteBinary(_) => &["stdout"],
            Action::WebDownload(_) => &["destination"],
            Action::ReadFile(_) => &["content"],
            Action::ListFiles(_) => &["files"],
            _ => &[],
        }
    }

    /// Each input's string fields as `(index, field, text)`; index `None`
    /// for actions whose inputs are one map. Used for placeholder checks and
    /// for chaining by input (`{{ phase.step.inputs[0].destination }}`).
    pub fn input_fields(&self) -> Vec<(Option<usize>, &'static str, &str)> {
        type Fields<'a> = Vec<(&'static str, &'a str)>;
        fn each<'a, T>(
            v: &'a [T],
            f: impl Fn(&'a T) -> Fields<'a>,
        ) -> Vec<(Option<usize>, &'static str, &'a str)> {
            v.iter()
                .enumerate()
                .flat_map(|(i, x)| f(x).into_iter().map(move |(k, t)| (Some(i), k, t)))
                .collect()
        }
        fn path(p: &str) -> (&'static str, &str) {
            ("path", p)
        }
        match self {
            Action::ExecuteBinary(b) => vec![(None, "path", b.path.as_str())],
            Action::ExecuteDocument(d) => vec![(None, "document", d.input.document.as_str())],
            Action::ExecuteBash { .. } | Action::Assert(_) | Action::UpdateOS(_) => Vec::new(),
            Action::CreateFile(v) => each(v, |x| vec![path(&x.path), ("content", &x.content)]),
            Action::AppendFile(v) => each(v, |x| vec![path(&x.path), ("content", &x.content)]),
            Action::CreateFolder(v) => each(v, |x| vec![path(&x.path)]),
            Action::CopyFile(v)
            | Action::CopyFolder(v)
            | Action::MoveFile(v)
            | Action::MoveFolder(v) => each(v, |x| {
                vec![("source", &x.source), ("destination", &x.destination)]
            }),
            Action::DeleteFile(v) => each(v, |x| vec![path(&x.path)]),
            Action::DeleteFolder(v) => each(v, |x| vec![path(&x.path)]),
            Action::ListFiles(v) => each(v, |x| vec![path(&x.path)]),
            Action::ReadFile(v) => each(v, |x| vec![path(&x.path)]),
            Action::SetFileEncoding(v) => each(v, |x| vec![path(&x.path)]),
            Action::SetFilePermissions(v) => each(v, |x| vec![path(&x.path)]),
            Action::SetFolderPermissions(v) => each(v, |x| vec![path(&x.path)]),
            Action::SetFileOwner(v) => each(v, |x| vec![path(&x.path)]),
            Action::SetFolderOwner(v) => each(v, |x| vec![path(&x.path)]),
            Action::CreateSymlink(v) => each(v, |x| vec![path(&x.path), ("target", &x.target)]),
            Action::WebDownload(v) => each(v, |x| {
                vec![("source", &x.source), ("destination", &x.destination)]
            }),
            Action::S3Download(v) => each(v, |x| {
                vec![("source", &x.source), ("destination", &x.destination)]
            }),
            Action::S3Upload(v) => each(v, |x| {
                vec![("source", &x.source), ("destination", &x.destination)]
            }),
        }
    }
}

fn list<T: serde::de::DeserializeOwned>(
    inputs: Option<&serde_json::Value>,
) -> Result<Vec<T>, String> {
    let v = inputs.ok_or("this action needs `inputs`")?;
    let v = match v {
        serde_json::Value::Array(_) => v.clone(),
        other => serde_json::Value::Array(vec![other.clone()]),
    };
    let items: Vec<T> = decode_inputs(v)?;
    if items.is_empty() {
        return Err("`inputs` is empty".into());
    }
    Ok(items)
}

fn one<T: serde::de::DeserializeOwned>(inputs: Option<&serde_json::Value>) -> Result<T, String> {
    let v = inputs.ok_or("this action needs `inputs`")?;
    decode_inputs(v.clone())
}

/// Decodes inputs, naming the field that failed (`overwrite` of input 2),
/// since the message alone does not say which one it is about.
fn decode_inputs<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        use serde_path_to_error::Segment;
        let mut item = None;
        let mut field = Vec::new();
        for segment in e.path().iter() {
            match segment {
                Segment::Seq { index } if item.is_none() && field.is_empty() => {
                    item = Some(index + 1)
                }
                Segment::Seq { index } => field.push(format!("[{index}]")),
                Segment::Map { key } => field.push(key.clone()),
                Segment::Enum { variant } => field.push(variant.clone()),
                Segment::Unknown => {}
            }
        }
        let at = match (field.is_empty(), item) {
            (true, _) => String::new(),
            (false, Some(i)) => format!("`{}` of input {i}: ", field.join(".")),
            (false, None) => format!("`{}`: ", field.join(".")),
        };
        format!("invalid inputs: {at}{}", e.into_inner())
    })
}

/// Parses `inputs` for `action`; errors are plain messages.
pub fn parse_inputs(action: &str, inputs: Option<&serde_json::Value>) -> Result<Action, String> {
    let normalised = inputs.map(scalars_as_text);
    let inputs = normalised.as_ref();
    Ok(match action {
        "ExecuteBash" => {
            let i: ExecuteBashInput = one(inputs)?;
            if i.commands.is_empty() {
                return Err("`inputs.commands` is empty".into());
            }
            Action::ExecuteBash {
                commands: i.commands,
            }
        }
        "ExecuteBinary" => Action::ExecuteBinary(one(inputs)?),
        "ExecuteDocument" => Action::ExecuteDocument(Box::new(NestedDocument {
            input: one(inputs)?,
            component: None,
        })),
        "Assert" => Action::Assert(condition::parse(
            inputs.ok_or("Assert needs a conditional expression as `inputs`")?,
        )?),
        "CreateFile" => Action::CreateFile(list(inputs)?),
        "AppendFile" => Action::AppendFile(list(inputs)?),
        "CreateFolder" => Action::CreateFolder(list(inputs)?),
        "CopyFile" => Action::CopyFile(list(inputs)?),
        "CopyFolder" => Action::CopyFolder(list(inputs)?),
        "MoveFile" => Action::MoveFile(list(inputs)?),
        "MoveFolder" => Action::MoveFolder(list(inputs)?),
        "DeleteFile" => Action::DeleteFile(list(inputs)?),
        "DeleteFolder" => Action::DeleteFolder(list(inputs)?),
        "ListFiles" => Action::ListFiles(list(inputs)?),
        "ReadFile" => Action::ReadFile(list(inputs)?),
        "SetFileEncoding" => Action::SetFileEncoding(list(inputs)?),
        "SetFilePermissions" => Action::SetFilePermissions(list(inputs)?),
        "SetFolderPermissions" => Action::SetFolderPermissions(list(inputs)?),
        "SetFileOwner" => Action::SetFileOwner(list(inputs)?),
        "SetFolderOwner" => Action::SetFolderOwner(list(inputs)?),
        "CreateSymlink" => Action::CreateSymlink(list(inputs)?),
        "WebDownload" => Action::WebDownload(web_download(list(inputs)?)?),
        "S3Download" => Action::S3Download(s3_download(list(inputs)?)?),
        "S3Upload" => Action::S3Upload(s3_upload(list(inputs)?)?),
        "UpdateOS" => Action::UpdateOS(match inputs {
            None => UpdateOsInput::default(),
            some => one(some)?,
        }),
        other => return Err(format!("unsupported action `{other}`")),
    })
}

/// `s3://bucket/key` or `s3://bucket/prefix/*` → (bucket, key or prefix, is prefix).
pub fn parse_s3_url(url: &str) -> Option<(&str, &str, bool)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/')?;
    if bucket.is_empty() || key.is_empty() {
        return None;
    }
    match key.strip_suffix('*') {
        Some(prefix) if prefix.is_empty() || prefix.ends_with('/') => Some((bucket, prefix, true)),
        Some(_) => None,
        None if key.contains('*') => None,
        None => Some((bucket, key, false)),
    }
}

fn s3_download(items: Vec<S3DownloadInput>) -> Result<Vec<S3DownloadInput>, String> {
    for i in &items {
        let literal = !i.source.contains("{{");
        if literal && parse_s3_url(&i.source).is_none() {
            return Err(format!(
                "`source: {}` is not `s3://bucket/key` or `s3://bucket/prefix/*`",
                i.source
            ));
        }
    }
    Ok(items)
}

fn s3_upload(items: Vec<S3UploadInput>) -> Result<Vec<S3UploadInput>, String> {
    for i in &items {
        let literal = !i.destination.contains("{{");
        if literal && !matches!(parse_s3_url(&i.destination), Some((_, _, false))) {
            return Err(format!(
                "`destination: {}` is not `s3://bucket/key` or `s3://bucket/prefix/`",
                i.destination
            ));
        }
    }
    Ok(items)
}

fn web_download(items: Vec<WebDownloadInput>) -> Result<Vec<WebDownloadInput>, String> {
    for i in &items {
        match (&i.checksum, &i.algorithm) {
            (Some(_), None) => {
                return Err("`checksum` needs `algorithm` (MD5, SHA1, SHA256 or SHA512): AWSTOE verifies a download only when both are given".into());
            }
            (None, Some(_)) => {
                return Err("`algorithm` needs `checksum`: AWSTOE verifies a download only when both are given".into());
            }
            _ => {}
        }
        if let Some(a) = &i.algorithm
            && !a.contains("{{")
            && !matches!(
                a.to_uppercase().as_str(),
                "SHA256" | "SHA1" | "MD5" | "SHA512"
            )
        {
            return Err(format!(
                "unsupported checksum algorithm `{a}` (MD5, SHA1, SHA256, SHA512)"
            ));
        }
        if i.checksum
            .as_ref()
            .is_some_and(|c| !c.contains("{{") && !c.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err("`checksum` must be hexadecimal".into());
        }
    }
    Ok(items)
}

/// Every user-written string inside an action, for placeholder checks.
pub fn strings(action: &Action) -> Vec<&str> {
    let mut out: Vec<&str> = action
        .input_fields()
        .into_iter()
        .map(|(_, _, t)| t)
        .collect();
    match action {
        Action::ExecuteBash { commands } => out.extend(commands.iter().map(String::as_str)),
        Action::ExecuteBinary(i) => out.extend(i.arguments.iter().map(String::as_str)),
        Action::ExecuteDocument(d) => {
            out.extend(d.input.phases.as_deref());
            out.extend(d.input.parameters.iter().map(|p| p.value.as_str()));
        }
        Action::Assert(c) => out.extend(c.strings()),
        Action::UpdateOS(u) => out.extend(u.include.iter().chain(&u.exclude).map(String::as_str)),
        Action::CreateFile(v) => v.iter().for_each(|i| {
            out.extend(
                [&i.owner, &i.group, &i.permissions]
                    .into_iter()
                    .flatten()
                    .map(String::as_str),
            )
        }),
        Action::CreateFolder(v) => v.iter().for_each(|i| {
            out.extend(
                [&i.owner, &i.group, &i.permissions]
                    .into_iter()
                    .flatten()
                    .map(String::as_str),
            )
        }),
        Action::ListFiles(v) => out.extend(v.iter().filter_map(|i| i.file_name_pattern.as_deref())),
        Action::SetFilePermissions(v) => out.extend(v.iter().map(|i| i.permissions.as_str())),
        Action::SetFolderPermissions(v) => out.extend(v.iter().map(|i| i.permissions.as_str())),
        Action::SetFileOwner(v) => v.iter().for_each(|i| {
            out.push(&i.owner);
            out.extend(i.group.as_deref());
        }),
        Action::SetFolderOwner(v) => v.iter().for_each(|i| {
            out.push(&i.owner);
            out.extend(i.group.as_deref());
        }),
        Action::S3Download(v) => {
            out.extend(v.iter().filter_map(|i| i.expected_bucket_owner.as_deref()))
        }
        Action::WebDownload(v) => v.iter().for_each(|i| {
            out.extend(i.checksum.as_deref());
            out.extend(i.algorithm.as_deref());
        }),
        _ => {}
    }
    out
}

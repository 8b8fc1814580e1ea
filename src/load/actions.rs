//! AWSTOE action modules that make sense inside a container image, with
//! their typed inputs. Anything else is refused at load time.

use serde::Deserialize;

/// Actions kiln supports, by AWSTOE name.
pub const SUPPORTED_ACTIONS: &[&str] = &[
    "ExecuteBash",
    "ExecuteBinary",
    "CreateFile",
    "AppendFile",
    "CreateFolder",
    "CopyFile",
    "CopyFolder",
    "MoveFile",
    "MoveFolder",
    "DeleteFile",
    "DeleteFolder",
    "SetFilePermissions",
    "SetFolderPermissions",
    "SetFileOwner",
    "SetFolderOwner",
    "CreateSymlink",
    "WebDownload",
];

/// Why a known AWSTOE action is not supported in a container build.
pub fn unsupported_reason(action: &str) -> Option<&'static str> {
    Some(match action {
        "Reboot" => "containers cannot reboot during a build",
        "UpdateOS" => "update packages with an ExecuteBash step using the image's package manager",
        "S3Download" | "S3Upload" => "kiln builds never reach S3; use WebDownload with a checksum",
        "ExecutePowerShell" | "ExecuteDocument" | "InstallMSI" | "UninstallMSI" => {
            "only Linux container actions are supported"
        }
        "Assert" => "use an ExecuteBash step that exits non-zero",
        _ => return None,
    })
}

/// A validated action with its inputs.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `inputs.commands`, run by bash.
    ExecuteBash {
        /// Commands, joined into one bash script.
        commands: Vec<String>,
    },
    /// `inputs.path` with `inputs.arguments`.
    ExecuteBinary(ExecuteBinaryInput),
    /// Creates files.
    CreateFile(Vec<FileInput>),
    /// Appends to files.
    AppendFile(Vec<FileInput>),
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
    /// chmod files.
    SetFilePermissions(Vec<PermissionsInput>),
    /// chmod folders.
    SetFolderPermissions(Vec<PermissionsInput>),
    /// chown files.
    SetFileOwner(Vec<OwnerInput>),
    /// chown folders.
    SetFolderOwner(Vec<OwnerInput>),
    /// ln -s.
    CreateSymlink(Vec<SymlinkInput>),
    /// Downloads with an optional checksum.
    WebDownload(Vec<WebDownloadInput>),
}

impl Action {
    /// Whether the action produces `outputs.stdout` for chaining.
    pub fn has_stdout(&self) -> bool {
        matches!(self, Action::ExecuteBash { .. } | Action::ExecuteBinary(_))
    }
}

/// ExecuteBash inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteBashInput {
    /// Commands.
    pub commands: Vec<String>,
}

/// ExecuteBinary inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteBinaryInput {
    /// The executable.
    pub path: String,
    /// Its arguments.
    #[serde(default)]
    pub arguments: Vec<String>,
}

/// CreateFile / AppendFile inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileInput {
    /// Target file.
    pub path: String,
    /// Content.
    #[serde(default)]
    pub content: String,
    /// `utf8` (default) or `base64`.
    #[serde(default)]
    pub encoding: Option<String>,
    /// Octal mode, e.g. `0644`.
    #[serde(default)]
    pub permissions: Option<String>,
    /// Owner.
    #[serde(default)]
    pub owner: Option<String>,
    /// Group.
    #[serde(default)]
    pub group: Option<String>,
    /// Replace an existing file (default true).
    #[serde(default)]
    pub overwrite: Option<bool>,
}

/// CreateFolder inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderInput {
    /// Folder.
    pub path: String,
    /// Octal mode.
    #[serde(default)]
    pub permissions: Option<String>,
    /// Owner.
    #[serde(default)]
    pub owner: Option<String>,
    /// Group.
    #[serde(default)]
    pub group: Option<String>,
    /// Accept an existing folder (default true).
    #[serde(default)]
    pub overwrite: Option<bool>,
}

/// Copy/Move inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyInput {
    /// From.
    pub source: String,
    /// To.
    pub destination: String,
    /// Replace an existing destination (default true).
    #[serde(default)]
    pub overwrite: Option<bool>,
}

/// A path.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathInput {
    /// The path.
    pub path: String,
}

/// DeleteFolder inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteFolderInput {
    /// The folder.
    pub path: String,
    /// Delete a non-empty folder.
    #[serde(default)]
    pub force: Option<bool>,
}

/// chmod inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionsInput {
    /// The path.
    pub path: String,
    /// Octal mode.
    pub permissions: String,
    /// Folders: apply below too.
    #[serde(default)]
    pub recursive: Option<bool>,
}

/// chown inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerInput {
    /// The path.
    pub path: String,
    /// Owner.
    pub owner: String,
    /// Group.
    #[serde(default)]
    pub group: Option<String>,
    /// Folders: apply below too.
    #[serde(default)]
    pub recursive: Option<bool>,
}

/// CreateSymlink inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymlinkInput {
    /// What the link points at.
    pub source: String,
    /// The link.
    pub destination: String,
    /// Replace an existing link.
    #[serde(default)]
    pub force: Option<bool>,
}

/// WebDownload inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebDownloadInput {
    /// URL.
    pub source: String,
    /// Target file.
    pub destination: String,
    /// Replace an existing file.
    #[serde(default)]
    pub overwrite: Option<bool>,
    /// Expected checksum (hex).
    #[serde(default)]
    pub checksum: Option<String>,
    /// `SHA256` (default when checksum given), `SHA1`, `MD5`, `SHA512`.
    #[serde(default)]
    pub algorithm: Option<String>,
}

/// Parses `inputs` for `action`; errors are plain messages.
pub fn parse_inputs(action: &str, inputs: Option<&serde_json::Value>) -> Result<Action, String> {
    fn list<T: serde::de::DeserializeOwned>(
        inputs: Option<&serde_json::Value>,
    ) -> Result<Vec<T>, String> {
        let v = inputs.ok_or("this action needs `inputs`")?;
        let v = match v {
            serde_json::Value::Array(_) => v.clone(),
            other => serde_json::Value::Array(vec![other.clone()]),
        };
        let items: Vec<T> =
            serde_json::from_value(v).map_err(|e| format!("invalid inputs: {e}"))?;
        if items.is_empty() {
            return Err("`inputs` is empty".into());
        }
        Ok(items)
    }
    fn one<T: serde::de::DeserializeOwned>(
        inputs: Option<&serde_json::Value>,
    ) -> Result<T, String> {
        let v = inputs.ok_or("this action needs `inputs`")?;
        serde_json::from_value(v.clone()).map_err(|e| format!("invalid inputs: {e}"))
    }
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
        "CreateFile" => Action::CreateFile(list(inputs)?),
        "AppendFile" => Action::AppendFile(list(inputs)?),
        "CreateFolder" => Action::CreateFolder(list(inputs)?),
        "CopyFile" => Action::CopyFile(list(inputs)?),
        "CopyFolder" => Action::CopyFolder(list(inputs)?),
        "MoveFile" => Action::MoveFile(list(inputs)?),
        "MoveFolder" => Action::MoveFolder(list(inputs)?),
        "DeleteFile" => Action::DeleteFile(list(inputs)?),
        "DeleteFolder" => Action::DeleteFolder(list(inputs)?),
        "SetFilePermissions" => Action::SetFilePermissions(list(inputs)?),
        "SetFolderPermissions" => Action::SetFolderPermissions(list(inputs)?),
        "SetFileOwner" => Action::SetFileOwner(list(inputs)?),
        "SetFolderOwner" => Action::SetFolderOwner(list(inputs)?),
        "CreateSymlink" => Action::CreateSymlink(list(inputs)?),
        "WebDownload" => {
            let items: Vec<WebDownloadInput> = list(inputs)?;
            for i in &items {
                if let Some(a) = &i.algorithm
                    && !matches!(
                        a.to_uppercase().as_str(),
                        "SHA256" | "SHA1" | "MD5" | "SHA512"
                    )
                {
                    return Err(format!(
                        "unsupported checksum algorithm `{a}` (SHA256, SHA1, MD5, SHA512)"
                    ));
                }
                if i.checksum
                    .as_ref()
                    .is_some_and(|c| !c.bytes().all(|b| b.is_ascii_hexdigit()))
                {
                    return Err("`checksum` must be hexadecimal".into());
                }
            }
            Action::WebDownload(items)
        }
        other => return Err(format!("unsupported action `{other}`")),
    })
}

/// Every user-written string inside an action, for placeholder checks.
pub fn strings(action: &Action) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    match action {
        Action::ExecuteBash { commands } => out.extend(commands.iter().map(String::as_str)),
        Action::ExecuteBinary(i) => {
            out.push(&i.path);
            out.extend(i.arguments.iter().map(String::as_str));
        }
        Action::CreateFile(v) | Action::AppendFile(v) => {
            for i in v {
                out.push(&i.path);
                out.push(&i.content);
            }
        }
        Action::CreateFolder(v) => out.extend(v.iter().map(|i| i.path.as_str())),
        Action::CopyFile(v)
        | Action::CopyFolder(v)
        | Action::MoveFile(v)
        | Action::MoveFolder(v) => {
            for i in v {
                out.push(&i.source);
                out.push(&i.destination);
            }
        }
        Action::DeleteFile(v) => out.extend(v.iter().map(|i| i.path.as_str())),
        Action::DeleteFolder(v) => out.extend(v.iter().map(|i| i.path.as_str())),
        Action::SetFilePermissions(v) | Action::SetFolderPermissions(v) => {
            out.extend(v.iter().map(|i| i.path.as_str()))
        }
        Action::SetFileOwner(v) | Action::SetFolderOwner(v) => {
            out.extend(v.iter().map(|i| i.path.as_str()))
        }
        Action::CreateSymlink(v) => {
            for i in v {
                out.push(&i.source);
                out.push(&i.destination);
            }
        }
        Action::WebDownload(v) => {
            for i in v {
                out.push(&i.source);
                out.push(&i.destination);
            }
        }
    }
    out
}

//! The typed `inputs` of each AWSTOE action module, with the field names,
//! types and defaults of the AWSTOE action module reference. Values are read
//! as AWSTOE reads YAML scalars: a number where text is expected is its text
//! (`expectedBucketOwner: 123456789012`), `permissions: 755` and `0777` are
//! octal digits whatever the YAML type, and flags take `true`/`false` written
//! as booleans or strings.

use serde::{Deserialize, Deserializer};

/// Rewrites every number and boolean in `v` as its text, so string fields
/// accept unquoted scalars (`- false` as a command, an account id as a
/// number) and permissions keep their digits; flags read the text back.
pub fn scalars_as_text(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) => Value::String(number_text(n)),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Array(a) => Value::Array(a.iter().map(scalars_as_text).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), scalars_as_text(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn number_text(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
        _ => n.to_string(),
    }
}

/// A boolean written as `true`/`false` or as the strings `"true"`/`"false"`.
pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(Option::<super::scalar_forms::Flag>::deserialize(d)?.map(|f| f.0))
}

/// Octal permission digits (`755`, `0644`), or a `{{ placeholder }}` that
/// is checked when the step runs.
pub fn permissions<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.contains("{{")
        || (1..=4).contains(&s.len()) && s.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        Ok(s)
    } else {
        Err(serde::de::Error::custom(format!(
            "`permissions: {s}` is not an octal mode (up to four digits 0-7, e.g. 755 or 0644)"
        )))
    }
}

fn opt_permissions<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    permissions(d).map(Some)
}

/// A text encoding AWSTOE accepts (`utf-16` and `utf-32` are little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 (the default).
    Utf8,
    /// UTF-16 little-endian.
    Utf16Le,
    /// UTF-16 big-endian.
    Utf16Be,
    /// UTF-32 little-endian.
    Utf32Le,
    /// UTF-32 big-endian.
    Utf32Be,
}

/// The encoding names AWSTOE documents (case-insensitive).
pub const ENCODINGS: &str = "utf8, utf-8, utf16, utf-16, utf16-LE, utf-16-LE, utf16-BE, utf-16-BE, utf32, utf-32, utf32-LE, utf-32-LE, utf32-BE, utf-32-BE";

impl Encoding {
    /// The runtime's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf8",
            Encoding::Utf16Le => "utf16le",
            Encoding::Utf16Be => "utf16be",
            Encoding::Utf32Le => "utf32le",
            Encoding::Utf32Be => "utf32be",
        }
    }
}

fn encoding<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Encoding>, D::Error> {
    let Some(s) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    let e = match s.to_ascii_lowercase().replace("utf-", "utf").as_str() {
        "utf8" => Encoding::Utf8,
        "utf16" | "utf16-le" => Encoding::Utf16Le,
        "utf16-be" => Encoding::Utf16Be,
        "utf32" | "utf32-le" => Encoding::Utf32Le,
        "utf32-be" => Encoding::Utf32Be,
        _ => {
            return Err(serde::de::Error::custom(format!(
                "`encoding: {s}` is not supported; AWSTOE accepts {ENCODINGS}"
            )));
        }
    };
    Ok(Some(e))
}

/// ExecuteBash inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteBashInput {
    /// Commands, run as one bash script.
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

/// CreateFile inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileInput {
    /// Target file.
    pub path: String,
    /// Content (default empty).
    #[serde(default)]
    pub content: String,
    /// Encoding of the written bytes (default utf-8).
    #[serde(default, deserialize_with = "encoding")]
    pub encoding: Option<Encoding>,
    /// Octal mode.
    #[serde(default, deserialize_with = "opt_permissions")]
    pub permissions: Option<String>,
    /// Owner.
    #[serde(default)]
    pub owner: Option<String>,
    /// Group.
    #[serde(default)]
    pub group: Option<String>,
    /// Replace an existing file (default true).
    #[serde(default, deserialize_with = "flag")]
    pub overwrite: Option<bool>,
}

/// AppendFile inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendInput {
    /// Existing file.
    pub path: String,
    /// Content (default empty).
    #[serde(default)]
    pub content: String,
    /// Encoding of the appended bytes (default utf-8).
    #[serde(default, deserialize_with = "encoding")]
    pub encoding: Option<Encoding>,
}

/// CreateFolder inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderInput {
    /// Folder.
    pub path: String,
    /// Octal mode.
    #[serde(default, deserialize_with = "opt_permissions")]
    pub permissions: Option<String>,
    /// Owner.
    #[serde(default)]
    pub owner: Option<String>,
    /// Group.
    #[serde(default)]
    pub group: Option<String>,
    /// Accept an existing folder (default true).
    #[serde(default, deserialize_with = "flag")]
    pub overwrite: Option<bool>,
}

/// CopyFile / CopyFolder / MoveFile / MoveFolder inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyInput {
    /// From; `*` allowed in the last segment.
    pub source: String,
    /// To; ending in `/` means "into this folder, same name".
    pub destination: String,
    /// Replace an existing destination (default true).
    #[serde(default, deserialize_with = "flag")]
    pub overwrite: Option<bool>,
}

/// DeleteFile inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathInput {
    /// The path; `*` allowed in the last segment.
    pub path: String,
}

/// DeleteFolder inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteFolderInput {
    /// The folder.
    pub path: String,
    /// Delete a non-empty folder (default false).
    #[serde(default, deserialize_with = "flag")]
    pub force: Option<bool>,
}

/// ListFiles inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListFilesInput {
    /// The folder.
    pub path: String,
    /// Only names matching this `*` pattern.
    #[serde(default)]
    pub file_name_pattern: Option<String>,
    /// List subfolders too (default false).
    #[serde(default, deserialize_with = "flag")]
    pub recursive: Option<bool>,
}

/// ReadFile inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReadFileInput {
    /// The file.
    pub path: String,
    /// Encoding of the file (default utf-8).
    #[serde(default, deserialize_with = "encoding")]
    pub encoding: Option<Encoding>,
    /// Also print the content to the step log (default false).
    #[serde(default, deserialize_with = "flag")]
    pub print_file_content: Option<bool>,
}

/// SetFileEncoding inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodingInput {
    /// A UTF-8 file, re-encoded in place.
    pub path: String,
    /// Target encoding (default utf-8).
    #[serde(default, deserialize_with = "encoding")]
    pub encoding: Option<Encoding>,
}

/// SetFilePermissions inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePermissionsInput {
    /// The file.
    pub path: String,
    /// Octal mode.
    #[serde(deserialize_with = "permissions")]
    pub permissions: String,
}

/// SetFolderPermissions inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderPermissionsInput {
    /// The folder.
    pub path: String,
    /// Octal mode.
    #[serde(deserialize_with = "permissions")]
    pub permissions: String,
    /// Apply to the contents too (default true).
    #[serde(default, deserialize_with = "flag")]
    pub recursive: Option<bool>,
}

/// SetFileOwner inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOwnerInput {
    /// The file.
    pub path: String,
    /// User name or id.
    pub owner: String,
    /// Group (default: the owner's group).
    #[serde(default)]
    pub group: Option<String>,
}

/// SetFolderOwner inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderOwnerInput {
    /// The folder.
    pub path: String,
    /// User name or id.
    pub owner: String,
    /// Group (default: the owner's group).
    #[serde(default)]
    pub group: Option<String>,
    /// Apply to the contents too (default true).
    #[serde(default, deserialize_with = "flag")]
    pub recursive: Option<bool>,
}

/// CreateSymlink inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymlinkInput {
    /// The link to create.
    pub path: String,
    /// What it points at (must exist).
    pub target: String,
    /// Replace an existing link (default false).
    #[serde(default, deserialize_with = "flag")]
    pub force: Option<bool>,
}

/// WebDownload inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebDownloadInput {
    /// URL.
    pub source: String,
    /// File, or folder when it ends in `/` (the URL's file name is kept).
    pub destination: String,
    /// Replace an existing file (default true).
    #[serde(default, deserialize_with = "flag")]
    pub overwrite: Option<bool>,
    /// Expected checksum (hex); needs `algorithm`.
    #[serde(default)]
    pub checksum: Option<String>,
    /// `MD5`, `SHA1`, `SHA256` or `SHA512`; needs `checksum`.
    #[serde(default)]
    pub algorithm: Option<String>,
    /// Skip TLS certificate validation (default false).
    #[serde(default, deserialize_with = "flag")]
    pub ignore_certificate_errors: Option<bool>,
}

/// One `{name, value}` of ExecuteDocument `parameters`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentParameter {
    /// Parameter of the nested document.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// ExecuteDocument inputs as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteDocumentInput {
    /// The nested document: a file in `components/` or a project path.
    pub document: String,
    /// Comma-separated phases to run (default: all, in document order).
    #[serde(default)]
    pub phases: Option<String>,
    /// Parameters of the nested document.
    #[serde(default)]
    pub parameters: Vec<DocumentParameter>,
    /// Owner of the S3 bucket holding the document; AWSTOE checks it for S3
    /// documents only, so kiln (which runs documents from the project)
    /// refuses it rather than ignore it.
    #[serde(default, rename = "document-s3-bucket-owner")]
    pub document_s3_bucket_owner: Option<String>,
}

/// UpdateOS inputs.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateOsInput {
    /// Only these packages (default: everything).
    #[serde(default)]
    pub include: Vec<String>,
    /// Never these packages.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// S3Download inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct S3DownloadInput {
    /// `s3://bucket/key`, or `s3://bucket/prefix/*`.
    pub source: String,
    /// File, or folder for a prefix.
    pub destination: String,
    /// Account id the bucket must belong to.
    #[serde(default)]
    pub expected_bucket_owner: Option<String>,
    /// Replace an existing file (default true).
    #[serde(default, deserialize_with = "flag")]
    pub overwrite: Option<bool>,
}

/// S3Upload inputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct S3UploadInput {
    /// Local file, or `folder/*`.
    pub source: String,
    /// `s3://bucket/key`, or `s3://bucket/prefix/` for several files.
    pub destination: String,
    /// Upload subfolders too (default false).
    #[serde(default, deserialize_with = "flag")]
    pub recurse: Option<bool>,
    /// Account id the bucket must belong to.
    #[serde(default)]
    pub expected_bucket_owner: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_digits() {
        let v = serde_json::json!({"permissions": 777, "owner": 1000.0, "x": [1.5, false]});
        assert_eq!(
            scalars_as_text(&v),
            serde_json::json!({"permissions": "777", "owner": "1000", "x": ["1.5", "false"]})
        );
    }

    #[test]
    fn permissions_are_octal_digits() {
        let ok = |s: &str| {
            serde_json::from_value::<FilePermissionsInput>(
                serde_json::json!({"path": "/a", "permissions": s}),
            )
            .is_ok()
        };
        assert!(ok("755") && ok("0644") && ok("{{ Mode }}"));
        assert!(!ok("789") && !ok("rwx") && !ok("07777"));
    }

    #[test]
    fn encodings_are_the_documented_names() {
        let enc = |s: &str| {
            serde_json::from_value::<AppendInput>(serde_json::json!({"path": "/a", "encoding": s}))
                .map(|i| i.encoding)
        };
        assert_eq!(enc("UTF-16").unwrap(), Some(Encoding::Utf16Le));
        assert_eq!(enc("utf32-BE").unwrap(), Some(Encoding::Utf32Be));
        assert_eq!(enc("utf-8").unwrap(), Some(Encoding::Utf8));
        assert!(
            enc("ascii")
                .unwrap_err()
                .to_string()
                .contains("is not supported")
        );
        assert!(enc("base64").is_err());
    }
}

//! Saving a prompt's outputs (`submit --download DIR`): each file through `GET /view`, under its
//! own name, never over an existing file.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

use crate::comfy::http::ComfyClient;
use crate::comfy::protocol::{ImageRef, NodeOutput};

use super::clean;

/// How many numbered names are tried before giving up on a file.
const MAX_SUFFIX: u32 = 9999;

/// Every file the outputs name, in order, each once: `images`, and any other list of
/// `{filename, subfolder, type}` objects (videos, audio, ...).
pub fn files_of<'a>(outputs: impl IntoIterator<Item = &'a NodeOutput>) -> Vec<ImageRef> {
    let mut files: Vec<ImageRef> = Vec::new();
    for output in outputs {
        let others = output
            .other
            .values()
            .filter_map(Value::as_array)
            .flatten()
            .filter(|v| v.get("filename").is_some_and(Value::is_string))
            .filter_map(|v| serde_json::from_value::<ImageRef>(v.clone()).ok());
        for file in output.images.iter().cloned().chain(others) {
            if !files.contains(&file) {
                files.push(file);
            }
        }
    }
    files
}

/// Downloads every file into `dir` (created if missing). One result per file: the path written,
/// or why that file could not be saved.
pub async fn save_all(
    client: &ComfyClient,
    files: &[ImageRef],
    dir: &Path,
) -> Vec<Result<PathBuf, String>> {
    if let Err(e) = tokio::fs::create_dir_all(dir).await {
        let error = format!("cannot create {}: {e}", dir.display());
        return files.iter().map(|_| Err(error.clone())).collect();
    }
    let mut results = Vec::with_capacity(files.len());
    for file in files {
        results.push(save_one(client, file, dir).await);
    }
    results
}

async fn save_one(client: &ComfyClient, file: &ImageRef, dir: &Path) -> Result<PathBuf, String> {
    let shown = clean(&file.filename);
    let viewed = client
        .view(file)
        .await
        .map_err(|e| format!("{shown}: {e}"))?;
    let name = safe_file_name(&file.filename);
    let (path, mut out) = create_new(dir, &name)
        .await
        .map_err(|e| format!("{shown}: cannot create a file in {}: {e}", dir.display()))?;
    let written = async {
        out.write_all(&viewed.bytes).await?;
        out.flush().await
    }
    .await;
    written.map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Creates `dir/name`, or `dir/stem-1.ext`, `dir/stem-2.ext`, ... when taken. The file is created
/// exclusively, so nothing is ever overwritten, even by a race with another writer.
async fn create_new(dir: &Path, name: &str) -> std::io::Result<(PathBuf, tokio::fs::File)> {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, Some(ext)),
        _ => (name, None),
    };
    for n in 0..=MAX_SUFFIX {
        let candidate = match (n, ext) {
            (0, _) => name.to_string(),
            (n, Some(ext)) => format!("{stem}-{n}.{ext}"),
            (n, None) => format!("{stem}-{n}"),
        };
        let path = dir.join(candidate);
        match tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        ErrorKind::AlreadyExists,
        format!("{name} and {MAX_SUFFIX} numbered variants exist"),
    ))
}

/// The last component of a name the server gave, without anything that could leave the
/// directory or confuse a terminal.
fn safe_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .to_string();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        "output".to_string()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn file_names_cannot_leave_the_directory() {
        assert_eq!(safe_file_name("ComfyUI_00001_.png"), "ComfyUI_00001_.png");
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name("..\\..\\x.png"), "x.png");
        assert_eq!(safe_file_name(".."), "output");
        assert_eq!(safe_file_name("a/"), "output");
        assert_eq!(safe_file_name("\u{1b}]0;x\u{7}y.png"), "]0;xy.png");
    }

    #[test]
    fn every_listed_file_is_found_once() {
        let image = json!({"filename": "a.png", "subfolder": "", "type": "output"});
        let outputs: Vec<NodeOutput> = serde_json::from_value(json!([
            {"images": [image]},
            {"gifs": [{"filename": "b.mp4", "subfolder": "v", "type": "output", "format": "video/h264-mp4"}],
             "text": ["hello"], "animated": [true]},
            {"images": [image]}
        ]))
        .unwrap();
        let names: Vec<String> = files_of(&outputs).into_iter().map(|f| f.filename).collect();
        assert_eq!(names, ["a.png", "b.mp4"]);
    }

    #[tokio::test]
    async fn existing_files_get_a_numbered_sibling() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), b"old").unwrap();
        std::fs::write(dir.path().join("a-1.png"), b"old").unwrap();
        let (path, _) = create_new(dir.path(), "a.png").await.unwrap();
        assert_eq!(path, dir.path().join("a-2.png"));
        let (path, _) = create_new(dir.path(), "README").await.unwrap();
        assert_eq!(path, dir.path().join("README"));
        let (path, _) = create_new(dir.path(), "README").await.unwrap();
        assert_eq!(path, dir.path().join("README-1"));
        assert_eq!(std::fs::read(dir.path().join("a.png")).unwrap(), b"old");
    }
}

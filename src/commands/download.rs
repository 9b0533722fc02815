//! Saving a prompt's outputs (`submit --download DIR`): each file through `GET /view`, under its
//! own name, never over an existing file.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::comfy::http::ComfyClient;
use crate::comfy::protocol::{ImageRef, NodeOutput};
use crate::preview::save_without_overwriting;

use super::clean;

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
    let dir = dir.to_path_buf();
    let name = file.filename.clone();
    tokio::task::spawn_blocking(move || save_without_overwriting(&dir, &name, &viewed.bytes))
        .await
        .map_err(|e| format!("{shown}: {e}"))?
        .map_err(|e| format!("{shown}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}

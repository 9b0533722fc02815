//! Saving an output image under its original name without ever replacing a file.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Names tried before giving up.
const MAX_ATTEMPTS: usize = 10_000;
const MAX_NAME_CHARS: usize = 200;

/// The server's file name made safe to create in a directory: the last path component only,
/// no control characters, no leading dots (no hidden files, no `..`), not empty.
pub fn safe_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = crate::text::file_name_part(last)
        .trim()
        .trim_start_matches('.')
        .chars()
        .take(MAX_NAME_CHARS)
        .collect();
    if cleaned.is_empty() {
        "comfyui-output".to_string()
    } else {
        cleaned
    }
}

/// `name.png`, then `name-1.png`, `name-2.png`, … (the suffix goes before the extension).
pub fn candidate_names(file_name: &str) -> impl Iterator<Item = String> + '_ {
    let (stem, ext) = match file_name.rfind('.') {
        Some(dot) if dot > 0 => file_name.split_at(dot),
        _ => (file_name, ""),
    };
    std::iter::once(file_name.to_string()).chain((1..).map(move |n| format!("{stem}-{n}{ext}")))
}

/// Writes `bytes` into `dir` under `original_name` (made safe), adding `-1`, `-2`, … when a file
/// of that name exists, and returns the path written. An existing file is never replaced, even
/// one created between the check and the write: the file is created exclusively. `dir` is
/// created first if it does not exist (`--save-dir` names where outputs go, not a precondition).
pub fn save_without_overwriting(
    dir: &Path,
    original_name: &str,
    bytes: &[u8],
) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot create the directory {}: {e}", dir.display()),
        )
    })?;
    let name = safe_file_name(original_name);
    for candidate in candidate_names(&name).take(MAX_ATTEMPTS) {
        let path = dir.join(&candidate);
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot create {}: {e}", path.display()),
                ));
            }
        };
        if let Err(e) = file.write_all(bytes).and_then(|()| file.sync_all()) {
            drop(file);
            // Leave no half-written file behind.
            let _ = std::fs::remove_file(&path);
            return Err(io::Error::new(
                e.kind(),
                format!("cannot write {}: {e}", path.display()),
            ));
        }
        return Ok(path);
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "{} and {MAX_ATTEMPTS} numbered variants already exist in {}",
            name,
            dir.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_numbered_before_the_extension() {
        let names: Vec<String> = candidate_names("ComfyUI_00001_.png").take(3).collect();
        assert_eq!(
            names,
            [
                "ComfyUI_00001_.png",
                "ComfyUI_00001_-1.png",
                "ComfyUI_00001_-2.png"
            ]
        );
        let names: Vec<String> = candidate_names("noext").take(2).collect();
        assert_eq!(names, ["noext", "noext-1"]);
        let names: Vec<String> = candidate_names("a.tar.gz").take(2).collect();
        assert_eq!(names, ["a.tar.gz", "a.tar-1.gz"]);
    }

    #[test]
    fn server_names_cannot_escape_the_directory() {
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name("lab\\..\\x.png"), "x.png");
        assert_eq!(safe_file_name(".."), "comfyui-output");
        assert_eq!(safe_file_name(""), "comfyui-output");
        assert_eq!(safe_file_name(".hidden.png"), "hidden.png");
        assert_eq!(safe_file_name("a\u{1b}[31mb\n.png"), "ab.png");
    }

    #[test]
    fn saving_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let first = save_without_overwriting(dir.path(), "out.png", b"one").unwrap();
        let second = save_without_overwriting(dir.path(), "out.png", b"two").unwrap();
        let third = save_without_overwriting(dir.path(), "sub/out.png", b"three").unwrap();
        assert_eq!(first, dir.path().join("out.png"));
        assert_eq!(second, dir.path().join("out-1.png"));
        assert_eq!(third, dir.path().join("out-2.png"));
        assert_eq!(std::fs::read(&first).unwrap(), b"one");
        assert_eq!(std::fs::read(&second).unwrap(), b"two");
        assert_eq!(std::fs::read(&third).unwrap(), b"three");
    }

    #[test]
    fn a_missing_directory_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("new").join("outputs");
        let path = save_without_overwriting(&missing, "out.png", b"x").unwrap();
        assert_eq!(path, missing.join("out.png"));
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let err = save_without_overwriting(&file.join("nope"), "out.png", b"x").unwrap_err();
        assert!(err.to_string().contains("a-file/nope"), "{err}");
    }
}

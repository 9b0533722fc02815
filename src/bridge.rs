//! The comfytop bridge: a ComfyUI custom node (`assets/bridge/comfytop_bridge.py`, embedded
//! here) that relays every prompt's execution events and previews to the clients that ask.
//! Without it ComfyUI sends them only to the client that queued the prompt, so a prompt queued
//! from a browser shows in comfytop without per-node progress or previews.
//!
//! This module installs it into a ComfyUI checkout (`comfytop install-bridge`) and joins it on a
//! server: asks `GET /comfytop/bridge` whether it is there, then registers this comfytop's
//! socket with `POST /comfytop/bridge/watch`, after every (re)connect.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::comfy::api::BRIDGE_PROTOCOL;
use crate::comfy::http::ComfyClient;
use crate::text::one_line;

/// The bridge's source, as `comfytop install-bridge` writes it.
pub const SOURCE: &str = include_str!("../assets/bridge/comfytop_bridge.py");

/// The file name it is installed under in `custom_nodes/`.
pub const FILE_NAME: &str = "comfytop_bridge.py";

/// The bridge's version, as its source sets it.
pub fn version() -> &'static str {
    version_in(SOURCE).unwrap_or("unknown")
}

/// The version a bridge's source sets (`VERSION = "..."`), if it says.
fn version_in(source: &str) -> Option<&str> {
    source
        .lines()
        .find_map(|line| line.strip_prefix("VERSION = "))
        .map(|v| v.trim().trim_matches('"'))
}

/// What comfytop knows of the bridge on one server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BridgeLink {
    /// Not asked yet (or the answer is on its way).
    #[default]
    Unknown,
    /// The server has no bridge: other clients' prompts are followed without live detail.
    Absent,
    /// Every prompt's events come to this comfytop's socket.
    Watching { version: String },
    /// A bridge is there but cannot be used, and why.
    Unusable(String),
}

impl BridgeLink {
    pub fn is_watching(&self) -> bool {
        matches!(self, Self::Watching { .. })
    }
}

/// Asks the server for its bridge and, where there is one this comfytop speaks, registers
/// `client_id`'s socket with it. Call after each (re)connect: a registration ends with its socket.
pub async fn join(client: &ComfyClient, client_id: &str) -> BridgeLink {
    let info = match client.bridge_info().await {
        Ok(Some(info)) => info,
        Ok(None) => return BridgeLink::Absent,
        Err(error) => {
            return BridgeLink::Unusable(format!(
                "could not ask for it: {}",
                one_line(&error.to_string())
            ));
        }
    };
    let version = one_line(&info.version).into_owned();
    if !info.enabled {
        let reason = info.reason.as_deref().unwrap_or("no reason given");
        return BridgeLink::Unusable(format!(
            "bridge {version} is disabled: {}",
            one_line(reason)
        ));
    }
    if info.protocol != BRIDGE_PROTOCOL {
        return BridgeLink::Unusable(format!(
            "bridge {version} speaks protocol {}, this comfytop {BRIDGE_PROTOCOL}: install the bridge of this comfytop (comfytop install-bridge)",
            info.protocol
        ));
    }
    match client.watch_through_bridge(client_id, true).await {
        Ok(()) => BridgeLink::Watching { version },
        Err(error) => BridgeLink::Unusable(format!(
            "bridge {version} refused to relay: {}",
            one_line(&error.to_string())
        )),
    }
}

/// What an install or uninstall did, for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    New(PathBuf),
    /// An older (or changed) copy was replaced; its version, if it said.
    Updated {
        path: PathBuf,
        from: Option<String>,
    },
    AlreadyThere(PathBuf),
    Removed(PathBuf),
    NotThere(PathBuf),
}

/// `custom_nodes/` of a ComfyUI checkout, or why `dir` is not one.
pub fn custom_nodes_of(dir: &Path) -> Result<PathBuf, String> {
    let shown = dir.display();
    if !dir.is_dir() {
        return Err(format!("{shown} is not a directory"));
    }
    if dir.file_name().is_some_and(|n| n == "custom_nodes") && dir.join("../server.py").is_file() {
        return Err(format!(
            "{shown} is ComfyUI's custom_nodes folder; give the ComfyUI folder that holds it ({})",
            dir.parent().unwrap_or(dir).display()
        ));
    }
    let looks_like_comfyui = ["main.py", "server.py", "execution.py"]
        .iter()
        .all(|f| dir.join(f).is_file());
    if !looks_like_comfyui {
        return Err(format!(
            "{shown} is not a ComfyUI checkout (no main.py, server.py and execution.py there); give the folder you start ComfyUI from"
        ));
    }
    let custom_nodes = dir.join("custom_nodes");
    if !custom_nodes.is_dir() {
        return Err(format!(
            "{shown} looks like ComfyUI but has no custom_nodes folder"
        ));
    }
    Ok(custom_nodes)
}

/// Writes the bridge into `comfyui_dir/custom_nodes/`, replacing an older copy. The file is
/// written beside and renamed into place, so ComfyUI never loads half of it.
pub fn install(comfyui_dir: &Path) -> Result<Installed, String> {
    let path = custom_nodes_of(comfyui_dir)?.join(FILE_NAME);
    let previous = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if previous.as_deref() == Some(SOURCE) {
        return Ok(Installed::AlreadyThere(path));
    }
    let partial = path.with_extension("py.partial");
    let written = std::fs::File::create(&partial)
        .and_then(|mut file| {
            file.write_all(SOURCE.as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&partial, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(format!("cannot write {}: {e}", path.display()));
    }
    Ok(match previous {
        None => Installed::New(path),
        Some(old) => Installed::Updated {
            from: version_in(&old).map(str::to_string),
            path,
        },
    })
}

/// Removes the bridge from `comfyui_dir/custom_nodes/` (and Python's cached compile of it).
pub fn uninstall(comfyui_dir: &Path) -> Result<Installed, String> {
    let custom_nodes = custom_nodes_of(comfyui_dir)?;
    let path = custom_nodes.join(FILE_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Installed::NotThere(path)),
        Err(e) => return Err(format!("cannot remove {}: {e}", path.display())),
    }
    if let Ok(cached) = std::fs::read_dir(custom_nodes.join("__pycache__")) {
        for entry in cached.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("comfytop_bridge.")
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(Installed::Removed(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkout() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in ["main.py", "server.py", "execution.py"] {
            std::fs::write(dir.path().join(file), "").unwrap();
        }
        std::fs::create_dir(dir.path().join("custom_nodes")).unwrap();
        dir
    }

    #[test]
    fn the_version_is_read_from_the_source() {
        assert_eq!(version(), "1.0.0");
    }

    #[test]
    fn install_update_and_uninstall() {
        let dir = checkout();
        let path = dir.path().join("custom_nodes").join(FILE_NAME);
        assert_eq!(install(dir.path()), Ok(Installed::New(path.clone())));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), SOURCE);
        assert_eq!(
            install(dir.path()),
            Ok(Installed::AlreadyThere(path.clone()))
        );
        std::fs::write(&path, "VERSION = \"0.9.0\"\n").unwrap();
        assert_eq!(
            install(dir.path()),
            Ok(Installed::Updated {
                path: path.clone(),
                from: Some("0.9.0".into())
            })
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), SOURCE);
        let cache = dir.path().join("custom_nodes/__pycache__");
        std::fs::create_dir(&cache).unwrap();
        std::fs::write(cache.join("comfytop_bridge.cpython-311.pyc"), "x").unwrap();
        std::fs::write(cache.join("other.cpython-311.pyc"), "x").unwrap();
        assert_eq!(uninstall(dir.path()), Ok(Installed::Removed(path.clone())));
        assert!(!path.exists());
        assert!(!cache.join("comfytop_bridge.cpython-311.pyc").exists());
        assert!(cache.join("other.cpython-311.pyc").exists());
        assert_eq!(uninstall(dir.path()), Ok(Installed::NotThere(path)));
    }

    #[test]
    fn a_folder_that_is_not_comfyui_is_refused_with_the_reason() {
        let empty = tempfile::tempdir().unwrap();
        let error = install(empty.path()).unwrap_err();
        assert!(error.contains("is not a ComfyUI checkout"), "{error}");
        assert!(std::fs::read_dir(empty.path()).unwrap().next().is_none());

        let dir = checkout();
        let error = install(&dir.path().join("custom_nodes")).unwrap_err();
        assert!(
            error.contains("give the ComfyUI folder that holds it"),
            "{error}"
        );

        let error = install(&dir.path().join("missing")).unwrap_err();
        assert!(error.contains("is not a directory"), "{error}");

        std::fs::remove_dir(dir.path().join("custom_nodes")).unwrap();
        let error = install(dir.path()).unwrap_err();
        assert!(error.contains("has no custom_nodes folder"), "{error}");
    }
}

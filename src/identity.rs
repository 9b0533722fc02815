//! comfytop's clientId for a server, kept across restarts.
//!
//! ComfyUI sends a prompt's execution events and previews to the socket of the clientId that
//! queued it. With the same id after a restart (or an ssh drop), comfytop gets the live events of
//! the prompts it queued before. Two sockets with one id do not work: the server keeps only the
//! newest, and the older goes silent. So the saved id is held under a lock; a second comfytop
//! on the same server gets a fresh id and says so.
//!
//! Saved in `$XDG_STATE_HOME/comfytop/client-ids/` (else `~/.local/state/...`), one file per
//! server address, without credentials.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::comfy::connection::{COMFYTOP_CLIENT_PREFIX, new_client_id};
use crate::comfy::server_url::ServerUrl;

/// The state directory's override, for tests and for users who keep state elsewhere.
pub const STATE_DIR_ENV: &str = "COMFYTOP_STATE_DIR";

/// The clientId to use and, when it is the saved one, the lock that keeps it ours.
#[derive(Debug)]
pub struct ClientIdentity {
    pub id: String,
    /// Said to the user: why this is not the saved id.
    pub note: Option<String>,
    /// Held for the process's life; the OS releases it when the process ends, however.
    _lock: Option<File>,
}

impl ClientIdentity {
    /// `--client-id ID`: that id, taken as given.
    pub fn given(id: &str) -> Result<Self, String> {
        let valid = !id.is_empty() && id.len() <= 200 && id.chars().all(|c| c.is_ascii_graphic());
        if !valid {
            return Err(format!(
                "'{}' cannot be a client id: use up to 200 printable ASCII characters without spaces",
                crate::text::one_line(id)
            ));
        }
        Ok(Self {
            id: id.to_string(),
            note: None,
            _lock: None,
        })
    }

    /// A fresh id, kept by nobody.
    pub fn fresh() -> Self {
        Self {
            id: new_client_id(),
            note: None,
            _lock: None,
        }
    }

    /// The saved id for `server`, locked for as long as this lives: made and saved the first
    /// time. When another comfytop holds it, or the state cannot be saved, a fresh id with a
    /// note saying why.
    pub fn for_server(server: &ServerUrl) -> Self {
        let Some(dir) = state_dir() else {
            return Self::unsaved("there is no home directory to keep it in");
        };
        match Self::locked_in(&dir.join("client-ids"), server) {
            Ok(identity) => identity,
            Err(why) => Self::unsaved(&why),
        }
    }

    /// The saved id for `server` without holding it: for `submit` without `--wait`, which
    /// opens no socket, so a comfytop on the same server gets the live events of what it
    /// queued.
    pub fn shared(server: &ServerUrl) -> Self {
        let saved = state_dir().and_then(|dir| {
            let path = id_path(&dir.join("client-ids"), server);
            read_id(&path).or_else(|| {
                // Made now, so the dashboard started next uses it too.
                Self::locked_in(&dir.join("client-ids"), server)
                    .ok()
                    .map(|identity| identity.id)
            })
        });
        match saved {
            Some(id) => Self {
                id,
                note: None,
                _lock: None,
            },
            None => Self::fresh(),
        }
    }

    fn unsaved(why: &str) -> Self {
        tracing::warn!(why, "the client id is not kept across restarts");
        Self {
            note: Some(format!(
                "a fresh client id, not kept for the next start ({why})"
            )),
            ..Self::fresh()
        }
    }

    fn locked_in(dir: &Path, server: &ServerUrl) -> Result<Self, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = id_path(dir, server);
        let lock_path = path.with_extension("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Ok(Self {
                    note: Some(
                        "another comfytop on this machine follows this server with the saved client id; this one uses a fresh id, so it sees the other's prompts as another client's"
                            .to_string(),
                    ),
                    ..Self::fresh()
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", lock_path.display()));
            }
        }
        let id = match read_id(&path) {
            Some(id) => id,
            None => {
                let id = new_client_id();
                write_id(&path, &id).map_err(|e| format!("cannot save {}: {e}", path.display()))?;
                id
            }
        };
        Ok(Self {
            id,
            note: None,
            _lock: Some(lock),
        })
    }
}

/// `$COMFYTOP_STATE_DIR`, else `$XDG_STATE_HOME/comfytop`, else `~/.local/state/comfytop`.
pub fn state_dir() -> Option<PathBuf> {
    let from = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    from(STATE_DIR_ENV)
        .or_else(|| from("XDG_STATE_HOME").map(|d| d.join("comfytop")))
        .or_else(|| from("HOME").map(|home| home.join(".local/state/comfytop")))
}

/// One file per server address (scheme, host, port, prefix; never credentials).
fn id_path(dir: &Path, server: &ServerUrl) -> PathBuf {
    let base = server.base();
    let address = format!(
        "{}_{}_{}{}",
        base.scheme(),
        base.host_str().unwrap_or("host"),
        base.port_or_known_default().unwrap_or(0),
        base.path()
    );
    let name: String = address
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{}.id", name.trim_end_matches('_')))
}

fn read_id(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let id = text.trim();
    let sane = id.starts_with(COMFYTOP_CLIENT_PREFIX)
        && id.len() <= 100
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    sane.then(|| id.to_string())
}

/// Written whole or not at all: a crash mid-write leaves the old file or none.
fn write_id(path: &Path, id: &str) -> std::io::Result<()> {
    let partial = path.with_extension("id.partial");
    let mut file = File::create(&partial)?;
    writeln!(file, "{id}")?;
    file.sync_all()?;
    std::fs::rename(partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(url: &str) -> ServerUrl {
        ServerUrl::parse(url).unwrap()
    }

    #[test]
    fn the_id_is_kept_per_server_and_the_second_holder_gets_a_fresh_one() {
        let dir = tempfile::tempdir().unwrap();
        let box_a = server("http://alice:pw@box:8188/comfy/");
        let first = ClientIdentity::locked_in(dir.path(), &box_a).unwrap();
        assert!(first.id.starts_with(COMFYTOP_CLIENT_PREFIX) && first.note.is_none());
        let file = id_path(dir.path(), &box_a);
        assert_eq!(
            file.file_name().unwrap().to_string_lossy(),
            "http_box_8188_comfy.id"
        );
        let second = ClientIdentity::locked_in(dir.path(), &box_a).unwrap();
        assert_ne!(second.id, first.id);
        assert!(second.note.as_deref().unwrap().contains("fresh id"));
        let other = ClientIdentity::locked_in(dir.path(), &server("http://other:8188")).unwrap();
        assert_ne!(other.id, first.id);
        assert!(other.note.is_none());
        let id = first.id.clone();
        drop(first);
        let again = ClientIdentity::locked_in(dir.path(), &box_a).unwrap();
        assert_eq!(again.id, id, "the same id after the first let go");
        assert!(again.note.is_none());
    }

    #[test]
    fn a_damaged_file_gets_a_new_id_and_a_given_id_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let box_a = server("http://box:8188");
        std::fs::write(id_path(dir.path(), &box_a), "\x1b[31m garbage").unwrap();
        let identity = ClientIdentity::locked_in(dir.path(), &box_a).unwrap();
        assert!(identity.id.starts_with(COMFYTOP_CLIENT_PREFIX));
        assert_eq!(
            read_id(&id_path(dir.path(), &box_a)).as_deref(),
            Some(identity.id.as_str())
        );
        assert!(ClientIdentity::given("my-laptop").is_ok());
        let bad = ClientIdentity::given("two words\x1b").unwrap_err();
        assert!(
            bad.contains("cannot be a client id") && !bad.contains('\x1b'),
            "{bad}"
        );
    }
}

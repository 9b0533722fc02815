//! The config file: named servers and key overrides, in TOML.
//!
//! Found at `--config FILE`, else `$COMFYTOP_CONFIG`, else `$XDG_CONFIG_HOME/comfytop/config.toml`
//! (`~/.config/comfytop/config.toml`). A missing default file is an empty config; a file that
//! is there must be right: a mistake, an unknown key included, is an error with its line and
//! column. `comfytop config example` prints [`EXAMPLE`], which parses.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::app::keys::{Key, KeyAction, KeyTable};
use crate::comfy::server_url::ServerUrl;
use crate::notify::NotifyMode;
use crate::preview::ImageProtocol;

/// The environment variable naming the config file.
pub const CONFIG_ENV: &str = "COMFYTOP_CONFIG";

/// A commented config that parses (`comfytop config example`).
pub const EXAMPLE: &str = include_str!("../assets/config.example.toml");

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The server used when none is named and `$COMFYUI_URL` is not set.
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub servers: BTreeMap<String, ServerEntry>,
    /// Named lists of servers: `comfytop @studio` watches them all.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// Action name → its keys.
    #[serde(default)]
    keys: BTreeMap<ActionName, KeyList>,
    /// Where it was read from, for messages.
    #[serde(skip)]
    path: Option<PathBuf>,
}

/// One `[servers.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerEntry {
    #[serde(deserialize_with = "server_url")]
    pub url: ServerUrl,
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderSource>,
    /// A PEM file of CA certificates; relative to the config file's directory.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default, deserialize_with = "some_image_protocol")]
    pub image_protocol: Option<ImageProtocol>,
    #[serde(default, deserialize_with = "some_preview_fps")]
    pub preview_fps: Option<u32>,
    #[serde(default)]
    pub notify: Option<NotifyMode>,
    /// Notify for every prompt, not only those this comfytop queued.
    #[serde(default)]
    pub notify_all: Option<bool>,
    #[serde(default)]
    pub read_only: Option<bool>,
}

/// Where a header's value comes from, so a token need not sit in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderSource {
    /// `"value"`.
    Value(String),
    /// `{ env = "VAR", prefix = "Bearer " }`: the variable's value, after `prefix`.
    Env { var: String, prefix: String },
    /// `{ command = "pass show gpu1", prefix = "Bearer " }`: the first line the command prints.
    Command { command: String, prefix: String },
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ActionName(&'static str);

#[derive(Debug, Clone)]
struct KeyList(Vec<Key>);

/// Where to look for the config, and whether it must be there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigPath {
    pub path: PathBuf,
    /// Named by `--config` or `$COMFYTOP_CONFIG`: a missing file is an error.
    pub explicit: bool,
}

impl ConfigPath {
    /// `--config`, else `$COMFYTOP_CONFIG` (clap reads both into `given`), else the XDG default.
    pub fn find(given: Option<&Path>) -> Option<Self> {
        if let Some(path) = given {
            return Some(Self {
                path: path.to_path_buf(),
                explicit: true,
            });
        }
        let from = |var: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let dir = from("XDG_CONFIG_HOME").or_else(|| from("HOME").map(|h| h.join(".config")))?;
        Some(Self {
            path: dir.join("comfytop").join("config.toml"),
            explicit: false,
        })
    }
}

impl Config {
    /// Reads the config at `path`; a missing default file is an empty config.
    pub fn load(path: Option<&ConfigPath>) -> Result<Self, String> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = match std::fs::read_to_string(&path.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !path.explicit => {
                return Ok(Self::default());
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.path.display())),
        };
        Self::parse(&text, &path.path)
    }

    /// Parses `text`, read from `path`. The error names the file, the line and the column.
    pub fn parse(text: &str, path: &Path) -> Result<Self, String> {
        let mut config: Self = toml::from_str(text).map_err(|e| {
            // Where and what, without the line itself: it may hold a token.
            let at = e.span().map_or_else(String::new, |span| {
                let (line, column) = line_and_column(text, span.start);
                format!(" at line {line}, column {column}")
            });
            format!(
                "{}: TOML parse error{at}: {}",
                path.display(),
                crate::text::one_line(e.message().trim_end())
            )
        })?;
        if let Some(name) = &config.default
            && !config.servers.contains_key(name)
        {
            return Err(format!(
                "{}: default = \"{name}\" names no server; the servers are {}",
                path.display(),
                config.server_names()
            ));
        }
        for (group, members) in &config.groups {
            if config.servers.contains_key(group) {
                return Err(format!(
                    "{}: [groups]: {group} is also a server's name; give it another",
                    path.display()
                ));
            }
            if let Some(unknown) = members.iter().find(|m| !config.servers.contains_key(*m)) {
                return Err(format!(
                    "{}: [groups]: {group} names {unknown}, which is no server; the servers are {}",
                    path.display(),
                    config.server_names()
                ));
            }
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        for entry in config.servers.values_mut() {
            if let Some(ca) = &entry.ca_cert {
                entry.ca_cert = Some(dir.join(expand_home(ca)));
            }
        }
        config
            .keys()
            .map_err(|e| format!("{}: [keys]: {e}", path.display()))?;
        config.path = Some(path.to_path_buf());
        Ok(config)
    }

    /// The key table with the config's overrides.
    pub fn keys(&self) -> Result<KeyTable, String> {
        let overrides: Vec<(KeyAction, Vec<Key>)> = self
            .keys
            .iter()
            .map(|(name, keys)| {
                KeyAction::from_config_name(name.0).map(|action| (action, keys.0.clone()))
            })
            .collect::<Result<_, _>>()?;
        KeyTable::default().with_overrides(&overrides)
    }

    /// The servers of the group named `name`, if there is one.
    pub fn group(&self, name: &str) -> Option<&[String]> {
        self.groups.get(name).map(Vec::as_slice)
    }

    /// The server named `name`, or an error listing those there are.
    pub fn server(&self, name: &str) -> Result<&ServerEntry, String> {
        self.servers.get(name).ok_or_else(|| {
            let file = self
                .path
                .as_ref()
                .map_or_else(|| "no config file".to_string(), |p| p.display().to_string());
            if self.servers.is_empty() {
                format!("no server is named '{name}': {file} names none")
            } else {
                format!(
                    "no server is named '{name}' in {file}; the servers are {}",
                    self.server_names()
                )
            }
        })
    }

    fn server_names(&self) -> String {
        self.servers.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

impl ServerEntry {
    /// The address with every header, CA and `insecure` applied. Header values from the
    /// environment or a command are fetched now; errors name the header, never a value.
    pub fn server_url(&self, name: &str) -> Result<ServerUrl, String> {
        let mut server = self.url.clone();
        for (header, source) in &self.headers {
            let value = source
                .value()
                .map_err(|why| format!("server {name}, header {header}: {why}"))?;
            server = server
                .with_header(&format!("{header}: {value}"))
                .map_err(|e| format!("server {name}: {e}"))?;
        }
        if let Some(ca) = &self.ca_cert {
            server = server
                .with_ca_cert(ca)
                .map_err(|e| format!("server {name}: {e}"))?;
        }
        Ok(server.with_insecure(self.insecure))
    }
}

impl HeaderSource {
    fn value(&self) -> Result<String, String> {
        match self {
            Self::Value(value) => Ok(value.clone()),
            Self::Env { var, prefix } => match std::env::var(var) {
                Ok(value) if !value.trim().is_empty() => Ok(format!("{prefix}{}", value.trim())),
                _ => Err(format!("${var} is not set")),
            },
            Self::Command { command, prefix } => {
                run_for_value(command).map(|value| format!("{prefix}{value}"))
            }
        }
    }
}

/// The first line `command` prints, run by the shell. Its output is a secret: an error says
/// how the command ended, never what it printed on stdout.
fn run_for_value(command: &str) -> Result<String, String> {
    #[cfg(unix)]
    let mut shell = std::process::Command::new("sh");
    #[cfg(unix)]
    shell.arg("-c");
    #[cfg(windows)]
    let mut shell = std::process::Command::new("cmd");
    #[cfg(windows)]
    shell.arg("/C");
    let output = shell
        .arg(command)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{command}`: {e}"))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        let said = crate::text::one_line(said.lines().next().unwrap_or_default()).into_owned();
        return Err(format!(
            "`{command}` failed ({}){}",
            output.status,
            if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            }
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().next().map(str::trim) {
        Some(line) if !line.is_empty() => Ok(line.to_string()),
        _ => Err(format!("`{command}` printed nothing")),
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

fn server_url<'de, D: Deserializer<'de>>(d: D) -> Result<ServerUrl, D::Error> {
    let text = String::deserialize(d)?;
    ServerUrl::parse(&text).map_err(de::Error::custom)
}

fn some_image_protocol<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ImageProtocol>, D::Error> {
    use clap::ValueEnum as _;
    let text = String::deserialize(d)?;
    ImageProtocol::from_str(&text, true).map(Some).map_err(|_| {
        let names: Vec<String> = ImageProtocol::value_variants()
            .iter()
            .filter_map(|p| p.to_possible_value().map(|v| v.get_name().to_string()))
            .collect();
        de::Error::custom(format!(
            "'{text}' is not an image protocol; use one of {}",
            names.join(", ")
        ))
    })
}

fn some_preview_fps<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let fps = i64::deserialize(d)?;
    match u32::try_from(fps) {
        Ok(fps @ 1..=30) => Ok(Some(fps)),
        _ => Err(de::Error::custom(format!(
            "preview_fps must be from 1 to 30, not {fps}"
        ))),
    }
}

impl<'de> Deserialize<'de> for ActionName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        KeyAction::CONFIGURABLE
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(known, _)| Self(known))
            .ok_or_else(|| {
                de::Error::custom(KeyAction::from_config_name(&name).err().unwrap_or_default())
            })
    }
}

/// `"x"` or `["x", "Ctrl-x"]`.
impl<'de> Deserialize<'de> for KeyList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let names = match OneOrMany::deserialize(d)
            .map_err(|_| de::Error::custom("give a key as \"x\" or keys as [\"x\", \"Ctrl-x\"]"))?
        {
            OneOrMany::One(name) => vec![name],
            OneOrMany::Many(names) => names,
        };
        names
            .iter()
            .map(|name| name.parse::<Key>())
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
            .map_err(de::Error::custom)
    }
}

/// `"value"`, `{ env = "VAR" }` or `{ command = "..." }`, either with an optional `prefix`.
impl<'de> Deserialize<'de> for HeaderSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SourceVisitor;

        impl<'de> Visitor<'de> for SourceVisitor {
            type Value = HeaderSource;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a header value: \"text\", { env = \"VAR\" } or { command = \"...\" }")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<HeaderSource, E> {
                Ok(HeaderSource::Value(value.to_string()))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeaderSource, A::Error> {
                let (mut env, mut command, mut prefix) = (None, None, None);
                while let Some(key) = map.next_key::<String>()? {
                    let slot = match key.as_str() {
                        "env" => &mut env,
                        "command" => &mut command,
                        "prefix" => &mut prefix,
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown field `{other}`, expected `env`, `command` or `prefix`"
                            )));
                        }
                    };
                    *slot = Some(map.next_value::<String>()?);
                }
                let prefix = prefix.unwrap_or_default();
                match (env, command) {
                    (Some(var), None) => Ok(HeaderSource::Env { var, prefix }),
                    (None, Some(command)) => Ok(HeaderSource::Command { command, prefix }),
                    _ => Err(de::Error::custom("give exactly one of `env` and `command`")),
                }
            }
        }

        d.deserialize_any(SourceVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/home/u/.config/comfytop/config.toml"))
    }

    #[test]
    fn the_example_parses_and_says_what_it_shows() {
        let config = parse(EXAMPLE).unwrap();
        assert_eq!(config.default.as_deref(), Some("gpu1"));
        let gpu1 = config.server("gpu1").unwrap();
        assert_eq!(gpu1.url.to_string(), "https://gpu1.example.com/comfy");
        assert!(matches!(
            gpu1.headers.get("Authorization"),
            Some(HeaderSource::Env { var, prefix }) if var == "GPU1_TOKEN" && prefix == "Bearer "
        ));
        assert!(config.servers.len() >= 2);
        assert!(config.keys().is_ok());
    }

    #[test]
    fn a_mistake_is_reported_with_its_line_and_column() {
        let err = parse("[servers.gpu1]\nurl = \"http://box\"\ncolour = true\n").unwrap_err();
        assert!(
            err.starts_with(
                "/home/u/.config/comfytop/config.toml: TOML parse error at line 3, column 1"
            ),
            "{err}"
        );
        assert!(err.contains("unknown field `colour`"), "{err}");

        let err = parse("[servers.a]\nurl = \"ftp://box\"\n").unwrap_err();
        assert!(err.contains("line 2, column 7"), "{err}");
        assert!(err.contains("not an http(s):// or ws(s):// URL"), "{err}");

        let err = parse("[servers.a]\nurl = \"http://box\"\npreview_fps = 90\n").unwrap_err();
        assert!(
            err.contains("line 3") && err.contains("from 1 to 30"),
            "{err}"
        );

        let err = parse("[servers.a]\nurl = \"http://box\"\nnotify = \"loud\"\n").unwrap_err();
        assert!(err.contains("line 3") && err.contains("loud"), "{err}");

        let err = parse("[keys]\ncancel = \"Hyper-x\"\n").unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("'Hyper-x' is not a key"),
            "{err}"
        );

        let err = parse("[keys]\nexplode = \"x\"\n").unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("no action is named 'explode'"),
            "{err}"
        );

        let err = parse("[servers.a]\nurl = \"http://box\"\nheaders = { X = { env = \"A\", command = \"b\" } }\n").unwrap_err();
        assert!(
            err.contains("line 3") && err.contains("exactly one of"),
            "{err}"
        );

        let err = parse("[servers.a\nurl = 1\n").unwrap_err();
        assert!(err.contains("line 1"), "{err}");

        // The line is not repeated: it may hold a token.
        let err = parse(
            "[servers.a]\nurl = \"http://box\"\nheaders = { Authorization = \"Bearer tok-9\" \n",
        )
        .unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        assert!(!err.contains("tok-9"), "{err}");
    }

    #[test]
    fn whole_file_mistakes_name_what_is_wrong() {
        let err = parse("default = \"gpu9\"\n[servers.gpu1]\nurl = \"http://a\"\n").unwrap_err();
        assert!(
            err.ends_with("default = \"gpu9\" names no server; the servers are gpu1"),
            "{err}"
        );
        let err = parse("[keys]\nhelp = \"q\"\n").unwrap_err();
        assert!(
            err.contains("[keys]: q would do both quit and help"),
            "{err}"
        );
        let config = parse("").unwrap();
        assert_eq!(
            config.server("gpu1").unwrap_err(),
            "no server is named 'gpu1': /home/u/.config/comfytop/config.toml names none"
        );
    }

    #[test]
    fn header_values_come_from_the_file_the_environment_or_a_command() {
        let config = parse(
            "[servers.a]\nurl = \"https://box/comfy/\"\nca_cert = \"certs/ca.pem\"\n\
             [servers.a.headers]\nX-Plain = \"one\"\nX-Env = { env = \"PATH\", prefix = \"p \" }\n\
             X-Cmd = { command = \"echo secret-from-command; echo second-line\" }\n",
        )
        .unwrap();
        let entry = config.server("a").unwrap();
        assert_eq!(
            entry.ca_cert.as_deref(),
            Some(Path::new("/home/u/.config/comfytop/certs/ca.pem"))
        );
        let mut without_ca = entry.clone();
        without_ca.ca_cert = None;
        let server = without_ca.server_url("a").unwrap();
        assert_eq!(server.headers()["x-plain"], "one");
        assert!(
            server.headers()["x-env"]
                .to_str()
                .unwrap()
                .starts_with("p /")
        );
        assert_eq!(server.headers()["x-cmd"], "secret-from-command");

        let failing = HeaderSource::Command {
            command: "printf 'secret-%s' out; echo oops >&2; exit 3".into(),
            prefix: String::new(),
        };
        let err = failing.value().unwrap_err();
        assert!(
            err.contains("exit status: 3") && err.contains("oops"),
            "{err}"
        );
        assert!(!err.contains("secret-out"), "{err}");
        let missing = HeaderSource::Env {
            var: "COMFYTOP_SURELY_UNSET_VARIABLE".into(),
            prefix: String::new(),
        };
        assert_eq!(
            missing.value().unwrap_err(),
            "$COMFYTOP_SURELY_UNSET_VARIABLE is not set"
        );
        assert!(entry.server_url("a").unwrap_err().contains("ca.pem"));
    }
}

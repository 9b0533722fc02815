//! Command-line arguments, and where the server address comes from.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::comfy::server_url::{DEFAULT_URL, ServerUrl};
use crate::commands::cancel::CancelArgs;
use crate::commands::queue::QueueArgs;
use crate::commands::submit::SubmitArgs;
use crate::config::{Config, ServerEntry};
use crate::notify::NotifyMode;
use crate::preview::ImageProtocol;
use crate::watch::LineFormat;
use crate::watch::replay::Pace;

/// The environment variable that names the default server.
pub const URL_ENV: &str = "COMFYUI_URL";
/// The environment variable with headers for every request, one `Name: value` per line.
pub const HEADERS_ENV: &str = "COMFYUI_HEADERS";

/// `--version`: the package version and the build it came from (the commit and its date, from
/// `build.rs`), so a bug report names the exact code.
pub const BUILD_VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (", env!("COMFYTOP_BUILD"), ")");

/// A terminal dashboard for ComfyUI servers.
#[derive(Debug, Parser)]
#[command(
    name = "comfytop",
    version = BUILD_VERSION,
    about,
    args_conflicts_with_subcommands = true,
    after_help = format!("\
Examples:
  comfytop                                the dashboard on http://127.0.0.1:8188 (or $COMFYUI_URL)
  comfytop --demo                         the dashboard on a simulated ComfyUI, no GPU needed
  comfytop watch                          follow http://127.0.0.1:8188 (or $COMFYUI_URL)
  comfytop watch http://gpu-box:8188 --json --record run.jsonl
  comfytop replay run.jsonl --speed 2     play a recording at twice its speed
  comfytop submit flow.json --wait        queue an API-format workflow and follow it
  comfytop cancel                         interrupt the prompt running now (only that one)
  comfytop sim --demo                     a simulated ComfyUI with traffic on 127.0.0.1:8188

{}", crate::commands::EXIT_STATUS_HELP)
)]
pub struct Cli {
    /// ComfyUI servers for the dashboard: URLs, names from the config (gpu1 or @gpu1) or
    /// groups of them (@studio) [default: $COMFYUI_URL, else the config's default, else
    /// http://127.0.0.1:8188]
    #[arg(value_name = "URL|NAME")]
    pub urls: Vec<String>,

    /// Watch every server the config names
    #[arg(long, conflicts_with = "urls")]
    pub all: bool,

    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Run the dashboard against a built-in simulated server (no ComfyUI needed)
    #[arg(long)]
    pub demo: bool,

    /// With --demo: a fleet of simulated servers at different speeds, one of them flaky
    #[arg(long, requires = "demo")]
    pub fleet: bool,

    /// Change nothing on the server: the dashboard's cancel, delete, requeue and free keys refuse
    #[arg(long)]
    pub read_only: bool,

    /// Leave the mouse to the terminal (no click to select, no wheel scrolling)
    #[arg(long)]
    pub no_mouse: bool,

    /// Write the dashboard's own log to FILE (nothing is printed while it is on screen)
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Append every received frame to FILE, in the transcript format `replay` reads
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// How previews are drawn: auto asks the terminal, halfblocks works everywhere [default:
    /// the server's config, else auto]
    #[arg(long, value_enum, value_name = "PROTOCOL")]
    pub image_protocol: Option<ImageProtocol>,

    /// The most preview redraws per second (over ssh every byte counts) [default: the
    /// server's config, else 4]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=30))]
    pub preview_fps: Option<u32>,

    /// Where `s` saves outputs (never over an existing file)
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub save_dir: PathBuf,

    /// Finished prompts kept in memory; older ones are forgotten
    #[arg(long, value_name = "N", default_value_t = crate::tracker::FINISHED_KEPT, value_parser = parse_history)]
    pub history: usize,

    /// Colours on screen: auto uses them unless NO_COLOR is set (the commands print none)
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,

    /// The config file with named servers and keys [default: $XDG_CONFIG_HOME/comfytop/config.toml]
    #[arg(long, global = true, value_name = "FILE", env = crate::config::CONFIG_ENV)]
    pub config: Option<PathBuf>,

    /// Connect as this clientId instead of the one comfytop keeps per server: ComfyUI sends a
    /// prompt's live events only to the id that queued it
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,

    /// When a prompt ends: ring the bell, send a desktop notification (OSC 9 / 777), both, or
    /// nothing [default: the server's config, else bell]
    #[arg(long, value_enum, value_name = "HOW")]
    pub notify: Option<NotifyMode>,

    /// Notify for every prompt, not only those this comfytop queued
    #[arg(long)]
    pub notify_all: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Follow a server and print one line per event; reconnects until Ctrl-C
    Watch(WatchArgs),
    /// Play a recorded transcript through the same decoding and tracking as `watch`
    Replay(ReplayArgs),
    /// Run the simulated ComfyUI server
    Sim(SimArgs),
    /// Queue an API-format workflow and print its prompt id; --wait follows it to its end
    Submit(SubmitArgs),
    /// Cancel a prompt (interrupt it if it runs, delete it if it waits), or every pending one
    Cancel(CancelArgs),
    /// Show the queue: running, then pending in run order
    Queue(QueueArgs),
    /// Print a completion script for a shell (e.g. `comfytop completions bash > ~/.local/share/bash-completion/completions/comfytop`)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page, in roff (e.g. `comfytop man | man -l -`)
    Man,
    /// Where the config file is, or a commented example of one
    Config {
        #[arg(value_enum)]
        what: ConfigCommand,
    },
    /// Install the comfytop bridge into a ComfyUI checkout, so that every prompt on that server
    /// is seen live, whoever queued it (restart ComfyUI afterwards)
    InstallBridge(InstallBridgeArgs),
}

/// `comfytop install-bridge`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Over ssh: comfytop install-bridge --print | ssh gpu-box 'cat > ComfyUI/custom_nodes/comfytop_bridge.py'"
)]
pub struct InstallBridgeArgs {
    /// The ComfyUI folder (the one with main.py and custom_nodes/)
    #[arg(value_name = "COMFYUI_DIR", required_unless_present = "print")]
    pub comfyui_dir: Option<std::path::PathBuf>,

    /// Write the bridge to stdout instead, to copy it elsewhere (e.g. over ssh)
    #[arg(long, conflicts_with_all = ["comfyui_dir", "uninstall"])]
    pub print: bool,

    /// Remove the bridge from COMFYUI_DIR instead
    #[arg(long)]
    pub uninstall: bool,
}

/// `comfytop config ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConfigCommand {
    /// The file comfytop reads (it may not exist yet)
    Path,
    /// A commented example that parses: `comfytop config example > "$(comfytop config path)"`
    Example,
}

/// How to reach a server beyond its address: on the dashboard and every command that talks to
/// one.
#[derive(Debug, Clone, Default, Args)]
pub struct ConnectionArgs {
    /// Send this header with every request and the WebSocket upgrade, e.g. 'Authorization:
    /// Bearer TOKEN' (repeatable; also $COMFYUI_HEADERS, one per line). Never printed
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Also trust the CA certificates in FILE (PEM): for https with a private CA
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// Accept any certificate over https. Encrypted, but anyone in between could pose as the
    /// server: for a quick test only
    #[arg(long)]
    pub insecure: bool,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

impl ColorWhen {
    /// Whether to use colours, given the `NO_COLOR` variable: set and not empty turns them off
    /// under `auto` (<https://no-color.org>).
    pub fn colours(self, no_color: Option<&std::ffi::OsStr>) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Auto => no_color.is_none_or(|value| value.is_empty()),
        }
    }
}

/// The completion script for `shell`, made from the same definitions as `--help`.
pub fn write_completions(
    shell: clap_complete::Shell,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    use clap::CommandFactory as _;
    // Made whole first: the generator panics when its writer fails (`| head`).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "comfytop", &mut script);
    out.write_all(&script)
}

/// The manual page (roff), made from the same definitions as `--help`.
pub fn write_man_page(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use clap::CommandFactory as _;
    clap_mangen::Man::new(Cli::command()).render(out)
}

#[derive(Debug, Args)]
#[command(after_help = crate::commands::EXIT_STATUS_HELP)]
pub struct WatchArgs {
    /// ComfyUI servers: URLs, names from the config (gpu1 or @gpu1) or groups (@studio); with
    /// several each line starts with the server's name [default: $COMFYUI_URL, else the
    /// config's default, else http://127.0.0.1:8188]
    #[arg(value_name = "URL|NAME")]
    pub urls: Vec<String>,

    /// Every server the config names
    #[arg(long, conflicts_with = "urls")]
    pub all: bool,

    /// Print one JSON object per line instead of text
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Connect as this clientId instead of the one comfytop keeps per server
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,

    /// Append every received frame and every HTTP answer used to FILE, in the transcript format
    /// `replay` reads
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Finished prompts kept in memory; older ones are forgotten
    #[arg(long, value_name = "N", default_value_t = crate::tracker::FINISHED_KEPT, value_parser = parse_history)]
    pub history: usize,
}

/// `--history`: at least one finished prompt, at most what stays cheap to keep and page back to.
fn parse_history(text: &str) -> Result<usize, String> {
    const MOST: usize = 100_000;
    match text.parse::<usize>() {
        Ok(n) if (1..=MOST).contains(&n) => Ok(n),
        _ => Err(format!("expected a number of prompts from 1 to {MOST}")),
    }
}

#[derive(Debug, Args)]
#[command(after_help = crate::commands::EXIT_STATUS_HELP)]
pub struct ReplayArgs {
    /// Transcript to play (JSON lines, as written by `watch --record`); - reads stdin
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Print one JSON object per line instead of text
    #[arg(long)]
    pub json: bool,

    /// Play with the recorded timing, N times as fast (0.5 = half speed); a pause longer than
    /// 5 s plays as 5 s
    #[arg(long, value_name = "N", value_parser = parse_speed, conflicts_with = "max", allow_hyphen_values = true)]
    pub speed: Option<f64>,

    /// Play without any delay (the default)
    #[arg(long)]
    pub max: bool,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free one)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8188")]
    pub listen: SocketAddr,

    /// Milliseconds per simulated sampler step; every other duration scales with it
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100,
        value_parser = clap::value_parser!(u64).range(1..=60_000)
    )]
    pub step_ms: u64,

    /// Keep demo work flowing: prompts from simulated browser tabs and a script
    #[arg(long)]
    pub demo: bool,

    /// Answer 401 to every request without this header, as a proxy that wants a token does
    #[arg(long, value_name = "NAME: VALUE", value_parser = parse_required_header)]
    pub require_header: Option<(String, String)>,

    /// Run N servers on consecutive ports from --listen, each at its own speed
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub servers: u16,

    /// Make the last server go down and come back now and then (a flaky network)
    #[arg(long)]
    pub flaky: bool,

    /// Behave as a ComfyUI with the comfytop bridge installed (see `comfytop install-bridge`)
    #[arg(long)]
    pub bridge: bool,
}

fn parse_required_header(text: &str) -> Result<(String, String), String> {
    text.split_once(':')
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| "expected 'Name: value'".to_string())
}

impl SimArgs {
    pub fn step(&self) -> Duration {
        Duration::from_millis(self.step_ms)
    }
}

impl WatchArgs {
    pub fn format(&self) -> LineFormat {
        if self.json {
            LineFormat::Json
        } else {
            LineFormat::Human
        }
    }
}

impl ReplayArgs {
    pub fn format(&self) -> LineFormat {
        if self.json {
            LineFormat::Json
        } else {
            LineFormat::Human
        }
    }

    pub fn pace(&self) -> Pace {
        match self.speed {
            Some(speed) if !self.max => Pace::Speed(speed),
            _ => Pace::Max,
        }
    }
}

fn parse_speed(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(speed) if speed.is_finite() && speed > 0.0 => Ok(speed),
        _ => Err(format!(
            "'{text}' is not a speed; give a number above 0, like 2 or 0.5"
        )),
    }
}

/// The server a command names, with everything the config says about it.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: ServerUrl,
    /// Its name in the config, when it was named.
    pub name: Option<String>,
    /// The config's entry for it, when it was named.
    pub entry: Option<ServerEntry>,
}

impl Target {
    /// `read_only = true` in its config entry.
    pub fn read_only(&self) -> bool {
        self.entry
            .as_ref()
            .and_then(|e| e.read_only)
            .unwrap_or(false)
    }
}

/// The server named by `arg`, else `$COMFYUI_URL` when set and not empty, else the config's
/// default, else the local default. `@name` is a server of the config; so is a bare word that
/// names one. The error is one line naming the bad address and where it came from.
pub fn resolve_server(
    arg: Option<&str>,
    env: Option<&str>,
    config: &Config,
) -> Result<Target, String> {
    let (text, source) = match (arg, env.filter(|e| !e.trim().is_empty())) {
        (Some(arg), _) => (arg.to_string(), None),
        (None, Some(env)) => (env.to_string(), Some(format!("from ${URL_ENV}"))),
        (None, None) => match &config.default {
            Some(name) => (format!("@{name}"), None),
            None => (DEFAULT_URL.to_string(), None),
        },
    };
    let text = text.trim();
    let name = match text.strip_prefix('@') {
        Some(name) => Some(name),
        None if config.servers.contains_key(text) => Some(text),
        None => None,
    };
    let with_source = |e: String| match &source {
        Some(source) => format!("{e} ({source})"),
        None => e,
    };
    match name {
        Some(name) => {
            let entry = config.server(name).map_err(with_source)?;
            Ok(Target {
                server: entry.server_url(name)?,
                name: Some(name.to_string()),
                entry: Some(entry.clone()),
            })
        }
        None => Ok(Target {
            server: ServerUrl::parse(text).map_err(|e| with_source(e.to_string()))?,
            name: None,
            entry: None,
        }),
    }
}

/// Every server `args` name, in order, each once: URLs, names, and groups of the config
/// expanded (`--all`: every server of the config). None named: the one [`target`] picks.
pub fn targets(
    args: &[String],
    all: bool,
    connection: &ConnectionArgs,
    config: &Config,
) -> Result<Vec<Target>, String> {
    let names: Vec<String> = if all {
        if config.servers.is_empty() {
            return Err("--all watches the servers of the config, and it names none".to_string());
        }
        config
            .servers
            .keys()
            .map(|name| format!("@{name}"))
            .collect()
    } else {
        args.iter()
            .flat_map(|arg| {
                let name = arg.strip_prefix('@').unwrap_or(arg);
                match config.group(name) {
                    Some(members) => members.iter().map(|m| format!("@{m}")).collect(),
                    None => vec![arg.clone()],
                }
            })
            .collect()
    };
    if names.is_empty() {
        return Ok(vec![target(None, connection, config)?]);
    }
    // `--header` and `$COMFYUI_HEADERS` are for the one server named, or for those named by
    // URL: a token must not travel to every box of a group, nor replace their own.
    let several = names.len() > 1;
    let mut targets: Vec<Target> = Vec::new();
    for name in &names {
        let mut found = target(Some(name), connection, config)?;
        if several && let Some(entry) = &found.entry {
            let own = entry.server_url(found.name.as_deref().unwrap_or_default())?;
            found.server = with_tls(own, connection)?;
        }
        // The same server twice would be two sockets under one id, the second silencing the
        // first.
        if !targets
            .iter()
            .any(|t| t.server.base() == found.server.base())
        {
            targets.push(found);
        }
    }
    Ok(targets)
}

/// `server` with the headers of `$COMFYUI_HEADERS` (one per line) and then `--header`. A
/// header named in a later place replaces one of the same name from an earlier one: the config,
/// then the environment, then the command line.
pub fn with_headers(
    server: ServerUrl,
    args: &[String],
    env: Option<&str>,
) -> Result<ServerUrl, String> {
    let name_of = |line: &str| {
        line.split_once(':')
            .map(|(name, _)| name.trim().to_ascii_lowercase())
    };
    let given: Vec<String> = args.iter().filter_map(|line| name_of(line)).collect();
    let from_env: Vec<&str> = env
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .filter(|line| name_of(line).is_none_or(|name| !given.contains(&name)))
        .collect();
    let mut server = server;
    for name in from_env
        .iter()
        .filter_map(|line| name_of(line))
        .chain(given.iter().cloned())
    {
        server = server.without_header(&name);
    }
    for line in from_env {
        server = server
            .with_header(line)
            .map_err(|e| format!("{e} (from ${HEADERS_ENV})"))?;
    }
    for line in args {
        server = server.with_header(line).map_err(|e| e.to_string())?;
    }
    Ok(server)
}

/// The server a command names (see [`resolve_server`]) with the headers and TLS settings of
/// the environment and the command line over those of the config; the error is a usage error.
pub fn target(
    arg: Option<&str>,
    connection: &ConnectionArgs,
    config: &Config,
) -> Result<Target, String> {
    let url = std::env::var(URL_ENV).ok();
    let env_headers = std::env::var(HEADERS_ENV).ok();
    let mut target = resolve_server(arg, url.as_deref(), config)?;
    let server = with_headers(target.server, &connection.headers, env_headers.as_deref())?;
    target.server = with_tls(server, connection)?;
    Ok(target)
}

/// `server` with `--ca-cert` and `--insecure`.
fn with_tls(server: ServerUrl, connection: &ConnectionArgs) -> Result<ServerUrl, String> {
    let mut server = server;
    if let Some(ca) = &connection.ca_cert {
        server = server.with_ca_cert(ca).map_err(|e| e.to_string())?;
    }
    if connection.insecure {
        server = server.with_insecure(true);
    }
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_come_from_the_environment_then_the_command_line_which_wins() {
        let server = ServerUrl::parse("http://box").unwrap();
        let args = vec!["Authorization: Bearer from-args".to_string()];
        let env = "Authorization: Bearer from-env\nX-Team:  gpu  \n\n";
        let server = with_headers(server, &args, Some(env)).unwrap();
        let auth: Vec<_> = server.headers().get_all("authorization").iter().collect();
        assert_eq!(auth, ["Bearer from-args"]);
        assert_eq!(server.headers()["x-team"], "gpu");
        let bad = with_headers(server.clone(), &[], Some("no colon here secret")).unwrap_err();
        assert!(bad.ends_with("(from $COMFYUI_HEADERS)"), "{bad}");
        assert!(!bad.contains("secret"), "{bad}");
        let cli = parse(&["http://box", "--header", "X-A: 1", "--header", "X-B: 2"]).unwrap();
        assert_eq!(cli.connection.headers, ["X-A: 1", "X-B: 2"]);
    }

    #[test]
    fn no_color_turns_colours_off_only_under_auto_and_only_when_not_empty() {
        let set = Some(std::ffi::OsStr::new("1"));
        let empty = Some(std::ffi::OsStr::new(""));
        assert!(ColorWhen::Auto.colours(None));
        assert!(ColorWhen::Auto.colours(empty));
        assert!(!ColorWhen::Auto.colours(set));
        assert!(ColorWhen::Always.colours(set));
        assert!(!ColorWhen::Never.colours(None));
        assert_eq!(
            parse(&["--color", "never"]).unwrap().color,
            ColorWhen::Never
        );
    }

    #[test]
    fn completions_for_every_shell_know_the_commands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
            clap_complete::Shell::PowerShell,
        ] {
            let mut out = Vec::new();
            write_completions(shell, &mut out).unwrap();
            let script = String::from_utf8_lossy(&out);
            for word in ["comfytop", "watch", "submit", "image-protocol"] {
                assert!(script.contains(word), "{shell:?} lacks {word}");
            }
        }
    }

    #[test]
    fn the_man_page_is_roff_from_the_same_definitions() {
        let mut out = Vec::new();
        write_man_page(&mut out).unwrap();
        let page = String::from_utf8_lossy(&out);
        assert!(page.contains(".TH comfytop"), "{page}");
        assert!(page.contains("image\\-protocol"), "{page}");
        assert!(page.contains(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn the_version_names_the_build() {
        assert!(BUILD_VERSION.starts_with(env!("CARGO_PKG_VERSION")));
        assert!(BUILD_VERSION.ends_with(')'), "{BUILD_VERSION}");
        assert!(BUILD_VERSION.len() > env!("CARGO_PKG_VERSION").len() + 4);
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("comfytop").chain(args.iter().copied()))
    }

    #[test]
    fn the_subcommands_and_the_dashboard_url_parse() {
        let cli = parse(&["watch", "http://box:8188", "--json", "--record", "r.jsonl"]).unwrap();
        let Some(Command::Watch(w)) = cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(w.urls, ["http://box:8188"]);
        assert_eq!(w.format(), LineFormat::Json);
        assert_eq!(w.record, Some(PathBuf::from("r.jsonl")));

        let cli = parse(&["http://box:8188"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.urls, ["http://box:8188"]);
        let cli = parse(&["box1:8188", "@gpu2"]).unwrap();
        assert_eq!(cli.urls, ["box1:8188", "@gpu2"]);
        assert!(parse(&["--all", "box1"]).is_err());
        assert!(parse(&["--demo"]).unwrap().demo);
        let cli = parse(&["--read-only", "--demo"]).unwrap();
        assert!(cli.read_only && cli.demo);
        assert!(!parse(&[]).unwrap().read_only);

        let Some(Command::Sim(sim)) = parse(&["sim", "--listen", "127.0.0.1:0", "--step-ms", "10"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(sim.listen.port(), 0);
        assert_eq!(sim.step(), Duration::from_millis(10));
        assert!(!sim.demo);
        assert!(parse(&["sim", "--step-ms", "0"]).is_err());
        assert!(parse(&["sim", "--listen", "not an address"]).is_err());
    }

    #[test]
    fn submit_takes_repeated_overrides_and_download_implies_nothing_else() {
        let cli = parse(&[
            "submit",
            "w.json",
            "box:8188",
            "--set",
            "3.steps=30",
            "--set",
            "6.text=a cat",
            "--front",
            "--download",
            "out",
        ])
        .unwrap();
        let Some(Command::Submit(s)) = cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(s.url.as_deref(), Some("box:8188"));
        assert_eq!(s.overrides, ["3.steps=30", "6.text=a cat"]);
        assert!(s.front && !s.wait && !s.read_only);
        assert_eq!(s.download, Some(PathBuf::from("out")));
        assert!(matches!(
            parse(&["cancel", "--all-pending"]).unwrap().command,
            Some(Command::Cancel(_))
        ));
        assert!(matches!(
            parse(&["queue", "--json"]).unwrap().command,
            Some(Command::Queue(q)) if q.json
        ));
    }

    #[test]
    fn replay_pace_defaults_to_max_and_speed_must_be_positive() {
        let Some(Command::Replay(r)) = parse(&["replay", "x.jsonl"]).unwrap().command else {
            panic!()
        };
        assert_eq!(r.pace(), Pace::Max);
        let Some(Command::Replay(r)) = parse(&["replay", "x.jsonl", "--speed", "2.5"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(r.pace(), Pace::Speed(2.5));
        for bad in ["0", "-1", "fast", "inf", "NaN"] {
            let err = parse(&["replay", "x.jsonl", "--speed", bad]).unwrap_err();
            assert!(err.to_string().contains("above 0"), "{bad}: {err}");
        }
        assert!(parse(&["replay", "x.jsonl", "--speed", "2", "--max"]).is_err());
    }

    #[test]
    fn server_comes_from_the_argument_then_the_environment_then_the_default() {
        let config = Config::default();
        let from = |arg, env| resolve_server(arg, env, &config).map(|t| t.server.to_string());
        assert_eq!(
            from(Some("http://a:1"), Some("http://b:2")).unwrap(),
            "http://a:1"
        );
        assert_eq!(from(None, Some("http://b:2")).unwrap(), "http://b:2");
        assert_eq!(from(None, Some("  ")).unwrap(), "http://127.0.0.1:8188");
        assert_eq!(from(None, None).unwrap(), "http://127.0.0.1:8188");
    }

    #[test]
    fn a_bad_url_is_one_line_naming_it_and_its_source() {
        let config = Config::default();
        let err = resolve_server(Some("ftp://x"), None, &config).unwrap_err();
        assert_eq!(err, "'ftp://x' is not an http(s):// or ws(s):// URL");
        let err = resolve_server(None, Some("gopher://y"), &config).unwrap_err();
        assert!(
            err.contains("'gopher://y'") && err.ends_with("(from $COMFYUI_URL)"),
            "{err}"
        );
        assert!(!err.contains('\n'));
    }

    #[test]
    fn servers_are_named_with_or_without_an_at_and_their_headers_give_way() {
        let config = Config::parse(
            "default = \"gpu1\"\n[servers.gpu1]\nurl = \"http://gpu1:8188\"\nread_only = true\n\
             headers = { X-Team = \"config\", Authorization = \"Bearer config\" }\n",
            std::path::Path::new("c.toml"),
        )
        .unwrap();
        for arg in [None, Some("@gpu1"), Some("gpu1")] {
            let target = resolve_server(arg, None, &config).unwrap();
            assert_eq!(target.server.to_string(), "http://gpu1:8188", "{arg:?}");
            assert_eq!(target.name.as_deref(), Some("gpu1"));
            assert!(target.read_only());
        }
        let from_env = resolve_server(None, Some("@gpu1"), &config).unwrap();
        assert_eq!(from_env.name.as_deref(), Some("gpu1"));
        let plain = resolve_server(Some("gpu1:8188"), None, &config).unwrap();
        assert!(plain.name.is_none() && !plain.read_only());
        let err = resolve_server(None, Some("@gpu9"), &config).unwrap_err();
        assert!(
            err.starts_with("no server is named 'gpu9' in c.toml; the servers are gpu1")
                && err.ends_with("(from $COMFYUI_URL)"),
            "{err}"
        );

        let server = resolve_server(None, None, &config).unwrap().server;
        let server = with_headers(
            server,
            &["Authorization: Bearer cli".to_string()],
            Some("X-Team: env"),
        )
        .unwrap();
        assert_eq!(server.headers()["authorization"], "Bearer cli");
        assert_eq!(server.headers()["x-team"], "env");
        assert_eq!(server.headers().len(), 2);
    }

    #[test]
    fn several_servers_come_from_urls_names_groups_or_all_each_once() {
        let config = Config::parse(
            "[servers.a]\nurl = \"http://a:1\"\n[servers.b]\nurl = \"http://b:2\"\n\
             [groups]\nstudio = [\"a\", \"b\"]\n",
            std::path::Path::new("c.toml"),
        )
        .unwrap();
        let flags = ConnectionArgs::default();
        let urls = |args: &[&str], all: bool| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            targets(&args, all, &flags, &config)
                .map(|ts| ts.iter().map(|t| t.server.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(
            urls(&["@studio"], false).unwrap(),
            ["http://a:1", "http://b:2"]
        );
        assert_eq!(
            urls(&["b", "http://c:3", "@a", "http://b:2"], false).unwrap(),
            ["http://b:2", "http://c:3", "http://a:1"]
        );
        assert_eq!(urls(&[], true).unwrap(), ["http://a:1", "http://b:2"]);
        // A header given on the command line goes to the one server named, not to a group.
        let with_token = ConnectionArgs {
            headers: vec!["X-Token: t".to_string()],
            ..ConnectionArgs::default()
        };
        let group = targets(&["@studio".to_string()], false, &with_token, &config).unwrap();
        assert!(group.iter().all(|t| t.server.headers().is_empty()));
        let one = targets(&["@a".to_string()], false, &with_token, &config).unwrap();
        assert_eq!(one[0].server.headers()["x-token"], "t");
        let none = targets(&[], true, &flags, &Config::default()).unwrap_err();
        assert!(none.contains("names none"), "{none}");
        let bad = Config::parse("[groups]\nx = [\"nope\"]\n", std::path::Path::new("c.toml"))
            .unwrap_err();
        assert!(bad.contains("x names nope, which is no server"), "{bad}");
    }
}

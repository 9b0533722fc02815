use std::process::ExitCode;

use clap::Parser as _;
use color_eyre::eyre::{Result, WrapErr as _};

use comfytop::app::keys::KeyTable;
use comfytop::cli::{Cli, Command, ConfigCommand, ReplayArgs, SimArgs, Target, WatchArgs};
use comfytop::comfy::server_url::ServerUrl;
use comfytop::commands::{self, Exit};
use comfytop::config::{Config, ConfigPath, EXAMPLE};
use comfytop::control::Access;
use comfytop::dashboard::{self, DEFAULT_PREVIEW_FPS, DashboardConfig, WatchedServer};
use comfytop::identity::ClientIdentity;
use comfytop::notify::{NotifyFor, NotifyMode};
use comfytop::watch::{live, replay};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = color_eyre::install() {
        eprintln!("comfytop: cannot install the error handler: {e}");
    }
    match run(cli) {
        Ok(code) => code,
        Err(report) => {
            // `{:#}` gives the whole chain on one line: what failed, then why.
            eprintln!("comfytop: {report:#}");
            Exit::NotDone.into()
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let config_path = ConfigPath::find(cli.config.as_deref());
    // What needs no server needs no config either: a broken config must not stop these.
    match &cli.command {
        Some(Command::Replay(args)) => return replay(args),
        Some(Command::Sim(args)) => return simulator(args),
        Some(Command::Completions { shell }) => {
            return printed(
                comfytop::cli::write_completions(*shell, &mut std::io::stdout()),
                "the completion script",
            );
        }
        Some(Command::Man) => {
            return printed(
                comfytop::cli::write_man_page(&mut std::io::stdout()),
                "the manual page",
            );
        }
        Some(Command::Config { what }) => return config_command(*what, config_path.as_ref()),
        Some(Command::InstallBridge(args)) => return install_bridge(args),
        _ => {}
    }
    let config = match Config::load(config_path.as_ref()) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("comfytop: {message}");
            return Ok(Exit::Usage.into());
        }
    };
    match cli.command {
        Some(Command::Watch(args)) => {
            let targets =
                match comfytop::cli::targets(&args.urls, args.all, &args.connection, &config) {
                    Ok(targets) => targets,
                    Err(message) => {
                        eprintln!("comfytop: {message}");
                        return Ok(Exit::Usage.into());
                    }
                };
            watch(targets, args)
        }
        Some(Command::Submit(args)) => Ok(runtime()?
            .block_on(commands::submit::run(args, &config))
            .into()),
        Some(Command::Cancel(args)) => Ok(runtime()?
            .block_on(commands::cancel::run(args, &config))
            .into()),
        Some(Command::Queue(args)) => Ok(runtime()?
            .block_on(commands::queue::run(args, &config))
            .into()),
        _ => {
            let keys = match config.keys() {
                Ok(keys) => keys,
                Err(message) => {
                    eprintln!("comfytop: {message}");
                    return Ok(Exit::Usage.into());
                }
            };
            let targets = match comfytop::cli::targets(&cli.urls, cli.all, &cli.connection, &config)
            {
                Ok(targets) => targets,
                Err(message) => {
                    eprintln!("comfytop: {message}");
                    return Ok(Exit::Usage.into());
                }
            };
            if targets.len() > 1 && cli.record.is_some() {
                eprintln!(
                    "comfytop: --record follows one server; name one, or use `comfytop watch URL --record FILE` per server"
                );
                return Ok(Exit::Usage.into());
            }
            dashboard(targets, keys, &cli)
        }
    }
}

/// `comfytop config path|example`.
fn config_command(what: ConfigCommand, path: Option<&ConfigPath>) -> Result<ExitCode> {
    match what {
        ConfigCommand::Path => match path {
            Some(path) => {
                println!("{}", path.path.display());
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!(
                    "comfytop: neither $XDG_CONFIG_HOME nor $HOME is set; name a config with --config FILE"
                );
                Ok(Exit::Usage.into())
            }
        },
        ConfigCommand::Example => printed(
            std::io::Write::write_all(&mut std::io::stdout(), EXAMPLE.as_bytes()),
            "the example config",
        ),
    }
}

/// `comfytop install-bridge`: into a checkout, out of it, or to stdout.
fn install_bridge(args: &comfytop::cli::InstallBridgeArgs) -> Result<ExitCode> {
    use comfytop::bridge::{self, Installed};
    let Some(dir) = args.comfyui_dir.as_deref().filter(|_| !args.print) else {
        return printed(
            std::io::Write::write_all(&mut std::io::stdout(), bridge::SOURCE.as_bytes()),
            "the bridge",
        );
    };
    let version = bridge::version();
    // A folder's name is the user's, but it may hold anything: never raw to the terminal.
    let shown =
        |path: &std::path::Path| comfytop::text::one_line(&path.display().to_string()).into_owned();
    let done = if args.uninstall {
        bridge::uninstall(dir)
    } else {
        bridge::install(dir)
    };
    let restart = "Restart ComfyUI to load it. Then GET /comfytop/bridge on the server answers \
        with its version, ComfyUI's log has a line beginning 'comfytop bridge', and comfytop \
        shows 'bridge' in its status bar.";
    let said = match done {
        Err(why) => {
            eprintln!("comfytop: {}", comfytop::text::one_line(&why));
            return Ok(Exit::Usage.into());
        }
        Ok(Installed::New(path)) => {
            format!(
                "Installed the comfytop bridge {version} at {}. {restart}",
                shown(&path)
            )
        }
        Ok(Installed::Updated { path, from }) => format!(
            "Updated the comfytop bridge at {} from {} to {version}. {restart}",
            shown(&path),
            from.as_deref().unwrap_or("another version")
        ),
        Ok(Installed::AlreadyThere(path)) => format!(
            "The comfytop bridge {version} is already installed at {}; nothing changed.",
            shown(&path)
        ),
        Ok(Installed::Removed(path)) => format!(
            "Removed the comfytop bridge from {}. Restart ComfyUI to unload it.",
            shown(&path)
        ),
        Ok(Installed::NotThere(path)) => {
            format!(
                "There is no comfytop bridge at {}; nothing to remove.",
                shown(&path)
            )
        }
    };
    println!("{said}");
    Ok(ExitCode::SUCCESS)
}

/// Success once `what` is on stdout, or its reader stopped reading (`comfytop man | head`).
fn printed(written: std::io::Result<()>, what: &str) -> Result<ExitCode> {
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).wrap_err(format!("cannot write {what}"))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// The clientId to use: `--client-id`, else the one kept for the server. A note on why it is
/// a fresh one goes to stderr (`quiet`: the dashboard shows it itself).
fn identity(
    given: Option<&str>,
    server: &ServerUrl,
    quiet: bool,
) -> Result<ClientIdentity, ExitCode> {
    let identity = match given {
        Some(id) => ClientIdentity::given(id).map_err(|message| {
            eprintln!("comfytop: {message}");
            ExitCode::from(Exit::Usage)
        })?,
        None => ClientIdentity::for_server(server),
    };
    if !quiet && let Some(note) = &identity.note {
        eprintln!("comfytop: {note}");
    }
    Ok(identity)
}

/// One thread is plenty: everything waits on sockets.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .wrap_err("cannot start the async runtime")
}

fn watch(targets: Vec<Target>, args: WatchArgs) -> Result<ExitCode> {
    if targets.len() > 1 && args.record.is_some() {
        eprintln!(
            "comfytop: --record follows one server; run one `comfytop watch URL --record FILE` per server"
        );
        return Ok(Exit::Usage.into());
    }
    // Held until watching ends: each keeps its server's id from a second comfytop.
    let mut identities = Vec::with_capacity(targets.len());
    for target in &targets {
        match identity(args.client_id.as_deref(), &target.server, false) {
            Ok(identity) => identities.push(identity),
            Err(code) => return Ok(code),
        }
    }
    if let ([target], [identity]) = (targets.as_slice(), identities.as_slice()) {
        runtime()?.block_on(live::run(
            target.server.clone(),
            identity.id.clone(),
            args.format(),
            args.record.as_deref(),
            args.history,
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    let servers = targets
        .iter()
        .zip(&identities)
        .map(|(target, identity)| live::NamedServer {
            name: target
                .name
                .clone()
                .unwrap_or_else(|| comfytop::format::server_name(&target.server)),
            url: target.server.clone(),
            client_id: identity.id.clone(),
        })
        .collect();
    runtime()?.block_on(live::run_several(servers, args.format(), args.history))?;
    Ok(ExitCode::SUCCESS)
}

/// The dashboard on `targets`, or with `--demo` on a simulated server started in-process. The
/// command line wins over the config entry of the first server, which wins over the defaults.
fn dashboard(targets: Vec<Target>, keys: KeyTable, cli: &Cli) -> Result<ExitCode> {
    if let Some(path) = &cli.log {
        dashboard::log_to_file(path)?;
    }
    // Held until the dashboard ends: each keeps its server's id from a second comfytop.
    let mut identities = Vec::with_capacity(targets.len());
    for target in &targets {
        // The demo's simulator is a new server each time: nothing to resume there.
        let identity = if cli.demo {
            ClientIdentity::fresh()
        } else {
            match identity(cli.client_id.as_deref(), &target.server, true) {
                Ok(identity) => identity,
                Err(code) => return Ok(code),
            }
        };
        identities.push(identity);
    }
    let entry = targets.first().and_then(|t| t.entry.as_ref());
    let servers = targets
        .iter()
        .zip(&identities)
        .map(|(target, identity)| WatchedServer {
            url: target.server.clone(),
            name: target.name.clone(),
            client_id: identity.id.clone(),
            client_id_note: identity.note.clone(),
            read_only: target.read_only(),
        })
        .collect();
    let config = DashboardConfig {
        mouse: !cli.no_mouse,
        record: cli.record.clone(),
        image_protocol: cli
            .image_protocol
            .or(entry.and_then(|e| e.image_protocol))
            .unwrap_or_default(),
        preview_fps: cli
            .preview_fps
            .or(entry.and_then(|e| e.preview_fps))
            .unwrap_or(DEFAULT_PREVIEW_FPS),
        save_dir: cli.save_dir.clone(),
        finished_kept: cli.history,
        color: cli.color.colours(std::env::var_os("NO_COLOR").as_deref()),
        access: Access::from_read_only(cli.read_only),
        keys,
        notify: NotifyFor {
            // The demo's own prompts end every few seconds: no bell unless asked for.
            mode: cli
                .notify
                .or(entry.and_then(|e| e.notify))
                .unwrap_or(if cli.demo {
                    NotifyMode::Off
                } else {
                    NotifyMode::default()
                }),
            all_prompts: cli.notify_all || entry.and_then(|e| e.notify_all).unwrap_or(false),
        },
        servers,
    };
    // Two workers: the connection, the HTTP calls (and the demo's simulator) keep running while
    // the loop itself is busy, e.g. showing a full-size image that waits for a key.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .wrap_err("cannot start the async runtime")?;
    if cli.demo {
        #[cfg(feature = "demo")]
        runtime.block_on(comfytop::demo::run_demo(config, cli.fleet))?;
        #[cfg(not(feature = "demo"))]
        return Ok(without_simulator("--demo"));
    } else {
        runtime.block_on(dashboard::run(config))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "demo")]
fn simulator(args: &SimArgs) -> Result<ExitCode> {
    let base = comfy_sim::SimConfig {
        listen: args.listen,
        step: args.step(),
        demo: args.demo,
        require_header: args.require_header.clone(),
        outage: None,
        bridge: args.bridge,
    };
    runtime()?.block_on(comfy_sim::run_fleet(
        base,
        usize::from(args.servers),
        args.flaky,
    ))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "demo"))]
fn simulator(_: &SimArgs) -> Result<ExitCode> {
    Ok(without_simulator("sim"))
}

/// A build without the `demo` feature has no simulated server to run.
#[cfg(not(feature = "demo"))]
fn without_simulator(what: &str) -> ExitCode {
    eprintln!(
        "comfytop: {what} needs the simulated server, which this build leaves out; \
         build with the default features (`cargo install --path .`)"
    );
    Exit::Usage.into()
}

fn replay(args: &ReplayArgs) -> Result<ExitCode> {
    let report = match replay::run_file(&args.file, args.format(), args.pace()) {
        Ok(report) => report,
        // The reader of our output went away (`| head`): nothing more to say.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Err(e) => {
            return Err(e).wrap_err_with(|| {
                format!(
                    "cannot replay {}; check the path and that it is a transcript",
                    args.file.display()
                )
            });
        }
    };
    eprint!("{}", report.summary());
    Ok(if report.is_clean() {
        Exit::Success
    } else {
        Exit::Failed
    }
    .into())
}

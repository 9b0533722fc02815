use std::process::ExitCode;

use clap::Parser as _;
use color_eyre::eyre::{Result, WrapErr as _};

use comfytop::cli::{Cli, Command, ReplayArgs, SimArgs, WatchArgs, server_from};
use comfytop::comfy::server_url::ServerUrl;
use comfytop::commands::{self, Exit};
use comfytop::control::Access;
use comfytop::dashboard::{self, DashboardConfig};
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
    match cli.command {
        Some(Command::Watch(args)) => {
            let server = match server(args.url.as_deref(), &args.headers) {
                Ok(server) => server,
                Err(code) => return Ok(code),
            };
            watch(server, args)
        }
        Some(Command::Replay(args)) => replay(&args),
        Some(Command::Submit(args)) => Ok(runtime()?.block_on(commands::submit::run(args)).into()),
        Some(Command::Cancel(args)) => Ok(runtime()?.block_on(commands::cancel::run(args)).into()),
        Some(Command::Queue(args)) => Ok(runtime()?.block_on(commands::queue::run(args)).into()),
        Some(Command::Sim(args)) => simulator(&args),
        Some(Command::Completions { shell }) => printed(
            comfytop::cli::write_completions(shell, &mut std::io::stdout()),
            "the completion script",
        ),
        Some(Command::Man) => printed(
            comfytop::cli::write_man_page(&mut std::io::stdout()),
            "the manual page",
        ),
        None => {
            let server = match server(cli.url.as_deref(), &cli.headers) {
                Ok(server) => server,
                Err(code) => return Ok(code),
            };
            dashboard(server, &cli)
        }
    }
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

/// The server to talk to, or the usage exit status after saying what is wrong with it.
fn server(arg: Option<&str>, headers: &[String]) -> Result<ServerUrl, ExitCode> {
    server_from(arg, headers).map_err(|message| {
        eprintln!("comfytop: {message}");
        Exit::Usage.into()
    })
}

/// One thread is plenty: everything waits on sockets.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .wrap_err("cannot start the async runtime")
}

fn watch(server: ServerUrl, args: WatchArgs) -> Result<ExitCode> {
    runtime()?.block_on(live::run(
        server,
        args.format(),
        args.record.as_deref(),
        args.history,
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// The dashboard on `server`, or with `--demo` on a simulated server started in-process.
fn dashboard(server: ServerUrl, cli: &Cli) -> Result<ExitCode> {
    if let Some(path) = &cli.log {
        dashboard::log_to_file(path)?;
    }
    let config = DashboardConfig {
        server,
        mouse: !cli.no_mouse,
        record: cli.record.clone(),
        image_protocol: cli.image_protocol,
        preview_fps: cli.preview_fps,
        save_dir: cli.save_dir.clone(),
        finished_kept: cli.history,
        color: cli.color.colours(std::env::var_os("NO_COLOR").as_deref()),
        access: Access::from_read_only(cli.read_only),
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
        runtime.block_on(comfytop::demo::run_demo(config))?;
        #[cfg(not(feature = "demo"))]
        return Ok(without_simulator("--demo"));
    } else {
        runtime.block_on(dashboard::run(config))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "demo")]
fn simulator(args: &SimArgs) -> Result<ExitCode> {
    runtime()?.block_on(comfy_sim::run_standalone(
        args.listen,
        args.step(),
        args.demo,
        args.require_header.clone(),
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

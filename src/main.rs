use std::process::ExitCode;

use clap::Parser as _;
use color_eyre::eyre::{Result, WrapErr as _, eyre};

use comfytop::cli::{Cli, Command, ReplayArgs, URL_ENV, WatchArgs, resolve_server};
use comfytop::comfy::server_url::ServerUrl;
use comfytop::commands;
use comfytop::sim::{self, SimConfig, SimServer};
use comfytop::watch::{LineFormat, live, replay};

/// Exit status for a bad command line (what clap uses too).
const USAGE: u8 = 2;

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
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Some(Command::Watch(args)) => {
            let server = match server(args.url.as_deref()) {
                Ok(server) => server,
                Err(code) => return Ok(code),
            };
            watch(server, args)
        }
        Some(Command::Replay(args)) => replay(&args),
        Some(Command::Submit(args)) => Ok(runtime()?.block_on(commands::submit::run(args)).into()),
        Some(Command::Cancel(args)) => Ok(runtime()?.block_on(commands::cancel::run(args)).into()),
        Some(Command::Queue(args)) => Ok(runtime()?.block_on(commands::queue::run(args)).into()),
        Some(Command::Sim(args)) => {
            runtime()?.block_on(sim::run_standalone(args.listen, args.step(), args.demo))?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            if let Err(code) = server(cli.url.as_deref()) {
                return Ok(code);
            }
            if cli.demo {
                runtime()?.block_on(demo_watch())?;
                return Ok(ExitCode::SUCCESS);
            }
            Err(eyre!(
                "the dashboard is not built yet; follow a server with `comfytop watch URL` \
                 or play a recording with `comfytop replay FILE`"
            ))
        }
    }
}

/// The server to talk to, or the usage exit status after saying what is wrong with it.
fn server(arg: Option<&str>) -> Result<ServerUrl, ExitCode> {
    let env = std::env::var(URL_ENV).ok();
    resolve_server(arg, env.as_deref()).map_err(|message| {
        eprintln!("comfytop: {message}");
        ExitCode::from(USAGE)
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
    runtime()?.block_on(live::run(server, args.format(), args.record.as_deref()))?;
    Ok(ExitCode::SUCCESS)
}

/// `--demo` until the dashboard exists: `watch` lines from a simulated server with traffic.
async fn demo_watch() -> Result<()> {
    let config = SimConfig {
        demo: true,
        ..SimConfig::default()
    };
    let sim = SimServer::start(config)
        .await
        .wrap_err("cannot start the simulated server on a loopback port")?;
    eprintln!(
        "comfytop: the dashboard is not built yet; watching a simulated ComfyUI at {} \
         (Ctrl-C to stop)",
        sim.url()
    );
    let server = ServerUrl::parse(&sim.url())?;
    let watched = live::run(server, LineFormat::Human, None).await;
    sim.shutdown().await;
    watched
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
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

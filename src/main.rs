use std::path::PathBuf;

use clap::Parser;
use color_eyre::eyre::Result;

use comfytop::comfy::server_url::{DEFAULT_URL, ServerUrl};
use comfytop::dashboard::{self, DashboardConfig};

/// A terminal dashboard for ComfyUI servers.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The server to watch.
    #[arg(env = "COMFYUI_URL", default_value = DEFAULT_URL)]
    url: String,
    /// Do not capture the mouse.
    #[arg(long)]
    no_mouse: bool,
    /// Write tracing output to this file (nothing is printed while the dashboard is up).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Run against a built-in simulated server (no ComfyUI needed).
    #[arg(long)]
    demo: bool,
}

fn main() -> Result<()> {
    color_eyre::install()?;
    let cli = Cli::parse();
    if let Some(path) = &cli.log {
        dashboard::log_to_file(path)?;
    }
    let server = ServerUrl::parse(&cli.url)?;
    let config = DashboardConfig {
        server,
        mouse: !cli.no_mouse,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if cli.demo {
        runtime.block_on(dashboard::run_demo(config))?;
    } else {
        runtime.block_on(dashboard::run(config))?;
    }
    Ok(())
}

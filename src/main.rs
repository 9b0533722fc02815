use std::path::PathBuf;

use clap::Parser;
use color_eyre::eyre::{Context as _, Result};

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
}

fn main() -> Result<()> {
    color_eyre::install()?;
    let cli = Cli::parse();
    if let Some(path) = &cli.log {
        let file = std::fs::File::create(path)
            .wrap_err_with(|| format!("cannot write the log file {}", path.display()))?;
        tracing_subscriber::fmt()
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("COMFYTOP_LOG")
                    .unwrap_or_else(|_| "info".into()),
            )
            .init();
    }
    let server = ServerUrl::parse(&cli.url)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(dashboard::run(DashboardConfig {
        server,
        mouse: !cli.no_mouse,
    }))?;
    Ok(())
}

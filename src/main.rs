use std::process::ExitCode;

use clap::{Parser, Subcommand};

use comfytop::commands::cancel::CancelArgs;
use comfytop::commands::queue::QueueArgs;
use comfytop::commands::submit::SubmitArgs;
use comfytop::commands::{self, Exit};

/// A terminal dashboard for ComfyUI servers.
#[derive(Debug, Parser)]
#[command(name = "comfytop", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Queue an API-format workflow and print its prompt id; --wait follows it to its end
    Submit(SubmitArgs),
    /// Cancel a prompt (interrupt it if it runs, delete it if it waits), or every pending one
    Cancel(CancelArgs),
    /// Show the queue: running, then pending in run order
    Queue(QueueArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("comfytop: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exit: Exit = runtime.block_on(async {
        match cli.command {
            Command::Submit(args) => commands::submit::run(args).await,
            Command::Cancel(args) => commands::cancel::run(args).await,
            Command::Queue(args) => commands::queue::run(args).await,
        }
    });
    exit.into()
}

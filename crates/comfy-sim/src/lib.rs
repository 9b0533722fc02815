//! A simulated ComfyUI server: the protocol of ComfyUI 0.3.64 (HTTP API, WebSocket routing,
//! validation, queue, history, cache, interrupts) over real sockets, driven by a real queue
//! and a worker that runs simulated nodes. It is comfytop's demo backend and the peer of its
//! integration tests.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use comfy_sim::{SimConfig, SimServer};
//! let sim = SimServer::start(SimConfig::default()).await?;
//! println!("simulated ComfyUI at {}", sim.url());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

pub mod demo;
mod exec;
mod graph;
mod http;
mod hub;
mod images;
mod logbook;
mod nodes;
mod ordered;
mod pyfmt;
mod queue;
mod registry;
mod state;
mod validate;
mod ws;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use color_eyre::eyre::WrapErr;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use state::Sim;

/// How a simulator runs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where to listen; port 0 picks a free port. Loopback by default.
    pub listen: SocketAddr,
    /// Wall-clock length of one sampler step (nominally 100 ms, a mid-range GPU at 512 px).
    /// Every other duration scales with it: a Lab node's `delay` of 0.3 s takes 0.3 s at
    /// 100 ms, 30 ms at 10 ms.
    pub step: Duration,
    /// Keep demo work flowing (prompts from simulated browser tabs and a script).
    pub demo: bool,
    /// Answer 401 to any request (the WebSocket upgrade too) without this header and value,
    /// as a reverse proxy in front of ComfyUI does with a token.
    pub require_header: Option<(String, String)>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            step: state::NOMINAL_STEP,
            demo: false,
            require_header: None,
        }
    }
}

/// Starts simulators.
pub struct SimServer;

impl SimServer {
    /// Binds `config.listen` and starts serving, with the worker (and the demo traffic when
    /// asked) running on the current tokio runtime.
    pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let sim = Arc::new(Sim::new(config.step, addr));
        sim.log("Starting server");
        sim.log(&format!("To see the GUI go to: http://{addr}"));

        let app = http::router(sim.clone(), config.require_header.clone());
        let mut stop = sim.shutdown.subscribe();
        let server = tokio::spawn(async move {
            let signal = async move {
                // An error means the simulator is gone: stop as well.
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::warn!("simulated server stopped: {e}");
            }
        });
        let worker = tokio::spawn(exec::run_worker(sim.clone()));
        let demo = config.demo.then(|| tokio::spawn(demo::drive(sim.clone())));
        Ok(SimHandle {
            addr,
            sim,
            server: Some(server),
            tasks: [Some(worker), demo].into_iter().flatten().collect(),
        })
    }
}

/// A running simulator. Dropping it stops it too, without waiting.
pub struct SimHandle {
    addr: SocketAddr,
    sim: Arc<Sim>,
    server: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimHandle {
    /// The address it listens on (the real port when port 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port`, the base URL of its HTTP API (the WebSocket is at `/ws`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts every WebSocket connection without a close frame, as a network drop would; the
    /// server and the running prompt go on, and clients may reconnect.
    pub fn disconnect_all(&self) {
        self.sim.disconnect.send_modify(|n| *n += 1);
    }

    /// Stops it the way a server process ending would: sockets get a close frame, the HTTP
    /// listener closes (the port is free again when this returns), the running prompt is
    /// abandoned. Queue and history are gone, as after a ComfyUI restart.
    pub async fn shutdown(mut self) {
        self.stop_tasks();
        if let Some(mut server) = self.server.take() {
            let finished = tokio::time::timeout(Duration::from_secs(5), &mut server).await;
            if finished.is_err() {
                server.abort();
                let _ = server.await;
            }
        }
    }

    fn stop_tasks(&mut self) {
        self.sim.shutdown.send_replace(true);
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop_tasks();
    }
}

/// Runs a simulator until Ctrl-C: prints the URL it listens on first (the CLI's
/// `comfytop sim --listen ADDR --step-ms N [--demo]`).
pub async fn run_standalone(
    listen: SocketAddr,
    step: Duration,
    demo: bool,
    require_header: Option<(String, String)>,
) -> color_eyre::Result<()> {
    let handle = SimServer::start(SimConfig {
        listen,
        step,
        demo,
        require_header,
    })
    .await
    .wrap_err_with(|| format!("cannot listen on {listen}; is another server using that port?"))?;
    // Listen for Ctrl-C before saying where we are, so a script that signals right after reading
    // the URL gets a clean shutdown rather than the default kill.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .wrap_err("cannot listen for Ctrl-C")?;
    println!("simulated ComfyUI listening on {}", handle.url());
    if !listen.ip().is_loopback() {
        eprintln!(
            "warning: {} is reachable from other machines; the simulator has no authentication",
            handle.addr()
        );
    }
    interrupt.recv().await;
    handle.shutdown().await;
    Ok(())
}

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

mod bridge;
pub mod demo;
mod exec;
mod fleet;
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
mod serve;
mod state;
mod validate;
mod ws;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use fleet::{SimFleet, run_fleet};
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
    /// Go down now and then: a flaky server (see `Outage`).
    pub outage: Option<Outage>,
    /// Behave as a ComfyUI with the comfytop bridge installed (see `assets/bridge/`): every
    /// prompt's execution events and previews relayed to the sockets that ask.
    pub bridge: bool,
}

/// A recurring network outage. The server is up for `every - down_for`, then down for
/// `down_for`, and so on: one outage per `every`. While down, the port is closed (connections
/// are refused) and every WebSocket has dropped without a close frame; then the server listens
/// on the same port again. It is an outage, not a restart: queue, history and the running
/// prompt carry on meanwhile, whereas a restarted ComfyUI would come back empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// From the start of one outage to the start of the next.
    pub every: Duration,
    /// How long each outage lasts; shorter than `every`, or the server is barely ever up.
    pub down_for: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            step: state::NOMINAL_STEP,
            demo: false,
            require_header: None,
            outage: None,
            bridge: false,
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
        let sim = Arc::new(Sim::new(config.step, addr, config.bridge));
        sim.log("Starting server");
        sim.log(&format!("To see the GUI go to: http://{addr}"));

        let app = http::router(sim.clone(), config.require_header.clone());
        let server = tokio::spawn(serve::run(sim.clone(), listener, app, config.outage));
        let worker = tokio::spawn(exec::run_worker(sim.clone()));
        let demo = config.demo.then(|| tokio::spawn(demo::drive(sim.clone())));
        Ok(SimHandle {
            addr,
            outage: config.outage,
            sim,
            server: Some(server),
            tasks: [Some(worker), demo].into_iter().flatten().collect(),
        })
    }
}

/// A running simulator. Dropping it stops it too, without waiting.
pub struct SimHandle {
    addr: SocketAddr,
    outage: Option<Outage>,
    sim: Arc<Sim>,
    server: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimHandle {
    /// The address it listens on (the real port when port 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its outage schedule, when it is a flaky one.
    pub fn outage(&self) -> Option<Outage> {
        self.outage
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

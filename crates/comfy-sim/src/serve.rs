//! The HTTP listener's life: serving until shutdown and, for a flaky server, recurring outages
//! in which the port really closes and every WebSocket drops.
//!
//! An outage behaves like a network outage, not like a ComfyUI restart: a restarted ComfyUI
//! comes back with an empty queue and history, but here the process (worker, queue, history,
//! files) goes on while nobody can reach it, so a dashboard sees the same prompts move on once
//! the server is back. `SimHandle::shutdown` followed by a new `SimServer::start` on the same
//! address is the restart.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::Outage;
use super::state::Sim;

/// How long requests in flight when the listener closes may take to finish their answer; a
/// stuck client must not hold an outage or a shutdown up.
const GRACE: Duration = Duration::from_secs(3);

/// The shortest up or down phase, so that a zero in an `Outage` cannot spin a core.
const MIN_PHASE: Duration = Duration::from_millis(10);

impl Outage {
    /// How long the server stays up between two outages.
    fn up_for(&self) -> Duration {
        self.every.saturating_sub(self.down_for).max(MIN_PHASE)
    }

    fn down_for(&self) -> Duration {
        self.down_for.max(MIN_PHASE)
    }
}

/// Why one listener stopped serving.
enum Ended {
    /// The simulator shuts down.
    Stopped,
    /// An outage begins.
    Outage,
    /// The server failed by itself (logged).
    Failed,
}

/// Serves `app` on `listener` until the simulator shuts down, closing and reopening the port
/// on the `outage` schedule.
pub(crate) async fn run(
    sim: Arc<Sim>,
    mut listener: TcpListener,
    app: Router,
    outage: Option<Outage>,
) {
    loop {
        let up_for = outage.map(|o| o.up_for());
        match serve_once(&sim, listener, app.clone(), up_for).await {
            Ended::Stopped | Ended::Failed => return,
            Ended::Outage => {}
        }
        let Some(outage) = outage else { return };
        // Requests in flight have had their answer (or their grace), so any WebSocket upgrade
        // they carried has subscribed to the cut by now: cut again to catch those too.
        sim.disconnect.send_modify(|n| *n += 1);
        match reopen(&sim, outage.down_for()).await {
            Some(again) => listener = again,
            None => return,
        }
        sim.listening.store(true, Ordering::Relaxed);
    }
}

/// Serves on one listener until shutdown, or until `up_for` has passed; the listener is
/// closed when this returns.
async fn serve_once(
    sim: &Sim,
    listener: TcpListener,
    app: Router,
    up_for: Option<Duration>,
) -> Ended {
    let (close_tx, close_rx) = oneshot::channel::<()>();
    let serving = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            // A dropped sender also means stop.
            let _ = close_rx.await;
        })
        .into_future();
    tokio::pin!(serving);

    let mut stop = sim.shutdown.subscribe();
    let up = async {
        match up_for {
            Some(up_for) => tokio::time::sleep(up_for).await,
            None => std::future::pending().await,
        }
    };
    let ended = tokio::select! {
        result = &mut serving => {
            if let Err(e) = result {
                tracing::warn!("simulated server stopped: {e}");
            }
            return Ended::Failed;
        }
        // An error means the simulator is gone: stop as well.
        _ = stop.wait_for(|stopped| *stopped) => Ended::Stopped,
        () = up => Ended::Outage,
    };

    // The listener closes at once (new connections are refused); idle keep-alive connections
    // close and requests in flight get their answer first.
    let _ = close_tx.send(());
    if matches!(ended, Ended::Outage) {
        sim.listening.store(false, Ordering::Relaxed);
        // A network drop: WebSockets just go, without a close frame.
        sim.disconnect.send_modify(|n| *n += 1);
    }
    if let Ok(Err(e)) = tokio::time::timeout(GRACE, &mut serving).await {
        tracing::warn!("simulated server stopped: {e}");
    }
    ended
}

/// Waits out an outage, then binds the same address again; `None` when the simulator shuts
/// down meanwhile. Should something else have taken the port, it tries again after another
/// `down_for`, as a server restarted by a supervisor would.
async fn reopen(sim: &Sim, down_for: Duration) -> Option<TcpListener> {
    let mut stop = sim.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return None,
            () = tokio::time::sleep(down_for) => {}
        }
        match TcpListener::bind(sim.listen).await {
            Ok(listener) => return Some(listener),
            Err(e) => tracing::warn!("cannot listen on {} again: {e}; retrying", sim.listen),
        }
    }
}

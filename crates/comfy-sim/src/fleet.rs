//! Several simulators at once, for a multi-server dashboard: each its own `SimServer` (queue,
//! history, sockets, log stream) on its own port, at its own speed.

use std::net::SocketAddr;
use std::time::Duration;

use color_eyre::eyre::{WrapErr, bail, eyre};

use super::{Outage, SimConfig, SimHandle, SimServer};

/// Step multipliers of a fleet's servers, in order and repeating, so that a fleet looks like
/// a shelf of different GPUs and the same call gives the same fleet every time.
const SPEEDS: [f64; 8] = [1.0, 1.5, 2.0, 0.75, 1.25, 3.0, 0.5, 1.75];

/// Running simulators, in the order of the configurations they were started with.
pub struct SimFleet {
    pub servers: Vec<SimHandle>,
}

impl SimFleet {
    /// Starts one simulator per configuration on the current tokio runtime. If one cannot
    /// start, those already started stop again and its error is returned.
    pub async fn start(configs: Vec<SimConfig>) -> std::io::Result<SimFleet> {
        let mut servers = Vec::with_capacity(configs.len());
        for config in configs {
            match SimServer::start(config).await {
                Ok(server) => servers.push(server),
                Err(e) => {
                    shutdown_all(servers).await;
                    return Err(e);
                }
            }
        }
        Ok(SimFleet { servers })
    }

    /// `n` copies of `base` whose steps vary deterministically: `base.step` times 1, 1.5, 2,
    /// 0.75, 1.25, 3, 0.5, 1.75, then again from 1. Everything else, `listen` included, is
    /// copied as is (port 0 lets each server pick its own).
    pub fn configs(base: &SimConfig, n: usize) -> Vec<SimConfig> {
        SPEEDS
            .iter()
            .cycle()
            .take(n)
            .map(|&factor| SimConfig {
                // A step too large to scale keeps the base step rather than panicking.
                step: Duration::try_from_secs_f64(base.step.as_secs_f64() * factor)
                    .unwrap_or(base.step),
                ..base.clone()
            })
            .collect()
    }

    /// The base URL of each server, in order.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(SimHandle::url).collect()
    }

    /// Shuts every server down (see `SimHandle::shutdown`); all ports are free when this
    /// returns.
    pub async fn shutdown(self) {
        shutdown_all(self.servers).await;
    }
}

async fn shutdown_all(servers: Vec<SimHandle>) {
    futures_util::future::join_all(servers.into_iter().map(SimHandle::shutdown)).await;
}

/// `n` consecutive addresses from `listen`, or `n` times `listen` for port 0; `None` when
/// they would run past port 65535.
fn consecutive(listen: SocketAddr, n: usize) -> Option<Vec<SocketAddr>> {
    (0..n)
        .map(|i| {
            if listen.port() == 0 {
                return Some(listen);
            }
            let offset = u16::try_from(i).ok()?;
            let port = listen.port().checked_add(offset)?;
            Some(SocketAddr::new(listen.ip(), port))
        })
        .collect()
}

/// The `flaky_one` schedule of `run_fleet`: down a fifth of every 400 steps (8 s every 40 s at
/// the nominal 100 ms step), but never less than 2 s out of 10 s, so a dashboard has time to
/// show the outage even at a fast step.
fn demo_outage(step: Duration) -> Outage {
    let every = step
        .checked_mul(400)
        .unwrap_or(Duration::MAX)
        .max(Duration::from_secs(10));
    Outage {
        every,
        down_for: every / 5,
    }
}

/// Runs `servers` simulators like `base` until Ctrl-C, on consecutive ports from `base.listen`
/// (port 0: each picks a free port), with steps varied from `base.step` as `SimFleet::configs`
/// does. Prints each one's URL first, one line each. With `flaky_one`, the last one goes down
/// now and then (see `Outage`) and comes back on the same port.
pub async fn run_fleet(base: SimConfig, servers: usize, flaky_one: bool) -> color_eyre::Result<()> {
    if servers == 0 {
        bail!("a fleet needs at least one server");
    }
    let listen = base.listen;
    let addrs = consecutive(listen, servers)
        .ok_or_else(|| eyre!("{servers} servers from {listen} run past port 65535"))?;
    let mut configs = SimFleet::configs(&base, servers);
    for (config, addr) in configs.iter_mut().zip(addrs) {
        config.listen = addr;
    }
    if flaky_one && let Some(last) = configs.last_mut() {
        last.outage = Some(demo_outage(last.step));
    }

    // One by one rather than `SimFleet::start`, to say which address could not be had.
    let mut fleet = SimFleet {
        servers: Vec::with_capacity(servers),
    };
    for config in configs {
        let addr = config.listen;
        match SimServer::start(config).await {
            Ok(server) => fleet.servers.push(server),
            Err(e) => {
                fleet.shutdown().await;
                return Err(e).wrap_err_with(|| {
                    format!("cannot listen on {addr}; is another server using that port?")
                });
            }
        }
    }
    // Listen for Ctrl-C before saying where we are, so a script that signals right after reading
    // the URLs gets a clean shutdown rather than the default kill.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .wrap_err("cannot listen for Ctrl-C")?;
    for server in &fleet.servers {
        println!("simulated ComfyUI listening on {}", server.url());
    }
    for server in &fleet.servers {
        if let Some(outage) = server.outage() {
            eprintln!(
                "note: {} goes down for {:?} every {:?} (a simulated network outage)",
                server.url(),
                outage.down_for,
                outage.every
            );
        }
    }
    if !listen.ip().is_loopback() {
        for server in &fleet.servers {
            eprintln!(
                "warning: {} is reachable from other machines; the simulator has no authentication",
                server.addr()
            );
        }
    }
    interrupt.recv().await;
    fleet.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_vary_the_step_and_copy_the_rest() {
        let base = SimConfig {
            step: Duration::from_millis(100),
            demo: true,
            ..SimConfig::default()
        };
        let configs = SimFleet::configs(&base, 10);
        let steps: Vec<u128> = configs.iter().map(|c| c.step.as_millis()).collect();
        assert_eq!(steps, [100, 150, 200, 75, 125, 300, 50, 175, 100, 150]);
        assert!(configs.iter().all(|c| c.demo && c.listen == base.listen));
        assert_eq!(
            SimFleet::configs(&base, 3)
                .iter()
                .map(|c| c.step)
                .collect::<Vec<_>>(),
            configs[..3].iter().map(|c| c.step).collect::<Vec<_>>()
        );
        let huge = SimConfig {
            step: Duration::MAX,
            ..SimConfig::default()
        };
        assert_eq!(SimFleet::configs(&huge, 2)[1].step, Duration::MAX);
    }

    #[test]
    fn ports_are_consecutive_unless_zero() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            consecutive(at("127.0.0.1:8188"), 3),
            Some(vec![
                at("127.0.0.1:8188"),
                at("127.0.0.1:8189"),
                at("127.0.0.1:8190")
            ])
        );
        assert_eq!(
            consecutive(at("127.0.0.1:0"), 2),
            Some(vec![at("127.0.0.1:0"); 2])
        );
        assert_eq!(consecutive(at("127.0.0.1:65535"), 2), None);
    }

    #[test]
    fn the_demo_outage_scales_with_the_step_above_a_floor() {
        let nominal = demo_outage(Duration::from_millis(100));
        assert_eq!(nominal.every, Duration::from_secs(40));
        assert_eq!(nominal.down_for, Duration::from_secs(8));
        let fast = demo_outage(Duration::from_millis(1));
        assert_eq!(fast.every, Duration::from_secs(10));
        assert_eq!(fast.down_for, Duration::from_secs(2));
        let slow = demo_outage(Duration::MAX);
        assert!(slow.down_for < slow.every);
    }
}

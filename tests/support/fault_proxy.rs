//! A loopback TCP proxy that breaks things on purpose, between comfytop and a server. It reads
//! the WebSocket's server-to-client frames one by one, so it can cut a connection in the middle
//! of a frame, slip in frames no server should send, send bytes that are not WebSocket at all
//! and hold the frames back for a while; and it can hold HTTP requests back, up to past the
//! client's timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, BufReader,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle};

/// What can be done to every open WebSocket.
#[derive(Debug, Clone)]
pub enum SocketFault {
    /// Part of the next frame (at least its first byte, never all of it), then the connection
    /// drops without a close frame.
    CutMidFrame,
    /// These bytes before the next frame: a whole frame of the proxy's making.
    Inject(Vec<u8>),
    /// Nothing reaches the client for this long, pongs included; what the server sends waits.
    Stall(Duration),
}

/// A small random number generator (xorshift64*): the tests print the seed, so a failing run
/// can be repeated with the same fault choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// In `low..high` (`low` when the range is empty).
    pub fn below(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        low + self.next_u64() % (high - low)
    }
}

/// A server-to-client WebSocket frame: FIN set, unmasked, `payload` whole.
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => bytes.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            bytes.push(126);
            bytes.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            bytes.push(127);
            bytes.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    bytes.extend_from_slice(payload);
    bytes
}

pub fn text_frame(text: &str) -> Vec<u8> {
    frame(0x1, text.as_bytes())
}

pub fn binary_frame(payload: &[u8]) -> Vec<u8> {
    frame(0x2, payload)
}

struct Shared {
    /// One sender per open WebSocket, by connection number.
    sockets: Mutex<HashMap<u64, mpsc::UnboundedSender<SocketFault>>>,
    connections: Mutex<HashMap<u64, AbortHandle>>,
    next_connection: AtomicU64,
    /// HTTP requests wait while holds are in force (this many).
    http_held: watch::Sender<u32>,
    cut_points: Mutex<Rng>,
    websockets_opened: AtomicU64,
}

pub struct FaultProxy {
    url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and relays to `upstream` (`http://host:port`); `seed`
    /// picks the cut points within frames.
    pub async fn start(upstream: &str, seed: u64) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (http_held, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            sockets: Mutex::default(),
            connections: Mutex::default(),
            next_connection: AtomicU64::new(0),
            http_held,
            cut_points: Mutex::new(Rng::new(seed)),
            websockets_opened: AtomicU64::new(0),
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let number = accepting.next_connection.fetch_add(1, Ordering::Relaxed);
                let shared = accepting.clone();
                let upstream = upstream.clone();
                let relay = tokio::spawn(async move {
                    relay(client, &upstream, number, &shared).await;
                    shared.sockets.lock().unwrap().remove(&number);
                    shared.connections.lock().unwrap().remove(&number);
                });
                accepting
                    .connections
                    .lock()
                    .unwrap()
                    .insert(number, relay.abort_handle());
            }
        });
        Self { url, shared, task }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Does `fault` to every open WebSocket; how many there were.
    pub fn to_sockets(&self, fault: &SocketFault) -> usize {
        let sockets = self.shared.sockets.lock().unwrap();
        sockets
            .values()
            .filter(|socket| socket.send(fault.clone()).is_ok())
            .count()
    }

    /// Drops every connection, HTTP ones included, at whatever point they are.
    pub fn cut_everything(&self) {
        for (_, relay) in self.shared.connections.lock().unwrap().drain() {
            relay.abort();
        }
        self.shared.sockets.lock().unwrap().clear();
    }

    /// Holds every HTTP request (new and on open connections) until as many
    /// [`FaultProxy::release_http`] calls as holds.
    pub fn hold_http(&self) {
        self.shared.http_held.send_modify(|holds| *holds += 1);
    }

    pub fn release_http(&self) {
        self.shared
            .http_held
            .send_modify(|holds| *holds = holds.saturating_sub(1));
    }

    /// WebSockets opened through the proxy so far.
    pub fn websockets_opened(&self) -> u64 {
        self.shared.websockets_opened.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut_everything();
    }
}

/// Aborts its task when dropped: a relay's halves end with it.
struct Aborting(JoinHandle<()>);

impl Drop for Aborting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn relay(client: TcpStream, upstream: &str, number: u64, shared: &Arc<Shared>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, mut client_write) = client.into_split();
    let (server_read, mut server_write) = server.into_split();
    let mut client_read = BufReader::new(client_read);
    // The request head says what this connection is.
    let Ok(head) = read_head(&mut client_read).await else {
        return;
    };
    let websocket = head.to_ascii_lowercase().contains("upgrade: websocket");
    if !websocket {
        let held = shared.http_held.subscribe();
        // Each request's bytes wait while requests are held; the replies flow.
        let requests = Aborting(tokio::spawn(async move {
            let mut held = held;
            let mut chunk = head.into_bytes();
            loop {
                let _ = held.wait_for(|holds| *holds == 0).await;
                if server_write.write_all(&chunk).await.is_err() {
                    return;
                }
                let mut buffer = vec![0; 16 * 1024];
                match client_read.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => chunk = buffer[..n].to_vec(),
                }
            }
        }));
        let mut server_read = server_read;
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        drop(requests);
        return;
    }
    shared.websockets_opened.fetch_add(1, Ordering::Relaxed);
    if server_write.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let _requests = Aborting(tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    }));
    let mut server_read = BufReader::new(server_read);
    let Ok(answer) = read_head(&mut server_read).await else {
        return;
    };
    if client_write.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    // Frames are read apart from being written, so that a fault can come between any two.
    let (frames_tx, mut frames) = mpsc::channel::<Vec<u8>>(64);
    let _frames = Aborting(tokio::spawn(async move {
        while let Ok(frame) = read_frame(&mut server_read).await {
            if frames_tx.send(frame).await.is_err() {
                return;
            }
        }
    }));
    let (faults_tx, mut faults) = mpsc::unbounded_channel();
    shared.sockets.lock().unwrap().insert(number, faults_tx);
    loop {
        tokio::select! {
            biased;
            Some(fault) = faults.recv() => match fault {
                SocketFault::CutMidFrame => {
                    let next = tokio::time::timeout(Duration::from_millis(500), frames.recv()).await;
                    if let Ok(Some(frame)) = next {
                        let cut = shared.cut_points.lock().unwrap().below(1, frame.len() as u64);
                        let _ = client_write.write_all(&frame[..cut as usize]).await;
                    }
                    return;
                }
                SocketFault::Inject(bytes) => {
                    if client_write.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                SocketFault::Stall(how_long) => tokio::time::sleep(how_long).await,
            },
            frame = frames.recv() => match frame {
                Some(frame) => {
                    if client_write.write_all(&frame).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
        }
    }
}

/// An HTTP head, up to and with its empty line.
async fn read_head(reader: &mut (impl AsyncBufRead + Unpin)) -> std::io::Result<String> {
    let mut head = String::new();
    loop {
        let before = head.len();
        if reader.read_line(&mut head).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if head[before..].trim_end().is_empty() {
            return Ok(head);
        }
    }
}

/// One WebSocket frame, header and payload, as it came.
async fn read_frame(reader: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut frame = vec![0; 2];
    reader.read_exact(&mut frame).await?;
    let extra = match frame[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mut length_bytes = vec![0; extra];
    reader.read_exact(&mut length_bytes).await?;
    frame.extend_from_slice(&length_bytes);
    let length = match extra {
        0 => u64::from(frame[1] & 0x7f),
        _ => length_bytes
            .iter()
            .fold(0u64, |n, byte| (n << 8) | u64::from(*byte)),
    };
    let mask = if frame[1] & 0x80 != 0 { 4 } else { 0 };
    let mut rest = vec![0; mask + length as usize];
    reader.read_exact(&mut rest).await?;
    frame.extend_from_slice(&rest);
    Ok(frame)
}

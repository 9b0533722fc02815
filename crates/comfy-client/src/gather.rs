//! Reading a socket's frames in batches while they stream.
//!
//! During a run ComfyUI sends three frames a step (`progress`, `progress_state`, a preview),
//! each in its own write. Read as they come, every frame wakes the reader, and on a shared box
//! the wake-ups cost more than the frames. A reader that only shows a few frames a second can
//! let the kernel gather them instead: after a frame, the socket's low-water mark
//! (`SO_RCVLOWAT`) is raised, so the kernel wakes nobody for what follows until the window
//! ends or [`GATHER_BYTES`] have come, and the window's frames are read in one wake-up.
//!
//! Linux only, where the mark governs `epoll` and lowering it signals data that is already
//! waiting (Linux 4.18 and later). Elsewhere frames are read as they come.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// What the kernel may hold before it wakes the reader anyway: a few previews. The server's
/// writes never wait on this client's receive window, and the window's usual 128 KiB buffer
/// needs no growing.
const GATHER_BYTES: i32 = 64 * 1024;

/// One socket's gathering: off, waiting for a frame, or holding until `until`.
pub(crate) struct Gathering {
    mark: Option<LowWaterMark>,
    window: Duration,
    until: Option<Instant>,
}

impl Gathering {
    /// Gathering for `window` after each frame; nothing when `window` is `None` or the system
    /// cannot.
    pub(crate) fn new(
        socket: &WebSocketStream<MaybeTlsStream<TcpStream>>,
        window: Option<Duration>,
    ) -> Self {
        Self {
            mark: window.and_then(|_| LowWaterMark::of(socket)),
            window: window.unwrap_or_default(),
            until: None,
        }
    }

    /// After a data frame: what follows it gathers until the window ends.
    pub(crate) fn frame_read(&mut self, now: Instant) {
        if self.until.is_some() {
            return;
        }
        let Some(mark) = &self.mark else { return };
        if mark.set(GATHER_BYTES) {
            self.until = Some(now + self.window);
        } else {
            // A socket that refuses the mark is read frame by frame.
            self.mark = None;
        }
    }

    /// When what gathered is due, if anything is gathering.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.until
    }

    /// Ends the window: the kernel signals what gathered, and the reader takes it all. TCP
    /// takes any mark, so setting one fails only for a descriptor that is gone, whose socket's
    /// next read fails as well: nothing is left waiting behind a mark that stayed up.
    pub(crate) fn release(&mut self) {
        if self.until.take().is_some()
            && let Some(mark) = &self.mark
            && !mark.set(1)
        {
            self.mark = None;
        }
    }
}

/// The socket's descriptor, held only while the socket it came from is borrowed by the loop
/// that reads it (see `pump` in the connection module).
#[cfg(target_os = "linux")]
struct LowWaterMark(std::os::fd::RawFd);

#[cfg(target_os = "linux")]
impl LowWaterMark {
    fn of(socket: &WebSocketStream<MaybeTlsStream<TcpStream>>) -> Option<Self> {
        use std::os::fd::AsRawFd as _;
        match socket.get_ref() {
            MaybeTlsStream::Plain(tcp) => Some(Self(tcp.as_raw_fd())),
            MaybeTlsStream::Rustls(tls) => Some(Self(tls.get_ref().0.as_raw_fd())),
            _ => None,
        }
    }

    /// Sets the mark; false when the system refused.
    fn set(&self, bytes: i32) -> bool {
        let value: libc::c_int = bytes;
        // SAFETY: the descriptor is open (its socket outlives this value), and the option's
        // value is a live c_int whose size is passed with it.
        let done = unsafe {
            libc::setsockopt(
                self.0,
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                std::ptr::from_ref(&value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        done == 0
    }
}

#[cfg(not(target_os = "linux"))]
struct LowWaterMark;

#[cfg(not(target_os = "linux"))]
impl LowWaterMark {
    fn of(_: &WebSocketStream<MaybeTlsStream<TcpStream>>) -> Option<Self> {
        None
    }

    fn set(&self, _: i32) -> bool {
        false
    }
}

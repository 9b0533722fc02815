//! comfytop: a terminal dashboard for ComfyUI servers. The library holds everything; the binary
//! only parses arguments and picks a mode.

pub mod cli;
pub mod comfy;
pub mod describe;
pub mod session;
pub mod text;
pub mod tracker;
pub mod watch;
pub mod workflow;

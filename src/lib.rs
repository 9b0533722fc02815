//! comfytop: a terminal dashboard for ComfyUI servers.
//!
//! The library is what the binary, the tests and the benches use. ComfyUI's protocol and the
//! client for it are the `comfy-client` crate (here as `comfy`, with its `text` sanitizer), and
//! the simulated server behind `--demo` is the `comfy-sim` crate. Here, `tracker` turns what
//! the server says into per-prompt state, `session` joins the two, `preview` decodes and draws
//! preview images off the UI loop, `watch` holds the non-interactive `watch` and `replay`
//! modes (their lines come from `describe`), `control` makes the changes a user asks for on a
//! server and `commands` are the scriptable `submit`, `cancel` and `queue`, `cli` is the command
//! line, and `text` makes server strings safe for a terminal. The dashboard is `app` (its state
//! and the one `update` function), `ui` (drawing), `term` (the terminal's setup and teardown) and
//! `dashboard` (the loop around them).

pub use comfy_client as comfy;
pub use comfy_client::{FIXTURES, text};

pub mod app;
pub mod bridge;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod dashboard;
#[cfg(feature = "demo")]
pub mod demo;
pub mod describe;
pub mod format;
pub mod identity;
pub mod notify;
pub mod placement;
pub mod preview;
pub mod session;
pub mod term;
pub mod tracker;
pub mod ui;
pub mod watch;
pub mod workflow;

//! comfytop: a terminal dashboard for ComfyUI servers.
//!
//! The library is what the binary, the tests and the benches use: `comfy` speaks ComfyUI's
//! protocol, `tracker` turns what the server says into per-prompt state, `session` joins the two,
//! `preview` decodes and draws preview images off the UI loop, `sim` is a simulated ComfyUI
//! server for the demo and the tests, `watch` holds the non-interactive `watch` and `replay`
//! modes (their lines come from `describe`), `control` makes the changes a user asks for on a
//! server and `commands` are the scriptable `submit`, `cancel` and `queue`, `cli` is the command
//! line, and `text` makes server strings safe for a terminal. The dashboard is `app` (its state
//! and the one `update` function), `ui` (drawing), `term` (the terminal's setup and teardown) and
//! `dashboard` (the loop around them).

pub mod app;
pub mod cli;
pub mod comfy;
pub mod commands;
pub mod control;
pub mod dashboard;
pub mod describe;
pub mod preview;
pub mod session;
pub mod sim;
pub mod term;
pub mod text;
pub mod tracker;
pub mod ui;
pub mod watch;
pub mod workflow;

/// The recorded ComfyUI 0.3.64 traffic (transcripts, HTTP bodies, workflows) that the tests and
/// benches replay. It lives in the repository, so a clone alone builds and passes its tests.
#[doc(hidden)]
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/comfyui-0.3.64");

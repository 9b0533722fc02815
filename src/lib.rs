//! comfytop: a terminal dashboard for ComfyUI servers.
//!
//! The library is what the binary, the tests and the benches use: `comfy` speaks ComfyUI's
//! protocol, `tracker` turns what the server says into per-prompt state, `session` joins the two,
//! `preview` decodes and draws preview images off the UI loop, `sim` is a simulated ComfyUI
//! server for the demo and the tests, `control` makes the changes a user asks for on a server,
//! and `commands` are the scriptable `submit`, `cancel` and `queue`.

pub mod comfy;
pub mod commands;
pub mod control;
pub mod preview;
pub mod session;
pub mod sim;
pub mod tracker;
pub mod workflow;

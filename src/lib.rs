//! comfytop: a terminal dashboard for ComfyUI servers.
//!
//! The library is what the binary, the tests and the benches use: `comfy` speaks ComfyUI's
//! protocol, `tracker` turns what the server says into per-prompt state, `session` joins the two,
//! `preview` decodes and draws preview images off the UI loop, `app` is the dashboard's state and
//! its one `update` function, `ui` draws it, `dashboard` runs the loop around them, and `sim` is a
//! simulated ComfyUI server for the demo and the tests.

pub mod app;
pub mod comfy;
pub mod dashboard;
pub mod preview;
pub mod session;
pub mod sim;
pub mod term;
pub mod text;
pub mod tracker;
pub mod ui;
pub mod workflow;

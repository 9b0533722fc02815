//! comfytop: a terminal dashboard for ComfyUI servers.
//!
//! The library is what the binary, the tests and the benches use: `comfy` speaks ComfyUI's
//! protocol, `tracker` turns what the server says into per-prompt state, `session` joins the two,
//! `preview` decodes and draws preview images off the UI loop, `app` is the dashboard's state and
//! its one `update` function, `ui` draws it, and `dashboard` runs the loop around them.

pub mod app;
pub mod comfy;
pub mod dashboard;
pub mod preview;
pub mod session;
pub mod term;
pub mod text;
pub mod tracker;
pub mod ui;
pub mod workflow;

pub mod app;
pub mod comfy;
pub mod session;
pub mod text;
pub mod tracker;
pub mod ui;
pub mod workflow;

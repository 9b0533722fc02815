pub mod app;
pub mod comfy;
pub mod text;
pub mod tracker;
pub mod ui;

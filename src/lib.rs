pub mod comfy;
pub mod commands;
pub mod control;
pub mod session;
pub mod tracker;
pub mod workflow;

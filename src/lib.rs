pub mod comfy;
pub mod session;
pub mod tracker;
pub mod workflow;

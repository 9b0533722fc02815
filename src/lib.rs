pub mod comfy;
pub mod tracker;
pub mod workflow;

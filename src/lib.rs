pub mod comfy;
pub mod tracker;

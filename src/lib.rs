pub mod comfy;
pub mod preview;
pub mod tracker;

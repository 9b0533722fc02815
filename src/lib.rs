pub mod comfy;
pub mod sim;

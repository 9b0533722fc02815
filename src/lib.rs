pub mod comfy;

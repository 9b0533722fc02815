//! Binary WebSocket frames (see `checks/surfaces.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/surfaces.rs"]
mod surfaces;

fuzz_target!(|data: &[u8]| surfaces::binary_frame(data));

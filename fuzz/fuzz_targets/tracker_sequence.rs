//! The tracker fed arbitrary sequences of inputs (see `checks/tracker_script.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/tracker_script.rs"]
mod tracker_script;

fuzz_target!(|script: tracker_script::Script| tracker_script::run(&script));

//! How ids and rates read, on screen and in every command's output: one place, so the
//! dashboard and the commands say them alike.

use crate::text::one_line;

/// Characters of a prompt id shown where a short one does: enough to tell prompts apart.
pub const SHORT_ID: usize = 8;

/// The first [`SHORT_ID`] characters of an id, safe to print.
pub fn short_id(id: &str) -> String {
    one_line(id).chars().take(SHORT_ID).collect()
}

/// Steps per second, or seconds per step when slower than one a second: `12.5 it/s`,
/// `2.0 s/it`.
pub fn speed(steps_per_sec: f64) -> String {
    if steps_per_sec >= 1.0 {
        format!("{steps_per_sec:.1} it/s")
    } else {
        format!("{:.1} s/it", 1.0 / steps_per_sec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_cut_and_made_safe_and_slow_speeds_read_per_step() {
        assert_eq!(short_id("2db9602a-1234-5678"), "2db9602a");
        assert_eq!(short_id("ab\u{202e}cd"), "abcd");
        assert_eq!(speed(12.54), "12.5 it/s");
        assert_eq!(speed(0.5), "2.0 s/it");
    }
}

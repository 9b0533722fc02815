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

/// A share (0..=1) as a whole percentage: `82%`; one too small to round to 1% but not
/// nothing, `<1%`.
pub fn percent(share: f64) -> String {
    let pct = (share * 100.0).round();
    if pct < 1.0 && share > 0.0 {
        "<1%".to_string()
    } else {
        format!("{pct:.0}%")
    }
}

/// What a server without a name in the config is called where room is short (the server
/// bar, the fleet, the lines of several servers): `host:port`, and its path prefix if any.
pub fn server_name(url: &crate::comfy::server_url::ServerUrl) -> String {
    let base = url.base();
    let host = base.host_str().unwrap_or("?");
    let path = base.path().trim_end_matches('/');
    match base.port() {
        Some(port) => format!("{host}:{port}{path}"),
        None => format!("{host}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_read_as_whole_percentages_and_a_sliver_is_not_zero() {
        assert_eq!(percent(0.82), "82%");
        assert_eq!(percent(0.9996), "100%");
        assert_eq!(percent(0.001), "<1%");
        assert_eq!(percent(0.0), "0%");
    }

    #[test]
    fn a_server_is_named_by_host_port_and_prefix_without_credentials() {
        let url = |text| crate::comfy::server_url::ServerUrl::parse(text).unwrap();
        assert_eq!(server_name(&url("http://u:p@gpu1:8188")), "gpu1:8188");
        assert_eq!(
            server_name(&url("https://box.example/comfy/")),
            "box.example/comfy"
        );
    }

    #[test]
    fn ids_are_cut_and_made_safe_and_slow_speeds_read_per_step() {
        assert_eq!(short_id("2db9602a-1234-5678"), "2db9602a");
        assert_eq!(short_id("ab\u{202e}cd"), "abcd");
        assert_eq!(speed(12.54), "12.5 it/s");
        assert_eq!(speed(0.5), "2.0 s/it");
    }
}

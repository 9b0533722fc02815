//! How times read on screen, and when each reading next changes (so timers run only then).

/// A duration as a clock: `0:07`, `12:05`, `1:02:03`.
pub fn clock(secs: f64) -> String {
    let total = secs.max(0.0).floor() as u64;
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// A run time with a tenth of a second below a minute: `0.4 s`, `12.3 s`, `3:05`.
pub fn duration(secs: f64) -> String {
    if secs < 60.0 {
        format!("{:.1} s", secs.max(0.0))
    } else {
        clock(secs)
    }
}

/// How long ago, coarser as it gets older: `just now`, `3m ago`, `2h ago`, `4d ago`. Never
/// finer than a minute, so an idle screen showing it is drawn at most once a minute.
pub fn ago(secs: f64) -> String {
    let s = secs.max(0.0).floor() as u64;
    match s {
        0..60 => "just now".to_string(),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

/// [`ago`] in at most 7 cells, for a table column: `<1m ago` for `just now`.
pub fn ago_in_column(secs: f64) -> String {
    if secs < 60.0 {
        "<1m ago".to_string()
    } else {
        ago(secs)
    }
}

/// Seconds from `secs` ago until [`ago`] (or [`ago_in_column`]) reads differently.
pub fn ago_changes_in(secs: f64) -> f64 {
    let secs = secs.max(0.0);
    let unit = match secs {
        s if s < 3600.0 => 60.0,
        s if s < 86400.0 => 3600.0,
        _ => 86400.0,
    };
    ((secs / unit).floor() + 1.0) * unit - secs
}

/// Seconds until a clock counting up from `secs` shows its next whole second.
pub fn clock_changes_in(secs: f64) -> f64 {
    let secs = secs.max(0.0);
    secs.floor() + 1.0 - secs
}

/// A countdown shown in whole seconds, rounded up: 2.1 s left reads `3 s`.
pub fn countdown(secs_left: f64) -> u64 {
    secs_left.max(0.0).ceil() as u64
}

/// Seconds until [`countdown`] of `secs_left` reads differently (None once it reached 0).
pub fn countdown_changes_in(secs_left: f64) -> Option<f64> {
    (secs_left > 0.0).then(|| secs_left - (secs_left.ceil() - 1.0))
}

/// Bytes in GiB with one decimal.
pub fn gib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1u64 << 30) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_and_ages_read_as_people_write_them() {
        assert_eq!(clock(7.9), "0:07");
        assert_eq!(clock(725.0), "12:05");
        assert_eq!(clock(3723.0), "1:02:03");
        assert_eq!(duration(12.34), "12.3 s");
        assert_eq!(ago(5.5), "just now");
        assert_eq!(ago(59.9), "just now");
        assert_eq!(ago(60.0), "1m ago");
        assert_eq!(ago(185.0), "3m ago");
        assert_eq!(ago(7300.0), "2h ago");
        assert_eq!(ago(4.0 * 86400.0), "4d ago");
        assert_eq!(ago_in_column(5.0), "<1m ago");
        assert_eq!(ago_in_column(3599.0), "59m ago");
    }

    #[test]
    fn changes_are_scheduled_at_the_next_label_boundary() {
        assert!((ago_changes_in(5.25) - 54.75).abs() < 1e-9);
        assert!((ago_changes_in(61.0) - 59.0).abs() < 1e-9);
        assert!((clock_changes_in(3.0) - 1.0).abs() < 1e-9);
        assert_eq!(countdown(2.1), 3);
        assert!((countdown_changes_in(2.1).unwrap() - 0.1).abs() < 1e-9);
        assert!((countdown_changes_in(2.0).unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(countdown_changes_in(0.0), None);
    }
}

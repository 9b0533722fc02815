//! A cap on how often previews are redrawn, asked by the update loop with its own clock.

use std::time::{Duration, Instant};

/// Allows at most one preview redraw per interval. It holds no timer: the caller asks whether a
/// redraw is due, and when not, when the next one will be, and sleeps only while it has a preview
/// waiting. Idle means nothing is scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedrawLimiter {
    interval: Duration,
    last: Option<Instant>,
}

impl RedrawLimiter {
    /// At most `fps` redraws per second (0 is taken as 1).
    pub fn per_second(fps: u32) -> Self {
        Self::with_interval(Duration::from_secs(1) / fps.max(1))
    }

    pub fn with_interval(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether a redraw at `now` keeps within the cap.
    pub fn is_due(&self, now: Instant) -> bool {
        self.next_due().is_none_or(|due| now >= due)
    }

    /// The earliest time the next redraw is allowed; `None` when one is allowed right away.
    pub fn next_due(&self) -> Option<Instant> {
        self.last.map(|last| last + self.interval)
    }

    /// Notes a redraw at `now`.
    pub fn record(&mut self, now: Instant) {
        self.last = Some(now);
    }

    /// Records a redraw at `now` if one is due; says whether it was.
    pub fn try_acquire(&mut self, now: Instant) -> bool {
        let due = self.is_due(now);
        if due {
            self.record(now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_redraw_is_due_at_once() {
        let limiter = RedrawLimiter::per_second(4);
        assert!(limiter.is_due(Instant::now()));
        assert_eq!(limiter.next_due(), None);
    }

    #[test]
    fn next_redraw_waits_one_interval() {
        let t0 = Instant::now();
        let mut limiter = RedrawLimiter::per_second(4);
        assert!(limiter.try_acquire(t0));
        assert_eq!(limiter.next_due(), Some(t0 + Duration::from_millis(250)));
        assert!(!limiter.is_due(t0 + Duration::from_millis(249)));
        assert!(!limiter.try_acquire(t0 + Duration::from_millis(100)));
        assert!(limiter.try_acquire(t0 + Duration::from_millis(250)));
    }

    #[test]
    fn zero_fps_is_one_per_second() {
        assert_eq!(
            RedrawLimiter::per_second(0).interval(),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn a_stream_of_requests_gets_at_most_the_cap_over_a_simulated_clock() {
        // 1,000 frames over 10 simulated seconds (100 per second) against a cap of 4 per second.
        let t0 = Instant::now();
        let mut limiter = RedrawLimiter::per_second(4);
        let granted = (0..1000)
            .filter(|i| limiter.try_acquire(t0 + Duration::from_millis(i * 10)))
            .count();
        // 4 per second over [0, 10 s): one at 0, then every 250 ms.
        assert_eq!(granted, 40);
    }
}

//! Provider-side rate limits: at most `limit` hits in any rolling `window`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct RollingWindow {
    limit: usize,
    window: Duration,
    hits: VecDeque<Instant>,
}

impl RollingWindow {
    pub(crate) fn new(limit: u32, window: Duration) -> Self {
        Self { limit: limit as usize, window, hits: VecDeque::new() }
    }

    /// Counts a hit at `now` if the window has room; `false` (and nothing counted) otherwise.
    pub(crate) fn try_hit(&mut self, now: Instant) -> bool {
        while self.hits.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            self.hits.pop_front();
        }
        if self.hits.len() >= self.limit {
            return false;
        }
        self.hits.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_over_the_limit_until_the_window_rolls() {
        let start = Instant::now();
        let mut window = RollingWindow::new(2, Duration::from_secs(60));
        assert!(window.try_hit(start));
        assert!(window.try_hit(start + Duration::from_secs(10)));
        assert!(!window.try_hit(start + Duration::from_secs(59)));
        assert!(window.try_hit(start + Duration::from_secs(60)));
        assert!(!window.try_hit(start + Duration::from_secs(69)));
        assert!(window.try_hit(start + Duration::from_secs(70)));
    }
}

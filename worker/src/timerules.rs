//! Time rules of a connector config: quiet hours (when some priorities must not be sent) and
//! per-recipient frequency caps (how often one person may be messaged), parsed from the config
//! keys `quiet_hours`, `timezone`, `quiet_priorities`, `recipient_caps` and `on_cap`.
//!
//! Everything here is pure: the worker's pipeline asks [`QuietHours::defer_until`] with the
//! current instant, and the counters of [`crate::caps`] apply [`RecipientCaps`].

use std::num::NonZeroU32;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::{DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use yizhan_schemas::Priority;
use yizhan_state::Millis;

/// Every time rule of one connector config, parsed once when the config is loaded.
#[derive(Debug, Clone, Default)]
pub struct TimeRules {
    /// `quiet_hours` with its `timezone` and `quiet_priorities`; None when not configured.
    pub quiet: Option<QuietHours>,
    /// `recipient_caps`; None when not configured.
    pub caps: Option<RecipientCaps>,
    /// What happens to a capped recipient (`on_cap`, default drop).
    pub on_cap: OnCap,
}

/// What happens to a recipient over its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnCap {
    /// Not sent to: removed from the job (reported with code `capped`); a job left with nobody
    /// ends `capped`, without retry or dead letter.
    #[default]
    Drop,
    /// The job waits (deferred, not an attempt) until the cap allows every recipient.
    Defer,
}

impl OnCap {
    /// `drop` or `defer`; the error says what is expected.
    pub fn parse(text: &str) -> Result<OnCap, String> {
        match text.trim() {
            "drop" => Ok(OnCap::Drop),
            "defer" => Ok(OnCap::Defer),
            other => Err(format!("{other:?} is not drop or defer")),
        }
    }
}

/// A daily window of local time, `HH:MM-HH:MM`: within a day (`12:00-14:00`) or across midnight
/// (`21:00-08:00`). The start is inside the window, the end is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyWindow {
    /// The first minute of the window.
    pub start: Time,
    /// The first minute after the window.
    pub end: Time,
}

impl DailyWindow {
    /// Parses `HH:MM-HH:MM` (hours 0-23, minutes 00-59, start and end different).
    pub fn parse(text: &str) -> Result<DailyWindow, String> {
        let (start, end) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?} is not a window of local time (HH:MM-HH:MM, e.g. 21:00-08:00)"))?;
        let (start, end) = (parse_time_of_day(start.trim())?, parse_time_of_day(end.trim())?);
        if start == end {
            return Err(format!("{text:?}: the start and the end are equal (an empty or a whole-day window)"));
        }
        Ok(DailyWindow { start, end })
    }

    /// Whether local time of day `time` falls inside the window.
    pub fn contains(&self, time: Time) -> bool {
        if self.start < self.end {
            self.start <= time && time < self.end
        } else {
            time >= self.start || time < self.end
        }
    }
}

fn parse_time_of_day(text: &str) -> Result<Time, String> {
    let wrong = || format!("{text} is not a time of day (HH:MM, 00:00-23:59)");
    let (hour, minute) = text.split_once(':').ok_or_else(wrong)?;
    let digits = |s: &str, max_len: usize| !s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(hour, 2) || !digits(minute, 2) || minute.len() != 2 {
        return Err(wrong());
    }
    let (hour, minute): (i8, i8) = (hour.parse().map_err(|_| wrong())?, minute.parse().map_err(|_| wrong())?);
    Time::new(hour, minute, 0, 0).map_err(|_| wrong())
}

/// An IANA time zone name (`Asia/Shanghai`, `America/New_York`, `UTC`) from the bundled database.
pub fn parse_time_zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name.trim())
        .map_err(|_| format!("{name:?} is not a time zone of the IANA database (e.g. Asia/Shanghai, UTC)"))
}

/// A priority's wire name: `high`, `normal` or `bulk`.
pub fn parse_priority(text: &str) -> Result<Priority, String> {
    Priority::ALL
        .into_iter()
        .find(|p| p.as_str() == text.trim())
        .ok_or_else(|| format!("{text:?} is not a priority (high, normal or bulk)"))
}

/// Quiet hours: a daily window in a time zone during which jobs of some priorities wait.
#[derive(Debug, Clone)]
pub struct QuietHours {
    window: DailyWindow,
    zone: TimeZone,
    priorities: Vec<Priority>,
}

impl QuietHours {
    /// Quiet hours `window` in `zone` for jobs of `priorities`.
    pub fn new(window: DailyWindow, zone: TimeZone, priorities: Vec<Priority>) -> QuietHours {
        QuietHours { window, zone, priorities }
    }

    /// The priorities held back (`quiet_priorities`; default `["bulk"]`).
    pub fn priorities(&self) -> &[Priority] {
        &self.priorities
    }

    /// When a job of `priority` reaching a worker at `now` may go: the end of the window when `now`
    /// is inside it and the priority is quiet, otherwise None (go now).
    pub fn defer_until(&self, now: Timestamp, priority: Priority) -> Option<Timestamp> {
        if !self.priorities.contains(&priority) {
            return None;
        }
        self.window_end(now)
    }

    /// The end of the window when `now` is inside it (whatever the priority), otherwise None.
    ///
    /// Inside or not is read on the local wall clock. The end is the first instant after `now`
    /// at which the wall clock shows the end time: on a day the clocks skip it (the end falls in
    /// a DST gap) that is the moment of the jump; on a day they show it twice, the first showing
    /// still ahead.
    pub fn window_end(&self, now: Timestamp) -> Option<Timestamp> {
        let local = self.zone.to_datetime(now);
        if !self.window.contains(local.time()) {
            return None;
        }
        let today = local.date();
        // Across midnight and past the start: the window ends tomorrow.
        let end_date = if self.window.start > self.window.end && local.time() >= self.window.start {
            today.tomorrow().ok()?
        } else {
            today
        };
        let end = DateTime::from_parts(end_date, self.window.end);
        let candidates = match self.zone.to_ambiguous_timestamp(end).offset() {
            AmbiguousOffset::Unambiguous { offset } => vec![offset.to_timestamp(end).ok()?],
            AmbiguousOffset::Gap { after, .. } => {
                // With the later offset the skipped wall time maps to just before the jump.
                let before_jump = after.to_timestamp(end).ok()?;
                vec![self.zone.following(before_jump).next()?.timestamp()]
            }
            AmbiguousOffset::Fold { before, after } => {
                vec![before.to_timestamp(end).ok()?, after.to_timestamp(end).ok()?]
            }
        };
        candidates.into_iter().find(|at| *at > now)
    }
}

/// One frequency cap: at most `count` messages to a recipient in any `span`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapWindow {
    /// Messages allowed within the span, at least 1.
    pub count: NonZeroU32,
    /// The sliding window, 1 s to 31 days, in whole milliseconds.
    pub span: Duration,
}

impl CapWindow {
    /// The span in milliseconds.
    pub fn span_ms(&self) -> Millis {
        self.span.as_millis() as Millis
    }
}

/// The longest window a cap may have: counts are kept that long per recipient.
pub const MAX_CAP_SPAN: Duration = Duration::from_secs(31 * 24 * 3600);

/// Frequency caps per recipient (`recipient_caps = "1/30s, 5/h, 10/d"`): every window holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientCaps {
    /// Shortest span first; never empty.
    windows: Vec<CapWindow>,
}

impl RecipientCaps {
    /// Parses comma-separated caps `N/<span>`, where a span is a unit `s`, `m`/`min`, `h` or `d`
    /// with an optional whole number before it: `1/30s`, `2/min`, `5/h`, `10/d`, `4/7d`.
    pub fn parse(text: &str) -> Result<RecipientCaps, String> {
        let mut windows = Vec::new();
        for part in text.split(',') {
            windows.push(parse_cap(part.trim())?);
        }
        windows.sort_by_key(|w| w.span);
        Ok(RecipientCaps { windows })
    }

    /// The windows, shortest first.
    pub fn windows(&self) -> &[CapWindow] {
        &self.windows
    }

    /// The longest span: what a counter must remember of a recipient.
    pub fn longest(&self) -> Duration {
        self.windows.last().map_or(Duration::ZERO, |w| w.span)
    }

    /// Given the times a recipient was already counted (`counted`, any order, times older than
    /// the longest window allowed), None when one more message at `now` fits every window, else
    /// the earliest time at which it would (when enough of the counted ones have left every
    /// window, nothing else being counted meanwhile).
    pub fn retry_at(&self, counted: &[Millis], now: Millis) -> Option<Millis> {
        let mut retry_at: Option<Millis> = None;
        for window in &self.windows {
            let span = window.span_ms();
            let mut inside: Vec<Millis> = counted.iter().copied().filter(|at| *at > now - span).collect();
            let allowed = window.count.get() as usize;
            if inside.len() >= allowed {
                inside.sort_unstable();
                // Once this one leaves the window, allowed - 1 are left in it: room for one.
                let leaves = inside[inside.len() - allowed] + span;
                retry_at = Some(retry_at.map_or(leaves, |at| at.max(leaves)));
            }
        }
        retry_at
    }
}

fn parse_cap(text: &str) -> Result<CapWindow, String> {
    let expected = "expected N/<span>, a span being s, min, h or d with an optional number before it \
                    (1/30s, 2/min, 5/h, 10/d)";
    let (count, span) = text.split_once('/').ok_or_else(|| format!("{text:?} is not a cap: {expected}"))?;
    let count: u32 = count.trim().parse().map_err(|_| format!("{text:?}: {:?} is not a whole number", count.trim()))?;
    let count = NonZeroU32::new(count).ok_or_else(|| format!("{text:?}: the count must be at least 1"))?;
    let span = span.trim();
    let split = span.find(|c: char| !c.is_ascii_digit()).unwrap_or(span.len());
    let (number, unit) = span.split_at(split);
    let number: u64 = match number {
        "" => 1,
        digits => digits.parse().map_err(|_| format!("{text:?}: {digits:?} is too large"))?,
    };
    let unit_secs = match unit.trim() {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("{text:?}: unknown unit {other:?}: {expected}")),
    };
    if number == 0 {
        return Err(format!("{text:?}: the span must be at least 1{}", unit.trim()));
    }
    let span = number
        .checked_mul(unit_secs)
        .map(Duration::from_secs)
        .filter(|span| *span <= MAX_CAP_SPAN)
        .ok_or_else(|| format!("{text:?}: the span is longer than 31d"))?;
    Ok(CapWindow { count, span })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn quiet(window: &str, zone: &str, priorities: &[Priority]) -> QuietHours {
        QuietHours::new(DailyWindow::parse(window).unwrap(), parse_time_zone(zone).unwrap(), priorities.to_vec())
    }

    #[test]
    fn windows_across_midnight_in_shanghai() {
        let q = quiet("21:00-08:00", "Asia/Shanghai", &[Priority::Bulk]);
        // 22:30 in Shanghai (UTC+8): deferred to 08:00 the next morning.
        assert_eq!(q.defer_until(at("2025-03-01T14:30:00Z"), Priority::Bulk), Some(at("2025-03-02T00:00:00Z")));
        // 21:00 sharp is inside; 03:00 after midnight ends the same morning.
        assert_eq!(q.defer_until(at("2025-03-01T13:00:00Z"), Priority::Bulk), Some(at("2025-03-02T00:00:00Z")));
        assert_eq!(q.defer_until(at("2025-03-01T19:00:00Z"), Priority::Bulk), Some(at("2025-03-02T00:00:00Z")));
        // 08:00 sharp and 20:59 are outside.
        assert_eq!(q.defer_until(at("2025-03-02T00:00:00Z"), Priority::Bulk), None);
        assert_eq!(q.defer_until(at("2025-03-01T12:59:00Z"), Priority::Bulk), None);
        // Priorities not listed go through at night.
        assert_eq!(q.defer_until(at("2025-03-01T14:30:00Z"), Priority::High), None);
        assert_eq!(q.defer_until(at("2025-03-01T14:30:00Z"), Priority::Normal), None);
        assert_eq!(q.window_end(at("2025-03-01T14:30:00Z")), Some(at("2025-03-02T00:00:00Z")));
    }

    #[test]
    fn windows_within_a_day_in_utc() {
        let q = quiet("12:00-14:00", "UTC", &[Priority::Bulk, Priority::Normal]);
        assert_eq!(q.defer_until(at("2025-06-10T12:00:00Z"), Priority::Normal), Some(at("2025-06-10T14:00:00Z")));
        assert_eq!(q.defer_until(at("2025-06-10T13:59:59Z"), Priority::Bulk), Some(at("2025-06-10T14:00:00Z")));
        assert_eq!(q.defer_until(at("2025-06-10T14:00:00Z"), Priority::Bulk), None);
        assert_eq!(q.defer_until(at("2025-06-10T11:59:59Z"), Priority::Bulk), None);
        assert_eq!(q.defer_until(at("2025-06-10T23:00:00Z"), Priority::Bulk), None);
        assert_eq!(q.defer_until(at("2025-06-10T13:00:00Z"), Priority::High), None);
    }

    #[test]
    fn new_york_nights_across_a_dst_change() {
        let q = quiet("21:00-08:00", "America/New_York", &[Priority::Bulk]);
        // 2025-03-09 02:00 EST the clocks jump to 03:00 EDT: the night before lasts 10 hours,
        // and 08:00 that morning is 12:00Z, not 13:00Z.
        assert_eq!(q.defer_until(at("2025-03-09T02:30:00Z"), Priority::Bulk), Some(at("2025-03-09T12:00:00Z")));
        assert_eq!(q.defer_until(at("2025-03-09T11:59:00Z"), Priority::Bulk), Some(at("2025-03-09T12:00:00Z")));
        assert_eq!(q.defer_until(at("2025-03-09T12:00:00Z"), Priority::Bulk), None);
        // 2025-11-02 02:00 EDT the clocks go back to 01:00 EST: 08:00 is 13:00Z.
        assert_eq!(q.defer_until(at("2025-11-02T01:30:00Z"), Priority::Bulk), Some(at("2025-11-02T13:00:00Z")));
        assert_eq!(q.defer_until(at("2025-11-02T12:30:00Z"), Priority::Bulk), Some(at("2025-11-02T13:00:00Z")));
        // 21:00 EDT the evening before is 01:00Z.
        assert_eq!(q.defer_until(at("2025-11-02T00:59:00Z"), Priority::Bulk), None);
        assert!(q.defer_until(at("2025-11-02T01:00:00Z"), Priority::Bulk).is_some());
    }

    #[test]
    fn a_window_ending_in_a_skipped_or_repeated_hour() {
        // 02:30 does not exist on 2025-03-09 in New York: the window ends at the jump (07:00Z).
        let q = quiet("22:00-02:30", "America/New_York", &[Priority::Bulk]);
        assert_eq!(q.defer_until(at("2025-03-09T04:00:00Z"), Priority::Bulk), Some(at("2025-03-09T07:00:00Z")));
        assert_eq!(q.defer_until(at("2025-03-09T06:59:59Z"), Priority::Bulk), Some(at("2025-03-09T07:00:00Z")));
        assert_eq!(q.defer_until(at("2025-03-09T07:00:00Z"), Priority::Bulk), None);
        // 01:30 happens twice on 2025-11-02: first at 05:30Z (EDT), again at 06:30Z (EST).
        let q = quiet("22:00-01:30", "America/New_York", &[Priority::Bulk]);
        assert_eq!(q.defer_until(at("2025-11-02T04:00:00Z"), Priority::Bulk), Some(at("2025-11-02T05:30:00Z")));
        assert_eq!(q.defer_until(at("2025-11-02T05:30:00Z"), Priority::Bulk), None);
        // The wall clock is back at 01:10 (EST): quiet again until it shows 01:30 once more.
        assert_eq!(q.defer_until(at("2025-11-02T06:10:00Z"), Priority::Bulk), Some(at("2025-11-02T06:30:00Z")));
    }

    #[test]
    fn parses_windows_zones_and_priorities() {
        let w = DailyWindow::parse(" 21:00 - 8:05 ").unwrap();
        assert_eq!((w.start, w.end), (Time::constant(21, 0, 0, 0), Time::constant(8, 5, 0, 0)));
        assert_eq!(DailyWindow::parse("21:00-25:00").unwrap_err(), "25:00 is not a time of day (HH:MM, 00:00-23:59)");
        assert!(DailyWindow::parse("21:60-08:00").unwrap_err().contains("21:60 is not a time of day"));
        assert!(DailyWindow::parse("24:00-08:00").is_err());
        assert!(DailyWindow::parse("21:0-08:00").is_err());
        assert!(DailyWindow::parse("21:00").unwrap_err().contains("HH:MM-HH:MM"));
        assert!(DailyWindow::parse("08:00-08:00").unwrap_err().contains("equal"));
        assert!(parse_time_zone("Asia/Shanghai").is_ok());
        assert!(parse_time_zone("UTC").is_ok());
        assert!(parse_time_zone("Mars/Olympus").unwrap_err().contains("not a time zone"));
        assert_eq!(parse_priority("bulk"), Ok(Priority::Bulk));
        assert!(parse_priority("urgent").unwrap_err().contains("high, normal or bulk"));
        assert_eq!(OnCap::parse("defer"), Ok(OnCap::Defer));
        assert!(OnCap::parse("later").unwrap_err().contains("drop or defer"));
    }

    #[test]
    fn parses_caps() {
        let caps = RecipientCaps::parse("10/d, 1/30s, 5/h").unwrap();
        let spans: Vec<(u32, u64)> = caps.windows().iter().map(|w| (w.count.get(), w.span.as_secs())).collect();
        assert_eq!(spans, [(1, 30), (5, 3600), (10, 86_400)]);
        assert_eq!(caps.longest(), Duration::from_secs(86_400));
        for (text, span) in [("2/min", 60), ("2/m", 60), ("2/2min", 120), ("2/1h", 3600), ("3/7d", 7 * 86_400)] {
            assert_eq!(RecipientCaps::parse(text).unwrap().windows()[0].span, Duration::from_secs(span), "{text}");
        }
        assert!(RecipientCaps::parse("3/fortnight").unwrap_err().contains("unknown unit \"fortnight\""));
        assert!(RecipientCaps::parse("0/h").unwrap_err().contains("at least 1"));
        assert!(RecipientCaps::parse("2/0s").unwrap_err().contains("at least 1s"));
        assert!(RecipientCaps::parse("x/h").unwrap_err().contains("not a whole number"));
        assert!(RecipientCaps::parse("5").unwrap_err().contains("not a cap"));
        assert!(RecipientCaps::parse("1/h,").is_err());
        assert!(RecipientCaps::parse("1/32d").unwrap_err().contains("longer than 31d"));
    }

    #[test]
    fn retry_at_is_when_every_window_has_room() {
        let caps = RecipientCaps::parse("1/30s, 2/min").unwrap();
        let t = 1_700_000_000_000;
        assert_eq!(caps.retry_at(&[], t), None);
        // One 40 s ago: 30 s window free, 1 of 2 in the minute.
        assert_eq!(caps.retry_at(&[t - 40_000], t), None);
        // One 10 s ago: the 30 s window frees 20 s from now.
        assert_eq!(caps.retry_at(&[t - 10_000], t), Some(t + 20_000));
        // Two within the minute (50 s and 40 s ago): the older leaves in 10 s.
        assert_eq!(caps.retry_at(&[t - 40_000, t - 50_000], t), Some(t + 10_000));
        // 50 s and 5 s ago: the minute frees in 10 s, the 30 s window only in 25 s.
        assert_eq!(caps.retry_at(&[t - 5_000, t - 50_000], t), Some(t + 25_000));
        // Exactly a span old has left the window.
        assert_eq!(caps.retry_at(&[t - 30_000], t), None);
    }
}

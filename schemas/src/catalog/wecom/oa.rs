//! 日程 calendar and schedule params (docs/providers/wecom.md#calendars-and-schedules). Create and update are sent wrapped as
//! `{"calendar": {...}}` / `{"schedule": {...}}` ([`crate::Body::Wrapped`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Params of `create_calendar`: a calendar of the app; the answer carries its `cal_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCalendar {
    /// Userid of the calendar's organizer; cannot be changed later.
    #[schemars(length(min = 1))]
    pub organizer: String,
    /// 1 (WeCom's default): the organizer may not edit it or add schedules, only delete it; 0: may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1))]
    pub readonly: Option<u8>,
    /// 1: make it the app's default calendar; 0 (default): not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1))]
    pub set_as_default: Option<u8>,
    /// Title, 1 to 128 characters.
    #[schemars(length(min = 1, max = 128))]
    pub summary: String,
    /// Display colour, `#RRGGBB` (`#0000FF` is blue).
    #[schemars(regex(pattern = "^#[0-9A-Fa-f]{6}$"))]
    pub color: String,
    /// Description, at most 512 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub description: Option<String>,
    /// Members it is shared with, `[{"userid", "readonly"?}]`, at most 2,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2000))]
    pub shares: Option<Vec<Map<String, Value>>>,
    /// Only old third-party multi-app suites need it; sent beside `calendar`, not inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agentid: Option<u64>,
}

/// Params of `update_calendar`: `cal_id` and the fields to overwrite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCalendar {
    /// Id of the calendar, from `create_calendar`.
    #[schemars(length(min = 1))]
    pub cal_id: String,
    /// 1: the organizer may not edit it or add schedules; 0: may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1))]
    pub readonly: Option<u8>,
    /// New title, 1 to 128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub summary: Option<String>,
    /// New display colour, `#RRGGBB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^#[0-9A-Fa-f]{6}$"))]
    pub color: Option<String>,
    /// New description, at most 512 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub description: Option<String>,
    /// New sharing list `[{"userid", "readonly"?}]`, at most 2,000 members; replaces the old one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2000))]
    pub shares: Option<Vec<Map<String, Value>>>,
}

/// Params of `get_calendars`: details of up to 1,000 calendars.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetCalendars {
    /// Ids of the calendars, 1 to 1,000.
    #[schemars(length(min = 1, max = 1000))]
    pub cal_id_list: Vec<String>,
}

/// Params naming one calendar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalId {
    /// Id of the calendar, from `create_calendar`.
    #[schemars(length(min = 1))]
    pub cal_id: String,
}

/// Params of `create_schedule`; the answer carries its `schedule_id`. `reminders`: `is_remind`,
/// `remind_before_event_secs`, `is_repeat`, `repeat_type`, `repeat_until`, `is_custom_repeat`,
/// `repeat_interval`, `repeat_day_of_week`, `repeat_day_of_month`, `timezone`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    /// Userid of the schedule's organizer; cannot be changed later.
    #[schemars(length(min = 1))]
    pub organizer: String,
    /// Start, UNIX seconds.
    pub start_time: i64,
    /// End, UNIX seconds; after `start_time`.
    pub end_time: i64,
    /// Attendees `[{"userid"}]`, at most 2,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2000))]
    pub attendees: Option<Vec<Map<String, Value>>>,
    /// Title, at most 128 characters; absent: WeCom shows "新建事件".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub summary: Option<String>,
    /// Description, at most 1,000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    pub description: Option<String>,
    /// Reminder and repeat settings, keys as listed above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminders: Option<Map<String, Value>>,
    /// Place, at most 128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub location: Option<String>,
    /// Calendar of the organizer to put it in, created by this app; absent: the organizer's default calendar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cal_id: Option<String>,
    /// Only old third-party multi-app suites need it; sent beside `schedule`, not inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agentid: Option<u64>,
}

/// Params of `update_schedule`: `schedule_id` and the fields to overwrite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSchedule {
    /// Id of the schedule, from `create_schedule`.
    #[schemars(length(min = 1))]
    pub schedule_id: String,
    /// Userid of the organizer (WeCom does not change it once set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organizer: Option<String>,
    /// New start, UNIX seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<i64>,
    /// New end, UNIX seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    /// New attendees `[{"userid"}]`, at most 2,000; replaces the old list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2000))]
    pub attendees: Option<Vec<Map<String, Value>>>,
    /// New title, at most 128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub summary: Option<String>,
    /// New description, at most 1,000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    pub description: Option<String>,
    /// New reminder and repeat settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminders: Option<Map<String, Value>>,
    /// New place, at most 128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub location: Option<String>,
}

/// Params of `get_schedules`: details of up to 1,000 schedules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetSchedules {
    /// Ids of the schedules, 1 to 1,000.
    #[schemars(length(min = 1, max = 1000))]
    pub schedule_id_list: Vec<String>,
}

/// Params naming one schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleId {
    /// Id of the schedule, from `create_schedule`.
    #[schemars(length(min = 1))]
    pub schedule_id: String,
}

/// Params of `list_calendar_schedules`: one page of a calendar's schedules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarSchedules {
    /// Id of the calendar, from `create_calendar`.
    #[schemars(length(min = 1))]
    pub cal_id: String,
    /// Schedules to skip (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
    /// Page size, 1 to 1,000 (WeCom's default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
}

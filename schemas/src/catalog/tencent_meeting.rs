//! `tencent_meeting`: Tencent Meeting (腾讯会议) REST API, signed with `X-TC-Signature`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::spec::{ActionSpec, Effect, Endpoint, KindSpec, Method, schema};

/// `end_meeting`: the API names the operator `operator_id` (type 1 = userid) and the flag
/// `force_dismiss_meeting`.
const DISMISS_RENAMES: &[(&str, &str)] = &[("userid", "operator_id"), ("force", "force_dismiss_meeting")];

pub(super) const KIND: KindSpec = KindSpec {
    name: "tencent_meeting",
    title: "腾讯会议 Tencent Meeting",
    // Self-built apps may call 300 times a minute (190310 beyond).
    default_rate_limit: "300/min",
    actions: &[
        ActionSpec {
            name: "create_meeting",
            effect: Effect::Write,
            params: schema::<CreateMeeting>,
            endpoint: Endpoint::Rest { method: Method::Post, path: "/v1/meetings", renames: &[], fixed: &[] },
            bucket: "api",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "get_meeting",
            effect: Effect::Read,
            params: schema::<GetMeeting>,
            endpoint: Endpoint::Rest {
                method: Method::Get,
                path: "/v1/meetings/{meeting_id}",
                renames: &[],
                fixed: &[],
            },
            bucket: "api",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "get_meeting_by_code",
            effect: Effect::Read,
            params: schema::<GetMeetingByCode>,
            endpoint: Endpoint::Rest { method: Method::Get, path: "/v1/meetings", renames: &[], fixed: &[] },
            bucket: "api",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "cancel_meeting",
            effect: Effect::Write,
            params: schema::<CancelMeeting>,
            endpoint: Endpoint::Rest {
                method: Method::Post,
                path: "/v1/meetings/{meeting_id}/cancel",
                renames: &[],
                fixed: &[],
            },
            bucket: "api",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "end_meeting",
            effect: Effect::Write,
            params: schema::<EndMeeting>,
            endpoint: Endpoint::Rest {
                method: Method::Post,
                path: "/v1/meetings/{meeting_id}/dismiss",
                renames: DISMISS_RENAMES,
                fixed: &[("operator_id_type", 1)],
            },
            bucket: "api",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "update_meeting",
            effect: Effect::Write,
            params: schema::<UpdateMeeting>,
            endpoint: Endpoint::Rest {
                method: Method::Put,
                path: "/v1/meetings/{meeting_id}",
                renames: &[],
                fixed: &[],
            },
            bucket: "api",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "list_participants",
            effect: Effect::Read,
            params: schema::<ListParticipants>,
            endpoint: Endpoint::Rest {
                method: Method::Get,
                path: "/v1/meetings/{meeting_id}/participants",
                renames: &[],
                fixed: &[],
            },
            bucket: "api",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "list_user_meetings",
            effect: Effect::Read,
            params: schema::<ListUserMeetings>,
            endpoint: Endpoint::Rest { method: Method::Get, path: "/v1/meetings", renames: &[], fixed: &[] },
            bucket: "api",
            per_recipient: None,
            recipient: None,
        },
    ],
};

/// A user named as host or invitee: `{"userid"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MeetingUser {
    /// Enterprise user id.
    #[schemars(length(min = 1))]
    pub userid: String,
    /// `true`: the user joins anonymously; default `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_anonymous: Option<bool>,
}

/// Params of `create_meeting` (`POST /v1/meetings`); the answer lists the meeting's id, code and join URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateMeeting {
    /// The creator, an enterprise user id.
    #[schemars(length(min = 1))]
    pub userid: String,
    /// Device of the creator: 1 PC, 2 Mac, 3 Android, 4 iOS, 5 Web, 6 iPad, 7 Android pad, 8 mini program.
    #[schemars(range(min = 1, max = 8))]
    pub instanceid: u8,
    /// Meeting subject, 1 to 255 characters.
    #[schemars(length(min = 1, max = 255))]
    pub subject: String,
    /// 0 scheduled, 1 quick.
    #[schemars(range(min = 0, max = 1))]
    pub r#type: u8,
    /// UNIX seconds, as a string.
    #[schemars(pattern(r"^[0-9]+$"))]
    pub start_time: String,
    /// End, UNIX seconds as a string; after `start_time`.
    #[schemars(pattern(r"^[0-9]+$"))]
    pub end_time: String,
    /// Join password, 4 to 6 digits; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]{4,6}$"))]
    pub password: Option<String>,
    /// Users made hosts of the meeting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<MeetingUser>>,
    /// Users invited to the meeting, at most 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 300))]
    pub invitees: Option<Vec<MeetingUser>>,
    /// Media settings as the API names them (`mute_enable_join`, `allow_unmute_self`, `auto_record_type`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Map<String, Value>>,
}

/// Params of `get_meeting` (`GET /v1/meetings/{meeting_id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct GetMeeting {
    /// Id of the meeting (`meeting_id`, digits), not the code people join with.
    #[schemars(length(min = 1), pattern(r"^[0-9]+$"))]
    pub meeting_id: String,
    /// Enterprise user id of the caller.
    #[schemars(length(min = 1))]
    pub userid: String,
    /// Device of the caller, 1 to 8 (1 PC ... 8 mini program).
    #[schemars(range(min = 1, max = 8))]
    pub instanceid: u8,
}

/// Params of `get_meeting_by_code` (`GET /v1/meetings?meeting_code=`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct GetMeetingByCode {
    /// The 9-digit code people join with.
    #[schemars(pattern(r"^[0-9]{9}$"))]
    pub meeting_code: String,
    /// Enterprise user id of the caller.
    #[schemars(length(min = 1))]
    pub userid: String,
    /// Device of the caller, 1 to 8 (1 PC ... 8 mini program).
    #[schemars(range(min = 1, max = 8))]
    pub instanceid: u8,
}

/// Params of `cancel_meeting` (`POST /v1/meetings/{meeting_id}/cancel`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CancelMeeting {
    /// Id of the meeting (`meeting_id`, digits).
    #[schemars(length(min = 1), pattern(r"^[0-9]+$"))]
    pub meeting_id: String,
    /// Enterprise user id of the caller.
    #[schemars(length(min = 1))]
    pub userid: String,
    /// Device of the caller, 1 to 8 (1 PC ... 8 mini program).
    #[schemars(range(min = 1, max = 8))]
    pub instanceid: u8,
    /// Reason code of the cancellation, an integer of the caller's choosing.
    pub reason_code: i64,
    /// Free-text reason of the cancellation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_detail: Option<String>,
}

/// Params of `end_meeting` (`POST /v1/meetings/{meeting_id}/dismiss`, the user sent as `operator_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EndMeeting {
    /// Id of the meeting (`meeting_id`, digits).
    #[schemars(length(min = 1), pattern(r"^[0-9]+$"))]
    pub meeting_id: String,
    /// Enterprise user id of the caller (sent as `operator_id`, type 1).
    #[schemars(length(min = 1))]
    pub userid: String,
    /// Device of the caller, 1 to 8 (1 PC ... 8 mini program).
    #[schemars(range(min = 1, max = 8))]
    pub instanceid: u8,
    /// Reason code of ending it, an integer of the caller's choosing.
    pub reason_code: i64,
    /// 1 (the API's default): end it even while people are in it; 0: only when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub force: Option<u8>,
}

/// Params of `update_meeting` (`PUT /v1/meetings/{meeting_id}`): the create fields to change;
/// absent ones stay as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateMeeting {
    /// Id of the meeting (`meeting_id`, digits).
    #[schemars(length(min = 1), pattern(r"^[0-9]+$"))]
    pub meeting_id: String,
    /// Enterprise user id of the caller.
    #[schemars(length(min = 1))]
    pub userid: String,
    /// Device of the caller, 1 to 8 (1 PC ... 8 mini program).
    #[schemars(range(min = 1, max = 8))]
    pub instanceid: u8,
    /// New subject, 1 to 255 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub subject: Option<String>,
    /// New type: 0 scheduled, 1 quick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub r#type: Option<u8>,
    /// New start, UNIX seconds as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]+$"))]
    pub start_time: Option<String>,
    /// New end, UNIX seconds as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]+$"))]
    pub end_time: Option<String>,
    /// New join password, 4 to 6 digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]{4,6}$"))]
    pub password: Option<String>,
    /// New hosts, replacing the old ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<MeetingUser>>,
    /// New invitees, at most 300, replacing the old ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 300))]
    pub invitees: Option<Vec<MeetingUser>>,
    /// Settings to change, named as in `create_meeting`'s `settings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Map<String, Value>>,
}

/// Params of `list_participants` (`GET /v1/meetings/{meeting_id}/participants`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParticipants {
    /// Id of the meeting (`meeting_id`, digits).
    #[schemars(length(min = 1), pattern(r"^[0-9]+$"))]
    pub meeting_id: String,
    /// Enterprise user id of the caller.
    #[schemars(length(min = 1))]
    pub userid: String,
}

/// Params of `list_user_meetings`: the user's upcoming meetings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ListUserMeetings {
    /// Enterprise user id whose meetings are listed.
    #[schemars(length(min = 1))]
    pub userid: String,
    /// Device of the caller, 1 to 8 (1 PC ... 8 mini program).
    #[schemars(range(min = 1, max = 8))]
    pub instanceid: u8,
}

#[cfg(test)]
mod tests;

//! `wecom` against wiremock: the exact request of every catalog action (one row each) and the
//! mapping of its answer; the token cache, single flight, refresh on 40014/42001, bad secrets, and
//! the secret of each area. No reason may contain a secret or a token.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::Wecom;
use super::token::GETTOKEN_PATH;
use crate::connectors::testkit::{Kit, json_body};
use crate::connectors::{Failure, Success, http};

const CORP: &str = "ww1234567890abcdef";
const APP_SECRET: &str = "app-secret-Xk2sd93kdL";
const CONTACTS_SECRET: &str = "contacts-secret-9dkKL2";
const EXTERNAL_SECRET: &str = "external-secret-Pq81za";
const TOKEN: &str = "accesstoken000001";
const KIT: Kit = Kit { kind: "wecom", secrets: &[APP_SECRET, CONTACTS_SECRET, EXTERNAL_SECRET, TOKEN] };

fn corp(server: &MockServer, extra: &str) -> Wecom {
    let text = format!(
        "[connectors.wecom.hq]\ncorp_id = \"{CORP}\"\napp_secret = \"{APP_SECRET}\"\n{extra}endpoint = \"{}\"\n",
        server.uri()
    );
    KIT.build(&text, "hq", |config| Wecom::new(config, http::client()))
}

fn full_corp(server: &MockServer) -> Wecom {
    corp(
        server,
        &format!(
            "contacts_secret = \"{CONTACTS_SECRET}\"\nexternal_contact_secret = \"{EXTERNAL_SECRET}\"\nagentid = 1000002\n"
        ),
    )
}

/// gettoken answers a token named after the secret, so tests can tell which secret a call used.
async fn mount_tokens(server: &MockServer) {
    for (secret, token) in
        [(APP_SECRET, TOKEN), (CONTACTS_SECRET, "contacts-token"), (EXTERNAL_SECRET, "external-token")]
    {
        Mock::given(method("GET"))
            .and(path(GETTOKEN_PATH))
            .and(query_param("corpid", CORP))
            .and(query_param("corpsecret", secret))
            .respond_with(ok(json!({"access_token": token, "expires_in": 7200})))
            .mount(server)
            .await;
    }
}

fn ok(data: Value) -> ResponseTemplate {
    let mut body = json!({"errcode": 0, "errmsg": "ok"});
    body.as_object_mut().unwrap().extend(data.as_object().unwrap().clone());
    ResponseTemplate::new(200).set_body_json(body)
}

fn errcode(code: i64, msg: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"errcode": code, "errmsg": msg}))
}

async fn gettoken_calls(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().iter().filter(|r| r.url.path() == GETTOKEN_PATH).count()
}

/// One action: its params, and the request WeCom must receive (query without `access_token`;
/// `None` body for GETs), and the token (i.e. secret) it must carry.
struct Row {
    action: &'static str,
    params: Value,
    method: &'static str,
    path: &'static str,
    query: &'static str,
    body: Option<Value>,
    token: &'static str,
}

fn row(
    action: &'static str,
    params: Value,
    method: &'static str,
    path: &'static str,
    query: &'static str,
    body: Option<Value>,
    token: &'static str,
) -> Row {
    Row { action, params, method, path, query, body, token }
}

const C: &str = "contacts-token";
const E: &str = "external-token";
const A: &str = TOKEN;

/// A row's body that is a multipart upload of `avatar.png` as the form field `media`.
const MULTIPART: &str = "multipart: media=avatar.png";

fn same(params: &Value) -> Option<Value> {
    Some(params.clone())
}

fn rows() -> Vec<Row> {
    let p = |v: Value| v;
    let member = p(
        json!({"userid": "zhangsan", "name": "张三", "mobile": "+86 13800000000", "department": [1, 2], "order": [10, 40], "is_leader_in_dept": [1, 0], "enable": 1, "external_profile": {"external_corp_name": "企业简称"}}),
    );
    let text = p(json!({"touser": "zhangsan|lisi", "msgtype": "text", "text": {"content": "你好"}, "safe": 0}));
    let chat = p(json!({"name": "NAME", "owner": "userid1", "userlist": ["userid1", "userid2"], "chatid": "CHATID"}));
    let moments = p(
        json!({"start_time": 1605000000, "end_time": 1605172726, "creator": "zhangsan", "filter_type": 1, "cursor": "CURSOR", "limit": 10}),
    );
    let stat = p(
        json!({"day_begin_time": 1600272000, "day_end_time": 1600444800, "owner_filter": {"userid_list": ["zhangsan"]}, "order_by": 2, "order_asc": 0, "offset": 0, "limit": 1000}),
    );
    let by_day = p(
        json!({"day_begin_time": 1600272000, "day_end_time": 1600444800, "owner_filter": {"userid_list": ["zhangsan"]}}),
    );
    let template = p(
        json!({"chat_type": "single", "external_userid": ["woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA"], "sender": "zhangsan", "text": {"content": "文本消息内容"}, "attachments": [{"msgtype": "image", "image": {"media_id": "MEDIA_ID"}}]}),
    );
    let welcome = p(json!({"welcome_code": "CALLBACK_CODE", "text": {"content": "欢迎"}}));
    let group_tpl = p(
        json!({"text": {"content": "亲爱的%NICKNAME%用户，你好"}, "image": {"media_id": "MEDIA_ID"}, "agentid": 1000014, "notify": 1}),
    );
    let edit_tpl = p(json!({"template_id": "msgXXXXXXX", "text": {"content": "新欢迎语"}, "agentid": 1000014}));
    let way = p(
        json!({"type": 1, "scene": 2, "style": 1, "remark": "渠道客户", "skip_verify": true, "state": "teststate", "user": ["zhangsan"], "is_temp": false}),
    );
    let update_way =
        p(json!({"config_id": "42b34949e138eb6e027c123cba77fAAA", "remark": "渠道客户", "user": ["lisi"]}));
    let calendar = p(
        json!({"organizer": "userid1", "readonly": 1, "set_as_default": 1, "summary": "test_summary", "color": "#FF3030", "description": "test_describe", "shares": [{"userid": "userid2"}], "agentid": 1000014}),
    );
    let schedule = p(
        json!({"organizer": "userid1", "start_time": 1571274600, "end_time": 1571320210, "attendees": [{"userid": "userid2"}], "summary": "需求评审会议", "reminders": {"is_remind": 1, "remind_before_event_secs": 3600, "is_repeat": 1, "repeat_type": 7}, "location": "广州国际媒体港10楼1005会议室", "cal_id": "wcjgewCwAAqeJcPI1d8Pwbjt7nttzAAA", "agentid": 1000014}),
    );
    vec![
        row("list_departments", json!({"id": 2}), "GET", "/cgi-bin/department/list", "id=2", None, C),
        row("list_department_ids", json!({"id": 2}), "GET", "/cgi-bin/department/simplelist", "id=2", None, C),
        row("get_department", json!({"id": 2}), "GET", "/cgi-bin/department/get", "id=2", None, C),
        row(
            "upload_media",
            json!({"type": "image", "filename": "avatar.png", "content_base64": "iVBORw0KGgo="}),
            "POST",
            "/cgi-bin/media/upload",
            "type=image",
            Some(json!(MULTIPART)),
            A,
        ),
        row(
            "upload_image",
            json!({"filename": "avatar.png", "content_base64": "iVBORw0KGgo="}),
            "POST",
            "/cgi-bin/media/uploadimg",
            "",
            Some(json!(MULTIPART)),
            A,
        ),
        row(
            "create_department",
            json!({"name": "广州研发中心", "name_en": "RDGZ", "parentid": 1, "order": 1, "id": 2}),
            "POST",
            "/cgi-bin/department/create",
            "",
            Some(json!({"name": "广州研发中心", "name_en": "RDGZ", "parentid": 1, "order": 1, "id": 2})),
            C,
        ),
        row(
            "update_department",
            json!({"id": 2, "name": "广州研发中心"}),
            "POST",
            "/cgi-bin/department/update",
            "",
            Some(json!({"id": 2, "name": "广州研发中心"})),
            C,
        ),
        row("delete_department", json!({"id": 2}), "GET", "/cgi-bin/department/delete", "id=2", None, C),
        row(
            "list_member_ids",
            json!({"cursor": "xxxxxxx", "limit": 10000}),
            "POST",
            "/cgi-bin/user/list_id",
            "",
            Some(json!({"cursor": "xxxxxxx", "limit": 10000})),
            C,
        ),
        row("create_member", member.clone(), "POST", "/cgi-bin/user/create", "", same(&member), C),
        row("get_member", json!({"userid": "zhangsan"}), "GET", "/cgi-bin/user/get", "userid=zhangsan", None, C),
        row(
            "update_member",
            json!({"userid": "zhangsan", "position": "后台工程师"}),
            "POST",
            "/cgi-bin/user/update",
            "",
            Some(json!({"userid": "zhangsan", "position": "后台工程师"})),
            C,
        ),
        row("delete_member", json!({"userid": "zhangsan"}), "GET", "/cgi-bin/user/delete", "userid=zhangsan", None, C),
        row(
            "batch_delete_members",
            json!({"useridlist": ["zhangsan", "lisi"]}),
            "POST",
            "/cgi-bin/user/batchdelete",
            "",
            Some(json!({"useridlist": ["zhangsan", "lisi"]})),
            C,
        ),
        row(
            "list_department_members",
            json!({"department_id": 1, "fetch_child": 1}),
            "GET",
            "/cgi-bin/user/simplelist",
            "department_id=1&fetch_child=1",
            None,
            C,
        ),
        row(
            "list_department_member_details",
            json!({"department_id": 1, "fetch_child": 0}),
            "GET",
            "/cgi-bin/user/list",
            "department_id=1&fetch_child=0",
            None,
            C,
        ),
        // The config's agentid is added when the params have none.
        row(
            "send_app_message",
            text,
            "POST",
            "/cgi-bin/message/send",
            "",
            Some(
                json!({"touser": "zhangsan|lisi", "msgtype": "text", "agentid": 1000002, "text": {"content": "你好"}, "safe": 0}),
            ),
            A,
        ),
        row(
            "recall_app_message",
            json!({"msgid": "vcT8gGc-7dFb4bxT35ONjBDz901sLlXPZw1DAMC_Gc26qRpK-AK5sTJkkb0128t"}),
            "POST",
            "/cgi-bin/message/recall",
            "",
            Some(json!({"msgid": "vcT8gGc-7dFb4bxT35ONjBDz901sLlXPZw1DAMC_Gc26qRpK-AK5sTJkkb0128t"})),
            A,
        ),
        row("create_appchat", chat.clone(), "POST", "/cgi-bin/appchat/create", "", same(&chat), A),
        row(
            "update_appchat",
            json!({"chatid": "CHATID", "add_user_list": ["userid3"], "del_user_list": ["userid2"]}),
            "POST",
            "/cgi-bin/appchat/update",
            "",
            Some(json!({"chatid": "CHATID", "add_user_list": ["userid3"], "del_user_list": ["userid2"]})),
            A,
        ),
        row("get_appchat", json!({"chatid": "CHATID"}), "GET", "/cgi-bin/appchat/get", "chatid=CHATID", None, A),
        row(
            "send_appchat_message",
            json!({"chatid": "CHATID", "msgtype": "markdown", "markdown": {"content": "**hi**"}}),
            "POST",
            "/cgi-bin/appchat/send",
            "",
            Some(json!({"chatid": "CHATID", "msgtype": "markdown", "markdown": {"content": "**hi**"}})),
            A,
        ),
        row(
            "get_customer",
            json!({"external_userid": "woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA", "cursor": "CURSOR"}),
            "GET",
            "/cgi-bin/externalcontact/get",
            "cursor=CURSOR&external_userid=woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA",
            None,
            E,
        ),
        row(
            "batch_get_customers",
            json!({"userid_list": ["zhangsan", "lisi"], "cursor": "CURSOR", "limit": 100}),
            "POST",
            "/cgi-bin/externalcontact/batch/get_by_user",
            "",
            Some(json!({"userid_list": ["zhangsan", "lisi"], "cursor": "CURSOR", "limit": 100})),
            E,
        ),
        row(
            "get_groupchat",
            json!({"chat_id": "wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA", "need_name": 1}),
            "POST",
            "/cgi-bin/externalcontact/groupchat/get",
            "",
            Some(json!({"chat_id": "wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA", "need_name": 1})),
            E,
        ),
        row(
            "get_groupchat_stat_by_owner",
            stat.clone(),
            "POST",
            "/cgi-bin/externalcontact/groupchat/statistic",
            "",
            same(&stat),
            E,
        ),
        row(
            "get_groupchat_stat_by_day",
            by_day.clone(),
            "POST",
            "/cgi-bin/externalcontact/groupchat/statistic_group_by_day",
            "",
            same(&by_day),
            E,
        ),
        row("list_moments", moments.clone(), "POST", "/cgi-bin/externalcontact/get_moment_list", "", same(&moments), E),
        row(
            "get_moment_tasks",
            json!({"moment_id": "momxxx", "cursor": "CURSOR", "limit": 1000}),
            "POST",
            "/cgi-bin/externalcontact/get_moment_task",
            "",
            Some(json!({"moment_id": "momxxx", "cursor": "CURSOR", "limit": 1000})),
            E,
        ),
        row(
            "get_moment_customer_list",
            json!({"moment_id": "momxxx", "userid": "xxx", "limit": 1000}),
            "POST",
            "/cgi-bin/externalcontact/get_moment_customer_list",
            "",
            Some(json!({"moment_id": "momxxx", "userid": "xxx", "limit": 1000})),
            E,
        ),
        row(
            "get_moment_send_result",
            json!({"moment_id": "momxxx", "userid": "xxx", "cursor": "CURSOR"}),
            "POST",
            "/cgi-bin/externalcontact/get_moment_send_result",
            "",
            Some(json!({"moment_id": "momxxx", "userid": "xxx", "cursor": "CURSOR"})),
            E,
        ),
        row(
            "get_moment_comments",
            json!({"moment_id": "momxxx", "userid": "xxx"}),
            "POST",
            "/cgi-bin/externalcontact/get_moment_comments",
            "",
            Some(json!({"moment_id": "momxxx", "userid": "xxx"})),
            E,
        ),
        row(
            "add_msg_template",
            template.clone(),
            "POST",
            "/cgi-bin/externalcontact/add_msg_template",
            "",
            same(&template),
            E,
        ),
        row(
            "send_welcome_msg",
            welcome.clone(),
            "POST",
            "/cgi-bin/externalcontact/send_welcome_msg",
            "",
            same(&welcome),
            E,
        ),
        row(
            "add_group_welcome_template",
            group_tpl.clone(),
            "POST",
            "/cgi-bin/externalcontact/group_welcome_template/add",
            "",
            same(&group_tpl),
            E,
        ),
        row(
            "edit_group_welcome_template",
            edit_tpl.clone(),
            "POST",
            "/cgi-bin/externalcontact/group_welcome_template/edit",
            "",
            same(&edit_tpl),
            E,
        ),
        row(
            "get_group_welcome_template",
            json!({"template_id": "msgXXXXXXX"}),
            "POST",
            "/cgi-bin/externalcontact/group_welcome_template/get",
            "",
            Some(json!({"template_id": "msgXXXXXXX"})),
            E,
        ),
        row(
            "delete_group_welcome_template",
            json!({"template_id": "msgXXXXXXX"}),
            "POST",
            "/cgi-bin/externalcontact/group_welcome_template/del",
            "",
            Some(json!({"template_id": "msgXXXXXXX"})),
            E,
        ),
        row("add_contact_way", way.clone(), "POST", "/cgi-bin/externalcontact/add_contact_way", "", same(&way), E),
        row(
            "get_contact_way",
            json!({"config_id": "42b34949e138eb6e027c123cba77fad7"}),
            "POST",
            "/cgi-bin/externalcontact/get_contact_way",
            "",
            Some(json!({"config_id": "42b34949e138eb6e027c123cba77fad7"})),
            E,
        ),
        row(
            "update_contact_way",
            update_way.clone(),
            "POST",
            "/cgi-bin/externalcontact/update_contact_way",
            "",
            same(&update_way),
            E,
        ),
        row(
            "delete_contact_way",
            json!({"config_id": "42b34949e138eb6e027c123cba77fAAA"}),
            "POST",
            "/cgi-bin/externalcontact/del_contact_way",
            "",
            Some(json!({"config_id": "42b34949e138eb6e027c123cba77fAAA"})),
            E,
        ),
        row(
            "close_temp_chat",
            json!({"userid": "zhangyisheng", "external_userid": "woAJ2GCAAAXtWyujaWJHDDGi0mACHAAA"}),
            "POST",
            "/cgi-bin/externalcontact/close_temp_chat",
            "",
            Some(json!({"userid": "zhangyisheng", "external_userid": "woAJ2GCAAAXtWyujaWJHDDGi0mACHAAA"})),
            E,
        ),
        // Calendars and schedules are wrapped; agentid stays beside.
        row(
            "create_calendar",
            calendar,
            "POST",
            "/cgi-bin/oa/calendar/add",
            "",
            Some(
                json!({"agentid": 1000014, "calendar": {"organizer": "userid1", "readonly": 1, "set_as_default": 1, "summary": "test_summary", "color": "#FF3030", "description": "test_describe", "shares": [{"userid": "userid2"}]}}),
            ),
            A,
        ),
        row(
            "update_calendar",
            json!({"cal_id": "wcjgewCwAAqeJcPI1d8Pwbjt7nttzAAA", "summary": "new"}),
            "POST",
            "/cgi-bin/oa/calendar/update",
            "",
            Some(json!({"calendar": {"cal_id": "wcjgewCwAAqeJcPI1d8Pwbjt7nttzAAA", "summary": "new"}})),
            A,
        ),
        row(
            "get_calendars",
            json!({"cal_id_list": ["wcjgewCwAAqeJcPI1d8Pwbjt7nttzAAA"]}),
            "POST",
            "/cgi-bin/oa/calendar/get",
            "",
            Some(json!({"cal_id_list": ["wcjgewCwAAqeJcPI1d8Pwbjt7nttzAAA"]})),
            A,
        ),
        row(
            "delete_calendar",
            json!({"cal_id": "wcjgewCwAAqeJcPI1d8Pwbjt7nttzAAA"}),
            "POST",
            "/cgi-bin/oa/calendar/del",
            "",
            Some(json!({"cal_id": "wcjgewCwAAqeJcPI1d8Pwbjt7nttzAAA"})),
            A,
        ),
        row(
            "create_schedule",
            schedule,
            "POST",
            "/cgi-bin/oa/schedule/add",
            "",
            Some(
                json!({"agentid": 1000014, "schedule": {"organizer": "userid1", "start_time": 1571274600, "end_time": 1571320210, "attendees": [{"userid": "userid2"}], "summary": "需求评审会议", "reminders": {"is_remind": 1, "remind_before_event_secs": 3600, "is_repeat": 1, "repeat_type": 7}, "location": "广州国际媒体港10楼1005会议室", "cal_id": "wcjgewCwAAqeJcPI1d8Pwbjt7nttzAAA"}}),
            ),
            A,
        ),
        row(
            "update_schedule",
            json!({"schedule_id": "17c7d2bd9f20d652840f72f59e796AAA", "summary": "新"}),
            "POST",
            "/cgi-bin/oa/schedule/update",
            "",
            Some(json!({"schedule": {"schedule_id": "17c7d2bd9f20d652840f72f59e796AAA", "summary": "新"}})),
            A,
        ),
        row(
            "get_schedules",
            json!({"schedule_id_list": ["17c7d2bd9f20d652840f72f59e796AAA"]}),
            "POST",
            "/cgi-bin/oa/schedule/get",
            "",
            Some(json!({"schedule_id_list": ["17c7d2bd9f20d652840f72f59e796AAA"]})),
            A,
        ),
        row(
            "cancel_schedule",
            json!({"schedule_id": "17c7d2bd9f20d652840f72f59e796AAA"}),
            "POST",
            "/cgi-bin/oa/schedule/del",
            "",
            Some(json!({"schedule_id": "17c7d2bd9f20d652840f72f59e796AAA"})),
            A,
        ),
        row(
            "list_calendar_schedules",
            json!({"cal_id": "wcjgewCwAAqeJcPI1d8Pwbjt7nttzAAA", "offset": 100, "limit": 1000}),
            "POST",
            "/cgi-bin/oa/schedule/get_by_calendar",
            "",
            Some(json!({"cal_id": "wcjgewCwAAqeJcPI1d8Pwbjt7nttzAAA", "offset": 100, "limit": 1000})),
            A,
        ),
    ]
}

#[tokio::test]
async fn every_action_sends_its_exact_request_and_maps_its_answer() {
    let rows = rows();
    let kind = yizhan_schemas::find_kind("wecom").unwrap();
    assert_eq!(rows.len(), kind.actions.len(), "one row per catalog action");
    for action in kind.actions {
        assert!(rows.iter().any(|r| r.action == action.name), "no row for {}", action.name);
    }
    for row in rows {
        let server = MockServer::start().await;
        mount_tokens(&server).await;
        // Whatever the action answers besides errcode/errmsg is its result.
        let data = json!({"next_cursor": "NEXT", "item": row.action});
        Mock::given(method(row.method)).and(path(row.path)).respond_with(ok(data.clone())).mount(&server).await;
        yizhan_schemas::validate_params("wecom", row.action, &row.params)
            .unwrap_or_else(|e| panic!("{}: params invalid: {e:?}", row.action));
        let success = KIT
            .run(&full_corp(&server), row.action, &row.params)
            .await
            .unwrap_or_else(|f| panic!("{}: {f:?}", row.action));
        assert_eq!(success.result, Some(data), "{}", row.action);

        let requests = server.received_requests().await.unwrap();
        let request = requests.iter().find(|r| r.url.path() != GETTOKEN_PATH).expect("the call");
        assert_eq!(request.method.as_str(), row.method, "{}", row.action);
        assert_eq!(request.url.path(), row.path, "{}", row.action);
        let mut query: Vec<(String, String)> = request.url.query_pairs().into_owned().collect();
        let token = query.iter().position(|(n, _)| n == "access_token").expect("access_token");
        assert_eq!(query.remove(token).1, row.token, "{}: the wrong secret's token", row.action);
        let query: Vec<String> = query.iter().map(|(n, v)| format!("{n}={v}")).collect();
        assert_eq!(query.join("&"), row.query, "{}", row.action);
        match row.body {
            None => assert!(request.body.is_empty(), "{}", row.action),
            Some(body) if body == json!(MULTIPART) => {
                let content_type = request.headers.get("content-type").unwrap().to_str().unwrap();
                assert!(content_type.starts_with("multipart/form-data; boundary="), "{}", row.action);
                let text = String::from_utf8_lossy(&request.body);
                assert!(text.contains("name=\"media\"; filename=\"avatar.png\""), "{}: {text}", row.action);
                assert!(request.body.windows(6).any(|w| w == b"\x89PNG\r\n"), "{}: the decoded bytes", row.action);
            }
            Some(body) => {
                assert_eq!(request.headers.get("content-type").unwrap(), "application/json", "{}", row.action);
                assert_eq!(json_body(request), body, "{}", row.action);
            }
        }
    }
}

#[tokio::test]
async fn a_write_without_data_has_no_result_and_customer_contact_falls_back_to_the_app_secret() {
    let server = MockServer::start().await;
    mount_tokens(&server).await;
    Mock::given(method("POST")).respond_with(ok(json!({}))).mount(&server).await;
    let corp = corp(&server, "");
    let success = KIT.run(&corp, "delete_contact_way", &json!({"config_id": "c1"})).await.unwrap();
    assert_eq!(success.result, None);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests[0].url.query(), Some(format!("corpid={CORP}&corpsecret={APP_SECRET}").as_str()));
    // No contacts secret: contacts actions cannot run.
    let failure = KIT.run(&corp, "get_member", &json!({"userid": "zhangsan"})).await.unwrap_err();
    assert_eq!(failure, Failure::permanent("contacts actions need `contacts_secret`"));
    // No agentid anywhere: send_app_message cannot run.
    let failure = KIT
        .run(&corp, "send_app_message", &json!({"touser": "a", "msgtype": "text", "text": {"content": "x"}}))
        .await
        .unwrap_err();
    assert!(matches!(failure, Failure::Permanent { .. }), "{failure:?}");
}

#[tokio::test]
async fn the_token_is_cached_and_fetched_once_for_concurrent_jobs() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(GETTOKEN_PATH))
        .respond_with(ok(json!({"access_token": TOKEN, "expires_in": 7200})).set_delay(Duration::from_millis(200)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/cgi-bin/message/send"))
        .respond_with(ok(json!({"msgid": "m"})))
        .mount(&server)
        .await;
    let corp = Arc::new(full_corp(&server));
    let mut jobs = Vec::new();
    for _ in 0..50 {
        let corp = corp.clone();
        jobs.push(tokio::spawn(async move {
            KIT.run(&*corp, "send_app_message", &json!({"touser": "a", "msgtype": "text", "text": {"content": "x"}}))
                .await
                .unwrap();
        }));
    }
    for job in jobs {
        job.await.unwrap();
    }
    KIT.run(&*corp, "recall_app_message", &json!({"msgid": "m"})).await.unwrap_err();
    assert_eq!(gettoken_calls(&server).await, 1);
}

#[tokio::test]
async fn a_token_about_to_expire_is_refreshed() {
    let server = MockServer::start().await;
    // 300 s of validity is already inside the refresh margin.
    Mock::given(method("GET"))
        .and(path(GETTOKEN_PATH))
        .respond_with(ok(json!({"access_token": TOKEN, "expires_in": 300})))
        .mount(&server)
        .await;
    Mock::given(method("POST")).respond_with(ok(json!({}))).mount(&server).await;
    let corp = full_corp(&server);
    KIT.run(&corp, "recall_app_message", &json!({"msgid": "m"})).await.unwrap();
    KIT.run(&corp, "recall_app_message", &json!({"msgid": "m"})).await.unwrap();
    assert_eq!(gettoken_calls(&server).await, 2);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_call_retried_in_the_same_attempt() {
    for code in [42001, 40014] {
        let server = MockServer::start().await;
        let fresh = "accesstoken000002";
        Mock::given(method("GET"))
            .and(path(GETTOKEN_PATH))
            .respond_with(ok(json!({"access_token": TOKEN, "expires_in": 7200})).set_delay(Duration::from_millis(50)))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(GETTOKEN_PATH))
            .respond_with(ok(json!({"access_token": fresh, "expires_in": 7200})).set_delay(Duration::from_millis(50)))
            .mount(&server)
            .await;
        // WeCom revoked the first token early.
        Mock::given(method("POST"))
            .and(query_param("access_token", TOKEN))
            .respond_with(errcode(code, &format!("access_token expired, hint: [{TOKEN}]")))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(query_param("access_token", fresh))
            .respond_with(ok(json!({"msgid": "m"})))
            .mount(&server)
            .await;
        let corp = Arc::new(full_corp(&server));
        let mut jobs = Vec::new();
        for _ in 0..20 {
            let corp = corp.clone();
            jobs.push(tokio::spawn(async move {
                KIT.run(
                    &*corp,
                    "send_app_message",
                    &json!({"touser": "a", "msgtype": "text", "text": {"content": "x"}}),
                )
                .await
            }));
        }
        for job in jobs {
            assert_eq!(
                job.await.unwrap(),
                Ok(Success { result: Some(json!({"msgid": "m"})), receipts: Default::default() }),
                "{code}"
            );
        }
        // One fetch, then one refresh shared by the 20 rejected jobs.
        assert_eq!(gettoken_calls(&server).await, 2, "{code}");
    }
}

#[tokio::test]
async fn a_second_token_error_is_transient_and_not_retried_again() {
    let server = MockServer::start().await;
    mount_tokens(&server).await;
    Mock::given(method("POST")).respond_with(errcode(42001, "access_token expired")).mount(&server).await;
    let failure = KIT.run(&full_corp(&server), "recall_app_message", &json!({"msgid": "m"})).await.unwrap_err();
    assert_eq!(failure, Failure::transient("errcode 42001: access_token expired"));
    let calls = server.received_requests().await.unwrap();
    assert_eq!(calls.iter().filter(|r| r.url.path() != GETTOKEN_PATH).count(), 2);
    assert_eq!(gettoken_calls(&server).await, 2);
}

#[tokio::test]
async fn bad_secrets_are_permanent_busy_codes_transient_and_rate_limits_throttled() {
    for code in [40001, 40013, 40091] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(GETTOKEN_PATH))
            .respond_with(errcode(code, "invalid credential"))
            .mount(&server)
            .await;
        let failure = KIT.run(&full_corp(&server), "recall_app_message", &json!({"msgid": "m"})).await.unwrap_err();
        assert_eq!(failure, Failure::permanent(format!("gettoken: errcode {code}: invalid credential")));
    }
    for (code, expected) in [
        (-1, "transient"),
        (45009, "throttled"),
        (45033, "transient"),
        (6000, "transient"),
        (41063, "transient"),
        (301022, "transient"),
        (302005, "transient"),
        (60111, "permanent"),
        (81013, "permanent"),
        (48002, "permanent"),
    ] {
        let server = MockServer::start().await;
        mount_tokens(&server).await;
        Mock::given(method("POST")).respond_with(errcode(code, "msg")).mount(&server).await;
        let failure = KIT.run(&full_corp(&server), "recall_app_message", &json!({"msgid": "m"})).await.unwrap_err();
        let kind = match &failure {
            Failure::Transient { .. } => "transient",
            Failure::Throttled { retry_after: Some(d), .. } if *d == Duration::from_secs(60) => "throttled",
            Failure::Permanent { .. } => "permanent",
            _ => "unexpected",
        };
        assert_eq!(kind, expected, "{code}: {failure:?}");
        assert_eq!(failure.reason(), format!("errcode {code}: msg"));
    }
    let server = MockServer::start().await;
    mount_tokens(&server).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway"))
        .mount(&server)
        .await;
    let failure = KIT.run(&full_corp(&server), "recall_app_message", &json!({"msgid": "m"})).await.unwrap_err();
    assert!(matches!(failure, Failure::Transient { .. }), "{failure:?}");
}

#[tokio::test]
async fn a_sync_only_config_runs_contacts_actions_and_names_the_missing_secret_for_others() {
    let server = MockServer::start().await;
    mount_tokens(&server).await;
    Mock::given(method("GET"))
        .and(path("/cgi-bin/department/simplelist"))
        .respond_with(ok(json!({"department_id": []})))
        .mount(&server)
        .await;
    let text = format!(
        "[connectors.wecom.sync]\ncorp_id = \"{CORP}\"\ncontacts_secret = \"{CONTACTS_SECRET}\"\nendpoint = \"{}\"\n",
        server.uri()
    );
    let corp = KIT.build(&text, "sync", |config| Wecom::new(config, http::client()));
    let listed = KIT.run(&corp, "list_department_ids", &json!({})).await.unwrap();
    assert_eq!(listed.result, Some(json!({"department_id": []})));
    let failure = KIT
        .run(&corp, "upload_image", &json!({"filename": "a.png", "content_base64": "iVBORw0KGgo="}))
        .await
        .unwrap_err();
    assert!(matches!(&failure, Failure::Permanent { reason, .. } if reason.contains("app_secret")), "{failure:?}");
    // Neither secret: refused at start, naming the config.
    let config =
        crate::config::Config::parse(&format!("[connectors.wecom.none]\ncorp_id = \"{CORP}\"\n"), &|_| None).unwrap();
    let error = Wecom::new(config.get("wecom", "none").unwrap(), http::client()).unwrap_err();
    assert!(error.to_string().starts_with("connectors.wecom.none: needs `app_secret`"), "{error}");
}

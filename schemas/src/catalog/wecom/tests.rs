use serde_json::json;

use super::*;
use crate::catalog::find_kind;

#[test]
fn all_52_actions_with_one_bucket_per_api() {
    let kind = find_kind("wecom").unwrap();
    assert_eq!(kind.actions.len(), 52);
    for action in kind.actions {
        let Endpoint::Http { path, .. } = action.endpoint else { panic!("{}", action.name) };
        assert!(path.starts_with("/cgi-bin/"), "{}", action.name);
        assert_eq!(action.bucket, path, "{}", action.name);
    }
}

#[test]
fn areas_pick_the_secret() {
    assert_eq!(wecom_area("/cgi-bin/user/create").credential, WecomCredential::Contacts);
    assert_eq!(wecom_area("/cgi-bin/department/list").credential, WecomCredential::Contacts);
    assert_eq!(wecom_area("/cgi-bin/externalcontact/get").credential, WecomCredential::ExternalContact);
    assert_eq!(wecom_area("/cgi-bin/oa/calendar/add").credential, WecomCredential::App);
    assert!(wecom_area("/cgi-bin/message/send").default_agentid);
    assert!(!wecom_area("/cgi-bin/message/recall").default_agentid);
}

#[test]
fn schemas_check_types_and_limits() {
    let send = crate::catalog::find_action("wecom", "send_app_message").unwrap().params_schema();
    assert_eq!(send["required"], json!(["msgtype"]));
    let customers = crate::catalog::find_action("wecom", "batch_get_customers").unwrap().params_schema();
    assert_eq!(customers["properties"]["limit"]["maximum"], 100);
}

#[test]
fn messages_are_limited_per_member_and_per_chat() {
    let send = crate::catalog::find_action("wecom", "send_app_message").unwrap().per_recipient.unwrap();
    assert_eq!(send.rate, "30/min");
    let params = json!({"touser": "zhangsan|lisi|zhangsan", "toparty": "2", "msgtype": "text", "agentid": 1000002});
    assert_eq!(
        send.keys(&params),
        ["agentid=1000002/toparty=2", "agentid=1000002/touser=lisi", "agentid=1000002/touser=zhangsan"]
    );
    assert_eq!(send.keys(&json!({"touser": "@all"})), ["touser=@all"]);
    let chat = crate::catalog::find_action("wecom", "send_appchat_message").unwrap().per_recipient.unwrap();
    assert_eq!(chat.keys(&json!({"chatid": "ops", "msgtype": "text"})), ["chatid=ops"]);
    // Every other action is limited per API only.
    let others = find_kind("wecom").unwrap().actions.iter().filter(|a| a.per_recipient.is_some()).count();
    assert_eq!(others, 2);
}

#[test]
fn temporary_media_takes_its_type_from_the_params() {
    let upload = crate::catalog::find_action("wecom", "upload_media").unwrap();
    assert_eq!(upload.effect, Effect::Write);
    assert!(matches!(
        upload.endpoint,
        Endpoint::Http { path: "/cgi-bin/media/upload", body: Body::UploadTyped { field: "media" }, .. }
    ));
    let schema = upload.params_schema();
    assert_eq!(schema["required"], json!(["type", "filename", "content_base64"]));
    let image = crate::catalog::find_action("wecom", "upload_image").unwrap().params_schema();
    assert!(image["properties"].get("type").is_none());
    // The media APIs are the app's (any app secret), not the contacts secret's.
    assert_eq!(wecom_area("/cgi-bin/media/upload").credential, WecomCredential::App);
    assert_eq!(wecom_area("/cgi-bin/department/simplelist").credential, WecomCredential::Contacts);
    let bad = json!({"type": "gif", "filename": "a.gif", "content_base64": "AA=="});
    assert!(crate::validate::validate_params("wecom", "upload_media", &bad).is_err());
}

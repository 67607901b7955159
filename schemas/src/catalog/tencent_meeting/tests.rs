use serde_json::json;

use crate::catalog::catalog_json;

#[test]
fn tencent_ses_and_meeting_list_every_action_with_its_effect() {
    let catalog = catalog_json();
    let effects = |kind: &str| -> Vec<(String, String)> {
        catalog[kind]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, a)| (name.clone(), a["effect"].as_str().unwrap().to_string()))
            .collect()
    };
    let ses = effects("tencent_ses");
    assert_eq!(ses.len(), 6);
    assert!(ses.contains(&("get_email_identity".into(), "read".into())));
    assert!(ses.contains(&("send_email".into(), "write".into())));
    let meeting = effects("tencent_meeting");
    assert_eq!(meeting.len(), 8);
    assert!(meeting.contains(&("list_user_meetings".into(), "read".into())));
    assert!(meeting.contains(&("cancel_meeting".into(), "write".into())));
    let create = &catalog["tencent_meeting"]["create_meeting"]["params_schema"];
    assert!(create["required"].as_array().unwrap().contains(&json!("start_time")));
    let send = &catalog["tencent_ses"]["send_email"]["params_schema"];
    assert_eq!(send["properties"]["destination"]["maxItems"], 50);
}

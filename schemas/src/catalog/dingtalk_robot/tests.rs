use serde_json::json;

use crate::catalog::find_kind;
use crate::validate::validate_params;

#[test]
fn an_action_card_has_one_button_or_buttons_never_both() {
    let single = json!({"title": "t", "text": "x", "single_title": "go", "single_url": "https://e.com"});
    assert!(validate_params("dingtalk_robot", "send_action_card", &single).is_ok());
    let multi = json!({"title": "t", "text": "x", "btns": [{"title": "a", "action_url": "https://e.com"}]});
    assert!(validate_params("dingtalk_robot", "send_action_card", &multi).is_ok());
    let both = json!({"title": "t", "text": "x", "single_title": "go", "single_url": "https://e.com",
                      "btns": [{"title": "a", "action_url": "https://e.com"}]});
    assert!(validate_params("dingtalk_robot", "send_action_card", &both).is_err());
    let neither = json!({"title": "t", "text": "x"});
    assert!(validate_params("dingtalk_robot", "send_action_card", &neither).is_err());
    let typo = json!({"content": "x", "at_all": true});
    assert!(validate_params("dingtalk_robot", "send_text", &typo).is_err());
}

#[test]
fn the_new_kinds_have_their_actions_and_limits() {
    let count = |kind: &str| find_kind(kind).unwrap().actions.len();
    assert_eq!([count("dingtalk_robot"), count("feishu_robot"), count("feishu"), count("juzibot")], [5, 5, 8, 4]);
    assert_eq!(find_kind("dingtalk_robot").unwrap().default_rate_limit, "20/min");
    assert_eq!(find_kind("feishu_robot").unwrap().default_rate_limit, "100/min, 5/s");
    let juzi = json!({"type": 1, "scene": 2, "user": ["zhangsan"], "remark": "x".repeat(31)});
    assert!(validate_params("juzibot", "add_contact_way", &juzi).is_err());
    assert!(validate_params("juzibot", "list_channels", &json!({"page_size": 1001})).is_err());
    assert!(validate_params("feishu", "list_department_users", &json!({"page_size": 20})).is_err());
    let user = json!({"name": "n", "mobile": "+8613800000000", "department_ids": ["0"], "employee_type": 1,
                      "user_id_type": "open_id", "client_token": "op-1"});
    assert!(validate_params("feishu", "create_user", &user).is_ok());
    assert!(validate_params("feishu", "create_user", &json!({"name": "n", "department_ids": []})).is_err());
    assert!(validate_params("feishu", "update_user", &json!({"user_id": "ou_1", "user_id_type": "email"})).is_err());
    assert!(
        validate_params(
            "feishu",
            "create_department",
            &json!({"name": "d", "parent_department_id": "0", "department_id": "-x"})
        )
        .is_err()
    );
}

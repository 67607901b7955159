//! WeCom's contacts APIs over the editable [`Directory`] (docs/providers/wecom.md#contacts):
//! departments (list, simplelist, get, create, update, delete) and members (list_id, get, create,
//! update, delete, batchdelete, simplelist, list), with WeCom's error codes:
//!
//! | errcode | when |
//! |---|---|
//! | 60003 | department id not found |
//! | 60004 | parent department not found |
//! | 60005 | deleting a department that has members |
//! | 60006 | deleting a department that has sub-departments |
//! | 60007 | deleting the root department |
//! | 60008 | department id, or name among its siblings, already exists |
//! | 60102 | userid already exists |
//! | 60111 | userid not found |
//! | 60129 | a new member with neither mobile nor email |
//! | 40058 | a bad `cursor` or `limit` |
//!
//! A member's hire date is the text attribute `hiredate` of `extattr` (a custom field an admin
//! defines; WeCom's member has no hire-date field of its own).

use serde_json::{Map, Value, json};

use crate::directory::{Department, Directory, Member};

/// The attribute of `extattr` that holds the hire date (`YYYY-MM-DD`).
pub(crate) const HIREDATE_ATTR: &str = "hiredate";

type Answer = Result<Map<String, Value>, (i64, String)>;

fn fail<T>(code: i64, message: &str) -> Result<T, (i64, String)> {
    Err((code, message.to_string()))
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A param as text: query params arrive as strings, JSON ones as numbers or strings.
fn text(params: &Map<String, Value>, name: &str) -> Option<String> {
    match params.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(id: &str) -> Value {
    id.parse::<u64>().map(Value::from).unwrap_or_else(|_| Value::String(id.to_string()))
}

fn department_json(d: &Department) -> Value {
    json!({"id": number(&d.id), "name": d.name, "name_en": "", "department_leader": [], "parentid": number(&d.parent), "order": d.order})
}

fn member_json(m: &Member) -> Value {
    let departments: Vec<Value> = m.departments.iter().map(|d| number(d)).collect();
    let mut attrs = Vec::new();
    if let Some(date) = &m.hiredate {
        attrs.push(json!({"type": 0, "name": HIREDATE_ATTR, "value": date, "text": {"value": date}}));
    }
    json!({
        "userid": m.id, "name": m.name, "department": departments, "order": vec![0; m.departments.len()],
        "position": m.position, "mobile": m.mobile, "gender": "0", "email": m.email, "biz_mail": "",
        "is_leader_in_dept": vec![0; m.departments.len()], "direct_leader": [], "avatar": "", "thumb_avatar": "",
        "telephone": "", "alias": "", "address": "", "open_userid": "", "main_department": number(m.main_department()),
        "extattr": {"attrs": attrs}, "status": if m.enabled { 1 } else { 2 }, "qr_code": "", "external_position": "",
        "external_profile": {"external_attr": []},
    })
}

/// The fields of `user/create` and `user/update` applied to `member`.
fn apply_member(directory: &Directory, member: &mut Member, params: &Map<String, Value>) -> Result<(), (i64, String)> {
    if let Some(name) = params.get("name").and_then(Value::as_str) {
        member.name = name.to_string();
    }
    for (field, slot) in
        [("email", &mut member.email), ("mobile", &mut member.mobile), ("position", &mut member.position)]
    {
        if let Some(value) = params.get(field).and_then(Value::as_str) {
            *slot = value.to_string();
        }
    }
    if let Some(list) = params.get("department").and_then(Value::as_array) {
        let ids: Vec<String> = list.iter().filter_map(|v| v.as_u64().map(|n| n.to_string())).collect();
        if ids.is_empty() || ids.iter().any(|id| !directory.departments.contains_key(id)) {
            return fail(60003, "department not found");
        }
        member.departments = ids;
    }
    if let Some(main) = params.get("main_department").and_then(Value::as_u64).map(|n| n.to_string())
        && let Some(at) = member.departments.iter().position(|d| *d == main)
    {
        let main = member.departments.remove(at);
        member.departments.insert(0, main);
    }
    if let Some(enable) = params.get("enable").and_then(Value::as_u64) {
        member.enabled = enable == 1;
    }
    if let Some(attrs) = params.get("extattr").and_then(|e| e.get("attrs")).and_then(Value::as_array) {
        for attr in attrs {
            if attr.get("name").and_then(Value::as_str) == Some(HIREDATE_ATTR) {
                let value = attr.pointer("/text/value").or_else(|| attr.get("value")).and_then(Value::as_str);
                member.hiredate = value.filter(|v| !v.is_empty()).map(str::to_string);
            }
        }
    }
    Ok(())
}

/// Handles a contacts API call; `Err` is WeCom's (errcode, errmsg).
pub(crate) fn handle(directory: &mut Directory, path: &str, params: &Map<String, Value>) -> Answer {
    let api = path.trim_start_matches("/cgi-bin/");
    match api {
        "department/list" | "department/simplelist" => {
            let root = text(params, "id").unwrap_or_else(|| "1".into());
            if !directory.departments.contains_key(&root) {
                return fail(60003, "department not found");
            }
            let ids = directory.subtree(&root);
            let departments = ids.iter().filter_map(|id| directory.departments.get(id));
            Ok(if api == "department/list" {
                object(json!({"department": departments.map(department_json).collect::<Vec<_>>()}))
            } else {
                let ids: Vec<Value> = departments
                    .map(|d| json!({"id": number(&d.id), "parentid": number(&d.parent), "order": d.order}))
                    .collect();
                object(json!({"department_id": ids}))
            })
        }
        "department/get" => {
            let id = text(params, "id").unwrap_or_default();
            match directory.departments.get(&id) {
                Some(d) => Ok(object(json!({"department": department_json(d)}))),
                None => fail(60003, "department not found"),
            }
        }
        "department/create" => {
            let name = params.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let parent = text(params, "parentid").unwrap_or_default();
            if !directory.departments.contains_key(&parent) {
                return fail(60004, "parent department not found");
            }
            let next = directory.departments.keys().filter_map(|k| k.parse::<u64>().ok()).max().unwrap_or(1) + 1;
            let id = text(params, "id").unwrap_or_else(|| next.to_string());
            let taken = directory.departments.values().any(|d| d.parent == parent && d.name == name);
            if directory.departments.contains_key(&id) || taken {
                return fail(60008, "department existed");
            }
            let order = params.get("order").and_then(Value::as_u64).unwrap_or(0);
            directory.put_department(&id, &name, &parent, order);
            Ok(object(json!({"id": number(&id)})))
        }
        "department/update" => {
            let id = text(params, "id").unwrap_or_default();
            let Some(current) = directory.departments.get(&id).cloned() else {
                return fail(60003, "department not found");
            };
            let parent = text(params, "parentid").unwrap_or(current.parent.clone());
            if parent != current.parent && !directory.departments.contains_key(&parent) {
                return fail(60004, "parent department not found");
            }
            let name = params.get("name").and_then(Value::as_str).map(str::to_string).unwrap_or(current.name.clone());
            if directory.departments.values().any(|d| d.id != id && d.parent == parent && d.name == name) {
                return fail(60008, "department existed");
            }
            let order = params.get("order").and_then(Value::as_u64).unwrap_or(current.order);
            directory.put_department(&id, &name, &parent, order);
            Ok(Map::new())
        }
        "department/delete" => {
            let id = text(params, "id").unwrap_or_default();
            if !directory.departments.contains_key(&id) {
                return fail(60003, "department not found");
            }
            if id == "1" {
                return fail(60007, "not allow to delete root department");
            }
            if directory.departments.values().any(|d| d.parent == id) {
                return fail(60006, "department contains sub-department");
            }
            if !directory.members_of(&id, false).is_empty() {
                return fail(60005, "department contains user");
            }
            directory.departments.remove(&id);
            Ok(Map::new())
        }
        "user/list_id" => {
            // One row per (member, department), as WeCom lists a member once per department.
            let rows: Vec<Value> = directory
                .members
                .values()
                .flat_map(|m| m.departments.iter().map(move |d| json!({"userid": m.id, "department": number(d)})))
                .collect();
            let start = match params.get("cursor").and_then(Value::as_str) {
                None | Some("") => 0,
                Some(cursor) => match cursor.strip_prefix("cur-").and_then(|n| n.parse::<usize>().ok()) {
                    Some(n) if n <= rows.len() => n,
                    _ => return fail(40058, "invalid cursor"),
                },
            };
            let limit = params.get("limit").and_then(Value::as_u64).unwrap_or(10_000);
            if !(1..=10_000).contains(&limit) {
                return fail(40058, "invalid limit");
            }
            let end = (start + limit as usize).min(rows.len());
            let next = if end < rows.len() { format!("cur-{end}") } else { String::new() };
            Ok(object(json!({"next_cursor": next, "dept_user": rows[start..end].to_vec()})))
        }
        "user/get" => {
            let id = text(params, "userid").unwrap_or_default();
            match directory.members.get(&id) {
                Some(member) => Ok(object(member_json(member))),
                None => fail(60111, "userid not found"),
            }
        }
        "user/create" => {
            let id = text(params, "userid").unwrap_or_default();
            if directory.members.keys().any(|k| k.eq_ignore_ascii_case(&id)) {
                return fail(60102, "userid existed");
            }
            let mut member = Member::new(&id, "", "1", "", None);
            apply_member(directory, &mut member, params)?;
            if member.email.is_empty() && member.mobile.is_empty() {
                return fail(60129, "missing mobile or email");
            }
            directory.put_member(member);
            Ok(object(json!({"created_username": ""})))
        }
        "user/update" => {
            let id = text(params, "userid").unwrap_or_default();
            let Some(mut member) = directory.members.get(&id).cloned() else {
                return fail(60111, "userid not found");
            };
            apply_member(directory, &mut member, params)?;
            directory.put_member(member);
            Ok(Map::new())
        }
        "user/delete" => {
            let id = text(params, "userid").unwrap_or_default();
            match directory.members.remove(&id) {
                Some(_) => Ok(Map::new()),
                None => fail(60111, "userid not found"),
            }
        }
        "user/batchdelete" => {
            let ids: Vec<String> = params
                .get("useridlist")
                .and_then(Value::as_array)
                .map(|l| l.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            if ids.iter().any(|id| !directory.members.contains_key(id)) {
                return fail(60111, "userid not found");
            }
            ids.iter().for_each(|id| {
                directory.members.remove(id);
            });
            Ok(Map::new())
        }
        "user/simplelist" | "user/list" => {
            let department = text(params, "department_id").unwrap_or_default();
            if !directory.departments.contains_key(&department) {
                return fail(60003, "department not found");
            }
            let recursive = text(params, "fetch_child").as_deref() == Some("1");
            let users: Vec<Value> = directory
                .members_of(&department, recursive)
                .into_iter()
                .map(|m| {
                    if api == "user/list" {
                        member_json(m)
                    } else {
                        let departments: Vec<Value> = m.departments.iter().map(|d| number(d)).collect();
                        json!({"userid": m.id, "name": m.name, "department": departments, "open_userid": ""})
                    }
                })
                .collect();
            Ok(object(json!({"userlist": users})))
        }
        _ => fail(404, "unknown api"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(directory: &mut Directory, path: &str, params: Value) -> Answer {
        handle(directory, path, params.as_object().unwrap())
    }

    #[test]
    fn departments_and_members_are_read_and_written_with_wecoms_codes() {
        let mut d = Directory::default_wecom();
        let ids = call(&mut d, "/cgi-bin/department/simplelist", json!({})).unwrap();
        assert_eq!(
            ids["department_id"],
            json!([{"id": 1, "parentid": 0, "order": 100000000}, {"id": 2, "parentid": 1, "order": 100}])
        );
        let created = call(&mut d, "/cgi-bin/department/create", json!({"name": "Ops", "parentid": 1})).unwrap();
        assert_eq!(created["id"], 3);
        assert_eq!(
            call(&mut d, "/cgi-bin/department/create", json!({"name": "Ops", "parentid": 1})).unwrap_err().0,
            60008
        );
        assert_eq!(
            call(&mut d, "/cgi-bin/department/create", json!({"name": "X", "parentid": 9})).unwrap_err().0,
            60004
        );
        assert_eq!(call(&mut d, "/cgi-bin/department/get", json!({"id": "3"})).unwrap()["department"]["name"], "Ops");
        assert_eq!(call(&mut d, "/cgi-bin/department/delete", json!({"id": "2"})).unwrap_err().0, 60005);
        assert_eq!(call(&mut d, "/cgi-bin/department/delete", json!({"id": "1"})).unwrap_err().0, 60007);

        let hired = json!({"userid": "u1", "name": "U1", "department": [3], "email": "u1@example.com",
                           "extattr": {"attrs": [{"type": 0, "name": "hiredate", "text": {"value": "2024-03-01"}}]}});
        call(&mut d, "/cgi-bin/user/create", hired).unwrap();
        assert_eq!(
            call(&mut d, "/cgi-bin/user/create", json!({"userid": "U1", "name": "again", "email": "x@y.z"}))
                .unwrap_err()
                .0,
            60102
        );
        assert_eq!(call(&mut d, "/cgi-bin/user/create", json!({"userid": "u2", "name": "none"})).unwrap_err().0, 60129);
        let got = call(&mut d, "/cgi-bin/user/get", json!({"userid": "u1"})).unwrap();
        assert_eq!(got["main_department"], 3);
        assert_eq!(got["extattr"]["attrs"][0]["text"]["value"], "2024-03-01");
        call(&mut d, "/cgi-bin/user/update", json!({"userid": "u1", "enable": 0})).unwrap();
        assert_eq!(call(&mut d, "/cgi-bin/user/get", json!({"userid": "u1"})).unwrap()["status"], 2);
        assert_eq!(call(&mut d, "/cgi-bin/department/delete", json!({"id": 3})).unwrap_err().0, 60005);
        call(&mut d, "/cgi-bin/user/delete", json!({"userid": "u1"})).unwrap();
        call(&mut d, "/cgi-bin/department/delete", json!({"id": 3})).unwrap();
        assert_eq!(call(&mut d, "/cgi-bin/user/get", json!({"userid": "u1"})).unwrap_err().0, 60111);
    }

    #[test]
    fn member_ids_come_in_pages() {
        let mut d = Directory::default_wecom();
        let first = call(&mut d, "/cgi-bin/user/list_id", json!({"limit": 3})).unwrap();
        assert_eq!(first["dept_user"].as_array().unwrap().len(), 3);
        let cursor = first["next_cursor"].as_str().unwrap().to_string();
        let rest = call(&mut d, "/cgi-bin/user/list_id", json!({"cursor": cursor, "limit": 3})).unwrap();
        assert_eq!(rest["dept_user"].as_array().unwrap().len(), 1);
        assert_eq!(rest["next_cursor"], "");
        assert_eq!(call(&mut d, "/cgi-bin/user/list_id", json!({"cursor": "bogus"})).unwrap_err().0, 40058);
    }
}

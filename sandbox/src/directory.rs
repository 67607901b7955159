//! The sandbox's editable directories (issue 21): a WeCom corp's and a Feishu tenant's departments
//! and members, with hire dates and e-mail addresses, read and written through the providers'
//! contact APIs ([`crate::wecom`], [`crate::feishu`]) and edited by tests through
//! [`crate::SandboxState`] (`wecom_directory`, `edit_wecom_directory`, ...).
//!
//! One model serves both providers; each fake renders it in its own wire shape (WeCom: numeric
//! department ids, `userid`, `extattr`; Feishu: string `department_id`s, `user_id`, `join_time`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A department.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Department {
    /// WeCom: a positive integer (1 is the root); Feishu: any string (`0` is the root).
    pub id: String,
    /// Its name, unique among its siblings.
    pub name: String,
    /// The parent's id (WeCom's root has parent `0`; Feishu's top departments have parent `0`).
    pub parent: String,
    /// Position among the siblings.
    pub order: u64,
}

/// A member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// WeCom `userid` / Feishu `user_id`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The departments the member is in; the first is the main one.
    pub departments: Vec<String>,
    /// E-mail address (may be empty).
    pub email: String,
    /// Mobile number (may be empty).
    pub mobile: String,
    /// Job title.
    pub position: String,
    /// Hire date `YYYY-MM-DD` (WeCom: the text attribute `hiredate` of `extattr`; Feishu:
    /// `join_time`, the date's Unix time in seconds).
    pub hiredate: Option<String>,
    /// False: disabled (WeCom `status` 2, Feishu `status.is_frozen`).
    pub enabled: bool,
}

impl Member {
    /// A member of `department` with an e-mail address and a hire date, enabled.
    pub fn new(id: &str, name: &str, department: &str, email: &str, hiredate: Option<&str>) -> Self {
        Member {
            id: id.to_string(),
            name: name.to_string(),
            departments: vec![department.to_string()],
            email: email.to_string(),
            mobile: String::new(),
            position: String::new(),
            hiredate: hiredate.map(str::to_string),
            enabled: true,
        }
    }

    /// The main department.
    pub fn main_department(&self) -> &str {
        self.departments.first().map(String::as_str).unwrap_or_default()
    }
}

/// Departments and members by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    /// Every department by id.
    pub departments: BTreeMap<String, Department>,
    /// Every member by id.
    pub members: BTreeMap<String, Member>,
}

impl Directory {
    /// Adds or replaces a department.
    pub fn put_department(&mut self, id: &str, name: &str, parent: &str, order: u64) {
        let department = Department { id: id.into(), name: name.into(), parent: parent.into(), order };
        self.departments.insert(id.to_string(), department);
    }

    /// Adds or replaces a member.
    pub fn put_member(&mut self, member: Member) {
        self.members.insert(member.id.clone(), member);
    }

    /// The ids of `root` and every department below it, parents before children.
    pub fn subtree(&self, root: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut queue = vec![root.to_string()];
        while let Some(id) = queue.pop() {
            if self.departments.contains_key(&id) {
                out.push(id.clone());
            }
            let mut children: Vec<&Department> = self.departments.values().filter(|d| d.parent == id).collect();
            children.sort_by_key(|d| std::cmp::Reverse(d.id.clone()));
            queue.extend(children.into_iter().map(|d| d.id.clone()));
        }
        out
    }

    /// Members directly in `department` (or in its subtree with `recursive`).
    pub fn members_of(&self, department: &str, recursive: bool) -> Vec<&Member> {
        let scope = if recursive { self.subtree(department) } else { vec![department.to_string()] };
        self.members.values().filter(|m| m.departments.iter().any(|d| scope.contains(d))).collect()
    }

    /// The default WeCom corp: the root `Sandbox` (1) and `Engineering` (2), with zhangsan (1),
    /// lisi, wangwu and zhaoliu (2).
    pub fn default_wecom() -> Directory {
        let mut directory = Directory::default();
        directory.put_department("1", "Sandbox", "0", 100_000_000);
        directory.put_department("2", "Engineering", "1", 100);
        directory.put_member(Member::new("zhangsan", "张三", "1", "zhangsan@example.com", Some("2020-01-06")));
        for (id, name) in [("lisi", "李四"), ("wangwu", "王五"), ("zhaoliu", "赵六")] {
            directory.put_member(Member::new(id, name, "2", &format!("{id}@example.com"), Some("2021-03-01")));
        }
        directory
    }
}

/// The Unix time of a `YYYY-MM-DD` date's start (UTC), or None when it is not such a date.
pub fn date_seconds(date: &str) -> Option<i64> {
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtrees_list_parents_first_and_members_follow_them() {
        let mut directory = Directory::default_wecom();
        directory.put_department("3", "Backend", "2", 1);
        directory.put_member(Member::new("u3", "U3", "3", "u3@example.com", None));
        assert_eq!(directory.subtree("1"), ["1", "2", "3"]);
        assert_eq!(directory.subtree("2"), ["2", "3"]);
        assert_eq!(directory.members_of("2", false).len(), 3);
        assert_eq!(directory.members_of("2", true).len(), 4);
        assert_eq!(date_seconds("2024-03-01"), Some(1_709_251_200));
        assert_eq!(date_seconds("2024-13-01"), None);
    }
}

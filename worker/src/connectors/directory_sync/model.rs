//! Records, snapshots and the operations between two of them; no I/O.
//!
//! A record is what a logic script sees as `context.data`, the same for every source:
//! - department: `{"type": "department", "id", "name", "parentId", "order"}`;
//! - member: `{"type": "member", "id", "name", "email", "mobile", "position", "DeptID" (the main
//!   department), "departments", "hiredate" (Unix seconds of the hire date, or null), "enabled"}`.
//!
//! A snapshot holds the records the target is known to have. Operations are ordered so that the
//! target can take them: departments created or updated parents first, then members, then
//! departments deleted children first (a directory refuses to delete a department that still has
//! members or sub-departments).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::config::OnMissing;
use super::script::Operation;

/// Departments or members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectType {
    /// A department.
    Department,
    /// A member.
    Member,
}

impl ObjectType {
    /// `department` or `member`, as records' `type` says.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::Department => "department",
            ObjectType::Member => "member",
        }
    }
}

/// What the target is known to hold, by id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Department records by id.
    pub departments: BTreeMap<String, Value>,
    /// Member records by id.
    pub members: BTreeMap<String, Value>,
    /// The ids a directory target gave the records, by `department:<id>` / `member:<id>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub target_ids: BTreeMap<String, String>,
}

impl Snapshot {
    /// The records of one type.
    pub fn of(&self, object: ObjectType) -> &BTreeMap<String, Value> {
        match object {
            ObjectType::Department => &self.departments,
            ObjectType::Member => &self.members,
        }
    }

    /// The records of one type, to change.
    pub fn of_mut(&mut self, object: ObjectType) -> &mut BTreeMap<String, Value> {
        match object {
            ObjectType::Department => &mut self.departments,
            ObjectType::Member => &mut self.members,
        }
    }

    /// Every record by id, departments first (what `getObjectByID` finds).
    pub fn objects(&self) -> HashMap<String, Value> {
        let mut objects: HashMap<String, Value> = self.members.clone().into_iter().collect();
        objects.extend(self.departments.clone());
        objects
    }
}

/// One proposed change of one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposed {
    /// A stable id: the same change proposed again (a repeated run) has the same id.
    pub id: String,
    /// Department or member.
    pub object: ObjectType,
    /// The record's id.
    pub record_id: String,
    /// What the diff proposes.
    pub operation: Operation,
    /// The record as the target has it (None for a CREATE).
    pub before: Option<Value>,
    /// The record as the source has it (None for a DELETE or DISABLE).
    pub after: Option<Value>,
}

impl Proposed {
    /// What the script sees as `context.data`: the source's record, or the last known one.
    pub fn record(&self) -> &Value {
        self.after.as_ref().or(self.before.as_ref()).expect("a proposal has a record")
    }
}

fn operation_id(
    config: &str,
    object: ObjectType,
    id: &str,
    operation: Operation,
    before: &Option<Value>,
    after: &Option<Value>,
) -> String {
    let mut hash = Sha256::new();
    for part in [config, object.as_str(), id, operation.as_str()] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.update(before.as_ref().map(Value::to_string).unwrap_or_default());
    hash.update([0]);
    hash.update(after.as_ref().map(Value::to_string).unwrap_or_default());
    hex::encode(&hash.finalize()[..16])
}

/// Depth of a department in `tree` (0 for one whose parent is not in it).
fn depth(tree: &BTreeMap<String, Value>, id: &str) -> usize {
    let mut depth = 0;
    let mut current = id.to_string();
    while let Some(parent) = tree.get(&current).and_then(|d| d["parentId"].as_str()) {
        if !tree.contains_key(parent) || depth > tree.len() {
            break;
        }
        depth += 1;
        current = parent.to_string();
    }
    depth
}

/// The operations that bring `snapshot` to `source`, in the order the target can take them.
/// `full`: compare with an empty snapshot (everything CREATE, nothing removed).
pub fn diff(config: &str, snapshot: &Snapshot, source: &Snapshot, on_missing: OnMissing, full: bool) -> Vec<Proposed> {
    let empty = Snapshot::default();
    let known = if full { &empty } else { snapshot };
    let proposal = |object, id: &str, operation, before: Option<&Value>, after: Option<&Value>| {
        let (before, after) = (before.cloned(), after.cloned());
        Proposed {
            id: operation_id(config, object, id, operation, &before, &after),
            object,
            record_id: id.to_string(),
            operation,
            before,
            after,
        }
    };
    let changes = |object: ObjectType| -> (Vec<Proposed>, Vec<Proposed>) {
        let (mut upserts, mut removals) = (Vec::new(), Vec::new());
        for (id, record) in source.of(object) {
            match known.of(object).get(id) {
                None => upserts.push(proposal(object, id, Operation::Create, None, Some(record))),
                Some(before) if before != record => {
                    upserts.push(proposal(object, id, Operation::Update, Some(before), Some(record)))
                }
                Some(_) => {}
            }
        }
        for (id, before) in known.of(object) {
            if !source.of(object).contains_key(id) {
                let operation = match (object, on_missing) {
                    (ObjectType::Member, OnMissing::Disable) => Operation::Disable,
                    _ => Operation::Delete,
                };
                removals.push(proposal(object, id, operation, Some(before), None));
            }
        }
        (upserts, removals)
    };
    let (mut department_upserts, mut department_removals) = changes(ObjectType::Department);
    let (member_upserts, member_removals) = changes(ObjectType::Member);
    department_upserts.sort_by_key(|p| (depth(&source.departments, &p.record_id), p.record_id.clone()));
    department_removals
        .sort_by_key(|p| (std::cmp::Reverse(depth(&known.departments, &p.record_id)), p.record_id.clone()));
    department_upserts.into_iter().chain(member_upserts).chain(member_removals).chain(department_removals).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn department(id: &str, name: &str, parent: &str) -> Value {
        json!({"type": "department", "id": id, "name": name, "parentId": parent, "order": 0})
    }

    fn member(id: &str, department: &str) -> Value {
        json!({"type": "member", "id": id, "name": id, "email": format!("{id}@example.com"), "DeptID": department})
    }

    fn directory(departments: &[(&str, &str, &str)], members: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            departments: departments
                .iter()
                .map(|(id, name, parent)| (id.to_string(), department(id, name, parent)))
                .collect(),
            members: members.iter().map(|(id, d)| (id.to_string(), member(id, d))).collect(),
            target_ids: BTreeMap::new(),
        }
    }

    fn summary(ops: &[Proposed]) -> Vec<String> {
        ops.iter().map(|p| format!("{} {} {}", p.operation, p.object.as_str(), p.record_id)).collect()
    }

    #[test]
    fn creates_parents_first_then_members_and_deletes_members_then_children_first() {
        let source =
            directory(&[("30", "C", "20"), ("1", "Root", "0"), ("20", "B", "1")], &[("u1", "30"), ("u2", "1")]);
        let ops = diff("hr", &Snapshot::default(), &source, OnMissing::Delete, false);
        assert_eq!(
            summary(&ops),
            [
                "CREATE department 1",
                "CREATE department 20",
                "CREATE department 30",
                "CREATE member u1",
                "CREATE member u2"
            ]
        );

        let after = directory(&[("1", "Root", "0")], &[("u2", "1")]);
        let ops = diff("hr", &source, &after, OnMissing::Delete, false);
        assert_eq!(summary(&ops), ["DELETE member u1", "DELETE department 30", "DELETE department 20"]);
        let ops = diff("hr", &source, &after, OnMissing::Disable, false);
        assert_eq!(
            summary(&ops),
            ["DISABLE member u1", "DELETE department 30", "DELETE department 20"],
            "departments have no disabled state"
        );
    }

    #[test]
    fn only_changes_are_proposed_and_ids_are_stable() {
        let before = directory(&[("1", "Root", "0"), ("2", "Eng", "1")], &[("u1", "2"), ("u2", "2")]);
        let mut after = before.clone();
        after.departments.insert("2".into(), department("2", "R&D", "1"));
        after.members.get_mut("u1").unwrap()["email"] = json!("new@example.com");
        let ops = diff("hr", &before, &after, OnMissing::Delete, false);
        assert_eq!(summary(&ops), ["UPDATE department 2", "UPDATE member u1"]);
        assert_eq!(ops, diff("hr", &before, &after, OnMissing::Delete, false), "the same diff, the same ids");
        assert_ne!(ops[0].id, diff("other", &before, &after, OnMissing::Delete, false)[0].id, "ids are per config");
        assert!(diff("hr", &after, &after, OnMissing::Delete, false).is_empty());
        let full = diff("hr", &after, &after, OnMissing::Delete, true);
        assert_eq!(full.len(), 4);
        assert!(full.iter().all(|p| p.operation == Operation::Create));
    }
}

//! The `schema` check: the file's tables, views, indexes and triggers
//! (`sqlite_master`) against those this build's schema creates afresh in
//! memory; for a file of an older schema, only the log's objects.

use super::findings::{Check, Status};
use crate::error::Result;
use crate::store::{LOG_OBJECTS, SCHEMA_VERSION, SchemaObject, Store};

/// The `schema` check: the file's tables, views, indexes and triggers against
/// those this build's schema creates (docs/SPEC.md §8, appendix A).
pub(super) struct SchemaCheck {
    /// The file's `user_version`.
    version: i32,
    /// What differs, one phrase per object, in type and name order.
    pub(super) problems: Vec<String>,
}

impl SchemaCheck {
    /// Compares `sqlite_master` with the schema made afresh. A file of an older
    /// schema has its derived tables in that schema's layout: only the log's
    /// objects (alike in every schema) are compared, and no other trigger may
    /// exist (no schema has had one).
    pub(super) fn of(live: &Store, version: i32) -> Result<SchemaCheck> {
        let older = version < SCHEMA_VERSION;
        let checked = |o: &&SchemaObject| !older || LOG_OBJECTS.contains(&o.name.as_str()) || o.kind == "trigger";
        let found = live.schema_objects()?;
        let found: Vec<&SchemaObject> = found.iter().filter(checked).collect();
        let expected = Store::expected_schema()?;
        let expected: Vec<&SchemaObject> = expected.iter().filter(checked).collect();
        let problems = schema_differences(&found, &expected, version);
        Ok(SchemaCheck { version, problems })
    }

    /// Why the derived tables were not compared, for a file of an older schema.
    pub(super) fn tables_not_compared(&self) -> Option<String> {
        (self.version < SCHEMA_VERSION).then(|| {
            format!(
                "not compared: the derived tables are in schema {}'s layout (this build's is {SCHEMA_VERSION}); the log was replayed and every other check ran. Run `chancery migrate` (it rebuilds only the derived tables) and verify again to compare them",
                self.version
            )
        })
    }

    pub(super) fn check(&self) -> Check {
        let check = |status, ok, message| Check { name: "schema", ok, status, seq: None, message };
        if !self.problems.is_empty() {
            let mut message = self.problems.iter().take(6).cloned().collect::<Vec<_>>().join("; ");
            if self.problems.len() > 6 {
                message.push_str(&format!("; and {} more", self.problems.len() - 6));
            }
            return check(Status::Failed, Some(false), message);
        }
        if self.version < SCHEMA_VERSION {
            return check(
                Status::Skipped,
                None,
                format!(
                    "schema {}, older than this build's {SCHEMA_VERSION}: the log table and its append-only triggers are as every schema defines them and there is no other trigger; the derived tables' layout is not checked until `chancery migrate`",
                    self.version
                ),
            );
        }
        check(
            Status::Passed,
            Some(true),
            format!(
                "the tables, views, indexes and triggers are exactly schema {SCHEMA_VERSION}'s; application_id and user_version are chancery's"
            ),
        )
    }
}

/// Each object that is not as `expected` defines it: missing, not part of the
/// schema, or defined otherwise. Both lists sorted by type and name.
fn schema_differences(found: &[&SchemaObject], expected: &[&SchemaObject], version: i32) -> Vec<String> {
    let key = |o: &SchemaObject| (o.kind.clone(), o.name.clone());
    let mut problems = Vec::new();
    let (mut f, mut e) = (found.iter().peekable(), expected.iter().peekable());
    loop {
        match (f.peek(), e.peek()) {
            (None, None) => break,
            (Some(x), Some(y)) if key(x) == key(y) => {
                if x != y {
                    problems.push(format!("{} {} differs from schema {version}'s definition", x.kind, x.name));
                }
                f.next();
                e.next();
            }
            (Some(x), y) if y.is_none_or(|y| key(x) < key(y)) => {
                problems.push(format!("{} {} is not part of schema {version}", x.kind, x.name));
                f.next();
            }
            (_, Some(y)) => {
                problems.push(format!("{} {} is missing", y.kind, y.name));
                e.next();
            }
            (Some(_), None) => unreachable!("handled above"),
        }
    }
    problems
}

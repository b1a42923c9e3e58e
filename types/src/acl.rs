//! Access control lists: who may do what to which log, group or the cluster.
//!
//! ACLs are controller state (replicated, they survive failover); this module is the pure
//! model and the one decision function every node uses, so the rules are the same wherever a
//! request lands and can be tested without a cluster.
//!
//! Rules (Kafka's, which operators already know):
//! - Deny by default: a principal may do only what an `allow` entry grants.
//! - A `deny` entry wins over any `allow` entry that matches the same request.
//! - Superusers (node configuration, not ACLs) may do everything.
//! - `produce`, `consume`, `create`, `delete` and `alter` on a log imply `describe` of it;
//!   `group` on a group implies `describe` of it.
//! - An entry's principal is a principal's name or `*` (every authenticated principal).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Append to a log.
    Produce,
    /// Read a log (fetch, offsets).
    Consume,
    /// See a log's or a group's existence, configuration and positions.
    Describe,
    /// Create a log.
    Create,
    /// Delete a log or a group.
    Delete,
    /// Change a log (roll, compaction) or a group's committed offsets administratively.
    Alter,
    /// Join a consumer group and commit its offsets.
    Group,
    /// Manage the cluster: ACLs and other cluster-wide settings.
    ClusterAdmin,
}

impl Operation {
    pub const ALL: [Operation; 8] = [
        Operation::Produce,
        Operation::Consume,
        Operation::Describe,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Group,
        Operation::ClusterAdmin,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Operation::Produce => "produce",
            Operation::Consume => "consume",
            Operation::Describe => "describe",
            Operation::Create => "create",
            Operation::Delete => "delete",
            Operation::Alter => "alter",
            Operation::Group => "group",
            Operation::ClusterAdmin => "cluster_admin",
        }
    }

    /// Whether an entry granting `self` also grants `wanted` (on the same resource).
    fn implies(self, wanted: Operation) -> bool {
        self == wanted
            || (wanted == Operation::Describe
                && matches!(
                    self,
                    Operation::Produce
                        | Operation::Consume
                        | Operation::Create
                        | Operation::Delete
                        | Operation::Alter
                        | Operation::Group
                ))
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Operation {
    type Err = AclError;
    fn from_str(s: &str) -> Result<Self, AclError> {
        Operation::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| AclError(format!("unknown operation {s:?}")))
    }
}

/// The kind of thing an operation is done to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Log,
    Group,
    Cluster,
}

impl ResourceKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Log => "log",
            ResourceKind::Group => "group",
            ResourceKind::Cluster => "cluster",
        }
    }
}

/// One concrete resource a request touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    Log(&'a str),
    Group(&'a str),
    Cluster,
}

impl Resource<'_> {
    pub fn kind(&self) -> ResourceKind {
        match self {
            Resource::Log(_) => ResourceKind::Log,
            Resource::Group(_) => ResourceKind::Group,
            Resource::Cluster => ResourceKind::Cluster,
        }
    }

    fn name(&self) -> &str {
        match self {
            Resource::Log(n) | Resource::Group(n) => n,
            Resource::Cluster => "",
        }
    }
}

impl fmt::Display for Resource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Cluster => f.write_str("cluster"),
            r => write!(f, "{}:{}", r.kind().as_str(), r.name()),
        }
    }
}

/// How an entry names resources.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternKind {
    /// Exactly this name.
    Literal,
    /// Every name starting with this text.
    Prefix,
}

/// The resources an entry applies to: a kind and a name pattern (ignored for the cluster).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourcePattern {
    pub kind: ResourceKind,
    pub pattern: PatternKind,
    /// The name or prefix; `*` with `Literal` means every resource of the kind.
    pub name: String,
}

impl ResourcePattern {
    pub fn matches(&self, r: &Resource<'_>) -> bool {
        if self.kind != r.kind() {
            return false;
        }
        if self.kind == ResourceKind::Cluster {
            return true;
        }
        match self.pattern {
            PatternKind::Literal => self.name == "*" || self.name == r.name(),
            PatternKind::Prefix => r.name().starts_with(&self.name),
        }
    }
}

impl fmt::Display for ResourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, &self.pattern) {
            (ResourceKind::Cluster, _) => f.write_str("cluster"),
            (k, PatternKind::Literal) => write!(f, "{}:{}", k.as_str(), self.name),
            (k, PatternKind::Prefix) => write!(f, "{}:{}*", k.as_str(), self.name),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Allow,
    Deny,
}

/// One ACL entry: `principal` is `permission`ed to do `operation` on `resource`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclEntry {
    /// A principal's name, or `*` for every authenticated principal.
    pub principal: String,
    pub permission: Permission,
    pub operation: Operation,
    pub resource: ResourcePattern,
}

/// Why an ACL entry is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ACL: {0}")]
pub struct AclError(pub String);

/// Upper bound on the ACL entries a cluster holds (they live in the controller's state and
/// are checked on every request).
pub const MAX_ACL_ENTRIES: usize = 10_000;
/// Upper bound on a principal name or a resource name in an entry.
pub const MAX_ACL_NAME_BYTES: usize = 256;

impl AclEntry {
    /// Checks that the entry can match something and that its operation fits its resource
    /// kind (a `produce` on a group would never match: refused rather than stored).
    pub fn validate(&self) -> Result<(), AclError> {
        if self.principal.is_empty() || self.principal.len() > MAX_ACL_NAME_BYTES {
            return Err(AclError(format!(
                "principal must be 1..={MAX_ACL_NAME_BYTES} bytes"
            )));
        }
        if self.principal.chars().any(char::is_control) {
            return Err(AclError("principal has control characters".into()));
        }
        let r = &self.resource;
        if r.kind != ResourceKind::Cluster
            && (r.name.is_empty() || r.name.len() > MAX_ACL_NAME_BYTES)
        {
            return Err(AclError(format!(
                "resource name must be 1..={MAX_ACL_NAME_BYTES} bytes"
            )));
        }
        let fits = match r.kind {
            ResourceKind::Log => matches!(
                self.operation,
                Operation::Produce
                    | Operation::Consume
                    | Operation::Describe
                    | Operation::Create
                    | Operation::Delete
                    | Operation::Alter
            ),
            ResourceKind::Group => matches!(
                self.operation,
                Operation::Group | Operation::Describe | Operation::Delete | Operation::Alter
            ),
            ResourceKind::Cluster => matches!(
                self.operation,
                Operation::ClusterAdmin | Operation::Describe
            ),
        };
        if !fits {
            return Err(AclError(format!(
                "operation {} does not apply to a {}",
                self.operation,
                r.kind.as_str()
            )));
        }
        Ok(())
    }

    fn applies_to(&self, principal: &str) -> bool {
        self.principal == "*" || self.principal == principal
    }
}

impl fmt::Display for AclEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.permission {
            Permission::Allow => "allow",
            Permission::Deny => "deny",
        };
        write!(
            f,
            "{} {p} {} on {}",
            self.principal, self.operation, self.resource
        )
    }
}

/// The outcome of [`decide`], with the reason for the audit log and the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        superuser: bool,
    },
    /// A deny entry matched (it is named).
    Denied(String),
    /// Nothing allowed it (deny by default).
    NotAllowed,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }
}

/// Decides whether `principal` may do `operation` on `resource`.
pub fn decide<'a>(
    acls: impl IntoIterator<Item = &'a AclEntry>,
    superusers: &[String],
    principal: &str,
    operation: Operation,
    resource: &Resource<'_>,
) -> Decision {
    if superusers.iter().any(|s| s == principal) {
        return Decision::Allowed { superuser: true };
    }
    let mut allowed = false;
    for e in acls.into_iter().filter(|e| e.applies_to(principal)) {
        if !e.operation.implies(operation) || !e.resource.matches(resource) {
            continue;
        }
        match e.permission {
            // A deny entry stops a describe only if it denies describe itself (denying
            // produce must not hide the log from a principal allowed to consume it).
            Permission::Deny if e.operation == operation => return Decision::Denied(e.to_string()),
            Permission::Deny => {}
            Permission::Allow => allowed = true,
        }
    }
    if allowed {
        Decision::Allowed { superuser: false }
    } else {
        Decision::NotAllowed
    }
}

/// Whether `principal` may do `operation` on at least one resource of `kind` (for calls that
/// name no resource, such as handing out a producer id to a principal that may produce).
pub fn allowed_somewhere<'a>(
    acls: impl IntoIterator<Item = &'a AclEntry>,
    superusers: &[String],
    principal: &str,
    operation: Operation,
    kind: ResourceKind,
) -> bool {
    superusers.iter().any(|s| s == principal)
        || acls.into_iter().any(|e| {
            e.applies_to(principal)
                && e.permission == Permission::Allow
                && e.operation.implies(operation)
                && e.resource.kind == kind
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(
        principal: &str,
        permission: Permission,
        op: Operation,
        r: ResourcePattern,
    ) -> AclEntry {
        AclEntry {
            principal: principal.into(),
            permission,
            operation: op,
            resource: r,
        }
    }

    fn log(name: &str) -> ResourcePattern {
        ResourcePattern {
            kind: ResourceKind::Log,
            pattern: PatternKind::Literal,
            name: name.into(),
        }
    }

    fn log_prefix(p: &str) -> ResourcePattern {
        ResourcePattern {
            kind: ResourceKind::Log,
            pattern: PatternKind::Prefix,
            name: p.into(),
        }
    }

    #[test]
    fn nothing_is_allowed_without_an_entry() {
        let d = decide(
            [],
            &[],
            "alice",
            Operation::Consume,
            &Resource::Log("orders"),
        );
        assert_eq!(d, Decision::NotAllowed);
    }

    #[test]
    fn superusers_may_do_everything() {
        let su = vec!["admin".to_owned()];
        for op in Operation::ALL {
            assert!(decide([], &su, "admin", op, &Resource::Cluster).is_allowed());
        }
    }

    #[test]
    fn literal_prefix_and_wildcard_names() {
        let acls = vec![
            entry(
                "alice",
                Permission::Allow,
                Operation::Produce,
                log("orders"),
            ),
            entry(
                "bob",
                Permission::Allow,
                Operation::Consume,
                log_prefix("metrics."),
            ),
            entry("*", Permission::Allow, Operation::Describe, log("*")),
        ];
        let d = |p: &str, op, name| decide(&acls, &[], p, op, &Resource::Log(name)).is_allowed();
        assert!(d("alice", Operation::Produce, "orders"));
        assert!(!d("alice", Operation::Produce, "orders2"));
        assert!(!d("alice", Operation::Consume, "orders"));
        assert!(d("bob", Operation::Consume, "metrics.cpu"));
        assert!(!d("bob", Operation::Consume, "metric"));
        assert!(d("carol", Operation::Describe, "anything"));
        assert!(!d("carol", Operation::Produce, "anything"));
    }

    #[test]
    fn deny_wins_and_grants_imply_describe() {
        let acls = vec![
            entry(
                "alice",
                Permission::Allow,
                Operation::Consume,
                log_prefix(""),
            ),
            entry("alice", Permission::Deny, Operation::Consume, log("secret")),
        ];
        let d = |op, name| decide(&acls, &[], "alice", op, &Resource::Log(name));
        assert!(d(Operation::Consume, "public").is_allowed());
        assert!(matches!(
            d(Operation::Consume, "secret"),
            Decision::Denied(_)
        ));
        // Consume implies describe; denying consume does not deny describe.
        assert!(d(Operation::Describe, "secret").is_allowed());
        assert!(d(Operation::Describe, "public").is_allowed());
    }

    #[test]
    fn operations_must_fit_their_resource() {
        let bad = entry(
            "a",
            Permission::Allow,
            Operation::Produce,
            ResourcePattern {
                kind: ResourceKind::Group,
                pattern: PatternKind::Literal,
                name: "g".into(),
            },
        );
        assert!(bad.validate().is_err());
        assert!(entry("a", Permission::Allow, Operation::Produce, log("x"))
            .validate()
            .is_ok());
        assert!(entry("", Permission::Allow, Operation::Produce, log("x"))
            .validate()
            .is_err());
    }

    fn any_op() -> impl Strategy<Value = Operation> {
        prop::sample::select(Operation::ALL.to_vec())
    }

    proptest! {
        /// Adding an allow entry never takes a permission away; adding a deny entry never
        /// grants one.
        #[test]
        fn allow_only_adds_and_deny_only_removes(
            names in prop::collection::vec("[ab]{1,2}", 1..6),
            ops in prop::collection::vec(any_op(), 1..6),
            wanted_op in any_op(),
            wanted in "[ab]{1,2}",
            permission in prop::bool::ANY,
        ) {
            let acls: Vec<AclEntry> = names.iter().zip(&ops)
                .map(|(n, o)| entry("p", Permission::Allow, *o, log_prefix(n)))
                .collect();
            let mut more = acls.clone();
            let extra_permission = if permission { Permission::Allow } else { Permission::Deny };
            more.push(entry("p", extra_permission, wanted_op, log(&wanted)));
            let after = decide(&more, &[], "p", wanted_op, &Resource::Log(&wanted)).is_allowed();
            // An allow of exactly the request grants it; a deny of exactly it refuses it,
            // whatever else the list says.
            prop_assert_eq!(after, permission);
        }
    }
}

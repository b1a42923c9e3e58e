//! ACL entries between the wire (`v1::AclEntry`) and the domain (`pyralog_types::acl`).

use pyralog_types::acl::{
    AclEntry, AclError, Operation, PatternKind, Permission, ResourceKind, ResourcePattern,
};

use crate::v1;

impl From<&AclEntry> for v1::AclEntry {
    fn from(e: &AclEntry) -> Self {
        v1::AclEntry {
            principal: e.principal.clone(),
            permission: match e.permission {
                Permission::Allow => v1::AclPermission::Allow,
                Permission::Deny => v1::AclPermission::Deny,
            } as i32,
            operation: match e.operation {
                Operation::Produce => v1::AclOperation::Produce,
                Operation::Consume => v1::AclOperation::Consume,
                Operation::Describe => v1::AclOperation::Describe,
                Operation::Create => v1::AclOperation::Create,
                Operation::Delete => v1::AclOperation::Delete,
                Operation::Alter => v1::AclOperation::Alter,
                Operation::Group => v1::AclOperation::Group,
                Operation::ClusterAdmin => v1::AclOperation::ClusterAdmin,
            } as i32,
            resource_type: match e.resource.kind {
                ResourceKind::Log => v1::AclResourceType::Log,
                ResourceKind::Group => v1::AclResourceType::Group,
                ResourceKind::Cluster => v1::AclResourceType::Cluster,
            } as i32,
            pattern_type: match e.resource.pattern {
                PatternKind::Literal => v1::AclPatternType::Literal,
                PatternKind::Prefix => v1::AclPatternType::Prefix,
            } as i32,
            resource_name: e.resource.name.clone(),
        }
    }
}

impl TryFrom<v1::AclEntry> for AclEntry {
    type Error = AclError;

    /// Also validates the entry ([`AclEntry::validate`]).
    fn try_from(e: v1::AclEntry) -> Result<Self, AclError> {
        let bad = |what: &str| AclError(format!("{what} is missing or unknown"));
        let permission = match v1::AclPermission::try_from(e.permission) {
            Ok(v1::AclPermission::Allow) => Permission::Allow,
            Ok(v1::AclPermission::Deny) => Permission::Deny,
            _ => return Err(bad("permission")),
        };
        let operation = match v1::AclOperation::try_from(e.operation) {
            Ok(v1::AclOperation::Produce) => Operation::Produce,
            Ok(v1::AclOperation::Consume) => Operation::Consume,
            Ok(v1::AclOperation::Describe) => Operation::Describe,
            Ok(v1::AclOperation::Create) => Operation::Create,
            Ok(v1::AclOperation::Delete) => Operation::Delete,
            Ok(v1::AclOperation::Alter) => Operation::Alter,
            Ok(v1::AclOperation::Group) => Operation::Group,
            Ok(v1::AclOperation::ClusterAdmin) => Operation::ClusterAdmin,
            _ => return Err(bad("operation")),
        };
        let kind = match v1::AclResourceType::try_from(e.resource_type) {
            Ok(v1::AclResourceType::Log) => ResourceKind::Log,
            Ok(v1::AclResourceType::Group) => ResourceKind::Group,
            Ok(v1::AclResourceType::Cluster) => ResourceKind::Cluster,
            _ => return Err(bad("resource_type")),
        };
        let pattern = match v1::AclPatternType::try_from(e.pattern_type) {
            Ok(v1::AclPatternType::Literal) => PatternKind::Literal,
            Ok(v1::AclPatternType::Prefix) => PatternKind::Prefix,
            Err(_) => return Err(bad("pattern_type")),
        };
        let name = if kind == ResourceKind::Cluster {
            String::new()
        } else {
            e.resource_name
        };
        let entry = AclEntry {
            principal: e.principal,
            permission,
            operation,
            resource: ResourcePattern {
                kind,
                pattern,
                name,
            },
        };
        entry.validate()?;
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any wire entry converts or is refused; a converted one is valid and round-trips.
        #[test]
        fn arbitrary_wire_entries_never_panic(
            principal in ".{0,20}", permission in any::<i32>(), operation in any::<i32>(),
            resource_type in any::<i32>(), pattern_type in any::<i32>(), name in ".{0,20}",
        ) {
            let wire = v1::AclEntry {
                principal, permission, operation, resource_type, pattern_type,
                resource_name: name,
            };
            if let Ok(e) = AclEntry::try_from(wire) {
                prop_assert!(e.validate().is_ok());
                prop_assert_eq!(AclEntry::try_from(v1::AclEntry::from(&e)).ok(), Some(e));
            }
        }
    }

    #[test]
    fn entries_round_trip_and_unknown_enums_are_refused() {
        let e = AclEntry {
            principal: "alice".into(),
            permission: Permission::Deny,
            operation: Operation::Consume,
            resource: ResourcePattern {
                kind: ResourceKind::Log,
                pattern: PatternKind::Prefix,
                name: "orders.".into(),
            },
        };
        let wire = v1::AclEntry::from(&e);
        assert_eq!(AclEntry::try_from(wire.clone()).expect("valid"), e);
        let mut bad = wire.clone();
        bad.operation = 99;
        assert!(AclEntry::try_from(bad).is_err());
        let mut bad = wire;
        bad.permission = 0;
        assert!(AclEntry::try_from(bad).is_err());
    }
}

//! Who am I, and ACL management (`Security` service).

use pyralog_proto::v1::{self, security_client::SecurityClient};
use pyralog_types::acl::AclEntry;

use crate::error::ClientError;
use crate::Client;

/// The principal the server authenticated this client as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhoAmI {
    pub principal: String,
    /// `certificate`, `token`, `jwt`, or `anonymous` (authentication off).
    pub method: String,
    pub superuser: bool,
}

impl Client {
    pub async fn who_am_i(&self) -> Result<WhoAmI, ClientError> {
        let r = SecurityClient::new(self.seed_channel())
            .who_am_i(v1::WhoAmIRequest {})
            .await?
            .into_inner();
        Ok(WhoAmI {
            principal: r.principal,
            method: r.method,
            superuser: r.superuser,
        })
    }

    /// Adds ACL entries (needs `cluster_admin`).
    pub async fn create_acls(&self, entries: &[AclEntry]) -> Result<(), ClientError> {
        SecurityClient::new(self.seed_channel())
            .create_acls(v1::CreateAclsRequest {
                entries: entries.iter().map(v1::AclEntry::from).collect(),
            })
            .await?;
        Ok(())
    }

    /// Removes ACL entries (needs `cluster_admin`).
    pub async fn delete_acls(&self, entries: &[AclEntry]) -> Result<(), ClientError> {
        SecurityClient::new(self.seed_channel())
            .delete_acls(v1::DeleteAclsRequest {
                entries: entries.iter().map(v1::AclEntry::from).collect(),
            })
            .await?;
        Ok(())
    }

    /// The ACL entries, all or those of one principal (and `*`).
    pub async fn list_acls(&self, principal: Option<&str>) -> Result<Vec<AclEntry>, ClientError> {
        let r = SecurityClient::new(self.seed_channel())
            .list_acls(v1::ListAclsRequest {
                principal: principal.unwrap_or_default().to_owned(),
            })
            .await?
            .into_inner();
        r.entries
            .into_iter()
            .map(|e| AclEntry::try_from(e).map_err(|e| ClientError::Decode(e.to_string())))
            .collect()
    }
}

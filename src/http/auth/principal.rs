//! Who the caller is once a token verified: its [`Principal`] (subject, [`Role`]s, stores) and
//! the store-reach rule every authorization decision builds on ([`Principal::can_access_store`]).
//! Which operations a role may perform is `security.rs`'s business.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

pub use crate::store::members::{MemberRole, Membership};

/// What a token may grant. Serialized and parsed as snake_case (`staff`, `admin`, ...).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sees and commands only its own orders.
    Customer,
    /// Runs shops: opens stores (becoming each one's owner) and acts on the stores it is a
    /// member of.
    Merchant,
    /// Another service acting on behalf of the platform; reaches every store, or only the
    /// stores in `store_ids` when its token lists some.
    Service,
    /// Store staff; acts only on the stores listed in `store_ids`.
    Staff,
    /// Reads reports.
    Analyst,
    /// Runs operations; reaches every store.
    Admin,
}

impl Role {
    /// Every role, in declaration order.
    pub const ALL: [Role; 6] = [
        Role::Customer,
        Role::Merchant,
        Role::Service,
        Role::Staff,
        Role::Analyst,
        Role::Admin,
    ];

    /// The snake_case name used in tokens and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Merchant => "merchant",
            Role::Service => "service",
            Role::Staff => "staff",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}`; expected one of customer, merchant, service, staff, analyst, admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// The authenticated caller, as proven by a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`: a customer id for customers, a service or user name otherwise.
    pub subject: String,
    /// Granted roles; never empty.
    pub roles: BTreeSet<Role>,
    /// Stores a staff member, or a store-scoped service, may act on; meaningless for other
    /// roles. A service token without any reaches every store.
    pub store_ids: Vec<Uuid>,
    /// When the token stops being valid (its `exp`, seconds since the Unix epoch): what
    /// outlives the request, a live feed, ends then.
    pub expires_at: u64,
    /// The stores the service knows this caller as a member of (`store_members`), read for
    /// staff and merchant tokens only ([`Principal::reads_memberships`]); empty otherwise.
    pub memberships: Vec<Membership>,
}

impl Principal {
    /// Whether the caller holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the caller holds [`Role::Admin`].
    pub fn is_admin(&self) -> bool {
        self.has(Role::Admin)
    }

    /// Whether the caller reaches every store: admins, and services whose token is not
    /// scoped to stores (it lists no `store_ids`).
    pub fn reaches_every_store(&self) -> bool {
        self.is_admin() || (self.has(Role::Service) && self.store_ids.is_empty())
    }

    /// Whether the caller may act on `store` (its orders): admins and unscoped services reach
    /// every store, staff and store-scoped services the stores in their token, staff and
    /// merchants the stores they are members of (owner or staff), everyone else none.
    pub fn can_access_store(&self, store: Uuid) -> bool {
        self.reaches_every_store()
            || ((self.has(Role::Staff) || self.has(Role::Service))
                && self.store_ids.contains(&store))
            || self.member_role(store).is_some()
    }

    /// Whether the caller manages `store` (the store itself, its catalog): admins and unscoped
    /// services every store; the stores of a staff or service token's `store_ids` (as before
    /// memberships existed); its owners. Staff members act on orders only.
    pub fn manages_store(&self, store: Uuid) -> bool {
        self.reaches_every_store()
            || ((self.has(Role::Staff) || self.has(Role::Service))
                && self.store_ids.contains(&store))
            || self.owns(store)
    }

    /// Whether the caller is an owner member of `store`.
    pub fn owns(&self, store: Uuid) -> bool {
        self.member_role(store) == Some(MemberRole::Owner)
    }

    /// The caller's member role in `store`, if it is a member.
    pub fn member_role(&self, store: Uuid) -> Option<MemberRole> {
        self.memberships
            .iter()
            .find(|m| m.store_id == store)
            .map(|m| m.role)
    }

    /// Whether the service looks up this caller's memberships: staff and merchant tokens, the
    /// roles memberships give something to.
    pub fn reads_memberships(&self) -> bool {
        self.has(Role::Staff) || self.has(Role::Merchant)
    }

    /// The stores the caller acts on by name (token `store_ids` of staff and services, then
    /// memberships): what a list of "my stores' orders" covers.
    pub fn scoped_stores(&self) -> Vec<Uuid> {
        let mut stores = if self.has(Role::Staff) || self.has(Role::Service) {
            self.store_ids.clone()
        } else {
            Vec::new()
        };
        for m in &self.memberships {
            if !stores.contains(&m.store_id) {
                stores.push(m.store_id);
            }
        }
        stores
    }

    /// Stable key under which this caller's idempotent ids are derived (UUIDv5 names): the
    /// subject, so the same caller retrying gets the same ids whatever roles its token carries.
    pub fn id_namespace_key(&self) -> String {
        self.subject.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(roles: &[Role], store_ids: &[Uuid]) -> Principal {
        Principal {
            subject: "someone".to_owned(),
            roles: roles.iter().copied().collect(),
            store_ids: store_ids.to_vec(),
            expires_at: u64::MAX,
            memberships: Vec::new(),
        }
    }

    #[test]
    fn admins_and_services_reach_every_store() {
        let store = Uuid::new_v4();

        assert!(principal(&[Role::Admin], &[]).can_access_store(store));
        assert!(principal(&[Role::Service], &[]).can_access_store(store));
    }

    #[test]
    fn a_service_scoped_to_stores_reaches_only_those() {
        let mine = Uuid::new_v4();
        let scoped = principal(&[Role::Service], &[mine]);

        assert!(scoped.can_access_store(mine));
        assert!(!scoped.can_access_store(Uuid::new_v4()));
        assert!(!scoped.reaches_every_store());
        assert!(principal(&[Role::Service], &[]).reaches_every_store());
    }

    #[test]
    fn staff_reach_only_their_own_stores() {
        let mine = Uuid::new_v4();
        let other = Uuid::new_v4();
        let staff = principal(&[Role::Staff], &[mine]);

        assert!(staff.can_access_store(mine));
        assert!(!staff.can_access_store(other));
        assert!(!principal(&[Role::Staff], &[]).can_access_store(mine));
    }

    #[test]
    fn customers_and_analysts_reach_no_store_even_when_listed() {
        let store = Uuid::new_v4();

        assert!(!principal(&[Role::Customer], &[store]).can_access_store(store));
        assert!(!principal(&[Role::Analyst], &[store]).can_access_store(store));
    }

    #[test]
    fn members_act_on_their_stores_and_only_owners_manage_them() {
        let (owned, staffed, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut merchant = principal(&[Role::Merchant], &[]);
        merchant.memberships = vec![
            Membership {
                store_id: owned,
                role: MemberRole::Owner,
            },
            Membership {
                store_id: staffed,
                role: MemberRole::Staff,
            },
        ];

        assert!(merchant.can_access_store(owned) && merchant.manages_store(owned));
        assert!(merchant.can_access_store(staffed) && !merchant.manages_store(staffed));
        assert!(!merchant.can_access_store(other) && !merchant.manages_store(other));
        assert_eq!(merchant.scoped_stores(), vec![owned, staffed]);
        // counter-test: without the memberships the same merchant reaches nothing
        merchant.memberships.clear();
        assert!(!merchant.can_access_store(owned));
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{role}\""));
        }
        assert_eq!(
            "Staff".parse::<Role>(),
            Err(UnknownRole("Staff".to_owned()))
        );
    }
}

//! From the claims of a token whose signature, `exp`, `nbf`, `iss` and `aud` verified to a
//! [`Principal`]: who it is (`sub`), how long the token may live, which of our roles it
//! grants and which stores it reaches.
//!
//! Where the roles and store ids sit is configurable ([`ClaimPath`]), so an identity
//! provider's tokens work as it issues them: `roles` (ours, Auth0 with an Action),
//! `realm_access.roles` or `resource_access.<client>.roles` (Keycloak),
//! `urn:zitadel:iam:org:project:roles` (Zitadel, an object keyed by role name). Guarantees:
//! * A token lives at most `max_lifetime`: `exp - iat` when it has an `iat`, and `exp - now`
//!   in any case (so a token with a made-up `iat` cannot live longer either).
//! * Tokens this service mints (HS256) must name known roles only; a provider's token
//!   ([`UnknownRoles::Ignore`]) may carry any number of other roles (a Keycloak token holds
//!   `offline_access` and more), and only ours count. Either way a token granting none of our
//!   roles is refused (401 `invalid-roles`), as is one without the claim at the configured path.
//! * `store_ids` must all be UUIDs; one that is not refuses the token rather than shrinking
//!   what it reaches without a word.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::error::AuthError;
use super::principal::{Principal, Role};
use super::token::LEEWAY_SECS;

/// Where a claim sits in the token payload: a top-level name (`roles`, or one with dots such as
/// Auth0's namespaced `https://shop.example/roles`), else a dotted path into nested objects
/// (`realm_access.roles`). The top-level name wins when both exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath(String);

impl ClaimPath {
    /// A path; `None` when blank.
    pub fn new(path: &str) -> Option<Self> {
        let path = path.trim();
        (!path.is_empty()).then(|| Self(path.to_owned()))
    }

    /// The value at this path, if any.
    pub fn find<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        claims.get(&self.0).or_else(|| {
            let mut parts = self.0.split('.');
            let first = claims.get(parts.next()?)?;
            parts.try_fold(first, |value, part| value.get(part))
        })
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a role name that is not one of ours does to a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownRoles {
    /// Refuses it: the service's own (HS256) tokens, where an unknown name is a typo.
    Refuse,
    /// Ignores the name: a provider's tokens carry roles of other applications.
    Ignore,
}

/// How verified claims become a principal.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    /// Where the role names are.
    pub roles: ClaimPath,
    /// Where the store ids are.
    pub store_ids: ClaimPath,
    /// Longest accepted token lifetime, in seconds.
    pub max_lifetime_secs: u64,
    /// What unknown role names do.
    pub unknown_roles: UnknownRoles,
}

impl ClaimRules {
    /// The rules of the service's own tokens: `roles` and `store_ids` at the top level, at most
    /// a day, unknown roles refused.
    pub fn own_tokens() -> Self {
        Self {
            roles: ClaimPath("roles".to_owned()),
            store_ids: ClaimPath("store_ids".to_owned()),
            max_lifetime_secs: 24 * 3600,
            unknown_roles: UnknownRoles::Refuse,
        }
    }

    /// The principal these verified `claims` speak for, at time `now` (seconds since the epoch).
    pub fn principal(&self, claims: &Map<String, Value>, now: u64) -> Result<Principal, AuthError> {
        let subject = subject(claims)?;
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| AuthError::MissingClaim("exp".to_owned()))?;
        let issued_at = claims.get("iat").and_then(Value::as_u64);
        let too_long = expires_at > now.saturating_add(self.max_lifetime_secs + LEEWAY_SECS)
            || issued_at.is_some_and(|iat| expires_at.saturating_sub(iat) > self.max_lifetime_secs);
        if too_long {
            return Err(AuthError::LifetimeTooLong {
                max_secs: self.max_lifetime_secs,
            });
        }
        Ok(Principal {
            subject,
            roles: self.roles(claims)?,
            store_ids: self.store_ids(claims)?,
            expires_at,
            // the service's own knowledge, added after verification (`security.rs`)
            memberships: Vec::new(),
        })
    }

    fn roles(&self, claims: &Map<String, Value>) -> Result<BTreeSet<Role>, AuthError> {
        let value = self.roles.find(claims).ok_or_else(|| {
            AuthError::InvalidRoles(format!("the token has no roles claim at `{}`", self.roles))
        })?;
        let names: Vec<&str> = match value {
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            // Zitadel: {"staff": {"<org id>": "<org domain>"}, ...}
            Value::Object(by_name) => by_name.keys().map(String::as_str).collect(),
            Value::String(list) => list.split_whitespace().collect(),
            _ => Vec::new(),
        };
        let roles = match self.unknown_roles {
            UnknownRoles::Refuse => names
                .iter()
                .map(|name| name.parse::<Role>())
                .collect::<Result<BTreeSet<_>, _>>()
                .map_err(|err| AuthError::InvalidRoles(err.to_string()))?,
            UnknownRoles::Ignore => names.iter().filter_map(|name| name.parse().ok()).collect(),
        };
        if roles.is_empty() {
            let ours = Role::ALL.map(Role::as_str).join(", ");
            return Err(AuthError::InvalidRoles(format!(
                "the token grants none of this service's roles ({ours}) at `{}`",
                self.roles
            )));
        }
        Ok(roles)
    }

    fn store_ids(&self, claims: &Map<String, Value>) -> Result<Vec<Uuid>, AuthError> {
        let invalid = || {
            AuthError::InvalidStoreIds(format!(
                "`{}` must be a list of store UUIDs",
                self.store_ids
            ))
        };
        let parse = |v: &Value| {
            v.as_str()
                .and_then(|s| s.parse::<Uuid>().ok())
                .ok_or_else(invalid)
        };
        match self.store_ids.find(claims) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(parse).collect(),
            // a provider's single-valued attribute arrives as a plain string
            Some(one @ Value::String(_)) => Ok(vec![parse(one)?]),
            Some(_) => Err(invalid()),
        }
    }
}

/// The token's `sub`, which doubles as the customer id of a customer's orders: it must be one
/// exactly (no surrounding blanks, printable, at most 128 characters), or ownership checks
/// would compare two different strings.
fn subject(claims: &Map<String, Value>) -> Result<String, AuthError> {
    let sub = match claims.get("sub") {
        None => return Err(AuthError::MissingClaim("sub".to_owned())),
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(AuthError::MissingClaim("sub".to_owned()))
        }
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(AuthError::InvalidSubject),
    };
    let parsed = order_domain::CustomerId::parse(sub.clone()).map(String::from);
    if parsed.as_deref() == Ok(sub.as_str()) {
        Ok(sub)
    } else {
        Err(AuthError::InvalidSubject)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn claims(extra: &Value) -> Map<String, Value> {
        let mut base = json!({"sub": "alice", "exp": NOW + 300, "iat": NOW});
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        base.as_object().unwrap().clone()
    }

    fn provider(roles: &str) -> ClaimRules {
        ClaimRules {
            roles: ClaimPath::new(roles).unwrap(),
            unknown_roles: UnknownRoles::Ignore,
            ..ClaimRules::own_tokens()
        }
    }

    #[test]
    fn keycloak_realm_roles_are_found_by_a_dotted_path_and_foreign_roles_ignored() {
        let c = claims(
            &json!({"realm_access": {"roles": ["offline_access", "staff", "uma_authorization"]}}),
        );

        let p = provider("realm_access.roles").principal(&c, NOW).unwrap();

        assert_eq!(p.roles, BTreeSet::from([Role::Staff]));
    }

    #[test]
    fn an_auth0_namespaced_claim_with_dots_is_read_as_one_name() {
        let c = claims(&json!({"https://shop.example/roles": ["customer"]}));

        let p = provider("https://shop.example/roles")
            .principal(&c, NOW)
            .unwrap();

        assert_eq!(p.roles, BTreeSet::from([Role::Customer]));
    }

    #[test]
    fn zitadel_roles_are_the_keys_of_an_object() {
        let c =
            claims(&json!({"urn:zitadel:iam:org:project:roles": {"admin": {"1": "shop.example"}}}));

        let p = provider("urn:zitadel:iam:org:project:roles")
            .principal(&c, NOW)
            .unwrap();

        assert_eq!(p.roles, BTreeSet::from([Role::Admin]));
    }

    #[test]
    fn roles_at_another_path_than_the_configured_one_are_refused() {
        let c = claims(&json!({"roles": ["admin"]}));

        let err = provider("realm_access.roles")
            .principal(&c, NOW)
            .unwrap_err();

        assert!(
            matches!(&err, AuthError::InvalidRoles(why) if why.contains("realm_access.roles")),
            "{err}"
        );
    }

    #[test]
    fn a_provider_token_with_none_of_our_roles_is_refused_and_ours_strictly_refuse_unknown_names() {
        let c = claims(&json!({"roles": ["offline_access"]}));

        assert!(matches!(
            provider("roles").principal(&c, NOW),
            Err(AuthError::InvalidRoles(_))
        ));
        assert!(matches!(
            ClaimRules::own_tokens().principal(&claims(&json!({"roles": ["staff", "offline_access"]})), NOW),
            Err(AuthError::InvalidRoles(why)) if why.contains("offline_access")
        ));
    }

    #[test]
    fn a_token_living_longer_than_the_maximum_is_refused_however_it_states_its_iat() {
        let rules = ClaimRules {
            max_lifetime_secs: 600,
            ..ClaimRules::own_tokens()
        };
        let granted = json!(["customer"]);
        let ok = claims(&json!({"roles": granted, "exp": NOW + 600}));
        let issued_long = claims(&json!({"roles": granted, "iat": NOW - 3000, "exp": NOW + 60}));
        let far_exp = claims(&json!({"roles": granted, "iat": NOW + 9000, "exp": NOW + 9500}));
        let mut no_iat = claims(&json!({"roles": granted, "exp": NOW + 700}));
        no_iat.remove("iat");

        assert!(rules.principal(&ok, NOW).is_ok());
        for long in [issued_long, far_exp, no_iat] {
            assert_eq!(
                rules.principal(&long, NOW),
                Err(AuthError::LifetimeTooLong { max_secs: 600 })
            );
        }
    }

    #[test]
    fn store_ids_are_a_list_or_a_single_string_of_uuids() {
        let store = Uuid::new_v4();
        let rules = ClaimRules::own_tokens();
        let granted = json!(["staff"]);

        let list = rules.principal(
            &claims(&json!({"roles": granted, "store_ids": [store.to_string()]})),
            NOW,
        );
        let one = rules.principal(
            &claims(&json!({"roles": granted, "store_ids": store.to_string()})),
            NOW,
        );
        let junk = rules.principal(
            &claims(&json!({"roles": granted, "store_ids": ["shop-1"]})),
            NOW,
        );

        assert_eq!(list.unwrap().store_ids, vec![store]);
        assert_eq!(one.unwrap().store_ids, vec![store]);
        assert!(matches!(junk, Err(AuthError::InvalidStoreIds(_))));
    }
}

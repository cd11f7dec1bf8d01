//! A store's members and who changed what in it (DESIGN §9 "Shops", §10):
//! `GET /v1/stores/{id}/members`, `PUT|DELETE /v1/stores/{id}/members/{sub}`,
//! `GET /v1/stores/{id}/changes`.
//!
//! Owners (and admins, and services not scoped to stores) manage members and read changes;
//! a store the caller may not see answers 404, one it sees but does not own 403. The last
//! owner stays (422 `last-owner`). A member removed loses access with its next request, and
//! its open live feeds end (`live.rs`).

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Serialize;
use uuid::Uuid;

use super::catalog::{page_limit, store_not_found, visible_store};
use super::cursor::page;
use super::cursor::{
    decode_change_cursor, decode_member_cursor, encode_change_cursor, encode_member_cursor,
};
use super::problem::ApiError;
use super::security::{authorize_store_owner, Allowed, StoreHands};
use super::spec::ApiTags;
use crate::state::AppState;
use crate::store::changes::{self, ChangeRow};
use crate::store::members::{MemberChange, MemberRole, MemberRow};

/// What a member may do in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum MemberRoleName {
    /// Manages the store, its catalog and its members, reads its changes, acts on its orders.
    Owner,
    /// Acts on the store's orders (as a `store_ids` claim allows) with a `staff` token.
    Staff,
}

impl From<MemberRoleName> for MemberRole {
    fn from(r: MemberRoleName) -> Self {
        match r {
            MemberRoleName::Owner => MemberRole::Owner,
            MemberRoleName::Staff => MemberRole::Staff,
        }
    }
}

/// Makes a subject a member of the store, or changes its role.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields, example)]
pub struct MemberBody {
    /// What the member may do in the store.
    pub role: MemberRoleName,
}

/// A member of a store.
#[derive(Debug, Clone, Object, PartialEq)]
#[oai(example)]
pub struct MemberView {
    /// The store the subject is a member of.
    pub store_id: Uuid,
    /// The member's token `sub`.
    pub sub: String,
    /// `owner` or `staff`.
    pub role: String,
    /// When the subject became a member (RFC 3339, UTC).
    pub added_at: chrono::DateTime<chrono::Utc>,
    /// When its role last changed (RFC 3339, UTC).
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<MemberRow> for MemberView {
    fn from(r: MemberRow) -> Self {
        Self {
            store_id: r.store_id,
            sub: r.subject,
            role: r.role,
            added_at: r.added_at,
            updated_at: r.updated_at,
        }
    }
}

/// A page of members.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct MemberPage {
    /// The members of this page, ordered by `sub`.
    pub items: Vec<MemberView>,
    /// The cursor of the next page, to pass as `cursor`; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next: Option<String>,
}

/// One change of a store, its products or its members.
#[derive(Debug, Clone, Object, PartialEq)]
#[oai(example)]
pub struct ChangeView {
    /// Increasing in the order the changes were made.
    pub id: i64,
    /// When the change was made (RFC 3339, UTC).
    pub at: chrono::DateTime<chrono::Utc>,
    /// The `sub` of who made the change.
    pub actor: String,
    /// `store`, `product` or `member`.
    pub entity: String,
    /// Which one: the store's id, the product's SKU, the member's `sub`.
    pub key: String,
    /// `created`, `updated`, `retired`, `reinstated` (a retired product brought back), `added`
    /// or `removed`.
    pub action: String,
    /// The entity before the change; absent when it was created or added.
    #[oai(skip_serializing_if_is_none)]
    pub before: Option<serde_json::Value>,
    /// The entity after the change; absent when it was removed.
    #[oai(skip_serializing_if_is_none)]
    pub after: Option<serde_json::Value>,
}

impl From<ChangeRow> for ChangeView {
    fn from(r: ChangeRow) -> Self {
        Self {
            id: r.id,
            at: r.at,
            actor: r.actor,
            entity: r.entity,
            key: r.key,
            action: r.action,
            before: r.before,
            after: r.after,
        }
    }
}

/// A page of changes, oldest first.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct ChangePage {
    /// The changes of this page, oldest first.
    pub items: Vec<ChangeView>,
    /// The cursor of the next page, to pass as `cursor`; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next: Option<String>,
}

#[derive(ApiResponse)]
pub enum MembersResponse {
    #[oai(status = 200)]
    Ok(Json<MemberPage>),
}

#[derive(ApiResponse)]
pub enum MemberResponse {
    /// The member as it now stands.
    #[oai(status = 200)]
    Ok(Json<MemberView>),
}

#[derive(ApiResponse)]
pub enum MemberRemoved {
    /// The member was removed; its access ends at once.
    #[oai(status = 204)]
    Removed,
}

#[derive(ApiResponse)]
pub enum ChangesResponse {
    #[oai(status = 200)]
    Ok(Json<ChangePage>),
}

/// The answer to a membership change that did not happen.
fn refused(store: Uuid, sub: &str, change: &MemberChange) -> ApiError {
    match change {
        MemberChange::NoSuchStore => store_not_found(store),
        MemberChange::NoSuchMember => ApiError::NotFound {
            slug: "member-not-found",
            detail: format!("{sub} is not a member of store {store}"),
        },
        MemberChange::LastOwner => ApiError::Invalid {
            slug: "last-owner",
            detail: format!(
                "{sub} is the last owner of store {store}: make another member owner first"
            ),
            errors: vec![],
        },
        MemberChange::Done(_) | MemberChange::Removed => {
            ApiError::Internal(anyhow::anyhow!("a membership change reported as refused"))
        }
    }
}

/// The operations of this module.
#[derive(Debug)]
pub struct MembersApi;

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Catalog")]
impl MembersApi {
    /// List a store's members
    ///
    /// For its owners and admins; ordered by `sub`.
    #[oai(
        path = "/stores/:id/members",
        method = "get",
        operation_id = "listMembers"
    )]
    async fn list_members(
        &self,
        state: Data<&AppState>,
        auth: Allowed<StoreHands>,
        /// The store's id.
        id: Path<Uuid>,
        /// The `next` of the previous page; absent: the first page.
        #[oai(validator(max_length = 344))]
        cursor: Query<Option<String>>,
        /// Members per page, ordered by `sub` (1-200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i64>>,
    ) -> Result<MembersResponse, ApiError> {
        // a malformed parameter is refused before anything else, as poem refuses the others
        let after = cursor.0.as_deref().map(decode_member_cursor).transpose()?;
        visible_store(&state, &auth.0, id.0).await?;
        authorize_store_owner(&auth.0, id.0)?;
        let limit = page_limit(limit.0)?;
        let rows = state
            .catalog
            .members()
            .list(id.0, after.as_deref(), limit + 1)
            .await
            .map_err(ApiError::infra)?;
        let (rows, next) = page(rows, limit, |r| encode_member_cursor(&r.subject));
        Ok(MembersResponse::Ok(Json(MemberPage {
            items: rows.into_iter().map(Into::into).collect(),
            next,
        })))
    }

    /// Add a member, or change its role
    ///
    /// `sub` is the member's token subject. A `staff` member acts on the store's orders with a
    /// `staff` token, as a `store_ids` claim allows; an `owner` also manages the store, its
    /// catalog and its members. The last owner cannot be made staff (422 `last-owner`).
    #[oai(
        path = "/stores/:id/members/:sub",
        method = "put",
        operation_id = "putMember"
    )]
    async fn put_member(
        &self,
        state: Data<&AppState>,
        auth: Allowed<StoreHands>,
        /// The store's id.
        id: Path<Uuid>,
        /// The member's token `sub` (1 to 255 visible ASCII characters).
        #[oai(validator(pattern = "^[!-~]{1,255}$"))]
        sub: Path<String>,
        body: Json<MemberBody>,
    ) -> Result<MemberResponse, ApiError> {
        visible_store(&state, &auth.0, id.0).await?;
        authorize_store_owner(&auth.0, id.0)?;
        state.throttle.command(&auth.0.subject)?;
        match state
            .catalog
            .members()
            .put(id.0, &sub.0, body.role.into(), &auth.0.subject)
            .await
            .map_err(ApiError::infra)?
        {
            MemberChange::Done(row) => Ok(MemberResponse::Ok(Json(row.into()))),
            other => Err(refused(id.0, &sub.0, &other)),
        }
    }

    /// Remove a member
    ///
    /// Its access to the store ends at once, open live feeds included. The last owner stays
    /// (422 `last-owner`).
    #[oai(
        path = "/stores/:id/members/:sub",
        method = "delete",
        operation_id = "removeMember"
    )]
    async fn remove_member(
        &self,
        state: Data<&AppState>,
        auth: Allowed<StoreHands>,
        /// The store's id.
        id: Path<Uuid>,
        /// The member's token `sub`.
        #[oai(validator(pattern = "^[!-~]{1,255}$"))]
        sub: Path<String>,
    ) -> Result<MemberRemoved, ApiError> {
        visible_store(&state, &auth.0, id.0).await?;
        authorize_store_owner(&auth.0, id.0)?;
        state.throttle.command(&auth.0.subject)?;
        match state
            .catalog
            .members()
            .remove(id.0, &sub.0, &auth.0.subject)
            .await
            .map_err(ApiError::infra)?
        {
            MemberChange::Removed => Ok(MemberRemoved::Removed),
            other => Err(refused(id.0, &sub.0, &other)),
        }
    }

    /// Who changed what in a store
    ///
    /// Every change of the store, its products and its members, with who made it, when, and
    /// the entity before and after; oldest first. For its owners and admins.
    #[oai(
        path = "/stores/:id/changes",
        method = "get",
        operation_id = "listStoreChanges"
    )]
    async fn list_changes(
        &self,
        state: Data<&AppState>,
        auth: Allowed<StoreHands>,
        /// The store's id.
        id: Path<Uuid>,
        /// The `next` of the previous page; absent: the first page.
        #[oai(validator(max_length = 64))]
        cursor: Query<Option<String>>,
        /// Changes per page, oldest first (1-200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i64>>,
    ) -> Result<ChangesResponse, ApiError> {
        // a malformed parameter is refused before anything else, as poem refuses the others
        let after = cursor.0.as_deref().map(decode_change_cursor).transpose()?;
        visible_store(&state, &auth.0, id.0).await?;
        authorize_store_owner(&auth.0, id.0)?;
        let limit = page_limit(limit.0)?;
        let rows = changes::list(&state.pool, id.0, after, limit + 1)
            .await
            .map_err(ApiError::infra)?;
        let (rows, next) = page(rows, limit, |r| encode_change_cursor(r.id));
        Ok(ChangesResponse::Ok(Json(ChangePage {
            items: rows.into_iter().map(Into::into).collect(),
            next,
        })))
    }
}

//! Applying recorded events to the read models.

use chrono::{DateTime, Utc};
use order_domain::{Email, Note, OrderChange, OrderEvent, OrderStatus};
use sqlx::PgConnection;
use uuid::Uuid;

/// Schema of the live read models.
pub const SCHEMA: &str = "read";
/// Schema a rebuild fills before it is swapped in.
pub const SHADOW_SCHEMA: &str = "read_rebuild";

/// One order event as the log recorded it.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub order_id: Uuid,
    pub sequence: i64,
    pub event: &'a OrderEvent,
    pub recorded_at: DateTime<Utc>,
    /// Who caused it (`sub` of the token), from the event metadata.
    pub principal: Option<&'a str>,
}

/// What applying did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// Already applied earlier: nothing changed.
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The read model is at `version`, the event is `sequence`: an earlier event is missing.
    #[error(
        "order {order_id}: event {sequence} arrived but the read model is at version {version}"
    )]
    Gap {
        order_id: Uuid,
        sequence: i64,
        version: i64,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The order's row as it was before this event.
#[derive(sqlx::FromRow)]
struct Before {
    version: i64,
    status: String,
    store_id: Uuid,
    currency: String,
    total_minor: i64,
    confirmed_at: Option<DateTime<Utc>>,
}

/// Folds one event into the read models. Must run inside a transaction.
pub async fn apply(conn: &mut PgConnection, e: Recorded<'_>) -> Result<Applied, ProjectionError> {
    if let OrderChange::OrderCreated {
        order_id: _,
        customer_id,
        store_id,
        currency,
        customer_email,
        shipping_address,
    } = &e.event.change
    {
        let inserted = sqlx::query(
            "insert into order_summaries (order_id, version, status, customer_id, store_id, currency,
                 customer_email, shipping_address, created_at, updated_at, search_text)
             values ($1, $2, 'draft', $3, $4, $5, $6, $7, $8, $8, lower(coalesce($6, '')))
             on conflict (order_id) do nothing",
        )
        .bind(e.order_id)
        .bind(e.sequence)
        .bind(customer_id.as_str())
        .bind(store_id.as_uuid())
        .bind(currency.as_str())
        .bind(customer_email.as_ref().map(Email::as_str))
        .bind(shipping_address.as_ref().and_then(|a| serde_json::to_value(a).ok()))
        .bind(e.recorded_at)
        .execute(&mut *conn)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(Applied::Duplicate);
        }
        history(conn, &e, OrderStatus::Draft, None, None).await?;
        return Ok(Applied::Applied);
    }

    let before: Option<Before> = sqlx::query_as(
        "select version, status, store_id, currency, total_minor, confirmed_at
           from order_summaries where order_id = $1 for update",
    )
    .bind(e.order_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(before) = before else {
        return Err(ProjectionError::Gap {
            order_id: e.order_id,
            sequence: e.sequence,
            version: 0,
        });
    };
    if before.version >= e.sequence {
        return Ok(Applied::Duplicate);
    }
    if before.version != e.sequence - 1 {
        return Err(ProjectionError::Gap {
            order_id: e.order_id,
            sequence: e.sequence,
            version: before.version,
        });
    }
    sqlx::query("update order_summaries set version = $2, updated_at = $3 where order_id = $1")
        .bind(e.order_id)
        .bind(e.sequence)
        .bind(e.recorded_at)
        .execute(&mut *conn)
        .await?;

    let previous = OrderStatus::parse(&before.status);
    match &e.event.change {
        OrderChange::OrderCreated { .. } => {}
        OrderChange::ItemAdded {
            line_id,
            sku,
            name,
            quantity,
            unit_price_minor,
            line_total_minor,
            order_total_minor,
        } => {
            sqlx::query(
                "insert into order_lines (order_id, line_id, sku, name, quantity, unit_price_minor, line_total_minor)
                 values ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(e.order_id)
            .bind(i64::from(line_id.get()))
            .bind(sku.as_str())
            .bind(name.as_str())
            .bind(i64::from(*quantity))
            .bind(unit_price_minor)
            .bind(line_total_minor)
            .execute(&mut *conn)
            .await?;
            lines_changed(conn, e.order_id, *order_total_minor).await?;
        }
        OrderChange::ItemQuantityChanged {
            line_id,
            quantity,
            line_total_minor,
            order_total_minor,
            ..
        } => {
            sqlx::query("update order_lines set quantity = $3, line_total_minor = $4 where order_id = $1 and line_id = $2")
                .bind(e.order_id)
                .bind(i64::from(line_id.get()))
                .bind(i64::from(*quantity))
                .bind(line_total_minor)
                .execute(&mut *conn)
                .await?;
            lines_changed(conn, e.order_id, *order_total_minor).await?;
        }
        OrderChange::ItemRemoved {
            line_id,
            order_total_minor,
            ..
        } => {
            sqlx::query("delete from order_lines where order_id = $1 and line_id = $2")
                .bind(e.order_id)
                .bind(i64::from(line_id.get()))
                .execute(&mut *conn)
                .await?;
            lines_changed(conn, e.order_id, *order_total_minor).await?;
        }
        OrderChange::OrderPlaced { .. } => {
            status(conn, &e, OrderStatus::Placed, "placed_at", previous, None).await?;
        }
        OrderChange::OrderConfirmed => {
            status(
                conn,
                &e,
                OrderStatus::Confirmed,
                "confirmed_at",
                previous,
                None,
            )
            .await?;
            sales(conn, e.order_id, &before, day_of(e.recorded_at), 1).await?;
        }
        OrderChange::OrderRejected { reason } => {
            status(
                conn,
                &e,
                OrderStatus::Rejected,
                "rejected_at",
                previous,
                Some(reason.as_str()),
            )
            .await?;
            sqlx::query("update order_summaries set reject_reason = $2 where order_id = $1")
                .bind(e.order_id)
                .bind(reason.as_str())
                .execute(&mut *conn)
                .await?;
            store_counter(conn, &before, day_of(e.recorded_at), "rejections").await?;
        }
        OrderChange::PreparationStarted { note } => {
            status(
                conn,
                &e,
                OrderStatus::Preparing,
                "preparing_at",
                previous,
                note.as_ref().map(Note::as_str),
            )
            .await?;
        }
        OrderChange::OrderReadyForPickup { note } => {
            status(
                conn,
                &e,
                OrderStatus::ReadyForPickup,
                "ready_at",
                previous,
                note.as_ref().map(Note::as_str),
            )
            .await?;
        }
        OrderChange::OrderPickedUp { note } => {
            status(
                conn,
                &e,
                OrderStatus::PickedUp,
                "picked_up_at",
                previous,
                note.as_ref().map(Note::as_str),
            )
            .await?;
        }
        OrderChange::OrderShipped {
            carrier,
            tracking_number,
            note,
        } => {
            status(
                conn,
                &e,
                OrderStatus::Shipped,
                "shipped_at",
                previous,
                note.as_ref().map(Note::as_str),
            )
            .await?;
            sqlx::query(
                "update order_summaries set carrier = $2, tracking_number = $3 where order_id = $1",
            )
            .bind(e.order_id)
            .bind(carrier.as_str())
            .bind(tracking_number.as_str())
            .execute(&mut *conn)
            .await?;
        }
        OrderChange::OrderDelivered { note } => {
            status(
                conn,
                &e,
                OrderStatus::Delivered,
                "delivered_at",
                previous,
                note.as_ref().map(Note::as_str),
            )
            .await?;
        }
        OrderChange::OrderCancelled { reason, .. } => {
            status(
                conn,
                &e,
                OrderStatus::Cancelled,
                "cancelled_at",
                previous,
                Some(reason.as_str()),
            )
            .await?;
            sqlx::query("update order_summaries set cancel_reason = $2 where order_id = $1")
                .bind(e.order_id)
                .bind(reason.as_str())
                .execute(&mut *conn)
                .await?;
            // A confirmed order counted as a sale on its confirmation day: take it back there.
            if let Some(confirmed_at) = before.confirmed_at {
                sales(conn, e.order_id, &before, day_of(confirmed_at), -1).await?;
            }
            store_counter(conn, &before, day_of(e.recorded_at), "cancellations").await?;
        }
        OrderChange::DraftDiscarded => {
            status(
                conn,
                &e,
                OrderStatus::Discarded,
                "discarded_at",
                previous,
                None,
            )
            .await?;
        }
    }
    Ok(Applied::Applied)
}

fn day_of(t: DateTime<Utc>) -> chrono::NaiveDate {
    t.date_naive()
}

/// Moves the summary to `to`, stamps `column`, and records the step in the history.
async fn status(
    conn: &mut PgConnection,
    e: &Recorded<'_>,
    to: OrderStatus,
    column: &'static str,
    previous: Option<OrderStatus>,
    note: Option<&str>,
) -> Result<(), sqlx::Error> {
    // `column` is one of this module's literals, never input.
    sqlx::query(&format!(
        "update order_summaries set status = $2, {column} = $3 where order_id = $1"
    ))
    .bind(e.order_id)
    .bind(to.as_str())
    .bind(e.recorded_at)
    .execute(&mut *conn)
    .await?;
    history(conn, e, to, previous, note).await
}

async fn history(
    conn: &mut PgConnection,
    e: &Recorded<'_>,
    to: OrderStatus,
    previous: Option<OrderStatus>,
    note: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into order_status_history (order_id, version, status, previous_status, note, principal, recorded_at)
         values ($1, $2, $3, $4, $5, $6, $7)
         on conflict (order_id, version) do nothing",
    )
    .bind(e.order_id)
    .bind(e.sequence)
    .bind(to.as_str())
    .bind(previous.map(OrderStatus::as_str))
    .bind(note)
    .bind(e.principal)
    .bind(e.recorded_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Recomputes the line-derived columns of the summary after a line changed.
async fn lines_changed(
    conn: &mut PgConnection,
    order_id: Uuid,
    total: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update order_summaries s
            set total_minor = $2,
                line_count = l.lines,
                item_count = l.items,
                search_text = lower(coalesce(s.customer_email, '')) || ' ' || l.words
           from (select count(*)::int as lines, coalesce(sum(quantity), 0)::int as items,
                        coalesce(string_agg(lower(name || ' ' || sku), ' ' order by line_id), '') as words
                   from order_lines where order_id = $1) l
          where s.order_id = $1",
    )
    .bind(order_id)
    .bind(total)
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds (`sign` = 1) or takes back (`sign` = -1) an order's lines and total as sales of `day`.
async fn sales(
    conn: &mut PgConnection,
    order_id: Uuid,
    before: &Before,
    day: chrono::NaiveDate,
    sign: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into product_sales_daily as p (store_id, day, sku, currency, name, quantity, revenue_minor, orders)
         select $2, $3, sku, $4, name, $5 * quantity, $5 * line_total_minor, $5
           from order_lines where order_id = $1
         on conflict (store_id, day, sku, currency) do update
            set quantity = p.quantity + excluded.quantity,
                revenue_minor = p.revenue_minor + excluded.revenue_minor,
                orders = p.orders + excluded.orders,
                name = excluded.name",
    )
    .bind(order_id)
    .bind(before.store_id)
    .bind(day)
    .bind(&before.currency)
    .bind(sign)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "insert into store_sales_daily as s (store_id, day, currency, orders, revenue_minor)
         values ($1, $2, $3, $4, $5)
         on conflict (store_id, day, currency) do update
            set orders = s.orders + excluded.orders,
                revenue_minor = s.revenue_minor + excluded.revenue_minor",
    )
    .bind(before.store_id)
    .bind(day)
    .bind(&before.currency)
    .bind(i32::try_from(sign).unwrap_or(0))
    .bind(sign * before.total_minor)
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts one cancellation or rejection for the store on `day`.
async fn store_counter(
    conn: &mut PgConnection,
    before: &Before,
    day: chrono::NaiveDate,
    column: &'static str,
) -> Result<(), sqlx::Error> {
    // `column` is one of this module's literals, never input.
    sqlx::query(&format!(
        "insert into store_sales_daily as s (store_id, day, currency, {column})
         values ($1, $2, $3, 1)
         on conflict (store_id, day, currency) do update set {column} = s.{column} + 1"
    ))
    .bind(before.store_id)
    .bind(day)
    .bind(&before.currency)
    .execute(conn)
    .await?;
    Ok(())
}

/// One saga event as the log recorded it, reduced to what the saga read model keeps (the saga
/// events carry their resulting status and next deadline).
#[derive(Debug, Clone, Copy)]
pub struct SagaRecorded<'a> {
    pub order_id: Uuid,
    pub sequence: i64,
    pub event_type: &'a str,
    /// Snake-case saga status after the event.
    pub status: &'a str,
    pub deadline_at: Option<DateTime<Utc>>,
    /// Set by `SagaNeedsAttention`.
    pub attention: Option<&'a str>,
    pub recorded_at: DateTime<Utc>,
}

/// Folds one saga event into `saga_progress`; idempotent through `version`.
pub async fn apply_saga(
    conn: &mut PgConnection,
    e: SagaRecorded<'_>,
) -> Result<Applied, ProjectionError> {
    let done = sqlx::query(
        "insert into saga_progress as p (order_id, version, status, deadline_at, last_event, attention, started_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $7)
         on conflict (order_id) do update
            set version = excluded.version,
                status = excluded.status,
                deadline_at = excluded.deadline_at,
                last_event = excluded.last_event,
                attention = case when excluded.status = 'needs_attention'
                                 then coalesce(excluded.attention, p.attention) end,
                updated_at = excluded.updated_at
          where p.version = excluded.version - 1",
    )
    .bind(e.order_id)
    .bind(e.sequence)
    .bind(e.status)
    .bind(e.deadline_at)
    .bind(e.event_type)
    .bind(e.attention)
    .bind(e.recorded_at)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 1 {
        return Ok(Applied::Applied);
    }
    let version: i64 = sqlx::query_scalar("select version from saga_progress where order_id = $1")
        .bind(e.order_id)
        .fetch_one(&mut *conn)
        .await?;
    if version >= e.sequence {
        Ok(Applied::Duplicate)
    } else {
        Err(ProjectionError::Gap {
            order_id: e.order_id,
            sequence: e.sequence,
            version,
        })
    }
}

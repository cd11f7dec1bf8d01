//! The simulator against a real nats-server (`NATS_URL`, default `nats://127.0.0.1:4222`): each
//! test has its own subject prefix and streams, publishes contract commands like the relay does
//! and reads the replies from the `SAGA_REPLIES` stream (what the service sees) and from a core
//! subscription (every publish, including those JetStream de-duplicated). The rig is in
//! [`harness`]; this file holds the cases.

mod harness;

use order_sagas::messages::{
    AuthorizePayment, Reply, ReplyKind, ReservationId, SagaId, UnavailableItem,
};

use self::harness::*;
use super::dice::{Dice, Roll};
use super::*;

#[tokio::test]
async fn reserving_available_stock_replies_reserved_and_moves_it_to_reserved() {
    let mut h = harness(SimulatorConfig {
        stock: stock(&[("TEA", 10)]),
        ..SimulatorConfig::default()
    })
    .await;
    let order_id = order();
    let command = reserve(order_id, &[("TEA", 3)]);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    h.send_traced(command.clone(), Some(traceparent)).await;
    let received = h.reply().await;

    let Reply::StockReserved(reserved) = &received.reply else {
        panic!("not reserved: {:?}", received.reply)
    };
    assert_eq!(reserved.in_reply_to, command.message_id);
    assert_eq!(reserved.order_id, order_id);
    assert_eq!(reserved.saga_id, SagaId::for_order(order_id));
    assert_eq!(
        reserved.message_id,
        reply_id(command.message_id, ReplyKind::StockReserved)
    );
    let reply_msg_id = reserved.message_id.to_string();
    assert_eq!(received.header("Nats-Msg-Id"), Some(reply_msg_id.as_str()));
    assert_eq!(received.header("ce-id"), Some(reply_msg_id.as_str()));
    assert_eq!(
        received.header("ce-type"),
        Some("inventory.replies.reserved")
    );
    assert_eq!(received.header("ce-source"), Some(SOURCE));
    assert_eq!(received.header("traceparent"), Some(traceparent));
    let reservation_id = reserved.reservation_id.clone();

    let books = h.finish().await;
    assert_eq!(
        books.stock("TEA"),
        StockLevel {
            available: 7,
            reserved: 3,
            committed: 0
        }
    );
    assert_eq!(books.reserved_units(), 3);
    let reservation = books.reservation_of(order_id).expect("a reservation");
    assert_eq!(reservation.id, reservation_id);
    assert_eq!(reservation.state, ReservationState::Reserved);
    assert_eq!(reservation.items.get("TEA"), Some(&3));
}

#[tokio::test]
async fn reserving_more_than_is_in_stock_is_rejected_with_what_is_unavailable() {
    let mut h = harness(SimulatorConfig {
        stock: stock(&[("TEA", 1)]),
        ..SimulatorConfig::default()
    })
    .await;
    let order_id = order();

    h.send(reserve(order_id, &[("TEA", 2), ("MUG", 1)])).await;
    let received = h.reply().await;

    let Reply::StockRejected(rejected) = &received.reply else {
        panic!("not rejected: {:?}", received.reply)
    };
    assert_eq!(
        rejected.unavailable,
        vec![UnavailableItem {
            sku: "TEA".into(),
            requested: 2,
            available: 1
        }]
    );
    assert_eq!(
        received.header("ce-type"),
        Some("inventory.replies.rejected")
    );
    let books = h.finish().await;
    assert_eq!(books.stock("TEA").available, 1);
    assert_eq!(books.reserved_units(), 0);
    assert!(books.reservation_of(order_id).is_none());
}

#[tokio::test]
async fn an_out_of_stock_rate_of_one_rejects_whatever_the_stock() {
    let mut h = harness(SimulatorConfig {
        out_of_stock_rate: 1.0,
        ..SimulatorConfig::default()
    })
    .await;

    h.send(reserve(order(), &[("TEA", 1)])).await;

    assert!(matches!(h.reply().await.reply, Reply::StockRejected(_)));
    assert_eq!(h.finish().await.reserved_units(), 0);
}

#[tokio::test]
async fn authorizing_replies_authorized_with_amount_and_currency() {
    let mut h = harness(SimulatorConfig::default()).await;
    let order_id = order();
    let command = authorize(order_id, 1_250);

    h.send(command.clone()).await;
    let received = h.reply().await;

    let Reply::PaymentAuthorized(authorized) = &received.reply else {
        panic!("not authorized: {:?}", received.reply)
    };
    assert_eq!(authorized.in_reply_to, command.message_id);
    assert_eq!(authorized.amount_minor, 1_250);
    assert_eq!(authorized.currency, command.currency);
    assert_eq!(
        received.header("ce-type"),
        Some("payment.replies.authorized")
    );
    let payment_id = authorized.payment_id.clone();
    let books = h.finish().await;
    assert_eq!(books.authorized_minor(), 1_250);
    let payment = books.payment_of(order_id).expect("a payment");
    assert_eq!(payment.id, payment_id);
    assert_eq!(payment.state, PaymentState::Authorized);
}

#[tokio::test]
async fn a_decline_rate_of_one_declines_and_holds_no_money() {
    let mut h = harness(SimulatorConfig {
        decline_rate: 1.0,
        ..SimulatorConfig::default()
    })
    .await;
    let order_id = order();

    h.send(authorize(order_id, 1_250)).await;

    assert!(matches!(h.reply().await.reply, Reply::PaymentDeclined(_)));
    let books = h.finish().await;
    assert_eq!(books.authorized_minor(), 0);
    assert!(books.payment_of(order_id).is_none());
}

#[tokio::test]
async fn the_same_command_delivered_three_times_has_one_effect_and_identical_replies() {
    let mut h = harness(SimulatorConfig {
        stock: stock(&[("TEA", 10)]),
        ..SimulatorConfig::default()
    })
    .await;
    let command = reserve(order(), &[("TEA", 4)]);

    for _ in 0..3 {
        h.send(command.clone()).await;
    }

    // Three publishes of one and the same reply ...
    let mut copies = Vec::new();
    for _ in 0..3 {
        copies.push(h.published(REPLY_WAIT).await.expect("a published reply"));
    }
    assert!(copies.iter().all(|c| c.body == copies[0].body));
    assert!(copies
        .iter()
        .all(|c| c.header("Nats-Msg-Id") == copies[0].header("Nats-Msg-Id")));
    // ... which JetStream stores once.
    assert!(matches!(h.reply().await.reply, Reply::StockReserved(_)));
    assert!(
        h.try_reply(QUIET_WAIT).await.is_none(),
        "a second stored reply"
    );
    let books = h.finish().await;
    assert_eq!(books.deliveries_of(command.message_id), 3);
    assert_eq!(books.stock("TEA").reserved, 4);
    assert_eq!(books.reservations().count(), 1);
}

#[tokio::test]
async fn release_gives_the_stock_back_and_answers_every_release() {
    let mut h = harness(SimulatorConfig {
        stock: stock(&[("TEA", 10)]),
        ..SimulatorConfig::default()
    })
    .await;
    let order_id = order();
    let reservation_id = h.reserved(reserve(order_id, &[("TEA", 4)])).await;

    h.send(release(order_id, &reservation_id)).await;
    let first = h.reply().await;
    h.send(release(order_id, &reservation_id)).await;
    let again = h.reply().await;
    h.send(release(order_id, &ReservationId::new("res-unknown")))
        .await;
    let unknown = h.reply().await;

    for received in [&first, &again, &unknown] {
        assert!(
            matches!(received.reply, Reply::StockReleased(_)),
            "{:?}",
            received.reply
        );
    }
    assert_eq!(first.header("ce-type"), Some("inventory.replies.released"));
    let books = h.finish().await;
    assert_eq!(
        books.stock("TEA"),
        StockLevel {
            available: 10,
            reserved: 0,
            committed: 0
        }
    );
    assert_eq!(
        books.reservation(&reservation_id).unwrap().state,
        ReservationState::Released
    );
}

#[tokio::test]
async fn commit_makes_the_reservation_final() {
    let mut h = harness(SimulatorConfig {
        stock: stock(&[("TEA", 10)]),
        ..SimulatorConfig::default()
    })
    .await;
    let order_id = order();
    let reservation_id = h.reserved(reserve(order_id, &[("TEA", 4)])).await;

    h.send(commit(order_id, &reservation_id)).await;

    let received = h.reply().await;
    assert!(matches!(received.reply, Reply::StockCommitted(_)));
    assert_eq!(
        received.header("ce-type"),
        Some("inventory.replies.committed")
    );
    let books = h.finish().await;
    assert_eq!(
        books.stock("TEA"),
        StockLevel {
            available: 6,
            reserved: 0,
            committed: 4
        }
    );
    assert_eq!(books.committed_units(), 4);
    assert!(books.anomalies().is_empty());
}

#[tokio::test]
async fn a_voided_payment_is_not_captured() {
    let mut h = harness(SimulatorConfig::default()).await;
    let order_id = order();
    let payment_id = h.authorized(authorize(order_id, 900)).await;

    h.send(void(order_id, &payment_id, 900)).await;
    let voided = h.reply().await;
    h.send(capture(order_id, &payment_id, 900)).await;
    let capture = h.reply().await;

    assert!(matches!(voided.reply, Reply::PaymentVoided(_)));
    assert_eq!(voided.reply.amount_minor(), Some(900));
    assert!(
        matches!(capture.reply, Reply::PaymentCaptureFailed(_)),
        "{:?}",
        capture.reply
    );
    assert_eq!(
        capture.header("ce-type"),
        Some("payment.replies.capture_failed")
    );
    let books = h.finish().await;
    assert_eq!(books.voided_minor(), 900);
    assert_eq!((books.authorized_minor(), books.captured_minor()), (0, 0));
}

#[tokio::test]
async fn a_captured_payment_can_be_refunded() {
    let mut h = harness(SimulatorConfig::default()).await;
    let order_id = order();
    let payment_id = h.authorized(authorize(order_id, 900)).await;

    h.send(capture(order_id, &payment_id, 900)).await;
    let captured = h.reply().await;
    let captured_minor = h.books().captured_minor();
    h.send(refund(order_id, &payment_id, 900)).await;
    let refunded = h.reply().await;

    assert!(matches!(captured.reply, Reply::PaymentCaptured(_)));
    assert_eq!(captured.reply.amount_minor(), Some(900));
    assert_eq!(captured_minor, 900);
    assert!(matches!(refunded.reply, Reply::PaymentRefunded(_)));
    assert_eq!(refunded.reply.amount_minor(), Some(900));
    assert_eq!(refunded.header("ce-type"), Some("payment.replies.refunded"));
    let books = h.finish().await;
    assert_eq!((books.captured_minor(), books.refunded_minor()), (0, 900));
    assert_eq!(
        books.payment(&payment_id).unwrap().state,
        PaymentState::Refunded
    );
}

#[tokio::test]
async fn a_silent_participant_acts_but_does_not_reply() {
    let mut h = harness(SimulatorConfig {
        silence_rate: 1.0,
        ..SimulatorConfig::default()
    })
    .await;
    let order_id = order();
    let command = authorize(order_id, 500);

    h.send(command.clone()).await;

    assert!(h.published(QUIET_WAIT).await.is_none(), "a reply was sent");
    let books = h.books();
    // The command did arrive and take effect (so the silence is the simulator's doing) ...
    assert_eq!(books.deliveries_of(command.message_id), 1);
    assert_eq!(books.authorized_minor(), 500);
    // ... and was acked, so JetStream does not redeliver it.
    let info = h.consumer_info(Participant::Payment).await;
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.num_redelivered, 0);
    h.finish().await;
}

#[tokio::test]
async fn silence_is_drawn_per_delivery_so_a_re_send_is_answered() {
    // A command whose first delivery is silent and whose second is not, under some seed.
    let command = AuthorizePayment {
        message_id: MessageId::from_uuid(Uuid::from_u128(0x51)),
        ..authorize(order(), 500)
    };
    let silent = |seed: u64, delivery: u32| {
        Dice::new(seed).hits(0.5, Roll::Silence, command.message_id, delivery)
    };
    let seed = (0..1_000)
        .find(|seed| silent(*seed, 1) && !silent(*seed, 2))
        .expect("a seed among 1000 (a quarter of them qualify)");
    let mut h = harness(SimulatorConfig {
        silence_rate: 0.5,
        seed,
        ..SimulatorConfig::default()
    })
    .await;

    h.send(command.clone()).await;
    let first = h.published(QUIET_WAIT).await;
    h.send(command.clone()).await;
    let second = h.published(REPLY_WAIT).await;

    assert!(first.is_none(), "the first delivery was answered");
    let second = second.expect("the re-send was not answered");
    assert_eq!(second.reply.in_reply_to(), command.message_id);
    let books = h.finish().await;
    assert_eq!(books.deliveries_of(command.message_id), 2);
    assert_eq!(books.payments().count(), 1);
    assert_eq!(books.authorized_minor(), 500);
}

#[tokio::test]
async fn duplicate_replies_repeat_the_reply_with_its_own_or_a_fresh_message_id() {
    let mut h = harness(SimulatorConfig {
        duplicate_reply_rate: 1.0,
        seed: 11,
        ..SimulatorConfig::default()
    })
    .await;
    // Fixed message ids: which copies get a fresh id is then fixed by the seed.
    let commands: Vec<AuthorizePayment> = (0..8)
        .map(|n| AuthorizePayment {
            message_id: MessageId::from_uuid(Uuid::from_u128(0xd0 + n)),
            ..authorize(order(), 100)
        })
        .collect();

    for command in &commands {
        h.send(command.clone()).await;
    }
    let mut published = Vec::new();
    for _ in 0..commands.len() * 2 {
        published.push(h.published(REPLY_WAIT).await.expect("a published reply"));
    }

    let (mut same_id, mut fresh_id) = (0, 0);
    for command in &commands {
        let copies: Vec<&Received> = published
            .iter()
            .filter(|r| r.reply.in_reply_to() == command.message_id)
            .collect();
        assert_eq!(copies.len(), 2, "every reply is published twice");
        let original = reply_id(command.message_id, ReplyKind::PaymentAuthorized);
        assert_eq!(copies[0].reply.message_id(), original);
        if copies[1].reply.message_id() == original {
            same_id += 1;
        } else {
            fresh_id += 1;
            let fresh = copies[1].reply.message_id().to_string();
            assert_eq!(copies[1].header("Nats-Msg-Id"), Some(fresh.as_str()));
            assert_eq!(
                with_message_id(copies[1].reply.clone(), original),
                copies[0].reply
            );
        }
    }
    assert!(
        same_id > 0 && fresh_id > 0,
        "{same_id} same, {fresh_id} fresh"
    );
    // JetStream keeps the originals and the fresh-id copies, not the same-id ones.
    let mut stored = 0;
    while h.try_reply(QUIET_WAIT).await.is_some() {
        stored += 1;
    }
    assert_eq!(stored, commands.len() + fresh_id);
    let books = h.finish().await;
    assert_eq!(books.payments().count(), commands.len());
}

#[tokio::test]
async fn an_unreadable_command_is_terminated_and_the_next_one_answered() {
    let mut h = harness(SimulatorConfig::default()).await;

    h.send_raw("inventory.commands.reserve", b"not json").await;
    h.send_raw("inventory.commands.steal", b"{}").await;
    let command = reserve(order(), &[("TEA", 1)]);
    h.send(command.clone()).await;

    let received = h.reply().await;
    assert_eq!(received.reply.in_reply_to(), command.message_id);
    assert!(h.try_reply(QUIET_WAIT).await.is_none());
    let info = h.consumer_info(Participant::Inventory).await;
    assert_eq!(info.delivered.stream_sequence, 3);
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.num_redelivered, 0);
    h.finish().await;
}

#[tokio::test]
async fn a_restarted_simulator_answers_what_was_sent_while_it_was_down() {
    let mut h = harness(SimulatorConfig::default()).await;
    h.simulator.take().unwrap().stop().await.unwrap();
    let command = authorize(order(), 700);

    h.send(command.clone()).await;
    assert!(
        h.try_reply(QUIET_WAIT).await.is_none(),
        "answered while down"
    );
    h.simulator = Some(
        Simulator::start(h.nats.clone(), SimulatorConfig::default())
            .await
            .unwrap(),
    );

    assert_eq!(h.reply().await.reply.in_reply_to(), command.message_id);
    assert_eq!(h.finish().await.authorized_minor(), 700);
}

#[tokio::test]
async fn latency_delays_the_reply() {
    let mut h = harness(SimulatorConfig {
        min_latency: Duration::from_millis(400),
        max_latency: Duration::from_millis(600),
        ..SimulatorConfig::default()
    })
    .await;

    let sent = tokio::time::Instant::now();
    h.send(authorize(order(), 100)).await;
    h.reply().await;

    assert!(
        sent.elapsed() >= Duration::from_millis(400),
        "{:?}",
        sent.elapsed()
    );
    h.finish().await;
}

#[test]
fn rates_outside_zero_to_one_are_refused() {
    let config = SimulatorConfig {
        decline_rate: 1.5,
        ..SimulatorConfig::default()
    };
    assert!(config.validate().is_err());
    assert!(SimulatorConfig {
        silence_rate: f64::NAN,
        ..SimulatorConfig::default()
    }
    .validate()
    .is_err());
    assert!(SimulatorConfig::default().validate().is_ok());
}

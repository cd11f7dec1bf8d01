//! The simulator's luck: every random decision (latency, decline, stock-out, silence, duplicate)
//! is a pure function of the seed, what is being decided, the command's message id and the
//! delivery number.
//!
//! A shared RNG drawn in arrival order would make a run depend on how the two participants' tasks
//! and the in-flight commands happened to interleave. Hashing instead makes each decision
//! reproducible on its own: the same seed and the same command always decline (or not), and the
//! n-th delivery of a command is always silent (or not), whatever else is going on.

use order_sagas::messages::MessageId;

/// What a draw decides; each kind draws an independent number for the same command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Roll {
    Latency,
    Decline,
    OutOfStock,
    Silence,
    Duplicate,
    FreshDuplicate,
}

impl Roll {
    /// Arbitrary distinct constants; changing them changes every seeded run.
    const fn salt(self) -> u64 {
        match self {
            Self::Latency => 0x6c61_7465_6e63_7900,
            Self::Decline => 0x6465_636c_696e_6500,
            Self::OutOfStock => 0x7374_6f63_6b6f_7574,
            Self::Silence => 0x7369_6c65_6e63_6500,
            Self::Duplicate => 0x6475_706c_6963_6174,
            Self::FreshDuplicate => 0x6672_6573_6864_7570,
        }
    }
}

/// Seeded, stateless source of the simulator's decisions.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dice {
    seed: u64,
}

impl Dice {
    pub(super) fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// A number in `[0, 1)`, uniform, fixed by `(seed, what, id, delivery)`.
    pub(super) fn roll(self, what: Roll, id: MessageId, delivery: u32) -> f64 {
        let (hi, lo) = id.as_uuid().as_u64_pair();
        let mut h = mix(self.seed);
        for word in [what.salt(), hi, lo, u64::from(delivery)] {
            h = mix(h ^ word);
        }
        // The top 52 bits as the mantissa of a number in [1, 2), minus 1: exact and uniform,
        // without an integer-to-float cast.
        f64::from_bits(0x3ff0_0000_0000_0000 | (h >> 12)) - 1.0
    }

    /// Whether an event of probability `rate` happens. A rate of 0 never hits, 1 always does.
    pub(super) fn hits(self, rate: f64, what: Roll, id: MessageId, delivery: u32) -> bool {
        rate > 0.0 && self.roll(what, id, delivery) < rate
    }
}

/// SplitMix64's finalizer: a bijective mix in which every input bit affects every output bit.
const fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn id(n: u128) -> MessageId {
        MessageId::from_uuid(Uuid::from_u128(n))
    }

    #[test]
    fn the_same_question_always_gets_the_same_answer() {
        let roll = |seed: u64, what: Roll, n: u128, delivery: u32| {
            Dice::new(seed).roll(what, id(n), delivery).to_bits()
        };
        let base = roll(7, Roll::Decline, 1, 0);
        assert_eq!(base, roll(7, Roll::Decline, 1, 0));
        assert_ne!(base, roll(7, Roll::Decline, 2, 0));
        assert_ne!(base, roll(7, Roll::Silence, 1, 0));
        assert_ne!(base, roll(7, Roll::Decline, 1, 1));
        assert_ne!(base, roll(8, Roll::Decline, 1, 0));
    }

    #[test]
    fn rates_of_zero_and_one_are_never_and_always() {
        let dice = Dice::new(1);
        for n in 0..1_000 {
            assert!(!dice.hits(0.0, Roll::Silence, id(n), 1));
            assert!(dice.hits(1.0, Roll::Silence, id(n), 1));
        }
    }

    #[test]
    fn a_rate_hits_about_that_often() {
        let dice = Dice::new(42);
        let hits = (0..10_000)
            .filter(|n| dice.hits(0.3, Roll::Decline, id(*n), 0))
            .count();
        assert!(
            (2_800..=3_200).contains(&hits),
            "{hits} hits of 10000 at 0.3"
        );
        for n in 0..10_000 {
            let r = dice.roll(Roll::Latency, id(n), 1);
            assert!((0.0..1.0).contains(&r), "{r}");
        }
    }
}

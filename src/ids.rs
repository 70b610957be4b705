//! Identifier newtypes and their generators.
//!
//! Ids are plain strings on the wire; the newtypes exist so that a room id can
//! never be passed where a user id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Rocket.Chat ids use Meteor's `Random.id()` alphabet: 17 characters from
/// `23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz` (no look-alikes).
const METEOR_ALPHABET: [char; 55] = [
    '2', '3', '4', '5', '6', '7', '8', '9', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'J', 'K', 'L', 'M', 'N',
    'P', 'Q', 'R', 'S', 'T', 'W', 'X', 'Y', 'Z', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'm',
    'n', 'o', 'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z',
];

const CODE_ALPHABET: [char; 26] = [
    'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's', 't', 'u',
    'v', 'w', 'x', 'y', 'z',
];

/// Random bytes from the thread-local CSPRNG (ChaCha, seeded from the OS
/// and reseeded periodically). nanoid's own sources seed a fresh generator
/// from the OS on every call: a syscall per id on the join and message paths.
fn random_bytes(size: usize) -> Vec<u8> {
    use rand::Rng;
    let mut bytes = vec![0u8; size];
    rand::rng().fill(&mut bytes[..]);
    bytes
}

/// Where the ids and secrets a room's change draws come from, handed to
/// the rules by the change's apply context (`room::log`, `ApplyCtx`):
/// fresh randomness, or, for a change every replica of a room applies from
/// its log, a generator seeded by the change's entry id, so all replicas
/// draw the same participant ids, system message ids and guest tokens and
/// stay identical. The generator is boxed: every room holds an `Ids`, and
/// only a change being applied from a log is seeded (~320 B inline).
#[derive(Clone, Default)]
pub struct Ids(Option<Box<rand::rngs::StdRng>>);

impl fmt::Debug for Ids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the generator's state: it predicts the ids it draws.
        f.write_str(if self.0.is_some() { "Ids(seeded)" } else { "Ids(random)" })
    }
}

impl Ids {
    /// Fresh randomness (the thread's CSPRNG).
    pub fn random() -> Self {
        Ids(None)
    }

    /// The same sequence on every node for the same `seed`.
    pub fn seeded(seed: &str) -> Self {
        use rand::SeedableRng;
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(seed.as_bytes()).into();
        Ids(Some(Box::new(rand::rngs::StdRng::from_seed(digest))))
    }

    fn bytes(&mut self, size: usize) -> Vec<u8> {
        use rand::Rng;
        match &mut self.0 {
            Some(rng) => {
                let mut bytes = vec![0u8; size];
                rng.fill(&mut bytes[..]);
                bytes
            }
            None => random_bytes(size),
        }
    }

    /// A 17-character Meteor-style id (see [`meteor_id`]).
    pub fn meteor_id(&mut self) -> String {
        nanoid::format(|n| self.bytes(n), &METEOR_ALPHABET, 17)
    }

    /// A secret of `len` characters (see [`secret`]).
    pub fn secret(&mut self, len: usize) -> String {
        nanoid::format(|n| self.bytes(n), &nanoid::alphabet::SAFE, len)
    }
}

/// A fresh 17-character Meteor-style id (~98 bits of entropy).
pub fn meteor_id() -> String {
    nanoid::nanoid!(17, &METEOR_ALPHABET, random_bytes)
}

/// A long random secret (guest resume tokens, session ids, the development
/// JWT secret): 6 bits per character.
pub fn secret(len: usize) -> String {
    nanoid::nanoid!(len, &nanoid::alphabet::SAFE, random_bytes)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        // Hashes and compares as its string (the derives delegate to the
        // one field), so maps keyed by ids are looked up with a `&str`
        // without allocating an id.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A room's `_id` (also `rid` on the wire).
    RoomId
);
id_type!(
    /// A user's id: the JWT `sub` for signed-in users, `guest-…` for guests.
    UserId
);
id_type!(
    /// A message's `_id`.
    MessageId
);
id_type!(
    /// A room's shareable `xxx-xxx-xxx` code.
    RoomCode
);

impl RoomId {
    pub fn generate() -> Self {
        Self(meteor_id())
    }
}

impl MessageId {
    pub fn generate() -> Self {
        Self(meteor_id())
    }

    /// A message id drawn from `ids`.
    pub fn drawn(ids: &mut Ids) -> Self {
        Self(ids.meteor_id())
    }
}

impl UserId {
    /// Guests get an id that can never collide with a JWT subject we mint,
    /// because it carries a prefix and a random part.
    pub fn new_guest() -> Self {
        Self(format!("guest-{}", meteor_id()))
    }

    pub fn is_guest(&self) -> bool {
        self.0.starts_with("guest-")
    }
}

impl RoomCode {
    /// `xxx-xxx-xxx` from 26 lowercase letters: 26^9 ≈ 5.4e12 codes, enough
    /// that guessing one is impractical once joins are rate-limited.
    pub fn generate() -> Self {
        let raw = nanoid::nanoid!(9, &CODE_ALPHABET, random_bytes);
        Self(format!("{}-{}-{}", &raw[0..3], &raw[3..6], &raw[6..9]))
    }

    /// Whether `s` has the code's shape; used to reject junk before a lookup.
    pub fn is_well_formed(s: &str) -> bool {
        let b = s.as_bytes();
        b.len() == 11
            && b.iter().enumerate().all(
                |(i, c)| {
                    if i == 3 || i == 7 { *c == b'-' } else { c.is_ascii_lowercase() }
                },
            )
    }
}

/// Identifies one WebSocket connection for the lifetime of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_well_formed() {
        for _ in 0..1000 {
            let c = RoomCode::generate();
            assert!(RoomCode::is_well_formed(c.as_str()), "{c}");
        }
        assert!(!RoomCode::is_well_formed("abc-def-gh"));
        assert!(!RoomCode::is_well_formed("abc_def-ghi"));
        assert!(!RoomCode::is_well_formed("ABC-def-ghi"));
    }

    /// Every replica applying the same entry draws the same ids, in the
    /// same order; another entry draws others.
    #[test]
    fn seeded_ids_repeat_per_seed() {
        let draw = |seed: &str| {
            let mut ids = Ids::seeded(seed);
            (ids.meteor_id(), ids.secret(32), ids.meteor_id())
        };
        let a = draw("entry-a");
        assert_eq!(a, draw("entry-a"));
        assert_ne!(a, draw("entry-b"));
        assert_ne!(a.0, a.2, "later draws move on");
        assert_eq!(a.0.len(), 17);
        assert_eq!(a.1.len(), 32);
        let mut random = Ids::random();
        assert_ne!(random.meteor_id(), random.meteor_id());
    }

    #[test]
    fn meteor_ids_have_17_chars_from_alphabet() {
        let id = meteor_id();
        assert_eq!(id.chars().count(), 17);
        assert!(id.chars().all(|c| METEOR_ALPHABET.contains(&c)));
    }
}

//! Named ChaCha20 streams and the documented integer draws allocation is built on.
//!
//! Only the raw 32-bit output words of ChaCha20 (RFC 8439 block function,
//! 64-bit block counter, 64-bit stream id) are used. The bounded draw and the
//! shuffle are our own and are specified in docs/SPEC.md, so any ChaCha20
//! implementation reproduces every allocation. We do not use rand's
//! `random_range`, `Uniform` or `shuffle`: their outputs may change between
//! versions, which would change allocations.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

/// The 64-bit ChaCha20 stream id of a named stream: the first 8 bytes,
/// little-endian, of SHA-256("chancery/v1/stream/" ‖ name).
pub fn stream_id(name: &str) -> u64 {
    let digest = Sha256::new().chain_update(b"chancery/v1/stream/").chain_update(name.as_bytes()).finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(id)
}

/// A position in one named ChaCha20 stream keyed by the trial seed.
pub struct Stream {
    rng: ChaCha20Rng,
    word_pos: u64,
}

impl Stream {
    /// Opens the stream `name` under `seed`, positioned at `word_pos` words.
    pub fn open(seed: &[u8; 32], name: &str, word_pos: u64) -> Stream {
        let mut rng = ChaCha20Rng::from_seed(*seed);
        rng.set_stream(stream_id(name));
        rng.set_word_pos(u128::from(word_pos));
        Stream { rng, word_pos }
    }

    /// The number of words consumed from the start of the stream.
    pub fn word_pos(&self) -> u64 {
        self.word_pos
    }

    /// The next raw 32-bit output word.
    pub fn next_word(&mut self) -> u32 {
        self.word_pos += 1;
        self.rng.next_u32()
    }

    /// A uniform integer in `0..n` by rejection: with `limit = 2^32 - (2^32 mod n)`,
    /// draw words until one is below `limit` and return it mod `n`.
    ///
    /// # Panics
    /// If `n` is 0 (a programming error: callers draw from non-empty sets).
    pub fn below(&mut self, n: u32) -> u32 {
        assert!(n > 0, "draw from an empty range");
        let n64 = u64::from(n);
        let limit = (1u64 << 32) - ((1u64 << 32) % n64);
        loop {
            let w = u64::from(self.next_word());
            if w < limit {
                return (w % n64) as u32;
            }
        }
    }

    /// Fisher–Yates shuffle: for i from len−1 down to 1, swap item i with item `below(i+1)`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below((i + 1) as u32) as usize;
            items.swap(i, j);
        }
    }

    /// An index into `weights` drawn with probability proportional to its weight:
    /// `r = below(sum)`, then the first index whose cumulative weight exceeds `r`.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let r = self.below(total);
        let mut acc = 0;
        for (i, w) in weights.iter().enumerate() {
            acc += w;
            if r < acc {
                return i;
            }
        }
        unreachable!("r < total")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8439 §2.3.2 test vector reaches the same words through our stream
    /// layout: key 00..1f, nonce 000000090000004a00000000, counter 1.
    /// With a 64-bit counter and 64-bit stream id, that nonce is
    /// counter-high = 0x09000000, stream = 0x4a (little-endian words).
    #[test]
    fn chacha20_matches_rfc8439_block() {
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut rng = ChaCha20Rng::from_seed(key);
        // stream words 14–15 = nonce bytes 4..12 = 00 00 00 4a 00 00 00 00
        rng.set_stream(u64::from_le_bytes([0, 0, 0, 0x4a, 0, 0, 0, 0]));
        // words 12–13 = counter 1, with nonce bytes 0..4 (LE 0x09000000) as its high word
        let block = (0x0900_0000u64 << 32) | 1;
        rng.set_word_pos(u128::from(block) * 16);
        assert_eq!(rng.next_u32(), 0xe4e7f110);
        assert_eq!(rng.next_u32(), 0x15593bd1);
    }

    #[test]
    fn below_is_in_range_and_rejects_the_biased_tail() {
        let mut s = Stream::open(&[7; 32], "t", 0);
        for n in [1u32, 2, 3, 6, 7, 1000, u32::MAX] {
            for _ in 0..100 {
                assert!(s.below(n) < n);
            }
        }
    }

    /// The rejection step, pinned (docs/SPEC.md §5 and tests/vectors/draws.json):
    /// for n = 3,000,000,000, limit = 3,000,000,000. Words 1 and 2 of stream
    /// `simple` under the vectors' seed are 3,332,152,774 and 4,123,311,225, both
    /// at or above it, so both are rejected and word 3, 981,976,202, is returned.
    #[test]
    fn below_rejects_words_at_or_above_the_limit_and_draws_again() {
        let seed: [u8; 32] = hex::decode("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
            .unwrap()
            .try_into()
            .unwrap();
        let mut s = Stream::open(&seed, "simple", 1);
        assert_eq!((s.next_word(), s.next_word(), s.next_word()), (3_332_152_774, 4_123_311_225, 981_976_202));
        let mut s = Stream::open(&seed, "simple", 1);
        assert_eq!(s.below(3_000_000_000), 981_976_202);
        assert_eq!(s.word_pos(), 4, "two words rejected, the third taken");
        // Without the rejection the first word would have given 332,152,774.
        let mut s = Stream::open(&seed, "simple", 0);
        assert_eq!(s.below(3_000_000_000), 2_289_648_193);
        assert_eq!(s.word_pos(), 1);
    }

    #[test]
    fn reopening_at_a_position_continues_the_stream() {
        let mut a = Stream::open(&[1; 32], "blocks/x", 0);
        let first: Vec<u32> = (0..37).map(|_| a.next_word()).collect();
        let mut b = Stream::open(&[1; 32], "blocks/x", 20);
        assert_eq!(b.next_word(), first[20]);
        assert_eq!(b.word_pos(), 21);
    }

    #[test]
    fn streams_with_different_names_differ() {
        let mut a = Stream::open(&[1; 32], "a", 0);
        let mut b = Stream::open(&[1; 32], "b", 0);
        assert_ne!(a.next_word(), b.next_word());
    }
}

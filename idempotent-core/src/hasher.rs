//! The SHA-256 stream that keys and fingerprints are hashed into.
//!
//! The canonical encoding writes a value as many small pieces (a tag and a
//! length, then the bytes), some thirty per call for a typical request. A
//! general-purpose `Digest::update` pays a fixed cost per piece that, at this
//! size, weighs about as much as the compression itself, so this stream keeps
//! its own block buffer and hands only whole blocks to `sha2`'s compression
//! function. The digests are SHA-256's: the tests compare them with `sha2`'s
//! for every way of splitting the input.

use sha2::block_api::compress256;

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const INITIAL: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

const BLOCK: usize = 64;
/// Where the message length goes in the last block.
const LENGTH_AT: usize = BLOCK - 8;

/// A SHA-256 computation in progress.
#[derive(Clone)]
pub struct Hasher {
    state: [u32; 8],
    block: [u8; BLOCK],
    /// Bytes of `block` in use; always below [`BLOCK`].
    filled: usize,
    /// Whole blocks compressed so far.
    compressed: u64,
}

impl Hasher {
    /// An empty stream.
    #[cfg(test)]
    pub(crate) const fn new() -> Self {
        Self::starting_with([])
    }

    /// A stream that starts with `prefix`, at no cost per use when built as
    /// a constant (a prefix of a block or more is then a compile error).
    pub(crate) const fn starting_with<const N: usize>(prefix: [u8; N]) -> Self {
        assert!(N < BLOCK, "a prefix must fit the first block");
        let mut block = [0; BLOCK];
        let mut at = 0;
        while at < N {
            block[at] = prefix[at];
            at += 1;
        }
        Self {
            state: INITIAL,
            block,
            filled: at,
            compressed: 0,
        }
    }

    /// Appends `bytes`.
    #[inline]
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        let end = self.filled + bytes.len();
        if end < BLOCK {
            self.block[self.filled..end].copy_from_slice(bytes);
            self.filled = end;
        } else {
            self.put_across_blocks(bytes);
        }
    }

    /// Appends the first `len` bytes of `bytes`. While the block has room
    /// for all `N`, they are copied whole (a fixed-size copy, no call for a
    /// few bytes) and the bytes past `len` are overwritten by what follows.
    #[inline]
    pub(crate) fn put_prefix<const N: usize>(&mut self, bytes: &[u8; N], len: usize) {
        let len = len.min(N);
        if self.filled + N < BLOCK {
            self.block[self.filled..self.filled + N].copy_from_slice(bytes);
            self.filled += len;
        } else {
            self.put(&bytes[..len]);
        }
    }

    /// [`put`](Self::put) for bytes that complete the buffered block.
    fn put_across_blocks(&mut self, bytes: &[u8]) {
        let (head, rest) = bytes.split_at(BLOCK - self.filled);
        self.block[self.filled..].copy_from_slice(head);
        compress256(&mut self.state, std::slice::from_ref(&self.block));
        let (blocks, tail) = rest.as_chunks::<BLOCK>();
        if !blocks.is_empty() {
            compress256(&mut self.state, blocks);
        }
        self.compressed += 1 + blocks.len() as u64;
        self.block[..tail.len()].copy_from_slice(tail);
        self.filled = tail.len();
    }

    /// The digest of everything appended.
    pub(crate) fn finish(mut self) -> [u8; 32] {
        let bits = (self.compressed * BLOCK as u64 + self.filled as u64) * 8;
        self.block[self.filled] = 0x80;
        self.block[self.filled + 1..].fill(0);
        if self.filled >= LENGTH_AT {
            compress256(&mut self.state, std::slice::from_ref(&self.block));
            self.block = [0; BLOCK];
        }
        self.block[LENGTH_AT..].copy_from_slice(&bits.to_be_bytes());
        compress256(&mut self.state, std::slice::from_ref(&self.block));
        let mut digest = [0; 32];
        for (out, word) in digest.chunks_exact_mut(4).zip(self.state) {
            out.copy_from_slice(&word.to_be_bytes());
        }
        digest
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    fn message(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    #[test]
    fn digests_are_sha256_for_every_length_around_the_block_edges() {
        for len in 0..=3 * BLOCK + 1 {
            let bytes = message(len);
            let mut hasher = Hasher::new();
            hasher.put(&bytes);
            let expected: [u8; 32] = Sha256::digest(&bytes).into();
            assert_eq!(hasher.finish(), expected, "length {len}");
        }
    }

    #[test]
    fn digests_do_not_depend_on_how_the_input_is_split() {
        let bytes = message(300);
        let expected: [u8; 32] = Sha256::digest(&bytes).into();
        for piece in 1..=BLOCK + 3 {
            let mut hasher = Hasher::new();
            for chunk in bytes.chunks(piece) {
                hasher.put(chunk);
                hasher.put(&[]);
            }
            assert_eq!(hasher.finish(), expected, "pieces of {piece}");
        }
        // Uneven pieces, as the canonical encoding writes them.
        let mut hasher = Hasher::new();
        let mut rest = &bytes[..];
        for size in [1, 7, 55, 1, 64, 2, 63, 100].iter().cycle() {
            let (piece, tail) = rest.split_at((*size).min(rest.len()));
            hasher.put(piece);
            rest = tail;
            if rest.is_empty() {
                break;
            }
        }
        assert_eq!(hasher.finish(), expected);
    }

    #[test]
    fn a_stream_may_start_with_a_constant_prefix() {
        const STARTED: Hasher = Hasher::starting_with(*b"prefix");
        let mut hasher = STARTED;
        hasher.put(b" and the rest");
        let expected: [u8; 32] = Sha256::digest(b"prefix and the rest").into();
        assert_eq!(hasher.finish(), expected);
    }

    #[test]
    fn prefixes_hash_only_their_length() {
        let bytes = message(200);
        let expected: [u8; 32] = Sha256::digest(&bytes).into();
        for start in 0..BLOCK {
            let mut hasher = Hasher::new();
            hasher.put(&bytes[..start]);
            let mut rest = &bytes[start..];
            while !rest.is_empty() {
                let len = rest.len().min(5);
                let mut padded = [0xee; 11];
                padded[..len].copy_from_slice(&rest[..len]);
                hasher.put_prefix(&padded, len);
                rest = &rest[len..];
            }
            assert_eq!(hasher.finish(), expected, "starting at {start}");
        }
    }
}

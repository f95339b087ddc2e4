//! Random numbers: the counter-based Philox4x32-10 generator (Salmon et al., SC'11).
//!
//! A counter-based generator turns `(key, counter)` into random bits with a pure function, so
//! value number `i` of a draw can be computed by whichever thread (or GPU lane) owns element `i`,
//! in any order, and always comes out the same. That is what makes our parallel dropout masks and
//! noise independent of thread timing, and lets the CPU and CUDA backends produce the same
//! numbers from one seed.
//!
//! Layout of a draw of `n` values: the [`Generator`] hands out `ceil(n / 4)` consecutive counter
//! blocks; value `i` is lane `i % 4` of block `first_block + i / 4`, with key = the seed.

use std::sync::{Mutex, PoisonError};

const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9; // golden ratio
const PHILOX_W1: u32 = 0xBB67_AE85; // sqrt(3) - 1

/// How many blocks [`PhiloxStream::wide_blocks`] computes at once: two sets of 16 blocks, one
/// 512-bit register's worth of `u64` pairs each. A round is a chain of dependent instructions;
/// two independent sets give the processor one to work on while the other waits (on AMD Zen 4,
/// a uniform fill took 1.05 ns a value with 16 blocks at once, 0.61 with 32, 1.2 with 64).
pub const WIDE_BLOCKS: usize = 32;

/// The seed the process-wide generator starts from, as `torch.initial_seed()` would report.
pub const DEFAULT_SEED: u64 = 0x5EED;

/// Philox4x32 with 10 rounds: four 32-bit random words from a 128-bit counter and a 64-bit key.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(PHILOX_W0);
            k[1] = k[1].wrapping_add(PHILOX_W1);
        }
        let p0 = u64::from(PHILOX_M0) * u64::from(c[0]);
        let p1 = u64::from(PHILOX_M1) * u64::from(c[2]);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// A uniform float in `[0, 1)` from the top 24 bits of a random word (every value exact in f32).
pub fn unit_f32(bits: u32) -> f32 {
    (bits >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// A uniform float in `(0, 1]`, safe to take the logarithm of.
fn unit_f32_nonzero(bits: u32) -> f32 {
    ((bits >> 8) + 1) as f32 * (1.0 / 16_777_216.0)
}

/// Box–Muller: two independent N(0, 1) samples from two random words.
pub fn box_muller(bits_a: u32, bits_b: u32) -> (f32, f32) {
    let radius = (-2.0 * unit_f32_nonzero(bits_a).ln()).sqrt();
    let angle = std::f32::consts::TAU * unit_f32(bits_b);
    (radius * angle.cos(), radius * angle.sin())
}

/// The part of a generator a kernel needs to produce value `i` of one draw: the key and the
/// first counter block. It is `Copy`, so it travels to worker threads (and later to GPU kernels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhiloxStream {
    key: [u32; 2],
    first_block: u64,
}

impl PhiloxStream {
    /// The key: the seed's low and high words.
    pub fn key(&self) -> [u32; 2] {
        self.key
    }

    /// The counter block of value 0.
    pub fn first_block(&self) -> u64 {
        self.first_block
    }

    /// The four random words of block `block` of this draw (block `b` holds values `4b..4b+4`).
    pub fn block(&self, block: u64) -> [u32; 4] {
        let counter = self.first_block.wrapping_add(block);
        philox4x32_10([counter as u32, (counter >> 32) as u32, 0, 0], self.key)
    }

    /// Blocks `first..first + WIDE_BLOCKS` at once, word by word: `words[w][l]` is word `w` of
    /// block `first + l`, the same words as [`PhiloxStream::block`]. The CPU backend's random
    /// fills use it; the compiler turns each round into a few AVX-512 instructions.
    ///
    /// Why lanes in pairs: a round needs the high and low halves of two 32 × 32-bit products,
    /// and x86 multiplies 32-bit lanes into 64-bit products only in the even lanes
    /// (`VPMULUDQ`). So two blocks share a `u64`, block `2i` in its low half and `2i + 1` in its
    /// high half: one multiply gives the even blocks' products, a shift and another the odd
    /// blocks', and shifts and masks put the halves back in place. (Written lane by lane over
    /// `u32`, the compiler widened every lane to 64 bits and back, twice the instructions.)
    #[inline(always)]
    pub fn wide_blocks(&self, first: u64) -> [[u32; WIDE_BLOCKS]; 4] {
        const LOW: u64 = 0xFFFF_FFFF;
        const PAIRS: usize = WIDE_BLOCKS / 2;
        let counters: [u64; WIDE_BLOCKS] =
            std::array::from_fn(|l| self.first_block.wrapping_add(first + l as u64));
        let pair_of = |even: u32, odd: u32| u64::from(even) | (u64::from(odd) << 32);
        let halves = |i: usize, shift: u32| {
            let [even, odd] = [counters[2 * i], counters[2 * i + 1]];
            pair_of((even >> shift) as u32, (odd >> shift) as u32)
        };
        // Words 0 and 1 of a block hold its counter's low and high halves; words 2 and 3 are 0.
        let mut c: [[u64; PAIRS]; 4] = [
            std::array::from_fn(|i| halves(i, 0)),
            std::array::from_fn(|i| halves(i, 32)),
            [0; PAIRS],
            [0; PAIRS],
        ];
        // (hi, lo) of x · m in every 32-bit lane of x, as pairs again.
        let multiply = |x: u64, m: u32| {
            let even = (x & LOW) * u64::from(m);
            let odd = (x >> 32) * u64::from(m);
            ((even >> 32) | (odd & !LOW), (even & LOW) | (odd << 32))
        };
        let mut k = self.key;
        for round in 0..10 {
            if round > 0 {
                k[0] = k[0].wrapping_add(PHILOX_W0);
                k[1] = k[1].wrapping_add(PHILOX_W1);
            }
            let (k0, k1) = (pair_of(k[0], k[0]), pair_of(k[1], k[1]));
            for i in 0..PAIRS {
                // The round of `philox4x32_10`, on blocks 2i and 2i + 1.
                let (hi0, lo0) = multiply(c[0][i], PHILOX_M0);
                let (hi1, lo1) = multiply(c[2][i], PHILOX_M1);
                let next = [hi1 ^ c[1][i] ^ k0, lo1, hi0 ^ c[3][i] ^ k1, lo0];
                for (word, value) in c.iter_mut().zip(next) {
                    word[i] = value;
                }
            }
        }
        c.map(|pairs| std::array::from_fn(|l| (pairs[l / 2] >> (32 * (l % 2))) as u32))
    }
}

/// A seeded stream of random numbers: a seed (the Philox key) and an offset (the next unused
/// counter block). The pair is the whole state, so saving and restoring it resumes a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generator {
    seed: u64,
    offset: u64,
}

impl Generator {
    /// A generator at the start of the stream for `seed`.
    pub const fn new(seed: u64) -> Self {
        Generator { seed, offset: 0 }
    }

    /// A generator at a saved position (see [`Generator::offset`]).
    pub const fn from_state(seed: u64, offset: u64) -> Self {
        Generator { seed, offset }
    }

    /// The seed: the key of every block this generator draws.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// How many counter blocks have been used so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reserves the counter blocks for `len` values and returns the stream that produces them.
    pub fn draw(&mut self, len: usize) -> PhiloxStream {
        let stream = PhiloxStream {
            key: [self.seed as u32, (self.seed >> 32) as u32],
            first_block: self.offset,
        };
        self.offset = self.offset.wrapping_add(len.div_ceil(4) as u64);
        stream
    }
}

static DEFAULT_GENERATOR: Mutex<Generator> = Mutex::new(Generator::new(DEFAULT_SEED));

/// Reseeds the process-wide generator, as `torch.manual_seed` does.
pub fn manual_seed(seed: u64) {
    with_default_generator(|generator| *generator = Generator::new(seed));
}

/// Reserves the process-wide generator's next draws, of `lens` values each, and returns a
/// generator positioned at the first: making those same draws from it gives the numbers the
/// process-wide generator would have, without holding its lock meanwhile. (A random fill runs
/// on the rayon pool; holding the lock through it would deadlock with a pool thread that needs
/// the generator itself.)
pub fn reserve_default(lens: &[usize]) -> Generator {
    with_default_generator(|generator| {
        let start = *generator;
        for &len in lens {
            generator.draw(len);
        }
        start
    })
}

/// Runs `f` with the process-wide generator, which ops use when no generator is given. `f`
/// holds the generator's lock: it should not run parallel work (see [`reserve_default`]).
pub fn with_default_generator<R>(f: impl FnOnce(&mut Generator) -> R) -> R {
    let mut generator = DEFAULT_GENERATOR
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    f(&mut generator)
}

//! The kernel's random number generator behind `/dev/random` and `/dev/urandom`: ChaCha20 (RFC 8439) with fast key erasure, seeded from clock jitter and the CPU's hardware generator, reseeded every minute.
//!
//! Like Linux's CRNG, a 256-bit key is the whole secret state. Each request draws ChaCha20
//! blocks under the key with a fresh nonce and replaces the key with the first 32 bytes of
//! output before returning anything, so a later compromise of the key reveals nothing
//! already handed out. Entropy is absorbed 12 bytes at a time as the nonce of one ChaCha20
//! block under the current key (with a block counter output generation never reaches),
//! whose first 32 bytes become the new key: a keyed PRF of the input, so the key stays
//! unpredictable as long as either the old key or the new input is.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::sync::IrqSpinLock;

/// Seconds between reseeds (Linux's `CRNG_RESEED_INTERVAL`).
pub const RESEED_INTERVAL_NANOSECONDS: u64 = 60_000_000_000;
/// Bytes produced under one key before it is replaced (one request may span several).
const BYTES_PER_KEY: usize = 4096;
/// The block counter used only for absorbing entropy; output stays far below it.
const ABSORB_COUNTER: u32 = u32::MAX;

/// ChaCha20 (RFC 8439 section 2.3).
pub mod chacha20 {
    const CONSTANTS: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

    #[inline(always)]
    fn quarter_round(state: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
        state[a] = state[a].wrapping_add(state[b]);
        state[d] = (state[d] ^ state[a]).rotate_left(16);
        state[c] = state[c].wrapping_add(state[d]);
        state[b] = (state[b] ^ state[c]).rotate_left(12);
        state[a] = state[a].wrapping_add(state[b]);
        state[d] = (state[d] ^ state[a]).rotate_left(8);
        state[c] = state[c].wrapping_add(state[d]);
        state[b] = (state[b] ^ state[c]).rotate_left(7);
    }

    /// One 64-byte block of the key stream for `key`, block `counter` and `nonce`.
    pub fn block(key: &[u32; 8], counter: u32, nonce: &[u32; 3]) -> [u8; 64] {
        let mut initial = [0u32; 16];
        initial[..4].copy_from_slice(&CONSTANTS);
        initial[4..12].copy_from_slice(key);
        initial[12] = counter;
        initial[13..].copy_from_slice(nonce);
        let mut state = initial;
        for _ in 0..10 {
            quarter_round(&mut state, 0, 4, 8, 12);
            quarter_round(&mut state, 1, 5, 9, 13);
            quarter_round(&mut state, 2, 6, 10, 14);
            quarter_round(&mut state, 3, 7, 11, 15);
            quarter_round(&mut state, 0, 5, 10, 15);
            quarter_round(&mut state, 1, 6, 11, 12);
            quarter_round(&mut state, 2, 7, 8, 13);
            quarter_round(&mut state, 3, 4, 9, 14);
        }
        let mut out = [0u8; 64];
        for (index, word) in state.iter().enumerate() {
            out[index * 4..index * 4 + 4].copy_from_slice(&word.wrapping_add(initial[index]).to_le_bytes());
        }
        out
    }

    /// Little-endian words of 32 key bytes.
    pub fn key_words(bytes: &[u8]) -> [u32; 8] {
        let mut words = [0u32; 8];
        for (index, word) in words.iter_mut().enumerate() {
            *word = u32::from_le_bytes([bytes[index * 4], bytes[index * 4 + 1], bytes[index * 4 + 2], bytes[index * 4 + 3]]);
        }
        words
    }

    /// Encrypts (or decrypts) `data` in place, starting at block `counter`.
    pub fn apply_key_stream(key: &[u32; 8], counter: u32, nonce: &[u32; 3], data: &mut [u8]) {
        for (index, chunk) in data.chunks_mut(64).enumerate() {
            let stream = block(key, counter.wrapping_add(index as u32), nonce);
            for (byte, key_byte) in chunk.iter_mut().zip(stream) {
                *byte ^= key_byte;
            }
        }
    }
}

/// A ChaCha20 generator with fast key erasure (no locking; see [`get_random_bytes`]).
pub struct Crng {
    key: [u32; 8],
    generation: u64,
    seeded: bool,
    last_reseed: u64,
}

impl Crng {
    /// A generator with an all-zero key: predictable until [`Crng::absorb`] is called.
    pub const fn new() -> Self {
        Crng { key: [0; 8], generation: 0, seeded: false, last_reseed: 0 }
    }

    /// Mixes `entropy` into the key (12 bytes per ChaCha20 block).
    pub fn absorb(&mut self, entropy: &[u8]) {
        for chunk in entropy.chunks(12) {
            let mut padded = [0u8; 12];
            padded[..chunk.len()].copy_from_slice(chunk);
            let nonce = [
                u32::from_le_bytes([padded[0], padded[1], padded[2], padded[3]]),
                u32::from_le_bytes([padded[4], padded[5], padded[6], padded[7]]),
                u32::from_le_bytes([padded[8], padded[9], padded[10], padded[11]]),
            ];
            let output = chacha20::block(&self.key, ABSORB_COUNTER, &nonce);
            self.key = chacha20::key_words(&output[..32]);
        }
    }

    /// Records a reseed at `now` (nanoseconds since boot), after [`Crng::absorb`] of a seed.
    pub fn mark_seeded(&mut self, now: u64) {
        self.seeded = true;
        self.last_reseed = now;
    }

    /// Whether a reseed is due at `now` (never seeded, or seeded over a minute ago).
    pub fn needs_reseed(&self, now: u64) -> bool {
        !self.seeded || now.saturating_sub(self.last_reseed) >= RESEED_INTERVAL_NANOSECONDS
    }

    /// Fills `buffer` with generator output, replacing the key every [`BYTES_PER_KEY`] bytes.
    pub fn fill(&mut self, buffer: &mut [u8]) {
        for chunk in buffer.chunks_mut(BYTES_PER_KEY) {
            let old_key = self.key;
            let nonce = [self.generation as u32, (self.generation >> 32) as u32, 0];
            self.generation = self.generation.wrapping_add(1);
            let first = chacha20::block(&old_key, 0, &nonce);
            self.key = chacha20::key_words(&first[..32]);
            let from_first = chunk.len().min(32);
            chunk[..from_first].copy_from_slice(&first[32..32 + from_first]);
            for (index, piece) in chunk[from_first..].chunks_mut(64).enumerate() {
                let block = chacha20::block(&old_key, 1 + index as u32, &nonce);
                piece.copy_from_slice(&block[..piece.len()]);
            }
        }
    }
}

impl Default for Crng {
    fn default() -> Self {
        Self::new()
    }
}

static CRNG: IrqSpinLock<Crng> = IrqSpinLock::new(Crng::new());
static RESEEDS: AtomicU64 = AtomicU64::new(0);

/// Samples `buffer.len()` timing differences of a short data-dependent loop read from the
/// clocksource: the low bits vary with cache, pipeline and interrupt timing (Linux's
/// jitter entropy in spirit). Under emulation they vary less, which is why the hardware
/// generator and the boot-time values are mixed in as well.
fn clock_jitter(buffer: &mut [u8]) {
    let Some(platform) = crate::try_platform() else { return };
    let clock = platform.clock();
    let mut previous = clock.counter();
    let mut scratch: u64 = previous;
    for byte in buffer.iter_mut() {
        let rounds = 8 + (scratch & 0x3f);
        for _ in 0..rounds {
            scratch = scratch.rotate_left(7) ^ scratch.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        let now = clock.counter();
        let delta = now.wrapping_sub(previous);
        previous = now;
        *byte = (delta ^ (delta >> 8) ^ (scratch & 0xff)) as u8;
    }
}

/// Gathers a seed: hardware random words where the CPU has a generator, clock jitter, and
/// the clock's current value.
fn gather_entropy(seed: &mut [u8; 96]) {
    clock_jitter(&mut seed[..64]);
    if let Some(platform) = crate::try_platform() {
        let cpu = platform.cpu();
        for index in 0..3 {
            if let Some(value) = cpu.hardware_random_u64() {
                seed[64 + index * 8..72 + index * 8].copy_from_slice(&value.to_le_bytes());
            }
        }
        seed[88..96].copy_from_slice(&platform.clock().counter().to_le_bytes());
    }
}

/// Whether the CPU offers a hardware generator that delivered just now.
pub fn hardware_generator_available() -> bool {
    crate::try_platform().is_some_and(|platform| platform.cpu().hardware_random_u64().is_some())
}

/// Reseeds now, whatever the time since the last reseed.
pub fn reseed() {
    let mut seed = [0u8; 96];
    gather_entropy(&mut seed);
    let now = crate::time::since_boot_nanoseconds();
    let mut crng = CRNG.lock();
    crng.absorb(&seed);
    crng.mark_seeded(now);
    RESEEDS.fetch_add(1, Ordering::Relaxed);
}

/// Reseeds done so far (the first, at first use, included).
pub fn reseeds() -> u64 {
    RESEEDS.load(Ordering::Relaxed)
}

/// Mixes data that differs between machines or boots (not counted as entropy) into the key.
pub fn add_device_randomness(data: &[u8]) {
    CRNG.lock().absorb(data);
}

/// Fills `buffer` with cryptographically strong random bytes (Linux's `get_random_bytes`),
/// seeding at first use and reseeding when the last seed is a minute old.
pub fn get_random_bytes(buffer: &mut [u8]) {
    let now = crate::time::since_boot_nanoseconds();
    if CRNG.lock().needs_reseed(now) {
        reseed();
    }
    // One key's worth at a time, so a large read does not hold the lock (with interrupts
    // masked) for long.
    for chunk in buffer.chunks_mut(BYTES_PER_KEY) {
        CRNG.lock().fill(chunk);
    }
}

/// A random `u64` from [`get_random_bytes`].
pub fn get_random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    get_random_bytes(&mut bytes);
    u64::from_le_bytes(bytes)
}

crate::ktest!(
    fn random_bytes_differ_and_are_balanced() {
        let mut first = [0u8; 4096];
        let mut second = [0u8; 4096];
        get_random_bytes(&mut first);
        get_random_bytes(&mut second);
        crate::kassert!(first != second, "two draws returned the same bytes");
        crate::kassert!(reseeds() >= 1, "the generator was never seeded");
        // 32768 fair bits: the count of ones lies within 6 standard deviations (90.5) of
        // 16384 with overwhelming probability; a stuck or zeroed generator falls far outside.
        let ones: u32 = first.iter().map(|byte| byte.count_ones()).sum();
        crate::kassert!((15_841..=16_927).contains(&ones), "{} one bits of 32768", ones);
        let cpu = crate::platform().cpu();
        if let (Some(first), Some(second)) = (cpu.hardware_random_u64(), cpu.hardware_random_u64()) {
            crate::kassert!(first != second, "the hardware generator repeated {:#x}", first);
        }
        log::info!("random: hardware generator {}", if hardware_generator_available() { "present" } else { "absent" });
        Ok(())
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// RFC 8439 section 2.3.2: the block function test vector.
    #[test]
    fn chacha20_block_matches_rfc_8439() {
        let key: Vec<u8> = (0..32).collect();
        let nonce = [0x0900_0000, 0x4a00_0000, 0];
        let block = chacha20::block(&chacha20::key_words(&key), 1, &nonce);
        assert_eq!(
            hex(&block),
            "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e\
             d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
        );
    }

    /// RFC 8439 section 2.4.2: encrypting the "sunscreen" plaintext.
    #[test]
    fn chacha20_encryption_matches_rfc_8439() {
        let key: Vec<u8> = (0..32).collect();
        let nonce = [0, 0x4a00_0000, 0];
        let mut text =
            b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.".to_vec();
        chacha20::apply_key_stream(&chacha20::key_words(&key), 1, &nonce, &mut text);
        assert_eq!(
            hex(&text),
            "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b\
             f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8\
             07ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736\
             5af90bbf74a35be6b40b8eedf2785e42874d"
        );
    }

    #[test]
    fn keys_are_erased_and_entropy_changes_the_stream() {
        let mut generator = Crng::new();
        let key_before = generator.key;
        let mut first = [0u8; 100];
        generator.fill(&mut first);
        assert_ne!(generator.key, key_before, "the key is replaced after each request");
        let mut second = [0u8; 100];
        generator.fill(&mut second);
        assert_ne!(first, second);

        let mut same = Crng::new();
        let mut again = [0u8; 100];
        same.fill(&mut again);
        assert_eq!(first, again, "the same state gives the same stream");

        let mut seeded = Crng::new();
        seeded.absorb(b"some entropy");
        let mut different = [0u8; 100];
        seeded.fill(&mut different);
        assert_ne!(first, different);

        let mut other = Crng::new();
        other.absorb(b"some entropz");
        let mut other_output = [0u8; 100];
        other.fill(&mut other_output);
        assert_ne!(different, other_output, "one input bit changes the stream");
    }

    #[test]
    fn long_requests_span_keys_and_reseeds_are_due_every_minute() {
        let mut generator = Crng::new();
        let mut long = vec![0u8; 3 * BYTES_PER_KEY + 17];
        generator.fill(&mut long);
        assert_eq!(generator.generation, 4);
        let chunks: Vec<&[u8]> = long.chunks(BYTES_PER_KEY).collect();
        assert_ne!(chunks[0], chunks[1]);
        assert!(generator.needs_reseed(0));
        generator.mark_seeded(5);
        assert!(!generator.needs_reseed(5 + RESEED_INTERVAL_NANOSECONDS - 1));
        assert!(generator.needs_reseed(5 + RESEED_INTERVAL_NANOSECONDS));
    }
}

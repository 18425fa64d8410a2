//! Byte-level mutations shared by the targets (AFL's havoc stage, in small): bit flips,
//! interesting values, insertions, deletions, truncation, block duplication.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Bytes that sit on boundaries (0, sign bits, all-ones, IPv4 version/IHL nibbles).
const INTERESTING8: [u8; 10] = [0, 1, 0x0f, 0x10, 0x40, 0x45, 0x4f, 0x7f, 0x80, 0xff];
/// 16-bit values that sit on boundaries (lengths, ports, fragment offsets).
const INTERESTING16: [u16; 10] = [0, 1, 7, 8, 20, 0x3fff, 0x7fff, 0x8000, 0xfffe, 0xffff];

/// Applies `1..=max_ops` random mutations to `data` (which may become empty or grow up to
/// `max_len`).
pub fn havoc(rng: &mut ChaCha8Rng, data: &mut Vec<u8>, max_ops: u32, max_len: usize) {
    let ops = rng.random_range(1..=max_ops.max(1));
    for _ in 0..ops {
        one(rng, data, max_len);
    }
}

fn one(rng: &mut ChaCha8Rng, data: &mut Vec<u8>, max_len: usize) {
    let len = data.len();
    match rng.random_range(0..9u8) {
        0 if len > 0 => {
            let i = rng.random_range(0..len);
            data[i] ^= 1 << rng.random_range(0..8u8);
        }
        1 if len > 0 => {
            let i = rng.random_range(0..len);
            data[i] = INTERESTING8[rng.random_range(0..INTERESTING8.len())];
        }
        2 if len > 1 => {
            let i = rng.random_range(0..len - 1);
            let v = INTERESTING16[rng.random_range(0..INTERESTING16.len())];
            data[i..i + 2].copy_from_slice(&v.to_be_bytes());
        }
        3 if len > 0 => {
            let i = rng.random_range(0..len);
            data[i] = rng.random();
        }
        4 if len < max_len => {
            let i = rng.random_range(0..=len);
            let n = rng.random_range(1..=16usize).min(max_len - len);
            for _ in 0..n {
                data.insert(i, rng.random());
            }
        }
        5 if len > 0 => {
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(16));
            data.drain(i..i + n);
        }
        6 if len > 0 => data.truncate(rng.random_range(0..len)),
        7 if len > 0 && len < max_len => {
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(32)).min(max_len - len);
            let block: Vec<u8> = data[i..i + n].to_vec();
            let at = rng.random_range(0..=len);
            data.splice(at..at, block);
        }
        8 if len > 3 => {
            // Arithmetic on a byte (lengths and counters off by a little).
            let i = rng.random_range(0..len);
            let d: i8 = rng.random_range(-8..=8);
            data[i] = data[i].wrapping_add(d as u8);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn havoc_stays_within_max_len() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for n in 0..2000 {
            let mut d = vec![0x45; n % 70];
            havoc(&mut rng, &mut d, 8, 80);
            assert!(d.len() <= 80);
        }
    }
}

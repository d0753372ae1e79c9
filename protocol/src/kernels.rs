//! The two inner loops of int8 aggregation: checking a block's quantised values and adding
//! them, times the block's fixed-point factor, into the `i64` accumulator.
//!
//! The canister is built for `wasm32` with `simd128` (the IC executes wasm SIMD
//! deterministically on every node), and the IC charges per executed wasm instruction, so
//! these loops are written with explicit 128-bit SIMD there: LLVM's auto-vectorisation of
//! the plain loops cost about 20 instructions per parameter, these about 9
//! (docs/benchmarks.md, section 1). Everywhere else (the client, verifiers, native tests)
//! the plain loops run. Both are integer arithmetic with wrapping, so they give the same
//! bits; the wasm-level tests compare the canister's models with the native `Accumulator`
//! to check it.

/// What [`int8_check`] finds in one int8 block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Int8Block {
    /// Some byte is `0x80` (-128, outside the symmetric int8 range).
    pub any_min: bool,
    /// Some value is ±127: the block is canonical if its scale is nonzero.
    pub any_full: bool,
    /// The sum of `q²` over the bytes read as `i8`.
    pub sum_sq: i32,
}

/// Checks one int8 block's values (`qs`, at most 256 of them, so the sum of squares, at
/// most `256 * 127²` plus one `128²`, is exact in `i32`).
#[inline]
pub fn int8_check(qs: &[u8]) -> Int8Block {
    debug_assert!(qs.len() <= 256);
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd::int8_check(qs)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        scalar_check(qs)
    }
}

/// `acc[i] += factor * (qs[i] as i8)`, wrapping. `acc` and `qs` have the same length.
#[inline]
pub fn int8_mul_add(acc: &mut [i64], qs: &[u8], factor: i64) {
    assert_eq!(acc.len(), qs.len(), "one accumulator entry per value");
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd::int8_mul_add(acc, qs, factor)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        scalar_mul_add(acc, qs, factor)
    }
}

#[allow(dead_code)] // the tail of the SIMD loops, and the whole loop off wasm
fn scalar_check(qs: &[u8]) -> Int8Block {
    let any_min = qs.iter().fold(false, |m, &b| m | (b == 0x80));
    let any_full = qs.iter().fold(false, |m, &b| m | (b == 0x7f) | (b == 0x81));
    let sum_sq = qs
        .iter()
        .map(|&b| {
            let q = b as i8 as i32;
            q * q
        })
        .sum();
    Int8Block {
        any_min,
        any_full,
        sum_sq,
    }
}

#[allow(dead_code)]
fn scalar_mul_add(acc: &mut [i64], qs: &[u8], factor: i64) {
    for (a, &q) in acc.iter_mut().zip(qs) {
        *a = a.wrapping_add(factor.wrapping_mul(q as i8 as i64));
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use core::arch::wasm32::*;

    /// 16 values per step: one load, a compare-and-or for -128, an abs-compare-and-or for
    /// ±127, and `q²` summed by two `i32x4.dot_i16x8_s` (12 SIMD instructions per 16 values).
    pub fn int8_check(qs: &[u8]) -> super::Int8Block {
        let steps = qs.len() / 16;
        let (min, full) = (i8x16_splat(i8::MIN), i8x16_splat(127));
        let (mut any, mut any_full, mut sum) = (i8x16_splat(0), i8x16_splat(0), i32x4_splat(0));
        for s in 0..steps {
            // SAFETY: `s * 16 + 16 <= qs.len()`; wasm loads need no alignment.
            let v = unsafe { (qs.as_ptr().add(s * 16) as *const v128).read_unaligned() };
            any = v128_or(any, i8x16_eq(v, min));
            // abs(-128) wraps to -128, which is not 127.
            any_full = v128_or(any_full, i8x16_eq(i8x16_abs(v), full));
            let (lo, hi) = (i16x8_extend_low_i8x16(v), i16x8_extend_high_i8x16(v));
            sum = i32x4_add(
                sum,
                i32x4_add(i32x4_dot_i16x8(lo, lo), i32x4_dot_i16x8(hi, hi)),
            );
        }
        let tail = super::scalar_check(&qs[steps * 16..]);
        let sum_sq = i32x4_extract_lane::<0>(sum)
            + i32x4_extract_lane::<1>(sum)
            + i32x4_extract_lane::<2>(sum)
            + i32x4_extract_lane::<3>(sum)
            + tail.sum_sq;
        super::Int8Block {
            any_min: v128_any_true(any) | tail.any_min,
            any_full: v128_any_true(any_full) | tail.any_full,
            sum_sq,
        }
    }

    /// 16 values per step: sign-extend `i8 -> i16 -> i32 -> i64` (14 extends), then per pair
    /// of values one `i64x2.mul`, and a load, add and store of the accumulator. Written out
    /// straight: the canister is built with `opt-level = "s"`, which does not unroll loops
    /// over small arrays, and every wasm operator (`local.get` included) is charged.
    pub fn int8_mul_add(acc: &mut [i64], qs: &[u8], factor: i64) {
        let steps = qs.len() / 16;
        let f = i64x2_splat(factor);
        let (mut q, mut a) = (qs.as_ptr() as *const v128, acc.as_mut_ptr() as *mut v128);
        // SAFETY: `steps * 16 <= qs.len() == acc.len()`: each step reads 16 bytes of `qs` and
        // updates 16 `i64` of `acc` (8 v128); wasm loads and stores need no alignment; `acc`
        // is borrowed mutably, so nothing else reads it meanwhile.
        unsafe {
            #[inline(always)]
            unsafe fn madd(p: *mut v128, x: v128, f: v128) {
                p.write_unaligned(i64x2_add(p.read_unaligned(), i64x2_mul(x, f)));
            }
            for _ in 0..steps {
                let v = q.read_unaligned();
                let (lo, hi) = (i16x8_extend_low_i8x16(v), i16x8_extend_high_i8x16(v));
                let x = i32x4_extend_low_i16x8(lo);
                madd(a, i64x2_extend_low_i32x4(x), f);
                madd(a.add(1), i64x2_extend_high_i32x4(x), f);
                let x = i32x4_extend_high_i16x8(lo);
                madd(a.add(2), i64x2_extend_low_i32x4(x), f);
                madd(a.add(3), i64x2_extend_high_i32x4(x), f);
                let x = i32x4_extend_low_i16x8(hi);
                madd(a.add(4), i64x2_extend_low_i32x4(x), f);
                madd(a.add(5), i64x2_extend_high_i32x4(x), f);
                let x = i32x4_extend_high_i16x8(hi);
                madd(a.add(6), i64x2_extend_low_i32x4(x), f);
                madd(a.add(7), i64x2_extend_high_i32x4(x), f);
                q = q.add(1);
                a = a.add(8);
            }
        }
        super::scalar_mul_add(&mut acc[steps * 16..], &qs[steps * 16..], factor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn mul_add_is_the_plain_loop(qs in proptest::collection::vec(any::<u8>(), 0..300), factor in any::<i64>(), start in any::<i64>()) {
            let mut acc = vec![start; qs.len()];
            int8_mul_add(&mut acc, &qs, factor);
            for (a, &q) in acc.iter().zip(&qs) {
                prop_assert_eq!(*a, start.wrapping_add(factor.wrapping_mul(q as i8 as i64)));
            }
        }

        #[test]
        fn check_finds_min_and_sums_squares(qs in proptest::collection::vec(any::<u8>(), 0..=256)) {
            let b = int8_check(&qs);
            prop_assert_eq!(b.any_min, qs.contains(&0x80));
            prop_assert_eq!(b.any_full, qs.iter().any(|&q| (q as i8).unsigned_abs() == 127));
            prop_assert_eq!(b.sum_sq as i64, qs.iter().map(|&b| (b as i8 as i64).pow(2)).sum::<i64>());
        }
    }
}

//! Delta encodings and their validation.
//!
//! - [`DeltaEncoding::F32`]: `param_count` little-endian `f32`, 4 bytes each.
//! - [`DeltaEncoding::Int8Blocks`]: the parameters in blocks of [`INT8_BLOCK_LEN`] (the
//!   last block may be shorter). Each block is its `f32` LE scale followed by one `i8` per
//!   element: `scale = max|x| / 127` (an `f32` division), `q = round_half_away(x / scale)`
//!   clamped to `[-127, 127]` (`q = 0` everywhere when `scale = 0`); decoding is `q * scale`.
//!   The encoding is canonical: a block with a nonzero scale holds a value of magnitude 127
//!   (its largest), and a block with scale 0 holds only zeros; a block whose every `|x|` is
//!   below [`INT8_FLUSH_BELOW`] (its scale would be subnormal) is encoded as zeros.
//!
//! Decoders take untrusted bytes: lengths are checked exactly, non-finite values, negative
//! or oversized scales and `q = -128` are rejected with a [`DeltaError`], never a panic.
//! Validation is streaming ([`DeltaCheck`] over [`Window`]s) so a canister can check a
//! delta held in stable memory without loading it whole.

use candid::CandidType;
use serde::{Deserialize, Serialize};

/// Elements per int8 block.
pub const INT8_BLOCK_LEN: usize = 256;
/// Bytes per full int8 block: the `f32` scale plus one byte per element.
pub const INT8_BLOCK_BYTES: usize = 4 + INT8_BLOCK_LEN;
/// Relative tolerance on the clipping bound. The client clips in `f64` and rounds to `f32`
/// (relative error 2^-24 per element), and the int8 scale is an `f32` division (2^-24
/// again); 1e-5 is about 80 times that, and far below anything that matters for the
/// aggregate.
pub const CLIP_TOLERANCE: f64 = 1e-5;

/// `127 * f32::MIN_POSITIVE` (exact in `f32`): an int8 block whose largest magnitude is
/// below it encodes as zeros, since its scale `max / 127` would be subnormal.
pub const INT8_FLUSH_BELOW: f32 = 127.0 * f32::MIN_POSITIVE;

/// The most an accepted int8 delta's norm can exceed `clip_norm * (1 + CLIP_TOLERANCE)`,
/// as a factor: `127 / 119`, independent of the parameter count (see [`DeltaCheck`]).
pub const INT8_MAX_NORM_FACTOR: f64 = 127.0 / 119.0;

/// How a delta is encoded on the wire. The header carries it as a one-byte tag.
#[derive(
    CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum DeltaEncoding {
    F32,
    Int8Blocks,
}

impl DeltaEncoding {
    /// Tag byte in the signed header.
    pub fn tag(self) -> u8 {
        match self {
            DeltaEncoding::F32 => 1,
            DeltaEncoding::Int8Blocks => 2,
        }
    }

    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(DeltaEncoding::F32),
            2 => Some(DeltaEncoding::Int8Blocks),
            _ => None,
        }
    }

    /// Exact encoded length in bytes of a delta of `param_count` parameters. Saturates at
    /// `u64::MAX` (no buffer is that long), so an untrusted count can neither overflow nor
    /// wrap to the length of a short buffer (found by the `delta_decoders` fuzz target).
    pub fn encoded_len(self, param_count: u64) -> u64 {
        match self {
            DeltaEncoding::F32 => param_count.saturating_mul(4),
            DeltaEncoding::Int8Blocks => {
                param_count.saturating_add(4 * param_count.div_ceil(INT8_BLOCK_LEN as u64))
            }
        }
    }

    /// Parameters per window are rounded to this multiple so windows never split a block.
    pub fn window_align(self) -> u64 {
        match self {
            DeltaEncoding::F32 => 1,
            DeltaEncoding::Int8Blocks => INT8_BLOCK_LEN as u64,
        }
    }

    /// Byte offset of parameter `first` (block-aligned for int8).
    pub fn byte_offset(self, first: u64) -> u64 {
        match self {
            DeltaEncoding::F32 => first * 4,
            DeltaEncoding::Int8Blocks => first / INT8_BLOCK_LEN as u64 * INT8_BLOCK_BYTES as u64,
        }
    }

    /// Splits `param_count` parameters into windows of about `window_params` parameters.
    pub fn windows(self, param_count: u64, window_params: u64) -> impl Iterator<Item = Window> {
        let align = self.window_align();
        let step = window_params.max(align) / align * align;
        let mut first = 0u64;
        std::iter::from_fn(move || {
            if first >= param_count {
                return None;
            }
            let count = step.min(param_count - first);
            let w = Window {
                first_param: first,
                param_count: count,
                byte_offset: self.byte_offset(first),
                byte_len: self.encoded_len(count),
            };
            first += count;
            Some(w)
        })
    }
}

impl std::fmt::Display for DeltaEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeltaEncoding::F32 => "f32",
            DeltaEncoding::Int8Blocks => "int8 blocks",
        })
    }
}

/// A contiguous range of parameters and the bytes that encode them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub first_param: u64,
    pub param_count: u64,
    pub byte_offset: u64,
    pub byte_len: u64,
}

impl Window {
    /// The window's parameters as indices into a flat vector held in memory.
    pub fn params(&self) -> std::ops::Range<usize> {
        self.first_param as usize..(self.first_param + self.param_count) as usize
    }

    /// The window's bytes as indices into an encoded delta held in memory.
    pub fn bytes(&self) -> std::ops::Range<usize> {
        self.byte_offset as usize..(self.byte_offset + self.byte_len) as usize
    }
}

/// Why a delta was rejected. Indices are parameter indices (or block indices) in the flat
/// vector.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, thiserror::Error)]
pub enum DeltaError {
    #[error("delta is {got} bytes, a {encoding} delta of {param_count} parameters is exactly {expected} bytes")]
    WrongLength {
        encoding: DeltaEncoding,
        param_count: u64,
        expected: u64,
        got: u64,
    },
    #[error("delta value at parameter {index} is NaN or infinite")]
    NonFiniteValue { index: u64 },
    #[error("int8 block {block} has scale {scale}, which is NaN, infinite, negative or above the clip bound / 127")]
    BadScale { block: u64, scale: f32 },
    #[error("int8 value -128 at parameter {index}: quantised values lie in [-127, 127]")]
    QuantOutOfRange { index: u64 },
    #[error("delta value {value} at parameter {index} exceeds the clip bound {bound}")]
    ElementAboveClip { index: u64, value: f32, bound: f64 },
    #[error("int8 block {block} is not canonical: a block with a nonzero scale must hold a value of magnitude 127, one with scale 0 only zeros; encode with flic_protocol::encoding::encode")]
    NonCanonicalBlock { block: u64 },
    #[error("delta L2 norm {norm} exceeds the clip bound {bound} (clip_norm plus tolerance); clip before encoding")]
    NormAboveClip { norm: f64, bound: f64 },
}

/// Encodes a delta. Rejects non-finite inputs.
pub fn encode(encoding: DeltaEncoding, delta: &[f32]) -> Result<Vec<u8>, DeltaError> {
    if let Some(i) = delta.iter().position(|x| !x.is_finite()) {
        return Err(DeltaError::NonFiniteValue { index: i as u64 });
    }
    let mut out = Vec::with_capacity(encoding.encoded_len(delta.len() as u64) as usize);
    match encoding {
        DeltaEncoding::F32 => delta
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        DeltaEncoding::Int8Blocks => {
            for block in delta.chunks(INT8_BLOCK_LEN) {
                let (scale, q) = quantize_block(block);
                out.extend_from_slice(&scale.to_le_bytes());
                out.extend(q.iter().map(|&v| v as u8));
            }
        }
    }
    Ok(out)
}

/// Int8 quantisation of one block: `(scale, q)`.
pub fn quantize_block(block: &[f32]) -> (f32, Vec<i8>) {
    let max_abs = block.iter().fold(0f32, |m, x| m.max(x.abs()));
    // Below this the scale would be subnormal, with too few bits for `max / scale` to round
    // to 127 (the block would not be canonical); values that small matter to no model.
    if max_abs < INT8_FLUSH_BELOW {
        return (0.0, vec![0; block.len()]);
    }
    let mut scale = max_abs / 127.0;
    // For |x| near f32::MAX, `127 * scale` rounds to infinity and the block would decode to
    // -inf/inf (found by fuzzing): step the scale down until it decodes finite.
    while (127.0 * scale).is_infinite() {
        scale = f32::from_bits(scale.to_bits() - 1);
    }
    let q = block
        .iter()
        .map(|&x| {
            if scale == 0.0 {
                0
            } else {
                (x / scale).round().clamp(-127.0, 127.0) as i8
            }
        })
        .collect();
    (scale, q)
}

/// Decodes a whole delta (for clients and verifiers; the canister streams windows).
pub fn decode(
    encoding: DeltaEncoding,
    bytes: &[u8],
    param_count: u64,
) -> Result<Vec<f32>, DeltaError> {
    check_length(encoding, bytes.len() as u64, param_count)?;
    let mut out = Vec::with_capacity(param_count as usize);
    match encoding {
        DeltaEncoding::F32 => {
            for (i, c) in bytes.chunks_exact(4).enumerate() {
                let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                if !x.is_finite() {
                    return Err(DeltaError::NonFiniteValue { index: i as u64 });
                }
                out.push(x);
            }
        }
        DeltaEncoding::Int8Blocks => {
            for (b, block) in bytes.chunks(INT8_BLOCK_BYTES).enumerate() {
                let scale = f32::from_le_bytes([block[0], block[1], block[2], block[3]]);
                if !scale.is_finite() || scale < 0.0 {
                    return Err(DeltaError::BadScale {
                        block: b as u64,
                        scale,
                    });
                }
                for (j, &byte) in block[4..].iter().enumerate() {
                    let q = byte as i8;
                    if q == i8::MIN {
                        return Err(DeltaError::QuantOutOfRange {
                            index: (b * INT8_BLOCK_LEN + j) as u64,
                        });
                    }
                    let x = q as f32 * scale;
                    if !x.is_finite() {
                        return Err(DeltaError::NonFiniteValue {
                            index: (b * INT8_BLOCK_LEN + j) as u64,
                        });
                    }
                    out.push(x);
                }
            }
        }
    }
    Ok(out)
}

/// Checks the exact encoded length.
pub fn check_length(encoding: DeltaEncoding, len: u64, param_count: u64) -> Result<(), DeltaError> {
    let expected = encoding.encoded_len(param_count);
    if len != expected {
        return Err(DeltaError::WrongLength {
            encoding,
            param_count,
            expected,
            got: len,
        });
    }
    Ok(())
}

/// Summary of a validated delta.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeltaStats {
    /// L2 norm of the decoded delta (`f64`, summed in parameter order).
    pub norm: f64,
    /// The bound it was checked against.
    pub bound: f64,
}

/// Streaming validation of an encoded delta against the job's clip bound.
///
/// Per element: finite, `|x| <= clip_norm * (1 + CLIP_TOLERANCE)` (for int8 this is checked
/// on the scale: `127 * scale <= bound`, so every `|q * scale|` is within it). On the whole
/// delta: `||x||_2 <= clip_norm * (1 + CLIP_TOLERANCE) + Q` where `Q = 0` for `f32` and, for
/// int8, `Q = sqrt(sum over blocks of len_b * (scale_b / 2)^2)`, the largest norm the
/// quantisation error of those blocks can have: a delta clipped to `clip_norm` before
/// encoding always passes. The norm uses the exact `f64` product `q * scale`.
///
/// Int8 blocks must be canonical (see the module documentation), so `Q` cannot be bought
/// with oversized scales: with `127 * scale_b = max_b |y|`, `Q² <= 64 / 127² * ||y||²`, and
/// any accepted delta, however its sender chose its bytes, has
/// `||y|| <= clip_norm * (1 + CLIP_TOLERANCE) * 127 / 119` (about 6.7% over the bound),
/// whatever the number of parameters ([`INT8_MAX_NORM_FACTOR`]).
#[derive(Clone, Debug)]
pub struct DeltaCheck {
    encoding: DeltaEncoding,
    param_count: u64,
    element_bound: f64,
    norm_bound: f64,
    sum_sq: f64,
    quant_err_sq: f64,
    next_param: u64,
}

impl DeltaCheck {
    pub fn new(encoding: DeltaEncoding, param_count: u64, clip_norm: f32) -> Self {
        let bound = clip_norm as f64 * (1.0 + CLIP_TOLERANCE);
        Self {
            encoding,
            param_count,
            element_bound: bound,
            norm_bound: bound,
            sum_sq: 0.0,
            quant_err_sq: 0.0,
            next_param: 0,
        }
    }

    /// Largest magnitude any decoded element may have.
    pub fn element_bound(&self) -> f64 {
        self.element_bound
    }

    /// Checks the bytes of `window`. Windows must be fed in order, each exactly once.
    pub fn feed(&mut self, window: &Window, bytes: &[u8]) -> Result<(), DeltaError> {
        assert_eq!(
            window.first_param, self.next_param,
            "windows must be fed in order"
        );
        assert_eq!(
            bytes.len() as u64,
            window.byte_len,
            "window bytes must match the window"
        );
        let base = window.first_param;
        match self.encoding {
            DeltaEncoding::F32 => {
                for (i, c) in bytes.chunks_exact(4).enumerate() {
                    let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    let index = base + i as u64;
                    if !x.is_finite() {
                        return Err(DeltaError::NonFiniteValue { index });
                    }
                    let v = x as f64;
                    if v.abs() > self.element_bound {
                        return Err(DeltaError::ElementAboveClip {
                            index,
                            value: x,
                            bound: self.element_bound,
                        });
                    }
                    self.sum_sq += v * v;
                }
            }
            DeltaEncoding::Int8Blocks => {
                for (b, block) in bytes.chunks(INT8_BLOCK_BYTES).enumerate() {
                    let first = base + (b * INT8_BLOCK_LEN) as u64;
                    let scale = f32::from_le_bytes([block[0], block[1], block[2], block[3]]);
                    let s = scale as f64;
                    // A negative zero is refused too: one delta, one encoding.
                    if !scale.is_finite()
                        || scale.is_sign_negative()
                        || 127.0 * s > self.element_bound
                    {
                        return Err(DeltaError::BadScale {
                            block: first / INT8_BLOCK_LEN as u64,
                            scale,
                        });
                    }
                    let qs = &block[4..];
                    // Whether any byte is -128, and sum q^2 (<= 256 * 127^2, exact in i32),
                    // in one branch-free pass (explicit SIMD in the canister).
                    let check = crate::kernels::int8_check(qs);
                    if check.any_min {
                        let j = qs.iter().position(|&b| b == 0x80).unwrap_or(0);
                        return Err(DeltaError::QuantOutOfRange {
                            index: first + j as u64,
                        });
                    }
                    let canonical = if scale == 0.0 {
                        check.sum_sq == 0
                    } else {
                        check.any_full
                    };
                    if !canonical {
                        return Err(DeltaError::NonCanonicalBlock {
                            block: first / INT8_BLOCK_LEN as u64,
                        });
                    }
                    let block_sq = check.sum_sq as i64;
                    // sum (q_i * s)^2 = s^2 * sum q_i^2; sum q_i^2 <= 256 * 127^2 is exact.
                    self.sum_sq += (block_sq as f64) * s * s;
                    let n = (block.len() - 4) as f64;
                    self.quant_err_sq += n * (s * 0.5) * (s * 0.5);
                }
            }
        }
        self.next_param += window.param_count;
        Ok(())
    }

    /// Final norm check once every window was fed.
    pub fn finish(self) -> Result<DeltaStats, DeltaError> {
        assert_eq!(
            self.next_param, self.param_count,
            "every window must be fed before finish"
        );
        let norm = self.sum_sq.sqrt();
        let bound = self.norm_bound + self.quant_err_sq.sqrt();
        if norm > bound {
            return Err(DeltaError::NormAboveClip { norm, bound });
        }
        Ok(DeltaStats { norm, bound })
    }
}

/// Validates a whole encoded delta held in memory.
pub fn validate(
    encoding: DeltaEncoding,
    bytes: &[u8],
    param_count: u64,
    clip_norm: f32,
) -> Result<DeltaStats, DeltaError> {
    check_length(encoding, bytes.len() as u64, param_count)?;
    let mut check = DeltaCheck::new(encoding, param_count, clip_norm);
    for w in encoding.windows(param_count, 1 << 16) {
        check.feed(&w, &bytes[w.bytes()])?;
    }
    check.finish()
}

/// Scales `delta` in place so its L2 norm (computed in `f64`) is at most `clip_norm`.
/// Returns the norm before clipping. This is the clipping clients are expected to use.
pub fn clip_l2(delta: &mut [f32], clip_norm: f32) -> f64 {
    let norm = delta
        .iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt();
    let c = clip_norm as f64;
    if norm > c && norm > 0.0 {
        let factor = c / norm;
        delta
            .iter_mut()
            .for_each(|x| *x = (*x as f64 * factor) as f32);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lengths_and_windows_cover_every_parameter_once() {
        assert_eq!(DeltaEncoding::F32.encoded_len(10), 40);
        assert_eq!(DeltaEncoding::Int8Blocks.encoded_len(256), 260);
        assert_eq!(DeltaEncoding::Int8Blocks.encoded_len(257), 265);
        for enc in [DeltaEncoding::F32, DeltaEncoding::Int8Blocks] {
            for n in [1u64, 255, 256, 257, 1000, 70_000] {
                let ws: Vec<_> = enc.windows(n, 300).collect();
                assert_eq!(ws.iter().map(|w| w.param_count).sum::<u64>(), n);
                assert_eq!(
                    ws.iter().map(|w| w.byte_len).sum::<u64>(),
                    enc.encoded_len(n)
                );
                let mut next = 0;
                for w in &ws {
                    assert_eq!(w.first_param, next);
                    assert_eq!(w.byte_offset, enc.byte_offset(w.first_param));
                    next += w.param_count;
                }
            }
        }
        for t in [1u8, 2] {
            assert_eq!(DeltaEncoding::from_tag(t).unwrap().tag(), t);
        }
        assert_eq!(DeltaEncoding::from_tag(0), None);
    }

    /// Regression (fuzzing): `param_count * 4` overflowed (a panic with overflow checks)
    /// or wrapped, so a 4-byte buffer passed the length check for `2^62 + 1` parameters and
    /// `decode` then tried to allocate that many.
    #[test]
    fn huge_param_counts_are_a_length_error() {
        for n in [u64::MAX, u64::MAX / 4 + 1, (1 << 62) + 1, u64::MAX - 255] {
            for enc in [DeltaEncoding::F32, DeltaEncoding::Int8Blocks] {
                // Never wraps below the parameter count.
                assert!(enc.encoded_len(n) >= n);
                for len in [0usize, 4, 8] {
                    let bytes = vec![0u8; len];
                    assert!(matches!(
                        decode(enc, &bytes, n),
                        Err(DeltaError::WrongLength { .. })
                    ));
                    assert!(matches!(
                        validate(enc, &bytes, n, 1.0),
                        Err(DeltaError::WrongLength { .. })
                    ));
                }
            }
        }
    }

    /// Regression (fuzzing): a block holding +-f32::MAX got the scale f32::MAX / 127, and
    /// 127 * scale rounds to infinity, so `decode` returned -inf for a finite input.
    #[test]
    fn int8_extremes_decode_finite() {
        let x = [f32::MAX, -f32::MAX, 1.0, -3e38];
        let bytes = encode(DeltaEncoding::Int8Blocks, &x).unwrap();
        let y = decode(DeltaEncoding::Int8Blocks, &bytes, 4).unwrap();
        let scale = f32::from_le_bytes(bytes[..4].try_into().unwrap()) as f64;
        for (a, b) in x.iter().zip(&y) {
            assert!(b.is_finite());
            assert!((*a as f64 - *b as f64).abs() <= scale / 2.0 + scale * 2f64.powi(-15));
        }
        // A hostile scale whose products overflow is an error, not an infinite value.
        let mut hostile = f32::MAX.to_le_bytes().to_vec();
        hostile.extend([0u8, 127]);
        assert_eq!(
            decode(DeltaEncoding::Int8Blocks, &hostile, 2),
            Err(DeltaError::NonFiniteValue { index: 1 })
        );
    }

    #[test]
    fn int8_vector_is_the_documented_layout() {
        let x = [1.0f32, -0.5, 0.25, 0.0, -1.0];
        let bytes = encode(DeltaEncoding::Int8Blocks, &x).unwrap();
        let scale = 1.0f32 / 127.0;
        let mut expected = scale.to_le_bytes().to_vec();
        // -0.5 / (1/127) = -63.5 -> -64 (half away from zero); 0.25*127 = 31.75 -> 32.
        expected.extend([127i8, -64, 32, 0, -127].map(|v| v as u8));
        assert_eq!(bytes, expected);
    }

    #[test]
    fn decoders_reject_malformed_bytes() {
        let good = encode(DeltaEncoding::F32, &[0.5, -0.25]).unwrap();
        assert!(matches!(
            decode(DeltaEncoding::F32, &good[..7], 2),
            Err(DeltaError::WrongLength {
                expected: 8,
                got: 7,
                ..
            })
        ));
        let mut nan = good.clone();
        nan[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(
            decode(DeltaEncoding::F32, &nan, 2),
            Err(DeltaError::NonFiniteValue { index: 1 })
        );
        assert_eq!(
            validate(DeltaEncoding::F32, &nan, 2, 1.0),
            Err(DeltaError::NonFiniteValue { index: 1 })
        );
        let mut inf = good.clone();
        inf[0..4].copy_from_slice(&f32::NEG_INFINITY.to_le_bytes());
        assert_eq!(
            validate(DeltaEncoding::F32, &inf, 2, 1.0),
            Err(DeltaError::NonFiniteValue { index: 0 })
        );

        let q = encode(DeltaEncoding::Int8Blocks, &[0.5, -0.25]).unwrap();
        let mut bad_scale = q.clone();
        bad_scale[0..4].copy_from_slice(&f32::INFINITY.to_le_bytes());
        assert!(matches!(
            decode(DeltaEncoding::Int8Blocks, &bad_scale, 2),
            Err(DeltaError::BadScale { block: 0, .. })
        ));
        assert!(matches!(
            validate(DeltaEncoding::Int8Blocks, &bad_scale, 2, 1.0),
            Err(DeltaError::BadScale { block: 0, .. })
        ));
        let mut neg = q.clone();
        neg[0..4].copy_from_slice(&(-0.1f32).to_le_bytes());
        assert!(matches!(
            validate(DeltaEncoding::Int8Blocks, &neg, 2, 1.0),
            Err(DeltaError::BadScale { .. })
        ));
        let mut m128 = q.clone();
        m128[5] = 0x80;
        assert_eq!(
            validate(DeltaEncoding::Int8Blocks, &m128, 2, 1.0),
            Err(DeltaError::QuantOutOfRange { index: 1 })
        );
        assert_eq!(
            decode(DeltaEncoding::Int8Blocks, &m128, 2),
            Err(DeltaError::QuantOutOfRange { index: 1 })
        );
        assert!(matches!(
            validate(DeltaEncoding::Int8Blocks, &q, 3, 1.0),
            Err(DeltaError::WrongLength { .. })
        ));
    }

    #[test]
    fn clip_checks_elements_and_norm() {
        // Each element below the bound but the norm above it.
        let x = vec![0.8f32; 4]; // norm 1.6
        let b = encode(DeltaEncoding::F32, &x).unwrap();
        assert!(matches!(
            validate(DeltaEncoding::F32, &b, 4, 1.0),
            Err(DeltaError::NormAboveClip { .. })
        ));
        assert!(validate(DeltaEncoding::F32, &b, 4, 1.6).is_ok());
        let big = encode(DeltaEncoding::F32, &[2.0, 0.0]).unwrap();
        assert!(matches!(
            validate(DeltaEncoding::F32, &big, 2, 1.0),
            Err(DeltaError::ElementAboveClip { index: 0, .. })
        ));
        // A scale that would let |q * scale| exceed the bound is rejected even if q is small.
        let mut sneaky = encode(DeltaEncoding::Int8Blocks, &[0.5, 0.0]).unwrap();
        sneaky[0..4].copy_from_slice(&1.0f32.to_le_bytes());
        sneaky[4] = 1;
        assert!(matches!(
            validate(DeltaEncoding::Int8Blocks, &sneaky, 2, 1.0),
            Err(DeltaError::BadScale { .. })
        ));
    }

    /// An int8 payload of `blocks` full blocks, each with scale `scale` and values `q(j)`.
    fn int8_payload(blocks: usize, scale: f32, q: impl Fn(usize) -> i8) -> Vec<u8> {
        let mut out = Vec::with_capacity(blocks * INT8_BLOCK_BYTES);
        for _ in 0..blocks {
            out.extend_from_slice(&scale.to_le_bytes());
            out.extend((0..INT8_BLOCK_LEN).map(|j| q(j) as u8));
        }
        out
    }

    /// The attack of issue 12: every block at the largest scale the element bound allows,
    /// and small values in enough places to use up the quantisation allowance, which grew
    /// with sqrt(N): at N = 2^20 such a delta had 4.9 times the clip norm and passed.
    /// Canonical blocks refuse it, and the best canonical encoding an attacker can choose
    /// stays within `INT8_MAX_NORM_FACTOR` of the bound.
    #[test]
    fn int8_clip_bound_does_not_grow_with_the_parameter_count() {
        let clip = 1.0f32;
        let bound = clip as f64 * (1.0 + CLIP_TOLERANCE);
        let blocks = 4096; // N = 2^20
        let n = (blocks * INT8_BLOCK_LEN) as u64;
        let mut max_scale = (bound / 127.0) as f32;
        while 127.0 * max_scale as f64 > bound {
            max_scale = f32::from_bits(max_scale.to_bits() - 1);
        }
        // 39% of the values at q = 1: norm s * sqrt(0.39 N) against the old bound
        // clip + s * sqrt(N) / 2.
        let old = int8_payload(blocks, max_scale, |j| i8::from(j * 100 % 256 < 100));
        let y = decode(DeltaEncoding::Int8Blocks, &old, n).unwrap();
        let norm = y.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        assert!(norm > 4.5 * bound, "the old attack's norm {norm}");
        let verdict = validate(DeltaEncoding::Int8Blocks, &old, n, clip);
        assert!(
            matches!(verdict, Err(DeltaError::NonCanonicalBlock { block: 0 })),
            "{verdict:?}"
        );
        // Canonical attacks: one ±127 per block and `m` values of ±v, at the largest scale
        // the check accepts (found by bisection).
        let mut best = 0f64;
        for (m, v) in [
            (0usize, 0i8),
            (1, 127),
            (32, 1),
            (100, 1),
            (255, 1),
            (128, 64),
        ] {
            let payload = |s: f32| {
                int8_payload(blocks, s, |j| match j {
                    0 => 127,
                    j if j <= m => v,
                    _ => 0,
                })
            };
            let accepted =
                |s: f32| validate(DeltaEncoding::Int8Blocks, &payload(s), n, clip).is_ok();
            let (mut lo, mut hi) = (0f32, max_scale);
            for _ in 0..60 {
                let mid = (lo + hi) / 2.0;
                if accepted(mid) {
                    lo = mid
                } else {
                    hi = mid
                }
            }
            let stats = validate(DeltaEncoding::Int8Blocks, &payload(lo), n, clip).unwrap();
            assert!(
                stats.norm <= bound * INT8_MAX_NORM_FACTOR,
                "m={m} v={v}: an accepted delta of norm {} over {}",
                stats.norm,
                bound * INT8_MAX_NORM_FACTOR
            );
            best = best.max(stats.norm);
        }
        // The factor is reached (one value per block), so it is the bound, not a guess.
        assert!(best > 1.06 * bound, "best canonical attack {best}");
    }

    #[test]
    fn int8_non_canonical_blocks_are_rejected() {
        let n = INT8_BLOCK_LEN as u64;
        // Scale 0 with nonzero values, and a negative zero scale.
        let zero_with_values = int8_payload(1, 0.0, |j| (j == 3) as i8);
        assert!(matches!(
            validate(DeltaEncoding::Int8Blocks, &zero_with_values, n, 1.0),
            Err(DeltaError::NonCanonicalBlock { block: 0 })
        ));
        let negative_zero = int8_payload(1, -0.0, |_| 0);
        assert!(matches!(
            validate(DeltaEncoding::Int8Blocks, &negative_zero, n, 1.0),
            Err(DeltaError::BadScale { .. })
        ));
        // What the encoder writes is canonical, tiny and huge blocks included.
        // 2 * MIN_POSITIVE is the fuzzer's case: flushed, within INT8_FLUSH_BELOW.
        for block in [
            vec![1e-40f32; 256],
            vec![2.0 * f32::MIN_POSITIVE; 256],
            vec![INT8_FLUSH_BELOW; 256],
            vec![-f32::MAX; 256],
            vec![0.0; 256],
        ] {
            let bytes = encode(DeltaEncoding::Int8Blocks, &block).unwrap();
            let scale = f32::from_le_bytes(bytes[..4].try_into().unwrap());
            let check = crate::kernels::int8_check(&bytes[4..]);
            assert!(
                if scale == 0.0 {
                    check.sum_sq == 0
                } else {
                    check.any_full
                },
                "{scale}"
            );
        }
    }

    fn delta_strategy() -> impl Strategy<Value = Vec<f32>> {
        prop::collection::vec(
            prop_oneof![Just(0.0f32), -1e3f32..1e3f32, -1e-3f32..1e-3f32],
            1..1200,
        )
    }

    proptest! {
        /// |x - decode(encode(x))| <= scale / 2 + slack (less than INT8_FLUSH_BELOW in a block
        /// flushed to zeros). The slack covers three f32 roundings
        /// on values of magnitude <= 127 * scale: the scale division, x / scale, and q * scale,
        /// each within 2^-24 relative, so 127 * scale * 3 * 2^-24 < scale * 2^-15. The
        /// absolute MIN_POSITIVE term covers subnormal scales, where f32 precision is absolute.
        #[test]
        fn int8_error_bound_per_element(x in delta_strategy()) {
            let bytes = encode(DeltaEncoding::Int8Blocks, &x).unwrap();
            let y = decode(DeltaEncoding::Int8Blocks, &bytes, x.len() as u64).unwrap();
            for (b, (xb, yb)) in x.chunks(INT8_BLOCK_LEN).zip(y.chunks(INT8_BLOCK_LEN)).enumerate() {
                let scale = f32::from_le_bytes(bytes[b * INT8_BLOCK_BYTES..][..4].try_into().unwrap()) as f64;
                // A block flushed to zeros (scale 0) errs by less than INT8_FLUSH_BELOW.
                let allowed = if scale == 0.0 {
                    INT8_FLUSH_BELOW as f64
                } else {
                    scale / 2.0 + scale * 2f64.powi(-15) + f32::MIN_POSITIVE as f64
                };
                for (xi, yi) in xb.iter().zip(yb) {
                    let err = (*xi as f64 - *yi as f64).abs();
                    prop_assert!(err <= allowed, "x={} y={} scale={}", xi, yi, scale);
                }
            }
        }

        #[test]
        fn f32_roundtrip_is_exact(x in delta_strategy()) {
            let bytes = encode(DeltaEncoding::F32, &x).unwrap();
            prop_assert_eq!(decode(DeltaEncoding::F32, &bytes, x.len() as u64).unwrap(), x);
        }

        /// A delta clipped by `clip_l2` always passes validation in both encodings.
        #[test]
        fn clipped_deltas_pass(mut x in delta_strategy(), clip in 1e-3f32..100f32) {
            clip_l2(&mut x, clip);
            for enc in [DeltaEncoding::F32, DeltaEncoding::Int8Blocks] {
                let bytes = encode(enc, &x).unwrap();
                let stats = validate(enc, &bytes, x.len() as u64, clip);
                prop_assert!(stats.is_ok(), "{:?} {:?}", enc, stats);
            }
        }
    }
}

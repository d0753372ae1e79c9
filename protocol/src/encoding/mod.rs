//! Delta encodings, their validation and their exact accumulation.
//!
//! Each encoding lives in one file, behind the [`Codec`] trait: its layout, encoder,
//! decoder, validity check and fixed-point accumulation. A new encoding is a new file, a
//! variant of [`DeltaEncoding`] and an arm of [`DeltaEncoding::codec`].
//!
//! | encoding | file | block | bytes per parameter | lossy |
//! |---|---|---|---|---|
//! | [`DeltaEncoding::F32`] | `dense_f32.rs` | 1 | 4 | no |
//! | [`DeltaEncoding::Int8Blocks`] | `int8.rs` | 256 | 1.016 | round to nearest |
//! | [`DeltaEncoding::LowBitBlocks`] (`int4`, `int2`) | `lowbit.rs` | 256 | 0.516, 0.266 | unbiased stochastic rounding |
//! | [`DeltaEncoding::TopK`] (`topk:FRAC,BITS`) | `topk.rs` | 256 | `(4 + k + ceil(k*bits/8)) / 256` | sparse; clients keep the rest (error feedback) |
//! | [`DeltaEncoding::Masked`] (secure aggregation only) | `masked.rs` | 1 | 8 | no (weighted fixed point, masked) |
//!
//! Every encoding is a sequence of blocks of the same layout (the last block may be
//! shorter), so the bytes of any block-aligned range of parameters are at a known offset:
//! a [`Window`]. The canister validates and accumulates a delta held in stable memory window
//! by window, and the robust rules read the same window of every contribution.
//!
//! Decoders take untrusted bytes: lengths are checked exactly; non-finite values,
//! negative or oversized scales, out-of-range codes and malformed sparse indices are a
//! [`DeltaError`], never a panic.

use candid::CandidType;
use serde::{Deserialize, Serialize};

mod dense_f32;
mod int8;
mod lowbit;
mod masked;
mod topk;

pub use int8::{
    quantize_block, INT8_BLOCK_BYTES, INT8_BLOCK_LEN, INT8_FLUSH_BELOW, INT8_MAX_NORM_FACTOR,
};
pub use lowbit::stochastic_uniform;
pub use topk::TOPK_BLOCK_LEN;

/// Relative tolerance on the clipping bound. The client clips in `f64` and rounds to `f32`
/// (relative error 2^-24 per element), and the int8 scale is an `f32` division (2^-24
/// again); 1e-5 is about 80 times that, and far below anything that matters for the
/// aggregate.
pub const CLIP_TOLERANCE: f64 = 1e-5;

/// Every encoding's block length divides this: windows that start at its multiples are
/// block-aligned for every encoding (the rules read one window of contributions that may
/// use different encodings).
pub const WINDOW_ALIGN: u64 = 256;

/// How a delta is encoded on the wire. The signed header carries it as its
/// [`descriptor`](DeltaEncoding::descriptor): a tag byte and the encoding's parameters.
#[derive(
    CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum DeltaEncoding {
    F32,
    Int8Blocks,
    /// Dense blocks of 256 with one `f32` scale and `bits`-bit codes (2 or 4), rounded
    /// stochastically (unbiased) from a seed.
    LowBitBlocks {
        bits: u8,
    },
    /// In every block of 256 parameters, the `k` largest (1 to 256) with their offsets and
    /// `bits`-bit values (2, 4 or 8) on one `f32` scale.
    TopK {
        k: u16,
        bits: u8,
    },
    /// A secure-aggregation input: weighted fixed-point words plus masks, mod 2^64
    /// (`masked.rs`). Jobs with secure aggregation take only this, others never.
    Masked,
}

/// Why an encoding (or its text) is not one flic knows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EncodingParseError(pub String);

impl DeltaEncoding {
    /// Tag byte in the signed header.
    pub fn tag(self) -> u8 {
        match self {
            DeltaEncoding::F32 => 1,
            DeltaEncoding::Int8Blocks => 2,
            DeltaEncoding::LowBitBlocks { .. } => 3,
            DeltaEncoding::TopK { .. } => 4,
            DeltaEncoding::Masked => 5,
        }
    }

    /// The bytes that name the encoding in signed and hashed formats: the tag, then its
    /// parameters (`LowBitBlocks`: bits (u8); `TopK`: bits (u8), k (u16 LE)). The tag
    /// fixes how many follow, and `f32` and int8 are their tag alone, as in earlier
    /// releases, so their signatures and job hashes are unchanged.
    pub fn descriptor(self) -> Vec<u8> {
        let mut out = vec![self.tag()];
        match self {
            DeltaEncoding::F32 | DeltaEncoding::Int8Blocks | DeltaEncoding::Masked => {}
            DeltaEncoding::LowBitBlocks { bits } => out.push(bits),
            DeltaEncoding::TopK { k, bits } => {
                out.push(bits);
                out.extend_from_slice(&k.to_le_bytes());
            }
        }
        out
    }

    /// The encoding of a parameterless tag (`f32`, int8).
    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(DeltaEncoding::F32),
            2 => Some(DeltaEncoding::Int8Blocks),
            _ => None,
        }
    }

    /// Parses a [`descriptor`](Self::descriptor) at the start of `bytes`: the encoding and
    /// the bytes it took.
    pub fn from_descriptor(bytes: &[u8]) -> Option<(Self, usize)> {
        match *bytes {
            [1, ..] => Some((DeltaEncoding::F32, 1)),
            [2, ..] => Some((DeltaEncoding::Int8Blocks, 1)),
            [5, ..] => Some((DeltaEncoding::Masked, 1)),
            [3, bits, ..] => Some((DeltaEncoding::LowBitBlocks { bits }, 2)),
            [4, bits, k0, k1, ..] => Some((
                DeltaEncoding::TopK {
                    k: u16::from_le_bytes([k0, k1]),
                    bits,
                },
                4,
            )),
            _ => None,
        }
    }

    /// Whether the parameters are ones the codecs support (a job may only allow those).
    pub fn check(self) -> Result<(), EncodingParseError> {
        let bad = |m: String| Err(EncodingParseError(m));
        match self {
            DeltaEncoding::F32 | DeltaEncoding::Int8Blocks | DeltaEncoding::Masked => Ok(()),
            DeltaEncoding::LowBitBlocks { bits } if !lowbit::BITS.contains(&bits) => {
                bad(format!("low-bit blocks have 2 or 4 bits, not {bits}"))
            }
            DeltaEncoding::TopK { bits, .. } if !topk::BITS.contains(&bits) => {
                bad(format!("top-k values have 2, 4 or 8 bits, not {bits}"))
            }
            DeltaEncoding::TopK { k, .. } if k == 0 || k as u64 > TOPK_BLOCK_LEN => bad(format!(
                "top-k keeps 1 to {TOPK_BLOCK_LEN} values per block of {TOPK_BLOCK_LEN}, not {k}"
            )),
            _ => Ok(()),
        }
    }

    /// Whether the encoding loses information that a client should carry to its next
    /// contribution (error feedback). Top-k drops most coordinates, so it needs it; the
    /// dense quantizers are unbiased (stochastic) or nearly exact (int8) and do not.
    pub fn wants_error_feedback(self) -> bool {
        matches!(self, DeltaEncoding::TopK { .. })
    }

    /// Whether this is secure aggregation's masked input, which no one can decode or
    /// check on its own.
    pub fn is_masked(self) -> bool {
        self == DeltaEncoding::Masked
    }

    /// The codec of this encoding. Unsupported parameters (see [`check`](Self::check))
    /// give a codec whose every length is `u64::MAX`, so nothing passes its length check.
    pub fn codec(self) -> AnyCodec {
        if self.check().is_err() {
            return AnyCodec::Unsupported;
        }
        match self {
            DeltaEncoding::F32 => AnyCodec::F32(dense_f32::DenseF32),
            DeltaEncoding::Int8Blocks => AnyCodec::Int8(int8::Int8),
            DeltaEncoding::LowBitBlocks { bits } => AnyCodec::LowBit(lowbit::LowBit { bits }),
            DeltaEncoding::TopK { k, bits } => AnyCodec::TopK(topk::TopK { k, bits }),
            DeltaEncoding::Masked => AnyCodec::Masked(masked::Masked),
        }
    }

    /// Exact encoded length in bytes of a delta of `param_count` parameters. Saturates at
    /// `u64::MAX` (no buffer is that long), so an untrusted count can neither overflow nor
    /// wrap to the length of a short buffer (found by the `delta_decoders` fuzz target).
    pub fn encoded_len(self, param_count: u64) -> u64 {
        let codec = self.codec();
        let b = codec.block_len();
        let full = (param_count / b).saturating_mul(codec.block_bytes(b));
        match param_count % b {
            0 => full,
            rest => full.saturating_add(codec.block_bytes(rest)),
        }
    }

    /// The name users type and reports print (`f32`, `int8`, `int4`, `int2`,
    /// `topk:K/256,BITS`); it parses back to the same encoding.
    pub fn name(self) -> String {
        match self {
            DeltaEncoding::Int8Blocks => "int8".into(),
            other => other.to_string(),
        }
    }

    /// Bytes per parameter of a large delta (full blocks).
    pub fn bytes_per_param(self) -> f64 {
        let codec = self.codec();
        codec.block_bytes(codec.block_len()) as f64 / codec.block_len() as f64
    }

    /// Parameters per window are rounded to this multiple so windows never split a block.
    pub fn window_align(self) -> u64 {
        self.codec().block_len()
    }

    /// Byte offset of parameter `first` (a multiple of the block length).
    pub fn byte_offset(self, first: u64) -> u64 {
        let codec = self.codec();
        let b = codec.block_len();
        (first / b).saturating_mul(codec.block_bytes(b))
    }

    /// The window of parameters `[first, first + count)` (`first` block-aligned).
    pub fn window(self, first: u64, count: u64) -> Window {
        Window {
            first_param: first,
            param_count: count,
            byte_offset: self.byte_offset(first),
            byte_len: self.encoded_len(count),
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
            let w = self.window(first, count);
            first += count;
            Some(w)
        })
    }
}

/// `(first, count)` windows of about `window_params` parameters that start at multiples of
/// [`WINDOW_ALIGN`]: block-aligned for every encoding.
pub fn aligned_windows(param_count: u64, window_params: u64) -> impl Iterator<Item = (u64, u64)> {
    let step = window_params.max(WINDOW_ALIGN) / WINDOW_ALIGN * WINDOW_ALIGN;
    (0..param_count.div_ceil(step)).map(move |i| (i * step, step.min(param_count - i * step)))
}

impl std::fmt::Display for DeltaEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            DeltaEncoding::F32 => f.write_str("f32"),
            DeltaEncoding::Int8Blocks => f.write_str("int8 blocks"),
            DeltaEncoding::LowBitBlocks { bits } => write!(f, "int{bits}"),
            DeltaEncoding::TopK { k, bits } => write!(f, "topk:{k}/{TOPK_BLOCK_LEN},{bits}"),
            DeltaEncoding::Masked => f.write_str("masked"),
        }
    }
}

/// The names users type: `f32`, `int8`, `int4`, `int2`, `topk:FRAC[,BITS]` (FRAC a
/// fraction such as `0.02`, or `K/256`; BITS 2, 4 or 8, default 2).
impl std::str::FromStr for DeltaEncoding {
    type Err = EncodingParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let e = match s.trim() {
            "f32" => DeltaEncoding::F32,
            "int8" | "int8 blocks" => DeltaEncoding::Int8Blocks,
            "int4" => DeltaEncoding::LowBitBlocks { bits: 4 },
            "int2" => DeltaEncoding::LowBitBlocks { bits: 2 },
            other => {
                let Some(spec) = other.strip_prefix("topk:") else {
                    return Err(EncodingParseError(format!(
                        "unknown encoding `{other}`: use f32, int8, int4, int2 or topk:FRAC[,BITS]"
                    )));
                };
                topk::parse(spec)?
            }
        };
        e.check()?;
        Ok(e)
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
    #[error("block {block} has scale {scale}, which is NaN, infinite, negative or so large that its largest code exceeds the clip bound")]
    BadScale { block: u64, scale: f32 },
    #[error("quantised value at parameter {index} is the most negative code, which the symmetric range leaves out (int8: -128)")]
    QuantOutOfRange { index: u64 },
    #[error("delta value {value} at parameter {index} exceeds the clip bound {bound}")]
    ElementAboveClip { index: u64, value: f32, bound: f64 },
    #[error("block {block} is not canonical: a block with a nonzero scale must hold a value of magnitude 127 (int8), one with scale 0 only zeros, and unused bits must be zero; encode with flic_protocol::encoding::encode")]
    NonCanonicalBlock { block: u64 },
    #[error("delta L2 norm {norm} exceeds the clip bound {bound} (clip_norm plus tolerance); clip before encoding")]
    NormAboveClip { norm: f64, bound: f64 },
    #[error("top-k block {block}: offset {offset} at position {position} is not above the one before it; offsets must be strictly increasing (sorted, no duplicates)")]
    UnsortedIndices {
        block: u64,
        position: u64,
        offset: u64,
    },
    #[error("top-k block {block}: offset {offset} is outside the block's {block_len} parameters")]
    IndexOutOfRange {
        block: u64,
        offset: u64,
        block_len: u64,
    },
    #[error("encoding {encoding} has parameters no codec supports: {reason}")]
    UnsupportedEncoding {
        encoding: DeltaEncoding,
        reason: String,
    },
}

/// Squared norms a check adds up over the windows of one delta.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NormSums {
    /// `sum x_i²` of the decoded values, in `f64`.
    pub sum_sq: f64,
    /// The square of the norm that the encoding's rounding may add to a clipped delta
    /// (int8 only; the other encodings are checked on their decoded values exactly).
    pub allowance_sq: f64,
}

/// One encoding's layout and arithmetic. Window-level methods get the bytes of whole
/// blocks (the last may be shorter), `first` being the window's first parameter.
pub trait Codec {
    /// Parameters per block.
    fn block_len(&self) -> u64;
    /// Bytes of a block of `len` parameters, `1 <= len <= block_len`.
    fn block_bytes(&self, len: u64) -> u64;
    /// Appends the encoding of finite `delta` (a whole delta) to `out`. `seed` drives the
    /// stochastic rounding of the encodings that have it and is ignored by the others.
    fn encode(&self, delta: &[f32], seed: u64, out: &mut Vec<u8>);
    /// Decodes a window into `out` (its `len` values, zeroed by the caller).
    fn decode(&self, first: u64, bytes: &[u8], out: &mut [f32]) -> Result<(), DeltaError>;
    /// Checks a window: every decoded element finite and at most `bound` in magnitude,
    /// every code in range; adds the window's squared norm to `sums`.
    fn check(
        &self,
        first: u64,
        params: u64,
        bytes: &[u8],
        bound: f64,
        sums: &mut NormSums,
    ) -> Result<(), DeltaError>;
    /// `acc[i] += weight * fixed(x_i)` over a validated window (see `crate::fedavg`).
    fn accumulate(&self, acc: &mut [i64], bytes: &[u8], weight: u64, frac_bits: u32);
    /// Canister instructions per parameter to validate and accumulate one contribution
    /// (an upper estimate from `flic bench aggregate`, for `crate::ic_limits`).
    fn commit_instructions_per_param(&self) -> u64;
}

/// The codec of a [`DeltaEncoding`] (see [`DeltaEncoding::codec`]).
pub enum AnyCodec {
    F32(dense_f32::DenseF32),
    Int8(int8::Int8),
    LowBit(lowbit::LowBit),
    TopK(topk::TopK),
    Masked(masked::Masked),
    Unsupported,
}

impl std::ops::Deref for AnyCodec {
    type Target = dyn Codec;
    fn deref(&self) -> &(dyn Codec + 'static) {
        match self {
            AnyCodec::F32(c) => c,
            AnyCodec::Int8(c) => c,
            AnyCodec::LowBit(c) => c,
            AnyCodec::TopK(c) => c,
            AnyCodec::Masked(c) => c,
            AnyCodec::Unsupported => &Unsupported,
        }
    }
}

/// Stands in for an encoding with unsupported parameters: no length is ever right.
struct Unsupported;

impl Codec for Unsupported {
    fn block_len(&self) -> u64 {
        1
    }
    fn block_bytes(&self, _: u64) -> u64 {
        u64::MAX
    }
    fn encode(&self, _: &[f32], _: u64, _: &mut Vec<u8>) {}
    fn decode(&self, _: u64, _: &[u8], _: &mut [f32]) -> Result<(), DeltaError> {
        Ok(())
    }
    fn check(&self, _: u64, _: u64, _: &[u8], _: f64, _: &mut NormSums) -> Result<(), DeltaError> {
        Ok(())
    }
    fn accumulate(&self, _: &mut [i64], _: &[u8], _: u64, _: u32) {}
    fn commit_instructions_per_param(&self) -> u64 {
        u64::MAX
    }
}

/// The blocks of a window: `(first parameter of the block, its length, its bytes)`.
/// `bytes` must be the window's exact length (checked by the callers).
pub(crate) fn blocks<'a>(
    codec: &'a dyn Codec,
    first: u64,
    params: u64,
    bytes: &'a [u8],
) -> impl Iterator<Item = (u64, u64, &'a [u8])> + 'a {
    let b = codec.block_len();
    let mut at = (0u64, 0usize);
    std::iter::from_fn(move || {
        let (done, offset) = at;
        if done >= params {
            return None;
        }
        let len = b.min(params - done);
        let n = codec.block_bytes(len) as usize;
        at = (done + len, offset + n);
        Some((first + done, len, &bytes[offset..offset + n]))
    })
}

fn unsupported(encoding: DeltaEncoding) -> Result<(), DeltaError> {
    encoding
        .check()
        .map_err(|e| DeltaError::UnsupportedEncoding {
            encoding,
            reason: e.0,
        })
}

/// Encodes a delta. Rejects non-finite inputs. For the stochastic encodings this is
/// [`encode_seeded`] with seed 0.
pub fn encode(encoding: DeltaEncoding, delta: &[f32]) -> Result<Vec<u8>, DeltaError> {
    encode_seeded(encoding, delta, 0)
}

/// Encodes a delta, with `seed` for the encodings that round stochastically (the same
/// seed gives the same bytes).
pub fn encode_seeded(
    encoding: DeltaEncoding,
    delta: &[f32],
    seed: u64,
) -> Result<Vec<u8>, DeltaError> {
    unsupported(encoding)?;
    if let Some(i) = delta.iter().position(|x| !x.is_finite()) {
        return Err(DeltaError::NonFiniteValue { index: i as u64 });
    }
    let mut out = Vec::with_capacity(encoding.encoded_len(delta.len() as u64) as usize);
    encoding.codec().encode(delta, seed, &mut out);
    debug_assert_eq!(out.len() as u64, encoding.encoded_len(delta.len() as u64));
    Ok(out)
}

/// What [`encode_within`] made: the bytes, what they decode to, and how much the delta
/// was scaled down to meet the clip bound (1 when it did not have to be).
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub decoded: Vec<f32>,
    pub shrink: f64,
}

/// Encodes `delta` so that the canister accepts it under `clip_norm`: the encodings that
/// are checked on their decoded values (low-bit, top-k) can round a delta clipped to
/// `clip_norm` to a slightly larger one, and then the delta is scaled down until its
/// encoding passes. `delta` should already be clipped ([`clip_l2`]).
pub fn encode_within(
    encoding: DeltaEncoding,
    delta: &[f32],
    clip_norm: f32,
    seed: u64,
) -> Result<Encoded, DeltaError> {
    let n = delta.len() as u64;
    let mut shrink = 1.0f64;
    let mut scaled = delta.to_vec();
    for _ in 0..64 {
        let bytes = encode_seeded(encoding, &scaled, seed)?;
        match validate(encoding, &bytes, n, clip_norm) {
            Ok(_) => {
                let decoded = decode(encoding, &bytes, n)?;
                return Ok(Encoded {
                    bytes,
                    decoded,
                    shrink,
                });
            }
            Err(DeltaError::NormAboveClip { norm, .. }) => {
                // Aim just inside the bound; rounding may need another step.
                shrink *= (clip_norm as f64 / norm) * (1.0 - 1e-6);
                scaled = delta.iter().map(|&x| (x as f64 * shrink) as f32).collect();
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("scaling towards zero always meets the clip bound")
}

/// Decodes a whole delta (for clients and verifiers; the canister streams windows).
pub fn decode(
    encoding: DeltaEncoding,
    bytes: &[u8],
    param_count: u64,
) -> Result<Vec<f32>, DeltaError> {
    unsupported(encoding)?;
    check_length(encoding, bytes.len() as u64, param_count)?;
    let mut out = vec![0f32; param_count as usize];
    let codec = encoding.codec();
    for w in encoding.windows(param_count, 1 << 16) {
        codec.decode(w.first_param, &bytes[w.bytes()], &mut out[w.params()])?;
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
/// Per element: finite, `|x| <= clip_norm * (1 + CLIP_TOLERANCE)` (for the quantised
/// encodings this is checked on the scale: the largest code times the scale is within
/// it, so every decoded value is). On the whole delta: `||x||_2 <= clip_norm * (1 +
/// CLIP_TOLERANCE) + Q`, where `Q = 0` for every encoding but int8 (see `int8.rs` for its
/// allowance and why it cannot be bought). The norm is of the decoded values, in `f64`.
#[derive(Clone, Debug)]
pub struct DeltaCheck {
    encoding: DeltaEncoding,
    param_count: u64,
    element_bound: f64,
    norm_bound: f64,
    sums: NormSums,
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
            sums: NormSums::default(),
            next_param: 0,
        }
    }

    /// Largest magnitude any decoded element may have.
    pub fn element_bound(&self) -> f64 {
        self.element_bound
    }

    /// Checks the bytes of `window`. Windows must be fed in order, each exactly once.
    pub fn feed(&mut self, window: &Window, bytes: &[u8]) -> Result<(), DeltaError> {
        unsupported(self.encoding)?;
        assert_eq!(
            window.first_param, self.next_param,
            "windows must be fed in order"
        );
        assert_eq!(
            bytes.len() as u64,
            window.byte_len,
            "window bytes must match the window"
        );
        self.encoding.codec().check(
            window.first_param,
            window.param_count,
            bytes,
            self.element_bound,
            &mut self.sums,
        )?;
        self.next_param += window.param_count;
        Ok(())
    }

    /// Final norm check once every window was fed.
    pub fn finish(self) -> Result<DeltaStats, DeltaError> {
        assert_eq!(
            self.next_param, self.param_count,
            "every window must be fed before finish"
        );
        let norm = self.sums.sum_sq.sqrt();
        let bound = self.norm_bound + self.sums.allowance_sq.sqrt();
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
    unsupported(encoding)?;
    check_length(encoding, bytes.len() as u64, param_count)?;
    let mut check = DeltaCheck::new(encoding, param_count, clip_norm);
    for w in encoding.windows(param_count, 1 << 16) {
        check.feed(&w, &bytes[w.bytes()])?;
    }
    check.finish()
}

/// Adds one validated window of an encoded delta, times `weight`, into `acc` (the
/// accumulator entries of the same parameters). The bytes must have passed
/// [`DeltaCheck`] with limits that satisfy `fedavg::AggregationLimits::check` for
/// `frac_bits`; arithmetic wraps rather than panics, and the bound makes wrapping
/// impossible.
pub fn accumulate_window(
    acc: &mut [i64],
    encoding: DeltaEncoding,
    bytes: &[u8],
    weight: u64,
    frac_bits: u32,
) {
    assert_eq!(
        encoding.encoded_len(acc.len() as u64),
        bytes.len() as u64,
        "window length mismatch"
    );
    encoding.codec().accumulate(acc, bytes, weight, frac_bits);
}

/// Unpacks `bits`-bit two's-complement code `j` of a little-endian bit stream.
#[inline]
pub(crate) fn code_at(packed: &[u8], j: usize, bits: u8) -> i32 {
    let bit = j * bits as usize;
    let byte = packed[bit / 8] as u32;
    let raw = (byte >> (bit % 8)) & ((1u32 << bits) - 1);
    // Sign-extend from `bits` bits.
    ((raw << (32 - bits as u32)) as i32) >> (32 - bits as u32)
}

/// Packs `bits`-bit codes into a little-endian bit stream (`bits` divides 8).
pub(crate) fn pack_codes(codes: impl Iterator<Item = i32>, bits: u8, out: &mut Vec<u8>) {
    let (mut byte, mut used) = (0u8, 0u8);
    let mask = ((1u32 << bits) - 1) as u8;
    for c in codes {
        byte |= ((c as u8) & mask) << used;
        used += bits;
        if used == 8 {
            out.push(byte);
            (byte, used) = (0, 0);
        }
    }
    if used > 0 {
        out.push(byte);
    }
}

/// Whether the bits after the first `count` codes of the last byte are zero.
pub(crate) fn padding_is_zero(packed: &[u8], count: usize, bits: u8) -> bool {
    let used = (count * bits as usize) % 8;
    used == 0 || packed.last().is_none_or(|&b| b >> used == 0)
}

/// The largest magnitude of `x` and a scale for `levels` positive levels: `max / levels`
/// stepped down while `levels * scale` would overflow (|x| near `f32::MAX`), or 0 when the
/// scale would be subnormal (`max < levels * f32::MIN_POSITIVE`: values no model needs).
pub(crate) fn scale_for(x: impl Iterator<Item = f32>, levels: f32) -> f32 {
    let max_abs = x.fold(0f32, |m, v| m.max(v.abs()));
    if max_abs < levels * f32::MIN_POSITIVE {
        return 0.0;
    }
    let mut scale = max_abs / levels;
    while (levels * scale).is_infinite() {
        scale = f32::from_bits(scale.to_bits() - 1);
    }
    scale
}

/// Reads a block's `f32` LE scale and checks it: finite, not negative (nor `-0.0`: one
/// delta, one encoding), and `levels * scale <= bound`.
pub(crate) fn read_scale(
    block: &[u8],
    index: u64,
    levels: f64,
    bound: f64,
) -> Result<f32, DeltaError> {
    let scale = f32::from_le_bytes([block[0], block[1], block[2], block[3]]);
    if !scale.is_finite() || scale.is_sign_negative() || levels * scale as f64 > bound {
        return Err(DeltaError::BadScale {
            block: index,
            scale,
        });
    }
    Ok(scale)
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
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    #[test]
    fn lengths_and_windows_cover_every_parameter_once() {
        assert_eq!(DeltaEncoding::F32.encoded_len(10), 40);
        assert_eq!(DeltaEncoding::Int8Blocks.encoded_len(256), 260);
        assert_eq!(DeltaEncoding::Int8Blocks.encoded_len(257), 265);
        for enc in every_encoding() {
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
        for enc in every_encoding() {
            let d = enc.descriptor();
            assert_eq!(DeltaEncoding::from_descriptor(&d), Some((enc, d.len())));
            assert!(enc.bytes_per_param() > 0.0);
        }
        // The descriptors of earlier releases are unchanged: their signatures still verify.
        assert_eq!(DeltaEncoding::F32.descriptor(), [1]);
        assert_eq!(DeltaEncoding::Int8Blocks.descriptor(), [2]);
        assert_eq!(DeltaEncoding::from_tag(0), None);
    }

    /// Regression (fuzzing): `param_count * 4` overflowed (a panic with overflow checks)
    /// or wrapped, so a 4-byte buffer passed the length check for `2^62 + 1` parameters and
    /// `decode` then tried to allocate that many.
    #[test]
    fn huge_param_counts_are_a_length_error() {
        for n in [u64::MAX, u64::MAX / 4 + 1, (1 << 62) + 1, u64::MAX - 255] {
            for enc in every_encoding() {
                // Never wraps below the parameter count: each block takes a byte or more
                // (top-k: its scale), so a tenth of the count is a safe floor.
                assert!(enc.encoded_len(n) >= n / 64);
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

    /// One of each encoding, with the extremes of the parameters.
    pub(crate) fn every_encoding() -> Vec<DeltaEncoding> {
        vec![
            DeltaEncoding::F32,
            DeltaEncoding::Int8Blocks,
            DeltaEncoding::LowBitBlocks { bits: 4 },
            DeltaEncoding::LowBitBlocks { bits: 2 },
            DeltaEncoding::TopK { k: 1, bits: 2 },
            DeltaEncoding::TopK { k: 16, bits: 4 },
            DeltaEncoding::TopK { k: 256, bits: 8 },
        ]
    }

    /// Deltas of 1 to `max_len - 1` values: zeros, large and tiny magnitudes mixed.
    pub(crate) fn deltas(max_len: usize) -> impl Strategy<Value = Vec<f32>> {
        prop::collection::vec(
            prop_oneof![Just(0.0f32), -1e3f32..1e3f32, -1e-3f32..1e-3f32],
            1..max_len,
        )
    }

    proptest! {
        #[test]
        fn f32_roundtrip_is_exact(x in deltas(1200)) {
            let bytes = encode(DeltaEncoding::F32, &x).unwrap();
            prop_assert_eq!(decode(DeltaEncoding::F32, &bytes, x.len() as u64).unwrap(), x);
        }

        /// A delta clipped by `clip_l2` always passes validation in both encodings.
        #[test]
        fn clipped_deltas_pass(mut x in deltas(1200), clip in 1e-3f32..100f32) {
            clip_l2(&mut x, clip);
            for enc in [DeltaEncoding::F32, DeltaEncoding::Int8Blocks] {
                let bytes = encode(enc, &x).unwrap();
                let stats = validate(enc, &bytes, x.len() as u64, clip);
                prop_assert!(stats.is_ok(), "{:?} {:?}", enc, stats);
                // Neither is ever scaled down.
                prop_assert_eq!(encode_within(enc, &x, clip, 0).unwrap().shrink, 1.0);
            }
            for enc in every_encoding() {
                let e = encode_within(enc, &x, clip, 7).unwrap();
                let stats = validate(enc, &e.bytes, x.len() as u64, clip);
                prop_assert!(stats.is_ok(), "{:?} {:?}", enc, stats);
            }
        }
    }
}

//! `delta_decoders`: `encoding::{decode, validate, DeltaCheck}` and `fedavg::Accumulator`
//! on arbitrary bytes, and `encode`/`decode` round trips on values built from them.
//!
//! Input layout (little-endian, see [`crate::Cursor`]):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | flags: bits 0, 2 and 3 the encoding ([`encoding_of`]: f32, int8 blocks, int4, int2, top-k at 2, 4 or 8 bits), bits 4-7 top-k's `k`; bit 1: take `param_count` raw from the next field, else derive it from the payload length |
//! | 8 | raw `param_count` |
//! | 4 | `clip_norm` as `f32` bits |
//! | 2 | window size in parameters for the streaming check |
//! | 2 | `max_clients` |
//! | 4 | `max_weight` |
//! | rest | payload |
//!
//! Invariants checked:
//! 1. nothing panics, whatever `param_count` and `clip_norm` are;
//! 2. `validate` and a streaming [`DeltaCheck`] over windows of any size agree exactly;
//! 3. a delta that validates (with a `clip_norm` job configuration accepts) decodes; every value is finite, within `clip_norm * (1 + CLIP_TOLERANCE)`,
//!    and the norm of the decoded values respects the bound `validate` reports;
//!    `decode` accepts everything `validate` accepts;
//! 4. with job limits that `safe_frac_bits` accepts, every fixed-point element of a
//!    validated delta is within `element_fixed_bound`, so `max_clients` contributions of
//!    weight `max_weight` cannot overflow, and `Accumulator::add` equals an `i128`
//!    reference sum;
//! 5. round trips of the payload read as `f32` values (non-finite ones zeroed): `f32`
//!    exact, int8 within `scale / 2 + scale * 2^-15 + 2^-126` per element (below
//!    `INT8_FLUSH_BELOW` in a block the encoder flushes to zeros), every other encoding
//!    decodes what it encodes; after `clip_l2(clip_norm)`, what `encode_within` makes
//!    validates in every encoding, for every `clip_norm` a job accepts.

use flic_protocol::encoding::{
    accumulate_window, check_length, clip_l2, decode, encode, encode_seeded, encode_within,
    validate, DeltaCheck, DeltaEncoding, DeltaError, CLIP_TOLERANCE, INT8_BLOCK_BYTES,
    INT8_BLOCK_LEN, INT8_FLUSH_BELOW,
};
use flic_protocol::fedavg::{fixed_from_f32, int8_block_factor, Accumulator, AggregationLimits};

use crate::Cursor;

/// Largest parameter count the derived mode uses (keeps executions fast).
const MAX_DERIVED_PARAMS: u64 = 1 << 16;

pub struct DeltaInput<'a> {
    pub encoding: DeltaEncoding,
    pub param_count: u64,
    pub clip_norm: f32,
    pub window: u64,
    pub max_clients: u64,
    pub max_weight: u64,
    pub payload: &'a [u8],
}

/// The encoding the flags select: bits 0, 2 and 3 pick one of eight, bits 4-7 top-k's `k`.
pub fn encoding_of(flags: u8) -> DeltaEncoding {
    const KS: [u16; 16] = [1, 2, 3, 5, 8, 13, 16, 26, 32, 51, 64, 100, 128, 200, 255, 256];
    let k = KS[(flags >> 4) as usize];
    match (flags & 1) | ((flags >> 1) & 0b110) {
        0 => DeltaEncoding::F32,
        1 => DeltaEncoding::Int8Blocks,
        2 => DeltaEncoding::LowBitBlocks { bits: 4 },
        3 => DeltaEncoding::LowBitBlocks { bits: 2 },
        4 | 7 => DeltaEncoding::TopK { k, bits: 2 },
        5 => DeltaEncoding::TopK { k, bits: 4 },
        _ => DeltaEncoding::TopK { k, bits: 8 },
    }
}

/// Every encoding, top-k at three `k` (1, 13 and 256), for the round trips.
fn every_encoding() -> Vec<DeltaEncoding> {
    (0..16u8)
        .flat_map(|sel| [0u8, 5, 15].map(|k| (sel & 0b1101) | (k << 4)))
        .map(encoding_of)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Parameter count whose encoded length is `len`, if any (the encoded length grows with
/// the count, so a bisection finds it).
fn params_for_len(encoding: DeltaEncoding, len: u64) -> Option<u64> {
    let (mut lo, mut hi) = (0u64, len.saturating_mul(64).saturating_add(256));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if encoding.encoded_len(mid) < len {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    (encoding.encoded_len(lo) == len).then_some(lo)
}

impl<'a> DeltaInput<'a> {
    pub fn parse(data: &'a [u8]) -> Self {
        let mut c = Cursor::new(data);
        let flags = c.u8();
        let raw_count = c.u64();
        let clip_norm = f32::from_bits(c.u32());
        let window = c.u16() as u64;
        let max_clients = c.u16() as u64;
        let max_weight = c.u32() as u64;
        let payload = c.rest();
        let encoding = encoding_of(flags);
        let param_count = if flags & 2 != 0 {
            raw_count
        } else {
            params_for_len(encoding, payload.len() as u64)
                .unwrap_or(raw_count % (MAX_DERIVED_PARAMS + 1))
        };
        Self {
            encoding,
            param_count,
            clip_norm,
            window,
            max_clients,
            max_weight,
            payload,
        }
    }
}

/// Whether job configuration accepts `clip_norm` (the limits check `JobConfig::validate`
/// runs, with the smallest client count and weight).
fn job_accepts_clip(clip_norm: f32) -> bool {
    AggregationLimits {
        max_clients: 1,
        max_weight: 1,
        clip_norm,
    }
    .check(flic_protocol::fedavg::MIN_FRAC_BITS)
    .is_ok()
}

fn streaming(input: &DeltaInput) -> Result<flic_protocol::encoding::DeltaStats, DeltaError> {
    check_length(
        input.encoding,
        input.payload.len() as u64,
        input.param_count,
    )?;
    let mut check = DeltaCheck::new(input.encoding, input.param_count, input.clip_norm);
    for w in input
        .encoding
        .windows(input.param_count, input.window.max(1))
    {
        let bytes = &input.payload[w.bytes()];
        check.feed(&w, bytes)?;
    }
    check.finish()
}

/// Fixed-point value of every element, as the accumulator computes them.
fn fixed_values(encoding: DeltaEncoding, bytes: &[u8], frac_bits: u32) -> Vec<i64> {
    match encoding {
        DeltaEncoding::F32 => bytes
            .chunks_exact(4)
            .map(|c| fixed_from_f32(f32::from_le_bytes(c.try_into().unwrap()), frac_bits))
            .collect(),
        DeltaEncoding::Int8Blocks => bytes
            .chunks(INT8_BLOCK_BYTES)
            .flat_map(|b| {
                let f =
                    int8_block_factor(f32::from_le_bytes(b[..4].try_into().unwrap()), frac_bits);
                b[4..].iter().map(move |&q| f * q as i8 as i64)
            })
            .collect(),
        // The codec's own accumulation at weight 1: the check below is then of the
        // overflow bound and of weights and repeated additions.
        other => {
            let n = (0..)
                .find(|&n| other.encoded_len(n) >= bytes.len() as u64)
                .expect("a validated length");
            let mut v = vec![0i64; n as usize];
            accumulate_window(&mut v, other, bytes, 1, frac_bits);
            v
        }
    }
}

fn check_accumulator(input: &DeltaInput) {
    let limits = AggregationLimits {
        max_clients: input.max_clients,
        max_weight: input.max_weight,
        clip_norm: input.clip_norm,
    };
    let Ok(frac_bits) = limits.safe_frac_bits() else {
        return;
    };
    let fixed = fixed_values(input.encoding, input.payload, frac_bits);
    let bound = limits.element_fixed_bound(frac_bits);
    for (i, &v) in fixed.iter().enumerate() {
        assert!(
            (v.unsigned_abs() as u128) <= bound,
            "element {i}: fixed-point value {v} above the bound {bound} the overflow proof uses"
        );
        let worst =
            v.unsigned_abs() as u128 * limits.max_weight as u128 * limits.max_clients as u128;
        assert!(
            worst <= i64::MAX as u128,
            "element {i} can overflow the accumulator"
        );
    }
    let mut acc = Accumulator::new(fixed.len(), limits, frac_bits).expect("checked limits");
    let rounds = limits.max_clients.min(3);
    for _ in 0..rounds {
        let w = acc
            .add(input.encoding, input.payload, limits.max_weight)
            .expect("a validated delta is accepted");
        assert_eq!(w, limits.max_weight);
    }
    for (i, (&a, &v)) in acc.values().iter().zip(&fixed).enumerate() {
        let expected = v as i128 * limits.max_weight as i128 * rounds as i128;
        assert_eq!(
            a as i128, expected,
            "accumulator element {i} differs from the exact sum"
        );
    }
}

fn check_round_trips(input: &DeltaInput) {
    let x: Vec<f32> = input
        .payload
        .chunks_exact(4)
        .take(4096)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .map(|v| if v.is_finite() { v } else { 0.0 })
        .collect();
    let n = x.len() as u64;
    let f = encode(DeltaEncoding::F32, &x).unwrap();
    let y = decode(DeltaEncoding::F32, &f, n).unwrap();
    assert!(
        x.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
        "f32 round trip"
    );

    let q = encode(DeltaEncoding::Int8Blocks, &x).unwrap();
    assert_eq!(q.len() as u64, DeltaEncoding::Int8Blocks.encoded_len(n));
    let y = decode(DeltaEncoding::Int8Blocks, &q, n).unwrap();
    for (b, (xb, yb)) in x
        .chunks(INT8_BLOCK_LEN)
        .zip(y.chunks(INT8_BLOCK_LEN))
        .enumerate()
    {
        let scale = f32::from_le_bytes(q[b * INT8_BLOCK_BYTES..][..4].try_into().unwrap()) as f64;
        // A block flushed to zeros (scale 0) errs by less than INT8_FLUSH_BELOW.
        let allowed = if scale == 0.0 {
            INT8_FLUSH_BELOW as f64
        } else {
            scale / 2.0 + scale * 2f64.powi(-15) + f32::MIN_POSITIVE as f64
        };
        for (xi, yi) in xb.iter().zip(yb) {
            let err = (*xi as f64 - *yi as f64).abs();
            assert!(
                err <= allowed,
                "int8 error {err} > {allowed}: x={xi} y={yi} scale={scale}"
            );
        }
    }

    // Every other encoding decodes what it encodes, to finite values.
    for enc in every_encoding() {
        let bytes = encode_seeded(enc, &x, n).unwrap();
        assert_eq!(bytes.len() as u64, enc.encoded_len(n), "{enc} length");
        let y = decode(enc, &bytes, n).unwrap_or_else(|e| panic!("{enc} decodes its own bytes: {e}"));
        assert!(y.iter().all(|v| v.is_finite()), "{enc} decodes finite");
    }

    // For every clip_norm a job can be configured with.
    let clip = input.clip_norm;
    if job_accepts_clip(clip) {
        let mut c = x;
        clip_l2(&mut c, clip);
        for enc in [DeltaEncoding::F32, DeltaEncoding::Int8Blocks] {
            let bytes = encode(enc, &c).unwrap();
            if let Err(e) = validate(enc, &bytes, n, clip) {
                panic!("a delta clipped to {clip} fails {enc} validation: {e}");
            }
        }
        for enc in every_encoding() {
            let e = encode_within(enc, &c, clip, 1)
                .unwrap_or_else(|e| panic!("encode_within {enc} at {clip}: {e}"));
            if let Err(err) = validate(enc, &e.bytes, n, clip) {
                panic!("encode_within's {enc} delta fails validation at {clip}: {err}");
            }
        }
    }
}

pub fn run(data: &[u8]) {
    let input = DeltaInput::parse(data);
    let (enc, n, clip) = (input.encoding, input.param_count, input.clip_norm);

    let decoded = decode(enc, input.payload, n);
    let validated = validate(enc, input.payload, n, clip);
    // Compared as text: a `BadScale` error carries the scale, and NaN != NaN.
    let streamed = streaming(&input);
    assert_eq!(
        format!("{validated:?}"),
        format!("{streamed:?}"),
        "streaming check differs from validate"
    );

    let sane_clip = job_accepts_clip(clip);
    if let (Ok(stats), true) = (&validated, sane_clip) {
        let values = decoded
            .clone()
            .expect("decode accepts what validate accepts");
        assert_eq!(values.len() as u64, n);
        let element_bound = clip as f64 * (1.0 + CLIP_TOLERANCE);
        let mut sum_sq = 0f64;
        for (i, v) in values.iter().enumerate() {
            assert!(v.is_finite(), "value {i} is not finite");
            assert!(
                (*v as f64).abs() <= element_bound,
                "value {i} = {v} above {element_bound}"
            );
            sum_sq += *v as f64 * *v as f64;
        }
        assert!(stats.norm <= stats.bound, "reported norm above the bound");
        // The decoded values are `q * scale` rounded to f32 (relative error 2^-24).
        let norm = sum_sq.sqrt();
        assert!(
            norm <= stats.bound * (1.0 + 1e-6),
            "decoded norm {norm} above the bound {}",
            stats.bound
        );
        check_accumulator(&input);
    }
    if let Err(DeltaError::WrongLength { .. }) = validated {
        assert!(matches!(decoded, Err(DeltaError::WrongLength { .. })));
    }
    check_round_trips(&input);
}

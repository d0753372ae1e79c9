//! `candid_update_args`: the argument decoding of every canister method that takes
//! arguments, exactly as the `ic-cdk` 0.20.3 entry points do it.
//!
//! `#[ic_cdk::update]`/`#[init]`/`#[post_upgrade]` (ic-cdk-macros 0.20.3, `export.rs`)
//! expand to: empty argument bytes are replaced by `DIDL\0\0`, then
//! `candid::utils::decode_args_with_config(bytes, &config)` with
//! `DecoderConfig::new()` plus `set_skipping_quota(10000)`, and `.unwrap()` (a trap).
//! No decoding quota is set: the IC's per-message instruction limit is the only bound on
//! decoding work, besides Candid's own defaults (type table and header length limits).
//! Methods without arguments (`start_job`, `pause_job`, `resume_job`) decode nothing.
//!
//! Input: byte 0 picks the method ([`METHODS`], modulo their number); the rest is the
//! Candid message. Checks: decoding never panics; a decoded value re-encodes to a message
//! that decodes to the same value and re-encodes to the same bytes; the pure validators the
//! canister runs first on those values never panic.

use candid::utils::{decode_args_with_config, encode_args};
use candid::DecoderConfig;
use flic_protocol::api::{
    BeginSubmissionArgs, InitArg, JobConfig, PutChunkArgs, RegisterDatasetArgs,
};
use serde_bytes::ByteBuf;

/// The skipping quota `ic-cdk` 0.20.3 sets on every entry point.
pub const IC_CDK_SKIPPING_QUOTA: usize = 10_000;

/// Methods with arguments, in selector order, with their Candid argument types.
pub const METHODS: [&str; 10] = [
    "configure_job",      // (JobConfig)
    "upload_model_chunk", // (nat32, blob)
    "register_dataset",   // (RegisterDatasetArgs)
    "revoke_dataset",     // (nat64)
    "begin_submission",   // (BeginSubmissionArgs)
    "put_chunk",          // (PutChunkArgs)
    "commit_submission",  // (nat64)
    "init",               // (InitArg)
    "post_upgrade",       // (opt InitArg)
    "(every type)",       // the same message against every argument type above
];

/// The decoder configuration of an `ic-cdk` 0.20.3 entry point.
pub fn ic_cdk_config() -> DecoderConfig {
    let mut c = DecoderConfig::new();
    c.set_skipping_quota(IC_CDK_SKIPPING_QUOTA);
    c
}

/// What the generated entry point does with the raw argument bytes.
pub fn entry_point_bytes(arg: &[u8]) -> &[u8] {
    if arg.is_empty() {
        b"DIDL\x00\x00"
    } else {
        arg
    }
}

/// Decodes as the entry point would; on success checks the canonical re-encoding.
macro_rules! decode_check {
    ($bytes:expr, $($t:ty),+) => {{
        let config = ic_cdk_config();
        match decode_args_with_config::<($($t,)+)>(entry_point_bytes($bytes), &config) {
            Ok(value) => {
                let once = encode_args(value.clone()).expect("a decoded value re-encodes");
                let again: ($($t,)+) = decode_args_with_config(&once, &config)
                    .expect("a re-encoded value decodes");
                let twice = encode_args(again).expect("re-encodes");
                assert_eq!(once, twice, "Candid re-encoding is not a fixed point");
                Some(value)
            }
            Err(_) => None,
        }
    }};
}

fn check_job_config(config: &JobConfig) {
    // What configure_job and init run before touching state.
    if config.validate().is_ok() {
        let n = config.model_spec.param_count();
        assert!(n > 0 && n <= flic_protocol::api::MAX_PARAMS);
        let chunks = flic_protocol::chunking::chunk_count(n * 4, config.chunk_size());
        assert!(chunks <= flic_protocol::chunking::MAX_CHUNKS as u64);
    }
    let _ = config.model_spec.spec_id();
}

fn check_begin(args: &BeginSubmissionArgs) {
    let bytes = args.header.signing_bytes();
    assert_eq!(&bytes[..18], flic_protocol::submission::SUBMISSION_DOMAIN);
    let _ = flic_protocol::submission::verify_signature(&args.public_key, &bytes, &args.signature);
    let leaves: Vec<[u8; 32]> = args.chunk_hashes.iter().map(|h| h.into_array()).collect();
    let _ = flic_protocol::merkle::root(&leaves);
}

pub fn run(data: &[u8]) {
    let Some((&selector, msg)) = data.split_first() else {
        return;
    };
    match selector as usize % METHODS.len() {
        0 => {
            if let Some((c,)) = decode_check!(msg, JobConfig) {
                check_job_config(&c);
            }
        }
        1 => {
            decode_check!(msg, u32, ByteBuf);
        }
        2 => {
            decode_check!(msg, RegisterDatasetArgs);
        }
        3 | 6 => {
            decode_check!(msg, u64);
        }
        4 => {
            if let Some((a,)) = decode_check!(msg, BeginSubmissionArgs) {
                check_begin(&a);
            }
        }
        5 => {
            if let Some((a,)) = decode_check!(msg, PutChunkArgs) {
                let _ = flic_protocol::merkle::leaf_hash(&a.bytes);
            }
        }
        7 => {
            if let Some((InitArg::Init(a),)) = decode_check!(msg, InitArg) {
                if let Some(job) = a.job {
                    check_job_config(&job);
                }
            }
        }
        8 => {
            decode_check!(msg, Option<InitArg>);
        }
        _ => {
            // One message against every argument type: finds inputs that one decoder
            // accepts and exercise subtyping (extra fields, opt coercions) across types.
            decode_check!(msg, JobConfig);
            decode_check!(msg, u32, ByteBuf);
            decode_check!(msg, RegisterDatasetArgs);
            decode_check!(msg, u64);
            decode_check!(msg, BeginSubmissionArgs);
            decode_check!(msg, PutChunkArgs);
            decode_check!(msg, InitArg);
            decode_check!(msg, Option<InitArg>);
        }
    }
}

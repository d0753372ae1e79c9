//! The `ic-cdk` boundary: decode, call the core, encode. After every update (and the timer,
//! and an upgrade) the cheap invariants are checked, trapping (so rolling the message back)
//! if one fails, and the certified data and the deadline timer are brought in line with the
//! state.

use std::cell::{Cell, RefCell};

use candid::Principal;
use flic_protocol::api::{
    AdminError, AllowListChange, BeginSubmissionArgs, CertifiedModelInfo, CertifiedRoundInfo,
    CertifiedRoundPage, CertifiedState, CommitReceipt, Contribution, ContributionPage,
    ContributionProof, Dataset, DatasetError, DatasetPage, Evaluation, EvaluationError,
    HttpRequest, HttpResponse, InitArg, JobConfig, Lineage, LineageArgs, ModelChunk, ModelInfo,
    PageArgs, PutChunkArgs, QueryError, RegisterDatasetArgs, ReportEvaluationArgs, RoundInfo,
    RoundPage, SubmissionStatus, SubmitError,
};
use flic_protocol::api::{
    AdvertiseKeysArgs, InboxEnvelope, PostSharesArgs, RevealSharesArgs, SecAggCallError,
    SecAggRound,
};
use ic_stable_structures::DefaultMemoryImpl;
use serde_bytes::ByteBuf;

use crate::admission::AllowListPage;
use crate::counters::CONTRIBUTOR_COUNT_STEPS;
use crate::metrics::{variant_name, CallRecord};
use crate::state::{CallContext, State};

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
    /// The deadline last given to `global_timer_set` by this instance (0: none). The timer
    /// is re-armed only when the state's deadline differs from it: if the timer message
    /// traps, the heap rolls back to this same deadline, so later updates do not re-arm a
    /// timer that would trap again (a loop burning cycles). An upgrade, which starts a
    /// fresh heap, arms it once more.
    static ARMED_DEADLINE: Cell<u64> = const { Cell::new(0) };
    /// False while `init` and `post_upgrade` run: the IC allows no calls there, so the
    /// noise seed is asked for by the next update or timer instead.
    static CALLS_ALLOWED: Cell<bool> = const { Cell::new(true) };
    /// `raw_rand` replies that were rejections in a row (a retry stops at 3, until the
    /// next update or timer).
    static SEED_REJECTIONS: Cell<u32> = const { Cell::new(0) };
}

fn read_state<R>(f: impl FnOnce(&State) -> R) -> R {
    STATE.with_borrow(|s| {
        f(s.as_ref()
            .expect("state is initialised in init/post_upgrade"))
    })
}

/// Runs an update on the core, then [`settle`]s.
fn mutate_state<R>(f: impl FnOnce(&mut State, &CallContext) -> R) -> R {
    let ctx = context();
    STATE.with_borrow_mut(|s| {
        let state = s
            .as_mut()
            .expect("state is initialised in init/post_upgrade");
        let out = f(state, &ctx);
        state.count_new_contributors(CONTRIBUTOR_COUNT_STEPS);
        settle(state);
        out
    })
}

/// After every change: the O(1) invariants (a failure traps, so nothing the message wrote
/// is kept), then certified data and the timer. The full `check_invariants` reads every
/// open submission and is for tests.
fn settle(state: &mut State) {
    if let Err(broken) = state.check_cheap_invariants() {
        ic_cdk::trap(format!("invariant broken: {broken}"));
    }
    sync_runtime(state);
}

/// An update through the core, then counted in the metrics (see `metrics.rs`): rejections
/// by error variant, payload bytes, and the instructions the message used so far.
fn counted_update<R, E: std::fmt::Debug>(
    method: &str,
    bytes: u64,
    f: impl FnOnce(&mut State, &CallContext) -> Result<R, E>,
) -> Result<R, E> {
    let out = mutate_state(f);
    let rejection = out.as_ref().err().map(variant_name);
    let instructions = ic_cdk::api::performance_counter(0);
    STATE.with_borrow_mut(|s| {
        s.as_mut()
            .expect("state is initialised")
            .record_call(CallRecord {
                method,
                rejection: rejection.as_deref(),
                bytes,
                instructions,
            })
    });
    out
}

fn context() -> CallContext {
    let caller = ic_cdk::api::msg_caller();
    CallContext {
        caller,
        now: ic_cdk::api::time(),
        canister_id: ic_cdk::api::canister_self(),
        is_controller: ic_cdk::api::is_controller(&caller),
    }
}

fn sync_runtime(state: &mut State) {
    if state.wants_noise_seed() && !state.seed_requested && CALLS_ALLOWED.get() {
        state.seed_requested = request_noise_seed();
    }
    ic_cdk::api::certified_data_set(state.certified_data());
    let deadline = state.timer_deadline();
    if ARMED_DEADLINE.replace(deadline) != deadline {
        ic_cdk::api::global_timer_set(deadline);
    }
}

fn load() {
    let mut state = State::load(DefaultMemoryImpl::default());
    state.meter = || ic_cdk::api::performance_counter(0);
    STATE.with_borrow_mut(|s| *s = Some(state));
}

#[ic_cdk::init]
fn init(arg: InitArg) {
    CALLS_ALLOWED.set(false);
    load();
    match arg {
        InitArg::Init(args) => {
            if let Some(job) = args.job {
                // The installer is a controller by definition.
                mutate_state(|s, ctx| {
                    s.configure_job(
                        &CallContext {
                            is_controller: true,
                            ..*ctx
                        },
                        job,
                    )
                })
                .unwrap_or_else(|e| ic_cdk::trap(e.to_string()));
            } else {
                mutate_state(|_, _| ());
            }
        }
        InitArg::Upgrade(_) => ic_cdk::trap("install needs InitArg::Init, not Upgrade"),
    }
    // The heap outlives this message: later ones may call.
    CALLS_ALLOWED.set(true);
}

#[ic_cdk::pre_upgrade]
fn pre_upgrade() {
    // Everything but the open round's accumulator already lives in stable memory.
    read_state(|s| s.save_for_upgrade());
}

#[ic_cdk::post_upgrade]
fn post_upgrade(arg: Option<InitArg>) {
    CALLS_ALLOWED.set(false);
    load();
    match arg {
        None | Some(InitArg::Upgrade(None)) => {}
        Some(InitArg::Upgrade(Some(args))) => mutate_state(|s, _| s.apply_upgrade(&args))
            .unwrap_or_else(|e| ic_cdk::trap(e.to_string())),
        Some(InitArg::Init(_)) => ic_cdk::trap("upgrade needs InitArg::Upgrade, not Init"),
    }
    // Timers are cleared by an upgrade: re-arm from the stored deadline.
    mutate_state(|_, _| ());
    CALLS_ALLOWED.set(true);
}

/// The deadline timer. The raw system export (not `ic-cdk-timers`, whose self-calls need
/// inter-canister calls): the IC calls it at or after the time given to `global_timer_set`.
#[cfg(target_family = "wasm")]
#[unsafe(export_name = "canister_global_timer")]
extern "C" fn canister_global_timer() {
    ic_cdk::futures::internals::in_executor_context(|| {
        // The IC deactivated the timer to run this: if this message succeeds, `settle`
        // arms the state's deadline again (if it traps, this write is rolled back too).
        ARMED_DEADLINE.set(0);
        let now = ic_cdk::api::time();
        STATE.with_borrow_mut(|s| {
            let state = s.as_mut().expect("state is initialised");
            state.on_timer(now);
            state.count_new_contributors(CONTRIBUTOR_COUNT_STEPS);
            settle(state);
            state.record_call(CallRecord {
                method: "canister_global_timer",
                rejection: None,
                bytes: 0,
                instructions: ic_cdk::api::performance_counter(0),
            });
        });
    });
}

/// Asks the management canister for 32 random bytes, the open round's noise seed
/// (central DP). Raw `ic0` calls with [`on_noise_seed`] as both callbacks: no future
/// needs to outlive the message. Returns whether the call went out.
#[cfg(target_family = "wasm")]
fn request_noise_seed() -> bool {
    let management = Principal::management_canister();
    // SAFETY: `on_noise_seed` is an entry point taking the env (unused) the IC passes back.
    unsafe {
        ic0::call_new(
            management.as_slice(),
            "raw_rand",
            on_noise_seed,
            0,
            on_noise_seed,
            0,
        );
    }
    ic0::call_data_append(&candid::encode_args(()).expect("an empty argument encodes"));
    ic0::call_perform() == 0
}

#[cfg(not(target_family = "wasm"))]
fn request_noise_seed() -> bool {
    false
}

/// `raw_rand`'s reply (or rejection).
#[cfg(target_family = "wasm")]
unsafe extern "C" fn on_noise_seed(_env: usize) {
    let now = ic_cdk::api::time();
    let reply: Option<[u8; 32]> = if ic0::msg_reject_code() == 0 {
        candid::decode_one::<ByteBuf>(&ic_cdk::api::msg_arg_data())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
    } else {
        None
    };
    STATE.with_borrow_mut(|s| {
        let state = s.as_mut().expect("state is initialised");
        match reply {
            Some(seed) => {
                SEED_REJECTIONS.set(0);
                state.receive_noise_seed(seed, now);
            }
            None => {
                state.seed_requested = false;
                let n = SEED_REJECTIONS.get() + 1;
                SEED_REJECTIONS.set(n);
                // A few retries from here; then the next update or timer asks again.
                if n >= 3 {
                    SEED_REJECTIONS.set(0);
                    CALLS_ALLOWED.set(false);
                }
            }
        }
        state.count_new_contributors(CONTRIBUTOR_COUNT_STEPS);
        settle(state);
        CALLS_ALLOWED.set(true);
        state.record_call(CallRecord {
            method: "raw_rand_reply",
            rejection: reply.is_none().then_some("Rejected"),
            bytes: 0,
            instructions: ic_cdk::api::performance_counter(0),
        });
    });
}

/// Drops plainly invalid ingress before the IC accepts it (see `inspect.rs`).
#[ic_cdk::inspect_message]
fn inspect_message() {
    let caller = ic_cdk::api::msg_caller();
    let method = ic_cdk::api::msg_method_name();
    // The size only: copying a chunk-sized argument just to measure it would be waste.
    let arg_len = ic0::msg_arg_data_size() as u64;
    let verdict = read_state(|s| {
        s.inspect(
            caller,
            ic_cdk::api::is_controller(&caller),
            &method,
            arg_len,
        )
    });
    match verdict {
        Ok(()) => ic_cdk::api::accept_message(),
        Err(why) => ic_cdk::trap(format!("{method} refused before execution: {why}")),
    }
}

// ---------------------------------------------------------------- admin

#[ic_cdk::update]
fn configure_job(config: JobConfig) -> Result<u64, AdminError> {
    counted_update("configure_job", 0, |s, ctx| s.configure_job(ctx, config))
}

#[ic_cdk::update]
fn upload_model_chunk(index: u32, bytes: ByteBuf) -> Result<u32, AdminError> {
    counted_update("upload_model_chunk", bytes.len() as u64, |s, ctx| {
        s.upload_model_chunk(ctx, index, &bytes)
    })
}

#[ic_cdk::update]
fn start_job() -> Result<(), AdminError> {
    counted_update("start_job", 0, |s, ctx| s.start_job(ctx))
}

#[ic_cdk::update]
fn pause_job() -> Result<(), AdminError> {
    counted_update("pause_job", 0, |s, ctx| s.pause_job(ctx))
}

#[ic_cdk::update]
fn resume_job() -> Result<(), AdminError> {
    counted_update("resume_job", 0, |s, ctx| s.resume_job(ctx))
}

/// Drops an upload in progress (controllers): frees its slot for another contributor.
#[ic_cdk::update]
fn evict_submission(submission_id: u64) -> Result<(), AdminError> {
    counted_update("evict_submission", 0, |s, ctx| {
        s.evict_submission(ctx, submission_id)
    })
}

/// Adds and removes principals on the allow-list (controllers); returns its length.
#[ic_cdk::update]
fn update_allow_list(change: AllowListChange) -> Result<u64, AdminError> {
    counted_update("update_allow_list", 0, |s, ctx| {
        s.update_allow_list(ctx, change)
    })
}

#[ic_cdk::query]
fn allow_list(page: PageArgs) -> AllowListPage {
    read_state(|s| s.allow_list_page(page))
}

// ---------------------------------------------------------------- registry

#[ic_cdk::update]
fn register_dataset(args: RegisterDatasetArgs) -> Result<u64, DatasetError> {
    counted_update("register_dataset", 0, |s, ctx| {
        s.register_dataset(ctx, args)
    })
}

#[ic_cdk::update]
fn revoke_dataset(dataset_id: u64) -> Result<(), DatasetError> {
    counted_update("revoke_dataset", 0, |s, ctx| {
        s.revoke_dataset(ctx, dataset_id)
    })
}

#[ic_cdk::query]
fn get_dataset(dataset_id: u64) -> Option<Dataset> {
    read_state(|s| s.dataset(dataset_id))
}

#[ic_cdk::query]
fn list_datasets(page: PageArgs) -> DatasetPage {
    read_state(|s| s.list_datasets(page))
}

#[ic_cdk::query]
fn get_contribution(index: u64) -> Option<Contribution> {
    read_state(|s| s.contribution(index))
}

#[ic_cdk::query]
fn contributions_by_contributor(contributor: Principal, page: PageArgs) -> ContributionPage {
    read_state(|s| s.contributions_by_contributor(contributor, page))
}

#[ic_cdk::query]
fn contributions_by_dataset(dataset_id: u64, page: PageArgs) -> ContributionPage {
    read_state(|s| s.contributions_by_dataset(dataset_id, page))
}

#[ic_cdk::query]
fn lineage(args: LineageArgs) -> Result<Lineage, QueryError> {
    read_state(|s| s.lineage(args))
}

// ---------------------------------------------------------------- submissions

#[ic_cdk::update]
fn begin_submission(args: BeginSubmissionArgs) -> Result<SubmissionStatus, SubmitError> {
    counted_update("begin_submission", 0, |s, ctx| {
        s.begin_submission(ctx, args)
    })
}

#[ic_cdk::update]
fn put_chunk(args: PutChunkArgs) -> Result<u32, SubmitError> {
    let bytes = args.bytes.len() as u64;
    counted_update("put_chunk", bytes, |s, ctx| s.put_chunk(ctx, args))
}

#[ic_cdk::update]
fn commit_submission(submission_id: u64) -> Result<CommitReceipt, SubmitError> {
    counted_update("commit_submission", 0, |s, ctx| {
        s.commit_submission(ctx, submission_id)
    })
}

// ---------------------------------------------------------------- secure aggregation

/// Phase 1: the caller's signed keys; returns its index in the round.
#[ic_cdk::update]
fn secagg_advertise(args: AdvertiseKeysArgs) -> Result<u32, SecAggCallError> {
    counted_update("secagg_advertise", 0, |s, ctx| {
        s.secagg_advertise(ctx, args)
    })
}

/// Phase 2: one sealed envelope of shares for every other participant.
#[ic_cdk::update]
fn secagg_post_shares(args: PostSharesArgs) -> Result<(), SecAggCallError> {
    let bytes = args.envelopes.iter().map(|e| e.len() as u64).sum();
    counted_update("secagg_post_shares", bytes, |s, ctx| {
        s.secagg_post_shares(ctx, args)
    })
}

/// Phase 4: the caller's shares for the unmasking.
#[ic_cdk::update]
fn secagg_reveal(args: RevealSharesArgs) -> Result<(), SecAggCallError> {
    counted_update("secagg_reveal", 0, |s, ctx| s.secagg_reveal(ctx, args))
}

/// The open round's secure aggregation: phase, threshold and participants' keys.
#[ic_cdk::query]
fn secagg_round() -> Option<SecAggRound> {
    read_state(|s| s.secagg_round())
}

/// The envelopes addressed to the caller in `round`.
#[ic_cdk::query]
fn secagg_inbox(round: u64) -> Vec<InboxEnvelope> {
    let caller = ic_cdk::api::msg_caller();
    read_state(|s| s.secagg_inbox(caller, round))
}

#[ic_cdk::query]
fn submission_status(submission_id: u64) -> Result<SubmissionStatus, QueryError> {
    read_state(|s| s.submission_status(submission_id))
}

#[ic_cdk::query]
fn contribution_chunk(index: u64, chunk: u32) -> Result<ByteBuf, QueryError> {
    read_state(|s| s.contribution_chunk(index, chunk))
}

// ---------------------------------------------------------------- rounds and model

#[ic_cdk::query]
fn round_info() -> RoundInfo {
    read_state(|s| s.round_info())
}

#[ic_cdk::query]
fn model_info() -> Result<ModelInfo, QueryError> {
    read_state(|s| s.model_info())
}

#[ic_cdk::query]
fn model_chunk(index: u32) -> Result<ModelChunk, QueryError> {
    read_state(|s| s.model_chunk(index))
}

#[ic_cdk::query]
fn round_history(page: PageArgs) -> RoundPage {
    read_state(|s| s.round_history(page))
}

#[ic_cdk::query]
fn certified_state() -> CertifiedState {
    read_state(|s| s.certified_state())
}

/// The IC certificate of this query's certified data; empty when the method runs as an
/// update (replicated execution has no certificate).
fn certificate() -> Vec<u8> {
    ic_cdk::api::data_certificate().unwrap_or_default()
}

#[ic_cdk::query]
fn round_info_certified() -> CertifiedRoundInfo {
    read_state(|s| s.round_info_certified(certificate()))
}

#[ic_cdk::query]
fn model_info_certified() -> Result<CertifiedModelInfo, QueryError> {
    read_state(|s| s.model_info_certified(certificate()))
}

#[ic_cdk::query]
fn round_history_certified(page: PageArgs) -> CertifiedRoundPage {
    read_state(|s| s.round_history_certified(certificate(), page))
}

#[ic_cdk::query]
fn contribution_proof(index: u64) -> Result<ContributionProof, QueryError> {
    read_state(|s| s.contribution_proof(certificate(), index))
}

#[ic_cdk::query]
fn initial_model_chunk(index: u32) -> Result<ModelChunk, QueryError> {
    read_state(|s| s.initial_model_chunk(index))
}

// ---------------------------------------------------------------- model quality

/// Reports the quality of closed round `args.round`'s model (controllers, or contributors
/// of that round). One evaluation per reporter and round; a new one replaces the old.
#[ic_cdk::update]
fn report_evaluation(args: ReportEvaluationArgs) -> Result<(), EvaluationError> {
    counted_update("report_evaluation", 0, |s, ctx| {
        s.report_evaluation(ctx, args)
    })
}

#[ic_cdk::query]
fn round_evaluations(round: u64) -> Vec<Evaluation> {
    read_state(|s| s.round_evaluations(round))
}

// ---------------------------------------------------------------- HTTP

/// The dashboard, JSON API and metrics (`http.rs`), as a query for the IC HTTP gateway.
#[ic_cdk::query]
fn http_request(req: HttpRequest) -> HttpResponse {
    let env = crate::http::HttpEnv {
        now_ns: ic_cdk::api::time(),
        cycle_balance: ic_cdk::api::canister_cycle_balance(),
        canister_id: ic_cdk::api::canister_self(),
    };
    read_state(|s| crate::http::handle(s, &req, &env))
}

ic_cdk::export_candid!();

#[cfg(test)]
mod tests {
    /// The interface `export_candid!` produces must equal the checked-in `aggregator.did`.
    /// Regenerate after an intended interface change with
    /// `FLIC_UPDATE_DID=1 cargo test --release -p flic-aggregator candid_interface`.
    #[test]
    fn candid_interface_matches_aggregator_did() {
        use candid_parser::utils::{service_equal, CandidSource};
        let exported = super::__export_service();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("aggregator.did");
        if std::env::var_os("FLIC_UPDATE_DID").is_some() {
            std::fs::write(&path, &exported).unwrap();
        }
        service_equal(CandidSource::Text(&exported), CandidSource::File(&path)).unwrap_or_else(
            |e| {
                panic!(
                    "the exported interface differs from {}: {e:?}",
                    path.display()
                )
            },
        );
    }
}

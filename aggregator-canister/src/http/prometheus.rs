//! `/metrics`: Prometheus text format 0.0.4.

use std::fmt::Write as _;

use flic_protocol::api::{HttpResponse, JobState};

use super::{response, HttpEnv};
use crate::counters::CONTRIBUTOR_COUNT_QUERY_STEPS;
use crate::state::State;

struct Prom(String);

impl Prom {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

const SUBMISSION_METHODS: [&str; 3] = ["begin_submission", "put_chunk", "commit_submission"];

pub(super) fn metrics(state: &State, env: &HttpEnv) -> HttpResponse {
    let (job, open_round) = (state.job(), state.open_round());
    let counters = state.metrics();
    let mut p = Prom(String::with_capacity(4096));
    p.single(
        "flic_rounds_closed_total",
        "counter",
        "Rounds closed since the job started.",
        state.rounds.len(),
    );
    p.single(
        "flic_current_round",
        "gauge",
        "The open round (equal to the rounds closed while the job runs).",
        open_round.round,
    );
    p.family("flic_job_state", "gauge", "1 for the job's current state.");
    for s in [
        JobState::Unconfigured,
        JobState::AwaitingModel,
        JobState::Ready,
        JobState::Running,
        JobState::Paused,
    ] {
        p.sample(
            "flic_job_state",
            &[("state", &s.to_string())],
            u8::from(job.job_state() == s),
        );
    }
    let info = state.round_info();
    p.single(
        "flic_round_committed",
        "gauge",
        "Contributions committed in the open round.",
        info.committed,
    );
    p.single(
        "flic_round_pending",
        "gauge",
        "Uploads begun but not committed in the open round.",
        info.pending,
    );
    p.single(
        "flic_round_deadline_seconds",
        "gauge",
        "Deadline of the open round, Unix seconds (0: none).",
        info.deadline_ns / 1_000_000_000,
    );
    p.single(
        "flic_submissions_accepted_total",
        "counter",
        "Submissions committed (accepted into a round's aggregate).",
        counters.method("commit_submission").ok,
    );
    p.family(
        "flic_submissions_rejected_total",
        "counter",
        "Submission calls rejected with a typed error, by method and error variant.",
    );
    for ((method, reason), n) in &counters.rejections {
        if SUBMISSION_METHODS.contains(&method.as_str()) {
            p.sample(
                "flic_submissions_rejected_total",
                &[("method", method), ("reason", reason)],
                n,
            );
        }
    }
    p.family(
        "flic_rejections_total",
        "counter",
        "Every update rejected with a typed error, by method and error variant.",
    );
    for ((method, reason), n) in &counters.rejections {
        p.sample(
            "flic_rejections_total",
            &[("method", method), ("reason", reason)],
            n,
        );
    }
    p.family(
        "flic_bytes_received_total",
        "counter",
        "Delta chunk bytes received by put_chunk, by outcome.",
    );
    let pc = counters.method("put_chunk");
    p.sample(
        "flic_bytes_received_total",
        &[("outcome", "accepted")],
        pc.bytes_accepted,
    );
    p.sample(
        "flic_bytes_received_total",
        &[("outcome", "rejected")],
        pc.bytes_rejected,
    );
    p.family(
        "flic_update_calls_total",
        "counter",
        "Update calls (and timer runs) that completed, by method and outcome.",
    );
    for (method, c) in &counters.methods {
        p.sample(
            "flic_update_calls_total",
            &[("method", method), ("outcome", "ok")],
            c.ok,
        );
        p.sample(
            "flic_update_calls_total",
            &[("method", method), ("outcome", "rejected")],
            c.rejected,
        );
    }
    p.family(
        "flic_instructions_total",
        "counter",
        "Wasm instructions used by completed update calls and timer runs (ic0.performance_counter), by method.",
    );
    for (method, c) in &counters.methods {
        p.sample(
            "flic_instructions_total",
            &[("method", method)],
            c.instructions,
        );
    }
    p.single(
        "flic_cycle_balance",
        "gauge",
        "The canister's cycle balance.",
        env.cycle_balance,
    );
    // A stored counter (O(1)); left out while a backlog from an older release's state is
    // still being counted.
    if let Some(n) = state.distinct_contributor_count(CONTRIBUTOR_COUNT_QUERY_STEPS) {
        p.single(
            "flic_contributors",
            "gauge",
            "Principals with at least one committed contribution.",
            n,
        );
    }
    p.single(
        "flic_contributions_total",
        "counter",
        "Contributions committed since the job started.",
        state.allocators().next_contribution,
    );
    p.single(
        "flic_datasets",
        "gauge",
        "Datasets registered (revoked ones included).",
        state.datasets.len(),
    );
    p.single(
        "flic_evaluations",
        "gauge",
        "Evaluations of round models stored.",
        state.evaluations.len(),
    );
    let slot_bytes = state
        .job()
        .config
        .as_ref()
        .map_or(0, |c| c.slot_bytes(state.job().param_count));
    p.single(
        "flic_staging_slots_bytes",
        "gauge",
        "Bytes of the upload staging slots handed out so far (a fixed set, reused every round).",
        state.allocators().next_slot() * slot_bytes,
    );
    p.single(
        "flic_retained_bytes",
        "gauge",
        "Bytes of retained contribution deltas (grows by each committed delta when contributions are retained).",
        state.allocators().staging_top,
    );
    if let Some(q) = open_round
        .round
        .checked_sub(1)
        .and_then(|r| state.round_quality(r))
    {
        p.single(
            "flic_model_accuracy",
            "gauge",
            "Sample-weighted mean reported accuracy of the latest round's model.",
            q.accuracy,
        );
        p.single(
            "flic_model_loss",
            "gauge",
            "Sample-weighted mean reported loss of the latest round's model.",
            q.loss,
        );
    }
    response(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        p.0.into_bytes(),
    )
}

//! Model quality per round: evaluations of a closed round's output model, reported by a
//! controller or by a contributor of that round, on their own test data.
//!
//! The canister cannot check an accuracy (it never sees test data); it checks who reports,
//! that the model named is the one the round produced, and that the numbers are sane.
//! Storage is bounded per round: one evaluation per reporter (a new report replaces the
//! old), at most [`MAX_EVALUATIONS_PER_ROUND`] reporters.

use candid::Principal;
use flic_protocol::api::{
    Evaluation, EvaluationError, ReportEvaluationArgs, EVALUATIONS_RESERVED_FOR_CONTROLLERS,
    MAX_EVALUATIONS_PER_ROUND, MAX_SAMPLE_COUNT,
};

use crate::state::{CallContext, State};
use crate::storage::records::EvaluationRecord;
use crate::storage::Stored;

/// Sample-weighted mean quality of one round's model over its evaluations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RoundQuality {
    pub accuracy: f64,
    pub loss: f64,
    pub samples: u64,
    pub reports: u32,
}

fn invalid(field: &str, value: impl ToString, reason: &str) -> EvaluationError {
    EvaluationError::InvalidValue {
        field: field.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl State {
    /// Records (or replaces) the caller's evaluation of round `args.round`'s output model.
    pub fn report_evaluation(
        &mut self,
        ctx: &CallContext,
        args: ReportEvaluationArgs,
    ) -> Result<(), EvaluationError> {
        if ctx.caller == Principal::anonymous() {
            return Err(EvaluationError::AnonymousCaller);
        }
        if !(args.accuracy.is_finite() && (0.0..=1.0).contains(&args.accuracy)) {
            return Err(invalid("accuracy", args.accuracy, "must be in [0, 1]"));
        }
        if !(args.loss.is_finite() && args.loss >= 0.0) {
            return Err(invalid("loss", args.loss, "must be finite and >= 0"));
        }
        if args.samples == 0 {
            return Err(invalid("samples", 0, "must be at least 1"));
        }
        if args.samples > MAX_SAMPLE_COUNT {
            return Err(invalid(
                "samples",
                args.samples,
                &format!("must be at most {MAX_SAMPLE_COUNT}"),
            ));
        }
        let record = self
            .rounds
            .get(&args.round)
            .ok_or(EvaluationError::RoundNotClosed {
                round: args.round,
                closed_rounds: self.rounds.len(),
            })?
            .0;
        if !ctx.is_controller && !record.contributors.contains(&ctx.caller) {
            return Err(EvaluationError::NotAllowed {
                caller: ctx.caller,
                round: args.round,
            });
        }
        if record.new_version != args.model_version {
            return Err(EvaluationError::WrongModelVersion {
                round: args.round,
                expected: record.new_version,
                got: args.model_version,
            });
        }
        // Contributors fill at most MAX - RESERVED of the round's slots, so principals that
        // joined the round can never keep its controllers from reporting.
        let key = (args.round, ctx.caller);
        if self.evaluations.get(&key).is_none() {
            let (all, by_contributors) = self.round_evaluation_counts(args.round);
            let contributor_max = MAX_EVALUATIONS_PER_ROUND - EVALUATIONS_RESERVED_FOR_CONTROLLERS;
            let full = if ctx.is_controller {
                all >= MAX_EVALUATIONS_PER_ROUND
            } else {
                by_contributors >= contributor_max
            };
            if full {
                return Err(EvaluationError::TooManyEvaluations {
                    round: args.round,
                    max: if ctx.is_controller {
                        MAX_EVALUATIONS_PER_ROUND
                    } else {
                        contributor_max
                    } as u64,
                });
            }
        }
        self.evaluations.insert(
            key,
            Stored(EvaluationRecord {
                round: args.round,
                model_version: args.model_version,
                reporter: ctx.caller,
                accuracy: args.accuracy,
                loss: args.loss,
                samples: args.samples,
                reported_at_ns: ctx.now,
                by_controller: Some(ctx.is_controller),
            }),
        );
        Ok(())
    }

    /// The round's evaluations: all of them, and those not by a controller.
    fn round_evaluation_counts(&self, round: u64) -> (usize, usize) {
        let mut counts = (0, 0);
        for e in self
            .evaluations
            .range((round, Principal::management_canister())..)
            .take_while(|e| e.key().0 == round)
        {
            counts.0 += 1;
            if e.value().0.by_controller != Some(true) {
                counts.1 += 1;
            }
        }
        counts
    }

    /// Every evaluation of round `round`'s model (at most [`MAX_EVALUATIONS_PER_ROUND`]).
    pub fn round_evaluations(&self, round: u64) -> Vec<Evaluation> {
        self.evaluations
            .range((round, Principal::management_canister())..)
            .take_while(|e| e.key().0 == round)
            .map(|e| e.value().0.into())
            .collect()
    }

    /// Sample-weighted mean over the round's evaluations; `None` without any.
    pub fn round_quality(&self, round: u64) -> Option<RoundQuality> {
        let evals = self.round_evaluations(round);
        let samples = evals
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.samples));
        if evals.is_empty() || samples == 0 {
            return None;
        }
        let mean = |f: fn(&Evaluation) -> f64| {
            evals.iter().map(|e| f(e) * e.samples as f64).sum::<f64>() / samples as f64
        };
        Some(RoundQuality {
            accuracy: mean(|e| e.accuracy),
            loss: mean(|e| e.loss),
            samples,
            reports: evals.len() as u32,
        })
    }
}

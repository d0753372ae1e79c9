//! Aggregation rules: FedAvg and Byzantine-robust rules, exact and order-independent.
//!
//! Every rule works on the same fixed-point values as [`crate::fedavg`]: element `i` of
//! contribution `k` is `x_k[i]`, the integer [`accumulate_window`] adds for weight 1 (an
//! `f32` element rounded to `2^-f`, or an int8 value times its block's factor). A rule
//! produces, per parameter, an integer `a[i]` and, once per round, a positive denominator
//! `d`; the model then moves by the same finalisation as FedAvg,
//! `w_i + server_lr * (a[i] / (d * 2^f))` ([`crate::fedavg::apply_update`]). Integer
//! arithmetic and deterministic tie-breaking make every rule bit-identical on any machine
//! and in any commit order; contributions are put in a canonical order first (by header
//! hash), which only Krum's ties can observe.
//!
//! | rule | `a[i]` | `d` |
//! |---|---|---|
//! | FedAvg | `sum_k w_k x_k[i]` | `sum_k w_k` |
//! | coordinate-wise median | the middle value, twice (odd `K`); the two middle values summed (even `K`) | 2 |
//! | coordinate-wise trimmed mean (`beta`) | the sum of the values left after dropping the `t = floor(beta K)` smallest and `t` largest | `K - 2t` |
//! | Krum (`f`) | `x_s[i]` of the contribution `s` with the lowest score | 1 |
//! | Multi-Krum (`f`, `m`) | `sum` over the `m` lowest scores of `x_k[i]` | `m` |
//! | Bulyan (`f`) | the sum of the `beta = theta - 2f` values of the selected set closest to its median | `beta` |
//! | centered clipping (`L` iterations) | `v_L[i]` below | 1 |
//!
//! Krum's score of `k` is the sum of the squared distances `||x_k - x_j||^2` (exact,
//! in `u128`, saturating) to its `K - f - 2` nearest others; ties go to the earlier
//! contribution in the canonical order.
//!
//! Bulyan (El Mhamdi, Guerraoui and Rouault, ICML 2018) first selects `theta = K - 2f`
//! contributions by Krum, one at a time: each pick is the best Krum score among those not
//! yet picked, with `|R| - f - 2` neighbours in the remaining set `R`. Per coordinate it then
//! sums the `beta = theta - 2f` selected values closest to their median (by
//! `|2x - (lo + hi)|` with `lo`, `hi` the two middle values; ties to the smaller value).
//! It needs `min_clients >= 4f + 3`.
//!
//! Centered clipping (Karimireddy, He and Jaggi, ICML 2021) starts from the coordinate-wise
//! median, `v_0[i] = floor((lo_i + hi_i) / 2)` of the two middle values, and takes `L`
//! steps `v_{t+1}[i] = v_t[i] + floor(sum_k c_k(x_k[i] - v_t[i]) / K)`, where `c_k` clips
//! contribution `k`'s difference to the radius `tau_t`: it is kept when
//! `r_k = isqrt(||x_k - v_t||^2) <= tau_t`, and otherwise each element becomes
//! `floor((x_k[i] - v_t[i]) * g_k / 2^32)` with the factor `g_k = floor(tau_t * 2^32 / r_k)`
//! (one division per contribution, not per element). The radius adapts to the round: `tau_t` is
//! the lower median of the `r_k`, so at least half the contributions count in full and
//! none moves the centre by more than `tau_t / K` (the paper's fixed radius would have to
//! be tuned to the deltas' scale, which changes with every model and learning rate).
//! Every step is integer arithmetic (`i128`, floor division), so there is nothing to round
//! differently anywhere. Robust rules are unweighted: a contribution's
//! weight is a self-declared sample count, exactly what they must not trust.

use candid::CandidType;
use serde::{Deserialize, Serialize};

use crate::encoding::{DeltaEncoding, Window};
use crate::fedavg::accumulate_window;

/// How a round's contributions become the model update.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
pub enum AggregationRule {
    /// Weighted mean (McMahan et al.), streamed at commit.
    #[default]
    FedAvg,
    /// Coordinate-wise median (Yin et al., 2018).
    Median,
    /// Coordinate-wise trimmed mean dropping a fraction `beta` (in `[0, 0.5)`) of the
    /// values at each end (Yin et al., 2018).
    TrimmedMean { beta: f32 },
    /// The contribution closest to its `K - f - 2` nearest others (Blanchard et al., 2017),
    /// for up to `f` attackers.
    Krum { f: u32 },
    /// The mean of the `m` contributions with the best Krum scores.
    MultiKrum { f: u32, m: u32 },
    /// Krum picks `K - 2f` contributions one at a time, then a coordinate-wise trimmed
    /// mean around their median (El Mhamdi et al., 2018).
    Bulyan { f: u32 },
    /// `iters` steps of centered clipping from the coordinate-wise median, at a radius
    /// adapted to the round's distances (Karimireddy et al., 2021; module documentation).
    CenteredClip { iters: u32 },
}

/// Centered clipping's iterations when the name gives none (the paper finds one step
/// enough from a good centre; the median is one).
pub const DEFAULT_CENTERED_CLIP_ITERS: u32 = 1;
/// At most this many: each iteration is one more pass over every delta at the close.
pub const MAX_CENTERED_CLIP_ITERS: u32 = 5;
/// Fractional bits of centered clipping's per-contribution factor `tau / r_k`.
pub const CLIP_FACTOR_BITS: u32 = 32;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("trimmed-mean beta must be in [0, 0.5), got {0}")]
    BadBeta(String),
    #[error("Krum with f = {f} needs at least 2f + 3 = {needed} contributions per round (min_clients is {min_clients})")]
    TooFewForKrum {
        f: u32,
        needed: u32,
        min_clients: u32,
    },
    #[error("Multi-Krum selects m = {m}, which must be between 1 and min_clients - f = {max}")]
    BadM { m: u32, max: u32 },
    #[error("Bulyan with f = {f} needs at least 4f + 3 = {needed} contributions per round (min_clients is {min_clients})")]
    TooFewForBulyan {
        f: u32,
        needed: u32,
        min_clients: u32,
    },
    #[error("centered clipping takes 1 to {MAX_CENTERED_CLIP_ITERS} iterations, got {0}")]
    BadIters(u32),
}

impl AggregationRule {
    /// Whether the rule needs every delta of a round at the close (all but FedAvg, which
    /// is accumulated as contributions commit).
    pub fn needs_all_deltas(&self) -> bool {
        !matches!(self, AggregationRule::FedAvg)
    }

    /// Checks the rule against the round sizes a job allows.
    pub fn validate(&self, min_clients: u32, max_clients: u32) -> Result<(), RuleError> {
        let _ = max_clients;
        match *self {
            AggregationRule::FedAvg | AggregationRule::Median => Ok(()),
            AggregationRule::TrimmedMean { beta } => {
                if beta.is_finite() && (0.0..0.5).contains(&beta) {
                    Ok(())
                } else {
                    Err(RuleError::BadBeta(beta.to_string()))
                }
            }
            AggregationRule::Krum { f } => krum_size(f, min_clients),
            AggregationRule::MultiKrum { f, m } => {
                krum_size(f, min_clients)?;
                let max = min_clients - f;
                if m == 0 || m > max {
                    return Err(RuleError::BadM { m, max });
                }
                Ok(())
            }
            AggregationRule::Bulyan { f } => at_least(4 * f + 3, min_clients, |needed| {
                RuleError::TooFewForBulyan {
                    f,
                    needed,
                    min_clients,
                }
            }),
            AggregationRule::CenteredClip { iters } => {
                if (1..=MAX_CENTERED_CLIP_ITERS).contains(&iters) {
                    Ok(())
                } else {
                    Err(RuleError::BadIters(iters))
                }
            }
        }
    }

    /// Passes over every delta of the round the close makes (FedAvg none: it streams).
    pub fn passes(&self) -> u64 {
        match *self {
            AggregationRule::FedAvg => 0,
            AggregationRule::Median | AggregationRule::TrimmedMean { .. } => 1,
            // Distances, then the selected contributions' sum.
            AggregationRule::Krum { .. }
            | AggregationRule::MultiKrum { .. }
            | AggregationRule::Bulyan { .. } => 2,
            // The median (with the first distances), then one pass per step.
            AggregationRule::CenteredClip { iters } => 1 + iters as u64,
        }
    }

    /// How many values each end of a coordinate a trimmed mean drops with `k` values.
    pub fn trim_count(beta: f32, k: usize) -> usize {
        (beta as f64 * k as f64).floor() as usize
    }
}

/// `fedavg`, `median`, `trimmed-mean:BETA`, `krum:F`, `multi-krum:F,M`,
/// `bulyan:F`, `centered-clip[:ITERS]`: the command
/// line's names, which [`std::fmt::Display`] writes back.
impl std::str::FromStr for AggregationRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, arg) = s.split_once(':').unwrap_or((s, ""));
        let num = |what: &str, v: &str| -> Result<u32, String> {
            v.trim()
                .parse()
                .map_err(|_| format!("`{v}` is not a count for {what}"))
        };
        let rule = match (name, arg) {
            ("fedavg", "") => AggregationRule::FedAvg,
            ("median", "") => AggregationRule::Median,
            ("trimmed-mean", beta) => AggregationRule::TrimmedMean {
                beta: beta
                    .parse()
                    .map_err(|_| format!("trimmed-mean needs a fraction, e.g. trimmed-mean:0.2 (got `{beta}`)"))?,
            },
            ("krum", f) => AggregationRule::Krum { f: num("krum:F", f)? },
            ("multi-krum", fm) => {
                let (f, m) = fm
                    .split_once(',')
                    .ok_or_else(|| format!("multi-krum needs F,M, e.g. multi-krum:1,3 (got `{fm}`)"))?;
                AggregationRule::MultiKrum {
                    f: num("multi-krum:F,M", f)?,
                    m: num("multi-krum:F,M", m)?,
                }
            }
            ("bulyan", f) => AggregationRule::Bulyan {
                f: num("bulyan:F", f)?,
            },
            ("centered-clip", "") => AggregationRule::CenteredClip {
                iters: DEFAULT_CENTERED_CLIP_ITERS,
            },
            ("centered-clip", iters) => AggregationRule::CenteredClip {
                iters: num("centered-clip:ITERS", iters)?,
            },
            _ => {
                return Err(format!(
                    "unknown aggregation `{s}`: use fedavg, median, trimmed-mean:BETA, krum:F, multi-krum:F,M, bulyan:F or centered-clip[:ITERS]"
                ))
            }
        };
        Ok(rule)
    }
}

impl std::fmt::Display for AggregationRule {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AggregationRule::FedAvg => write!(out, "fedavg"),
            AggregationRule::Median => write!(out, "median"),
            AggregationRule::TrimmedMean { beta } => write!(out, "trimmed-mean:{beta}"),
            AggregationRule::Krum { f } => write!(out, "krum:{f}"),
            AggregationRule::MultiKrum { f, m } => write!(out, "multi-krum:{f},{m}"),
            AggregationRule::Bulyan { f } => write!(out, "bulyan:{f}"),
            AggregationRule::CenteredClip { iters } => write!(out, "centered-clip:{iters}"),
        }
    }
}

fn krum_size(f: u32, min_clients: u32) -> Result<(), RuleError> {
    at_least(2 * f + 3, min_clients, |needed| RuleError::TooFewForKrum {
        f,
        needed,
        min_clients,
    })
}

/// `Err(too_few(needed))` unless a round has at least `needed` contributions.
fn at_least(
    needed: u32,
    min_clients: u32,
    too_few: impl FnOnce(u32) -> RuleError,
) -> Result<(), RuleError> {
    if min_clients < needed {
        return Err(too_few(needed));
    }
    Ok(())
}

/// One contribution of a round as a rule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundContribution {
    pub encoding: DeltaEncoding,
    /// The capped weight (FedAvg only).
    pub weight: u64,
    /// The header hash: the canonical order.
    pub key: [u8; 32],
}

/// Where the rule reads contributions from: bytes of window `w` (in contribution `k`'s own
/// encoding) of contribution `k` in the order given to [`aggregate`].
pub trait DeltaSource {
    fn read(&mut self, k: usize, window: &Window, buf: &mut Vec<u8>);
}

/// In-memory encoded deltas, owned or borrowed (verifiers, tests).
impl<T: AsRef<[u8]>> DeltaSource for &[T] {
    fn read(&mut self, k: usize, window: &Window, buf: &mut Vec<u8>) {
        buf.clear();
        buf.extend_from_slice(&self[k].as_ref()[window.bytes()]);
    }
}

/// Parameters per window of the driver.
pub const RULE_WINDOW_PARAMS: u64 = 1 << 14;

/// Runs `rule` over validated contributions (all of `param_count` parameters), calling
/// `sink(first_param, a)` for each window's integers in order. Returns the denominator.
/// `contributions` may be in any order: the result does not depend on it. (One call of
/// [`aggregate_slice`] with no budget, the integers held in a vector.)
pub fn aggregate(
    rule: &AggregationRule,
    contributions: &[RoundContribution],
    param_count: u64,
    frac_bits: u32,
    source: &mut dyn DeltaSource,
    sink: &mut dyn FnMut(u64, &[i64]),
) -> u64 {
    let mut a = vec![0i64; param_count as usize];
    let mut progress = RuleProgress::default();
    let d = aggregate_slice(
        rule,
        contributions,
        param_count,
        frac_bits,
        source,
        &mut a.as_mut_slice(),
        &mut progress,
        RULE_WINDOW_PARAMS,
        &mut || true,
    )
    .expect("an unbounded slice finishes");
    for (first, count) in crate::encoding::aligned_windows(param_count, RULE_WINDOW_PARAMS) {
        sink(first, &a[first as usize..(first + count) as usize]);
    }
    d
}

/// Where a rule keeps its per-parameter integers between windows and between messages:
/// its output `a`, and centered clipping's centre on the way. Every pass writes a window
/// before anything reads it, so the store's old contents never matter.
pub trait IntegerStore {
    fn read(&mut self, first: u64, out: &mut [i64]);
    fn write(&mut self, first: u64, values: &[i64]);
}

impl IntegerStore for &mut [i64] {
    fn read(&mut self, first: u64, out: &mut [i64]) {
        out.copy_from_slice(&self[first as usize..first as usize + out.len()]);
    }
    fn write(&mut self, first: u64, values: &[i64]) {
        self[first as usize..first as usize + values.len()].copy_from_slice(values);
    }
}

/// How far a rule has got through its passes, so that a close can stop after any window
/// and go on in a later message. Small: `K^2` distances for Krum, `2K` for centered
/// clipping, nothing per parameter (those are in the [`IntegerStore`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleProgress {
    /// The pass under way, from 0.
    pub pass: u32,
    /// The first parameter of the next window of this pass.
    pub next_param: u64,
    /// Windows done so far, over all passes.
    pub windows: u64,
    /// Krum: the pairwise squared distances (row-major `K x K`). Centered clipping: each
    /// contribution's squared distance to the centre the pass starts from.
    dist: Vec<u128>,
    /// Centered clipping: the distances to the centre this pass writes.
    next_dist: Vec<u128>,
    /// Krum: the selected positions (canonical order), known after the first pass.
    selected: Vec<usize>,
}

impl RuleProgress {
    /// Whether every pass is done.
    pub fn is_done(&self, rule: &AggregationRule) -> bool {
        self.pass >= rule_passes(rule)
    }
}

/// Passes of the driver (FedAvg through the driver: one).
fn rule_passes(rule: &AggregationRule) -> u32 {
    rule.passes().max(1) as u32
}

/// Runs `rule` from `progress` on, `window_params` parameters at a time (a multiple of
/// the int8 block, [`crate::encoding::INT8_BLOCK_LEN`]; the same in every call of one
/// run), while `keep_going()` says so (asked before every window after the first, so
/// every call advances); the integers go to `store`. Returns the denominator once every pass is done, `None` to be called again
/// with the same arguments and progress. Slicing changes nothing: every window's
/// arithmetic is exact, so any split gives the integers of one uninterrupted run.
#[allow(clippy::too_many_arguments)]
pub fn aggregate_slice(
    rule: &AggregationRule,
    contributions: &[RoundContribution],
    param_count: u64,
    frac_bits: u32,
    source: &mut dyn DeltaSource,
    store: &mut dyn IntegerStore,
    progress: &mut RuleProgress,
    window_params: u64,
    keep_going: &mut dyn FnMut() -> bool,
) -> Option<u64> {
    assert!(
        window_params > 0 && window_params.is_multiple_of(crate::encoding::WINDOW_ALIGN),
        "windows are whole blocks of every encoding"
    );
    let k = contributions.len();
    assert!(k > 0, "a round closes with at least one contribution");
    // The canonical order: by header hash (ties cannot happen: one header per upload).
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by_key(|&i| contributions[i].key);
    let passes = rule_passes(rule);
    let trim = match *rule {
        AggregationRule::TrimmedMean { beta } => AggregationRule::trim_count(beta, k),
        _ => 0,
    };
    let mut values: Vec<Vec<i64>> = vec![Vec::new(); k];
    let (mut buf, mut out, mut column) = (Vec::new(), Vec::new(), Vec::with_capacity(k));
    let mut first_window = true;
    loop {
        if progress.pass >= passes {
            return Some(match *rule {
                AggregationRule::FedAvg => contributions.iter().map(|c| c.weight).sum(),
                AggregationRule::Median => 2,
                AggregationRule::TrimmedMean { .. } => (k - 2 * trim) as u64,
                AggregationRule::Krum { .. } | AggregationRule::CenteredClip { .. } => 1,
                AggregationRule::MultiKrum { .. } => progress.selected.len() as u64,
                AggregationRule::Bulyan { f } => bulyan_beta(k, f) as u64,
            });
        }
        if progress.next_param >= param_count {
            end_pass(rule, k, progress);
            continue;
        }
        if !first_window && !keep_going() {
            return None;
        }
        first_window = false;
        let count = window_params.min(param_count - progress.next_param);
        let w = Window {
            first_param: progress.next_param,
            param_count: count,
            byte_offset: 0,
            byte_len: 0,
        };
        read_window(
            contributions,
            &order,
            &w,
            frac_bits,
            source,
            &mut buf,
            &mut values,
        );
        let n = count as usize;
        out.clear();
        out.resize(n, 0i64);
        match (*rule, progress.pass) {
            (AggregationRule::FedAvg, _) => {
                for (slot, &c) in order.iter().enumerate() {
                    let wt = contributions[c].weight as i64;
                    for (o, &x) in out.iter_mut().zip(&values[slot]) {
                        *o = o.wrapping_add(wt.wrapping_mul(x));
                    }
                }
                store.write(w.first_param, &out);
            }
            (AggregationRule::Median | AggregationRule::TrimmedMean { .. }, _) => {
                for (i, o) in out.iter_mut().enumerate() {
                    sorted_column(&mut column, values.iter().map(|v| v[i]));
                    *o = match *rule {
                        // The same bits as an i64 wrapping sum of the two.
                        AggregationRule::Median => middle_sum(&column) as i64,
                        _ => column[trim..k - trim]
                            .iter()
                            .fold(0i64, |s, &x| s.wrapping_add(x)),
                    };
                }
                store.write(w.first_param, &out);
            }
            (
                AggregationRule::Krum { .. }
                | AggregationRule::MultiKrum { .. }
                | AggregationRule::Bulyan { .. },
                0,
            ) => {
                progress.dist.resize(k * k, 0);
                for a in 0..k {
                    for b in a + 1..k {
                        let d = squared_distance(&values[a], &values[b]);
                        let ab = progress.dist[a * k + b].saturating_add(d);
                        progress.dist[a * k + b] = ab;
                        progress.dist[b * k + a] = ab;
                    }
                }
            }
            (AggregationRule::Bulyan { f }, _) => {
                let beta = bulyan_beta(k, f);
                let mut keyed: Vec<(u128, i64)> = Vec::with_capacity(progress.selected.len());
                for (i, o) in out.iter_mut().enumerate() {
                    sorted_column(
                        &mut column,
                        progress.selected.iter().map(|&slot| values[slot][i]),
                    );
                    let med2 = middle_sum(&column);
                    keyed.clear();
                    keyed.extend(
                        column
                            .iter()
                            .map(|&x| ((2 * x as i128 - med2).unsigned_abs(), x)),
                    );
                    keyed.sort_unstable();
                    *o = keyed[..beta]
                        .iter()
                        .fold(0i64, |s, &(_, x)| s.wrapping_add(x));
                }
                store.write(w.first_param, &out);
            }
            (AggregationRule::Krum { .. } | AggregationRule::MultiKrum { .. }, _) => {
                for &slot in &progress.selected {
                    for (o, &x) in out.iter_mut().zip(&values[slot]) {
                        *o = o.wrapping_add(x);
                    }
                }
                store.write(w.first_param, &out);
            }
            (AggregationRule::CenteredClip { .. }, 0) => {
                for (i, o) in out.iter_mut().enumerate() {
                    sorted_column(&mut column, values.iter().map(|v| v[i]));
                    *o = middle_sum(&column).div_euclid(2) as i64;
                }
                store.write(w.first_param, &out);
                add_distances(&mut progress.next_dist, k, &values, &out);
            }
            (AggregationRule::CenteredClip { .. }, _) => {
                store.read(w.first_param, &mut out);
                clip_step(&progress.dist, &values, &mut out);
                store.write(w.first_param, &out);
                add_distances(&mut progress.next_dist, k, &values, &out);
            }
        }
        progress.next_param += count;
        progress.windows += 1;
    }
}

/// `column` becomes one coordinate's values, sorted.
fn sorted_column(column: &mut Vec<i64>, values: impl Iterator<Item = i64>) {
    column.clear();
    column.extend(values);
    column.sort_unstable();
}

/// The sum of a sorted column's two middle values (the middle one twice for an odd count):
/// twice its median, exact.
fn middle_sum(sorted: &[i64]) -> i128 {
    let t = sorted.len();
    sorted[(t - 1) / 2] as i128 + sorted[t / 2] as i128
}

/// What a pass leaves for the next: Krum's selection, centered clipping's distances.
fn end_pass(rule: &AggregationRule, k: usize, progress: &mut RuleProgress) {
    match (*rule, progress.pass) {
        (
            AggregationRule::Krum { .. }
            | AggregationRule::MultiKrum { .. }
            | AggregationRule::Bulyan { .. },
            0,
        ) => {
            // A round of one contribution has no pairs, so no window sized the matrix.
            progress.dist.resize(k * k, 0);
            progress.selected = match *rule {
                AggregationRule::Krum { f } => krum_select(&progress.dist, k, f, 1),
                AggregationRule::MultiKrum { f, m } => krum_select(&progress.dist, k, f, m),
                AggregationRule::Bulyan { f } => bulyan_select(&progress.dist, k, f),
                _ => unreachable!("matched above"),
            };
        }
        (AggregationRule::CenteredClip { .. }, _) => {
            progress.dist = std::mem::take(&mut progress.next_dist);
        }
        _ => {}
    }
    progress.pass += 1;
    progress.next_param = 0;
}

/// Adds each contribution's squared distance to `centre` over one window.
fn add_distances(dist: &mut Vec<u128>, k: usize, values: &[Vec<i64>], centre: &[i64]) {
    dist.resize(k, 0);
    for (d, v) in dist.iter_mut().zip(values) {
        *d = d.saturating_add(squared_distance(v, centre));
    }
}

/// One centered-clipping step over a window (module documentation): `dist` holds every
/// contribution's squared distance to the centre `centre` came from.
fn clip_step(dist: &[u128], values: &[Vec<i64>], centre: &mut [i64]) {
    let k = values.len();
    let radii: Vec<u128> = dist.iter().map(|&d| d.isqrt()).collect();
    let mut sorted = radii.clone();
    sorted.sort_unstable();
    let tau = sorted[(k - 1) / 2];
    // Each clipped contribution's factor tau / r_k in 32 fractional bits (below 2^32).
    let factors: Vec<Option<i64>> = radii
        .iter()
        .map(|&r| (r > tau).then(|| ((tau << CLIP_FACTOR_BITS) / r) as i64))
        .collect();
    for (i, o) in centre.iter_mut().enumerate() {
        let sum = values.iter().zip(&factors).fold(0i128, |s, (v, f)| {
            let diff = v[i] as i128 - *o as i128;
            // An arithmetic shift is the floor, for either sign.
            let clipped = f.map_or(diff, |f| scale_down(diff, f));
            s.saturating_add(clipped)
        });
        // A 64-bit division when the sum fits (a 128-bit one is a long library call).
        let step = match i64::try_from(sum) {
            Ok(s) => s.div_euclid(k as i64) as i128,
            Err(_) => sum.div_euclid(k as i128),
        };
        *o = (*o as i128 + step).clamp(i64::MIN as i128, i64::MAX as i128) as i64;
    }
}

/// `||a - b||^2`, exact (saturating at `u128::MAX`). Two `i64` differ by less than 2^64,
/// so every square fits a `u128`; the common squares below 2^64 are summed in a `u64`
/// that is flushed before it overflows, since wasm has no 128-bit multiply.
fn squared_distance(a: &[i64], b: &[i64]) -> u128 {
    let (mut total, mut part) = (0u128, 0u64);
    for (&x, &y) in a.iter().zip(b) {
        let d = x.abs_diff(y);
        if d < 1 << 32 {
            let sq = d * d;
            part = match part.checked_add(sq) {
                Some(p) => p,
                None => {
                    total = total.saturating_add(part as u128);
                    sq
                }
            };
        } else {
            total = total.saturating_add(d as u128 * d as u128);
        }
    }
    total.saturating_add(part as u128)
}

/// `floor(diff * factor / 2^32)` for `factor < 2^32`, in 64 bits when the product fits.
fn scale_down(diff: i128, factor: i64) -> i128 {
    match i64::try_from(diff) {
        Ok(d) if d.unsigned_abs() < 1 << 31 => ((d * factor) >> CLIP_FACTOR_BITS) as i128,
        // |diff| < 2^65 and factor < 2^32: no overflow in 128 bits.
        _ => (diff * factor as i128) >> CLIP_FACTOR_BITS,
    }
}

/// Reads window `w` of every contribution (canonical order) into `values` as fixed point.
fn read_window(
    contributions: &[RoundContribution],
    order: &[usize],
    w: &Window,
    frac_bits: u32,
    source: &mut dyn DeltaSource,
    buf: &mut Vec<u8>,
    values: &mut [Vec<i64>],
) {
    for (slot, &c) in order.iter().enumerate() {
        let enc = contributions[c].encoding;
        source.read(c, &enc.window(w.first_param, w.param_count), buf);
        let v = &mut values[slot];
        v.clear();
        v.resize(w.param_count as usize, 0);
        accumulate_window(v, enc, buf, 1, frac_bits);
    }
}

/// Bulyan's `beta`: `theta - 2f` values per coordinate of the `theta = K - 2f` selected
/// (at least 1, for rounds below the job's `min_clients >= 4f + 3`).
fn bulyan_beta(k: usize, f: u32) -> usize {
    let theta = bulyan_theta(k, f);
    theta.saturating_sub(2 * f as usize).max(1)
}

fn bulyan_theta(k: usize, f: u32) -> usize {
    k.saturating_sub(2 * f as usize).max(1)
}

/// Krum's score of each contribution `a` in `among` (positions in the canonical order),
/// from the pairwise squared distances (row-major `k x k`): the sum of its
/// `|among| - f - 2` smallest distances to the others in `among` (at least 1: a round
/// below the job's `min_clients` cannot close). `(score, a)`, in `among`'s order.
fn krum_scores(dist: &[u128], k: usize, among: &[usize], f: u32) -> Vec<(u128, usize)> {
    let r = among.len();
    let neighbours = r
        .saturating_sub(f as usize + 2)
        .max(1)
        .min(r.saturating_sub(1));
    among
        .iter()
        .map(|&a| {
            let mut d: Vec<u128> = among
                .iter()
                .filter(|&&b| b != a)
                .map(|&b| dist[a * k + b])
                .collect();
            d.sort_unstable();
            let score = d[..neighbours.min(d.len())]
                .iter()
                .fold(0u128, |s, &x| s.saturating_add(x));
            (score, a)
        })
        .collect()
}

/// Bulyan's selection: `theta` picks, each the best Krum score among the contributions
/// not yet picked; ties to the earlier one.
fn bulyan_select(dist: &[u128], k: usize, f: u32) -> Vec<usize> {
    let mut remaining: Vec<usize> = (0..k).collect();
    let mut selected = Vec::new();
    while selected.len() < bulyan_theta(k, f) && !remaining.is_empty() {
        let (_, best) = krum_scores(dist, k, &remaining, f)
            .into_iter()
            .min()
            .expect("non-empty");
        selected.push(best);
        remaining.retain(|&a| a != best);
    }
    selected
}

/// Krum's selection: positions (in the canonical order) of the `m` best-scored
/// contributions, best first; ties to the earlier one.
fn krum_select(dist: &[u128], k: usize, f: u32, m: u32) -> Vec<usize> {
    let all: Vec<usize> = (0..k).collect();
    let mut scores = krum_scores(dist, k, &all, f);
    scores.sort_unstable();
    scores
        .into_iter()
        .take((m as usize).clamp(1, k))
        .map(|(_, a)| a)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::encode;
    use crate::fedavg::{Accumulator, AggregationLimits};
    use proptest::prelude::*;

    const FRAC: u32 = 24;

    fn run(rule: &AggregationRule, deltas: &[Vec<f32>], weights: &[u64]) -> (Vec<i64>, u64) {
        let bytes: Vec<Vec<u8>> = deltas
            .iter()
            .map(|d| encode(DeltaEncoding::F32, d).unwrap())
            .collect();
        let contributions: Vec<RoundContribution> = (0..deltas.len())
            .map(|k| RoundContribution {
                encoding: DeltaEncoding::F32,
                weight: weights[k],
                key: crate::hash::sha256(&bytes[k]),
            })
            .collect();
        let n = deltas[0].len() as u64;
        let mut out = vec![0i64; n as usize];
        let mut source: &[Vec<u8>] = &bytes;
        let d = aggregate(
            rule,
            &contributions,
            n,
            FRAC,
            &mut source,
            &mut |first, a| out[first as usize..first as usize + a.len()].copy_from_slice(a),
        );
        (out, d)
    }

    fn fixed(deltas: &[Vec<f32>]) -> Vec<Vec<i64>> {
        deltas
            .iter()
            .map(|d| {
                d.iter()
                    .map(|&x| crate::fedavg::fixed_from_f32(x, FRAC))
                    .collect()
            })
            .collect()
    }

    /// The plain reference of each rule: sort each column, or score by brute force.
    fn reference(rule: &AggregationRule, deltas: &[Vec<f32>]) -> (Vec<i64>, u64) {
        let x = fixed(deltas);
        let k = x.len();
        let n = x[0].len();
        let col = |i: usize| {
            let mut c: Vec<i64> = x.iter().map(|v| v[i]).collect();
            c.sort();
            c
        };
        match *rule {
            AggregationRule::Median => (
                (0..n)
                    .map(|i| {
                        let c = col(i);
                        if k % 2 == 1 {
                            2 * c[k / 2]
                        } else {
                            c[k / 2 - 1] + c[k / 2]
                        }
                    })
                    .collect(),
                2,
            ),
            AggregationRule::TrimmedMean { beta } => {
                let t = (beta as f64 * k as f64).floor() as usize;
                (
                    (0..n).map(|i| col(i)[t..k - t].iter().sum()).collect(),
                    (k - 2 * t) as u64,
                )
            }
            AggregationRule::Krum { f } | AggregationRule::MultiKrum { f, .. } => {
                let m = match *rule {
                    AggregationRule::MultiKrum { m, .. } => m as usize,
                    _ => 1,
                };
                // Canonical order by header hash, as the driver.
                let bytes: Vec<Vec<u8>> = deltas
                    .iter()
                    .map(|d| encode(DeltaEncoding::F32, d).unwrap())
                    .collect();
                let mut order: Vec<usize> = (0..k).collect();
                order.sort_by_key(|&i| crate::hash::sha256(&bytes[i]));
                let d2 = |a: usize, b: usize| -> u128 {
                    (0..n)
                        .map(|i| {
                            let d = (x[a][i] as i128 - x[b][i] as i128).unsigned_abs();
                            d * d
                        })
                        .sum()
                };
                let nb = (k - f as usize - 2).max(1);
                let mut scored: Vec<(u128, usize, usize)> = order
                    .iter()
                    .enumerate()
                    .map(|(pos, &a)| {
                        let mut ds: Vec<u128> =
                            (0..k).filter(|&b| b != a).map(|b| d2(a, b)).collect();
                        ds.sort();
                        (ds[..nb].iter().sum(), pos, a)
                    })
                    .collect();
                scored.sort();
                let chosen: Vec<usize> = scored.iter().take(m).map(|s| s.2).collect();
                (
                    (0..n)
                        .map(|i| chosen.iter().map(|&a| x[a][i]).sum())
                        .collect(),
                    m as u64,
                )
            }
            AggregationRule::CenteredClip { iters } => {
                let mut v: Vec<i64> = (0..n)
                    .map(|i| {
                        let c = col(i);
                        (c[(k - 1) / 2] + c[k / 2]).div_euclid(2)
                    })
                    .collect();
                for _ in 0..iters {
                    let r: Vec<u128> = x
                        .iter()
                        .map(|xk| {
                            let d2: u128 = (0..n)
                                .map(|i| ((xk[i] - v[i]) as i128).pow(2) as u128)
                                .sum();
                            d2.isqrt()
                        })
                        .collect();
                    let mut sorted = r.clone();
                    sorted.sort();
                    let tau = sorted[(k - 1) / 2];
                    v = (0..n)
                        .map(|i| {
                            let s: i128 = (0..k)
                                .map(|j| {
                                    let d = (x[j][i] - v[i]) as i128;
                                    if r[j] <= tau {
                                        d
                                    } else {
                                        let g = ((tau << 32) / r[j]) as i128;
                                        (d * g).div_euclid(1 << 32)
                                    }
                                })
                                .sum();
                            (v[i] as i128 + s.div_euclid(k as i128)) as i64
                        })
                        .collect();
                }
                (v, 1)
            }
            AggregationRule::Bulyan { f } => {
                let f = f as usize;
                let bytes: Vec<Vec<u8>> = deltas
                    .iter()
                    .map(|d| encode(DeltaEncoding::F32, d).unwrap())
                    .collect();
                let mut remaining: Vec<usize> = (0..k).collect();
                remaining.sort_by_key(|&i| crate::hash::sha256(&bytes[i]));
                let d2 = |a: usize, b: usize| -> u128 {
                    (0..n)
                        .map(|i| ((x[a][i] - x[b][i]) as i128).pow(2) as u128)
                        .sum()
                };
                let theta = (k - 2 * f).max(1);
                let mut chosen = Vec::new();
                while chosen.len() < theta {
                    let r = remaining.len();
                    let nb = (r as i64 - f as i64 - 2).max(1).min(r as i64 - 1) as usize;
                    let mut best: Option<(u128, usize)> = None;
                    for (pos, &a) in remaining.iter().enumerate() {
                        let mut ds: Vec<u128> = remaining
                            .iter()
                            .filter(|&&b| b != a)
                            .map(|&b| d2(a, b))
                            .collect();
                        ds.sort();
                        let score: u128 = ds[..nb.min(ds.len())].iter().sum();
                        if best.is_none_or(|(s, _)| score < s) {
                            best = Some((score, pos));
                        }
                    }
                    chosen.push(remaining.remove(best.unwrap().1));
                }
                let beta = (theta - 2 * f).max(1);
                (
                    (0..n)
                        .map(|i| {
                            let mut c: Vec<i64> = chosen.iter().map(|&a| x[a][i]).collect();
                            c.sort();
                            let t = c.len();
                            let med2 = c[(t - 1) / 2] + c[t / 2];
                            c.sort_by_key(|&v| ((2 * v - med2).abs(), v));
                            c[..beta].iter().sum()
                        })
                        .collect(),
                    beta as u64,
                )
            }
            AggregationRule::FedAvg => unreachable!(),
        }
    }

    fn deltas_strategy() -> impl Strategy<Value = Vec<Vec<f32>>> {
        (3usize..10, 1usize..40).prop_flat_map(|(k, n)| {
            // Small integers times 2^-8 make ties likely.
            proptest::collection::vec(
                proptest::collection::vec((-8i32..8).prop_map(|v| v as f32 / 256.0), n),
                k,
            )
        })
    }

    proptest! {
        #[test]
        fn robust_rules_match_the_plain_reference(deltas in deltas_strategy(), beta in 0.0f32..0.49) {
            let k = deltas.len();
            let ones = vec![1u64; k];
            for rule in [
                AggregationRule::Median,
                AggregationRule::TrimmedMean { beta },
                AggregationRule::Krum { f: ((k - 3) / 2) as u32 },
                AggregationRule::MultiKrum { f: ((k - 3) / 2) as u32, m: 2 },
                AggregationRule::CenteredClip { iters: 1 },
                AggregationRule::CenteredClip { iters: 3 },
                AggregationRule::Bulyan { f: ((k - 3) / 4) as u32 },
            ] {
                prop_assert_eq!(run(&rule, &deltas, &ones), reference(&rule, &deltas), "{:?}", rule);
            }
        }

        #[test]
        fn every_rule_is_order_independent(deltas in deltas_strategy(), beta in 0.0f32..0.49, rot in 0usize..10) {
            let k = deltas.len();
            let ones = vec![1u64; k];
            let mut turned = deltas.clone();
            turned.rotate_left(rot % k);
            turned.reverse();
            for rule in [
                AggregationRule::FedAvg,
                AggregationRule::Median,
                AggregationRule::TrimmedMean { beta },
                AggregationRule::Krum { f: 0 },
                AggregationRule::MultiKrum { f: 0, m: 2 },
                AggregationRule::CenteredClip { iters: 2 },
                AggregationRule::Bulyan { f: 0 },
            ] {
                prop_assert_eq!(run(&rule, &deltas, &ones), run(&rule, &turned, &ones), "{:?}", rule);
            }
        }
    }

    /// A close cut after every window, resumed from its progress, gives the integers of
    /// one uninterrupted run, for every rule.
    #[test]
    fn slicing_changes_nothing() {
        let n = 3 * RULE_WINDOW_PARAMS as usize + 300;
        let deltas: Vec<Vec<f32>> = (0..7)
            .map(|k| {
                (0..n)
                    .map(|i| (((i * 31 + k * 17) % 23) as f32 - 11.0) / 1024.0 * (1 + k % 3) as f32)
                    .collect()
            })
            .collect();
        let bytes: Vec<Vec<u8>> = deltas
            .iter()
            .map(|d| encode(DeltaEncoding::F32, d).unwrap())
            .collect();
        let contributions: Vec<RoundContribution> = (0..deltas.len())
            .map(|k| RoundContribution {
                encoding: DeltaEncoding::F32,
                weight: 1 + k as u64,
                key: crate::hash::sha256(&bytes[k]),
            })
            .collect();
        for rule in [
            AggregationRule::FedAvg,
            AggregationRule::Median,
            AggregationRule::TrimmedMean { beta: 0.2 },
            AggregationRule::Krum { f: 2 },
            AggregationRule::MultiKrum { f: 1, m: 3 },
            AggregationRule::Bulyan { f: 1 },
            AggregationRule::CenteredClip { iters: 2 },
        ] {
            let (whole, d) = run(
                &rule,
                &deltas,
                &contributions.iter().map(|c| c.weight).collect::<Vec<_>>(),
            );
            for (window, per_pass) in [(RULE_WINDOW_PARAMS, 4), (1024, n.div_ceil(1024) as u64)] {
                let mut a = vec![0x5555i64; n];
                let mut progress = RuleProgress::default();
                let mut calls = 0;
                let denominator = loop {
                    calls += 1;
                    let mut source: &[Vec<u8>] = &bytes;
                    if let Some(d) = aggregate_slice(
                        &rule,
                        &contributions,
                        n as u64,
                        FRAC,
                        &mut source,
                        &mut a.as_mut_slice(),
                        &mut progress,
                        window,
                        &mut || false,
                    ) {
                        break d;
                    }
                };
                assert!(progress.is_done(&rule));
                let windows = per_pass * rule_passes(&rule) as u64;
                assert_eq!(progress.windows, windows, "{rule}");
                assert_eq!(calls as u64, windows, "{rule}: one window per call");
                assert_eq!(
                    (&a, denominator),
                    (&whole, d),
                    "{rule} in windows of {window}"
                );
            }
        }
    }

    /// FedAvg through the driver is the streaming accumulator, bit for bit.
    #[test]
    fn fedavg_through_the_driver_is_the_accumulator() {
        let deltas: Vec<Vec<f32>> = (0..5)
            .map(|k| {
                (0..300)
                    .map(|i| ((i * 7 + k * 13) % 17) as f32 / 400.0 - 0.02)
                    .collect()
            })
            .collect();
        let weights = [3u64, 1, 4, 1, 5];
        let limits = AggregationLimits {
            max_clients: 5,
            max_weight: 10,
            clip_norm: 10.0,
        };
        let mut acc = Accumulator::new(300, limits, FRAC).unwrap();
        for (d, &w) in deltas.iter().zip(&weights) {
            acc.add(
                DeltaEncoding::F32,
                &encode(DeltaEncoding::F32, d).unwrap(),
                w,
            )
            .unwrap();
        }
        let (a, d) = run(&AggregationRule::FedAvg, &deltas, &weights);
        assert_eq!(a, acc.values());
        assert_eq!(d, acc.total_weight());
    }

    /// The edges: trimming that leaves one value, and the two middles of an even count.
    #[test]
    fn trim_and_median_edges() {
        let deltas: Vec<Vec<f32>> = [1.0f32, 2.0, 3.0, 100.0]
            .iter()
            .map(|&v| vec![v / 256.0])
            .collect();
        let ones = [1u64; 4];
        let (a, d) = run(&AggregationRule::Median, &deltas, &ones);
        assert_eq!((a[0], d), ((2 + 3) << (FRAC - 8), 2));
        let (a, d) = run(&AggregationRule::TrimmedMean { beta: 0.25 }, &deltas, &ones);
        assert_eq!((a[0], d), ((2 + 3) << (FRAC - 8), 2));
        let (a, d) = run(&AggregationRule::TrimmedMean { beta: 0.0 }, &deltas, &ones);
        assert_eq!((a[0], d), ((1 + 2 + 3 + 100) << (FRAC - 8), 4));
        // Krum with one outlier never picks it.
        let (a, d) = run(&AggregationRule::Krum { f: 0 }, &deltas, &ones);
        assert_eq!(d, 1);
        assert!(a[0] < 100 << (FRAC - 8));
    }

    #[test]
    fn names_parse_and_print_back() {
        for s in [
            "fedavg",
            "median",
            "trimmed-mean:0.2",
            "krum:1",
            "multi-krum:1,3",
            "centered-clip:2",
            "bulyan:1",
        ] {
            let r: AggregationRule = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
        }
        assert_eq!(
            "centered-clip".parse::<AggregationRule>(),
            Ok(AggregationRule::CenteredClip {
                iters: DEFAULT_CENTERED_CLIP_ITERS
            })
        );
        for bad in [
            "avg",
            "krum:x",
            "multi-krum:1",
            "trimmed-mean:",
            "centered-clip:x",
        ] {
            assert!(bad.parse::<AggregationRule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn configurations_are_checked() {
        assert!(AggregationRule::TrimmedMean { beta: 0.5 }
            .validate(3, 3)
            .is_err());
        assert!(AggregationRule::TrimmedMean { beta: f32::NAN }
            .validate(3, 3)
            .is_err());
        assert!(AggregationRule::Krum { f: 1 }.validate(4, 10).is_err());
        assert!(AggregationRule::Krum { f: 1 }.validate(5, 10).is_ok());
        assert!(AggregationRule::MultiKrum { f: 1, m: 5 }
            .validate(5, 10)
            .is_err());
        assert!(AggregationRule::MultiKrum { f: 1, m: 4 }
            .validate(5, 10)
            .is_ok());
        assert!(AggregationRule::Bulyan { f: 1 }.validate(6, 10).is_err());
        assert!(AggregationRule::Bulyan { f: 1 }.validate(7, 10).is_ok());
        assert!(AggregationRule::CenteredClip { iters: 0 }
            .validate(3, 3)
            .is_err());
        assert!(AggregationRule::CenteredClip { iters: 6 }
            .validate(3, 3)
            .is_err());
        assert!(AggregationRule::CenteredClip { iters: 5 }
            .validate(1, 3)
            .is_ok());
    }

    /// An outlier far from the rest moves centered clipping's centre by at most the radius
    /// over K, where the mean follows it all the way.
    #[test]
    fn centered_clipping_bounds_an_outlier() {
        let mut deltas: Vec<Vec<f32>> =
            (0..9).map(|k| vec![(k as f32 - 4.0) / 1024.0; 4]).collect();
        deltas.push(vec![1000.0; 4]);
        let ones = [1u64; 10];
        let (a, d) = run(&AggregationRule::CenteredClip { iters: 3 }, &deltas, &ones);
        assert_eq!(d, 1);
        let unit = 1i64 << FRAC;
        for &x in &a {
            assert!(x.abs() < unit / 100, "centre {x} followed the outlier");
        }
    }
}

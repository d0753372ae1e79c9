//! Seeded partitioners that split one dataset over `clients` contributors.
//!
//! Every partitioner returns disjoint index sets that together cover the data, and gives every
//! client at least one sample (it refuses when there are fewer samples than that needs).

use std::fmt;
use std::str::FromStr;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};

use crate::dataset::Dataset;

/// How samples are spread over clients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Partitioner {
    /// Uniformly at random, client sizes differing by at most one.
    Iid,
    /// Label skew: for each class, the share of each client is drawn from a symmetric
    /// Dirichlet(`alpha`). Small `alpha` (0.1) is very skewed, large (100) close to IID.
    Dirichlet { alpha: f64 },
    /// Pathological non-IID (McMahan et al.): sort by label, cut into `clients × per_client`
    /// equal shards, give each client `per_client` random shards.
    Shards { per_client: usize },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PartitionError {
    #[error("unknown partitioner `{0}` (expected iid, dirichlet:ALPHA or shards:K)")]
    Unknown(String),
    #[error("bad parameter in `{spec}`: {problem}")]
    BadParameter { spec: String, problem: String },
    #[error("cannot partition over 0 clients")]
    NoClients,
    #[error("{samples} samples are too few for {needed_for}")]
    TooFewSamples { samples: usize, needed_for: String },
}

impl fmt::Display for Partitioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partitioner::Iid => f.write_str("iid"),
            Partitioner::Dirichlet { alpha } => write!(f, "dirichlet:{alpha}"),
            Partitioner::Shards { per_client } => write!(f, "shards:{per_client}"),
        }
    }
}

impl FromStr for Partitioner {
    type Err = PartitionError;

    /// Parses `iid`, `dirichlet:ALPHA` (ALPHA > 0) or `shards:K` (K ≥ 1).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let spec = s.trim();
        let (kind, arg) = match spec.split_once(':') {
            Some((k, a)) => (k.trim().to_ascii_lowercase(), Some(a.trim())),
            None => (spec.to_ascii_lowercase(), None),
        };
        let bad = |problem: &str| PartitionError::BadParameter {
            spec: spec.to_string(),
            problem: problem.to_string(),
        };
        match (kind.as_str(), arg) {
            ("iid", None) => Ok(Partitioner::Iid),
            ("iid", Some(_)) => Err(bad("iid takes no parameter")),
            ("dirichlet", Some(a)) => match a.parse::<f64>() {
                Ok(alpha) if alpha.is_finite() && alpha > 0.0 => {
                    Ok(Partitioner::Dirichlet { alpha })
                }
                _ => Err(bad("ALPHA must be a positive number, e.g. dirichlet:0.5")),
            },
            ("dirichlet", None) => Err(bad("missing ALPHA, e.g. dirichlet:0.5")),
            ("shards", Some(k)) => match k.parse::<usize>() {
                Ok(per_client) if per_client >= 1 => Ok(Partitioner::Shards { per_client }),
                _ => Err(bad(
                    "K must be a whole number of shards per client ≥ 1, e.g. shards:2",
                )),
            },
            ("shards", None) => Err(bad("missing K, e.g. shards:2")),
            _ => Err(PartitionError::Unknown(spec.to_string())),
        }
    }
}

impl Partitioner {
    /// Splits sample indices `0..labels.len()` over `clients`. Labels must be `< num_classes`.
    pub fn partition_indices(
        &self,
        labels: &[u32],
        num_classes: usize,
        clients: usize,
        seed: u64,
    ) -> Result<Vec<Vec<usize>>, PartitionError> {
        if clients == 0 {
            return Err(PartitionError::NoClients);
        }
        let n = labels.len();
        if n < clients {
            return Err(PartitionError::TooFewSamples {
                samples: n,
                needed_for: format!("{clients} clients"),
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut parts = match *self {
            Partitioner::Iid => iid(n, clients, &mut rng),
            Partitioner::Dirichlet { alpha } => {
                if !(alpha.is_finite() && alpha > 0.0) {
                    return Err(PartitionError::BadParameter {
                        spec: self.to_string(),
                        problem: "ALPHA must be a positive number".into(),
                    });
                }
                dirichlet(labels, num_classes, clients, alpha, &mut rng)
            }
            Partitioner::Shards { per_client } => {
                let shards = clients
                    .checked_mul(per_client)
                    .filter(|&s| s >= 1)
                    .ok_or_else(|| PartitionError::BadParameter {
                        spec: self.to_string(),
                        problem: "K must be at least 1".into(),
                    })?;
                if n < shards {
                    return Err(PartitionError::TooFewSamples {
                        samples: n,
                        needed_for: format!("{clients} clients × {per_client} shards"),
                    });
                }
                shards_by_label(labels, clients, per_client, &mut rng)
            }
        };
        give_every_client_a_sample(&mut parts);
        for p in &mut parts {
            p.sort_unstable();
        }
        Ok(parts)
    }

    /// Splits a dataset over `clients` (see [`partition_indices`](Self::partition_indices)).
    pub fn partition(
        &self,
        data: &Dataset,
        clients: usize,
        seed: u64,
    ) -> Result<Vec<Dataset>, PartitionError> {
        let parts = self.partition_indices(&data.labels, data.num_classes, clients, seed)?;
        Ok(parts.iter().map(|idx| data.subset(idx)).collect())
    }
}

fn iid(n: usize, clients: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let (base, extra) = (n / clients, n % clients);
    let mut parts = Vec::with_capacity(clients);
    let mut start = 0;
    for c in 0..clients {
        let len = base + usize::from(c < extra);
        parts.push(order[start..start + len].to_vec());
        start += len;
    }
    parts
}

fn dirichlet(
    labels: &[u32],
    num_classes: usize,
    clients: usize,
    alpha: f64,
    rng: &mut ChaCha8Rng,
) -> Vec<Vec<usize>> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes.max(1)];
    for (i, &l) in labels.iter().enumerate() {
        let c = (l as usize).min(by_class.len() - 1);
        by_class[c].push(i);
    }
    // Dirichlet(alpha, ..., alpha) is a vector of Gamma(alpha, 1) draws, normalised.
    let gamma = Gamma::new(alpha, 1.0).expect("alpha checked positive and finite");
    let mut parts = vec![Vec::new(); clients];
    for members in &mut by_class {
        if members.is_empty() {
            continue;
        }
        members.shuffle(rng);
        let draws: Vec<f64> = (0..clients).map(|_| gamma.sample(rng)).collect();
        let total: f64 = draws.iter().sum();
        // All draws can underflow to 0 for tiny alpha: then one client takes the class.
        let shares: Vec<f64> = if total > 0.0 && total.is_finite() {
            draws.iter().map(|d| d / total).collect()
        } else {
            let mut s = vec![0.0; clients];
            s[rand::Rng::random_range(rng, 0..clients)] = 1.0;
            s
        };
        let m = members.len();
        let mut start = 0;
        let mut cumulative = 0.0;
        for (c, share) in shares.iter().enumerate() {
            cumulative += share;
            let end = if c + 1 == clients {
                m
            } else {
                ((cumulative * m as f64).round() as usize).clamp(start, m)
            };
            parts[c].extend_from_slice(&members[start..end]);
            start = end;
        }
    }
    parts
}

fn shards_by_label(
    labels: &[u32],
    clients: usize,
    per_client: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<Vec<usize>> {
    let n = labels.len();
    let mut order: Vec<usize> = (0..n).collect();
    // Shuffle first so that, within a label, which samples share a shard is random.
    order.shuffle(rng);
    order.sort_by_key(|&i| labels[i]);
    let shards = clients * per_client;
    let mut shard_ids: Vec<usize> = (0..shards).collect();
    shard_ids.shuffle(rng);
    let shard = |s: usize| &order[s * n / shards..(s + 1) * n / shards];
    shard_ids
        .chunks(per_client)
        .map(|ids| ids.iter().flat_map(|&s| shard(s).iter().copied()).collect())
        .collect()
}

/// Moves one sample from the currently largest client to each empty one (deterministic).
fn give_every_client_a_sample(parts: &mut [Vec<usize>]) {
    while let Some(empty) = parts.iter().position(|p| p.is_empty()) {
        let largest = (0..parts.len())
            .max_by_key(|&c| (parts[c].len(), std::cmp::Reverse(c)))
            .unwrap_or(0);
        if parts[largest].len() < 2 {
            return; // fewer samples than clients: checked by the caller
        }
        let moved = parts[largest]
            .pop()
            .expect("largest client has at least two samples");
        parts[empty].push(moved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::synthetic_clusters;

    fn check_cover(parts: &[Vec<usize>], n: usize) {
        let mut all: Vec<usize> = parts.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..n).collect::<Vec<_>>(),
            "partition must be disjoint and cover the data"
        );
        assert!(
            parts.iter().all(|p| !p.is_empty()),
            "every client gets a sample"
        );
    }

    #[test]
    fn parses_specs_with_typed_errors() {
        assert_eq!("iid".parse(), Ok(Partitioner::Iid));
        assert_eq!(
            "dirichlet:0.5".parse(),
            Ok(Partitioner::Dirichlet { alpha: 0.5 })
        );
        assert_eq!(
            " Shards:2 ".parse(),
            Ok(Partitioner::Shards { per_client: 2 })
        );
        for bad in [
            "dirichlet",
            "dirichlet:0",
            "dirichlet:-1",
            "dirichlet:x",
            "dirichlet:inf",
            "shards:0",
            "shards:1.5",
            "iid:3",
        ] {
            assert!(
                matches!(
                    bad.parse::<Partitioner>(),
                    Err(PartitionError::BadParameter { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            "random".parse::<Partitioner>(),
            Err(PartitionError::Unknown(_))
        ));
        for p in ["iid", "dirichlet:0.5", "shards:3"] {
            assert_eq!(p.parse::<Partitioner>().unwrap().to_string(), p);
        }
    }

    #[test]
    fn every_partitioner_is_disjoint_covering_and_nonempty() {
        let data = synthetic_clusters(503, 4, 10, 1);
        for spec in [
            "iid",
            "dirichlet:0.05",
            "dirichlet:0.5",
            "dirichlet:100",
            "shards:1",
            "shards:2",
            "shards:5",
        ] {
            let p: Partitioner = spec.parse().unwrap();
            for clients in [1, 2, 7, 50] {
                for seed in 0..3 {
                    let parts = p
                        .partition_indices(&data.labels, 10, clients, seed)
                        .unwrap();
                    assert_eq!(parts.len(), clients);
                    check_cover(&parts, data.len());
                    assert_eq!(
                        parts,
                        p.partition_indices(&data.labels, 10, clients, seed)
                            .unwrap(),
                        "seeded"
                    );
                }
            }
        }
        // Extreme skew with as many clients as samples still gives everyone one sample.
        let tiny = synthetic_clusters(12, 2, 3, 0);
        let parts = Partitioner::Dirichlet { alpha: 0.01 }
            .partition_indices(&tiny.labels, 3, 12, 9)
            .unwrap();
        check_cover(&parts, 12);
    }

    #[test]
    fn iid_is_balanced_and_non_iid_is_skewed() {
        let data = synthetic_clusters(1000, 2, 10, 2);
        let sizes: Vec<usize> = Partitioner::Iid
            .partition(&data, 7, 0)
            .unwrap()
            .iter()
            .map(Dataset::len)
            .collect();
        assert!(
            sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
            "{sizes:?}"
        );
        // shards:2 over 10 clients: the 20 shards of 50 align with the ten balanced classes of
        // 100, so each client sees at most 2 labels.
        let shards = Partitioner::Shards { per_client: 2 };
        for part in shards.partition(&data, 10, 0).unwrap() {
            let classes = part.class_counts().iter().filter(|&&c| c > 0).count();
            assert!(classes <= 2, "shard client saw {classes} classes");
        }
        // Small alpha concentrates each client on few classes; large alpha spreads them.
        let distinct = |alpha: f64| -> f64 {
            let parts = Partitioner::Dirichlet { alpha }
                .partition(&data, 10, 3)
                .unwrap();
            parts
                .iter()
                .map(|p| p.class_counts().iter().filter(|&&c| c > 0).count() as f64)
                .sum::<f64>()
                / 10.0
        };
        let (skewed, spread) = (distinct(0.1), distinct(100.0));
        assert!(
            skewed < 5.0 && spread > 9.0,
            "skewed {skewed}, spread {spread}"
        );
    }

    #[test]
    fn refuses_impossible_requests() {
        let labels = vec![0u32; 5];
        assert_eq!(
            Partitioner::Iid.partition_indices(&labels, 1, 0, 0),
            Err(PartitionError::NoClients)
        );
        assert!(matches!(
            Partitioner::Iid.partition_indices(&labels, 1, 6, 0),
            Err(PartitionError::TooFewSamples { .. })
        ));
        assert!(matches!(
            Partitioner::Shards { per_client: 2 }.partition_indices(&labels, 1, 3, 0),
            Err(PartitionError::TooFewSamples { .. })
        ));
    }
}

//! Seeded synthetic datasets, for tests, demos and `flic simulate --dataset synthetic`.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::Dataset;

/// Gaussian class clusters: class `c` has mean `separation · z_c` with `z_c ~ N(0, I)`, and a
/// sample is its class mean plus `N(0, noise² I)`. Classes are balanced and shuffled.
///
/// With the defaults (32 dimensions, 10 classes, separation 0.5, noise 1) neighbouring clusters
/// overlap: a linear model, which is Bayes-optimal here, reaches roughly 85-95% accuracy,
/// never 100%. The means depend only on `seed`, so two datasets with the same seed and
/// different `samples` share their classes.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticClusters {
    pub samples: usize,
    pub dims: usize,
    pub classes: usize,
    pub separation: f32,
    pub noise: f32,
    pub seed: u64,
}

impl Default for SyntheticClusters {
    fn default() -> Self {
        SyntheticClusters {
            samples: 6000,
            dims: 32,
            classes: 10,
            separation: 0.5,
            noise: 1.0,
            seed: 0,
        }
    }
}

fn balanced_labels(n: usize, classes: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let mut labels: Vec<u32> = (0..n).map(|i| (i % classes) as u32).collect();
    labels.shuffle(rng);
    labels
}

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    StandardNormal.sample(rng)
}

impl SyntheticClusters {
    pub fn generate(&self) -> Dataset {
        let classes = self.classes.max(2);
        let dims = self.dims.max(1);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let means: Vec<f32> = (0..classes * dims)
            .map(|_| self.separation * normal(&mut rng))
            .collect();
        // A separate stream for samples keeps the means independent of the sample count.
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x9e37_79b9_7f4a_7c15);
        let labels = balanced_labels(self.samples, classes, &mut rng);
        let mut features = Vec::with_capacity(self.samples * dims);
        for &l in &labels {
            let mean = &means[l as usize * dims..(l as usize + 1) * dims];
            features.extend(mean.iter().map(|m| m + self.noise * normal(&mut rng)));
        }
        Dataset {
            features,
            labels,
            feature_shape: vec![dims],
            num_classes: classes,
        }
    }
}

/// Synthetic single-channel images for `lenet`: each class has a prototype made of three
/// Gaussian blobs at random places; a sample is its prototype shifted by up to one pixel in
/// each direction, plus `N(0, noise²)` pixel noise, clamped to `[0, 1]`. Shape `[1, h, w]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticImages {
    pub samples: usize,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
    pub noise: f32,
    pub seed: u64,
}

impl Default for SyntheticImages {
    fn default() -> Self {
        SyntheticImages {
            samples: 2000,
            height: 12,
            width: 12,
            classes: 10,
            noise: 0.25,
            seed: 0,
        }
    }
}

impl SyntheticImages {
    pub fn generate(&self) -> Dataset {
        let (h, w) = (self.height.max(1), self.width.max(1));
        let classes = self.classes.max(2);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let sigma = (h.min(w) as f32 / 6.0).max(0.75);
        let mut prototypes = vec![0f32; classes * h * w];
        for c in 0..classes {
            let proto = &mut prototypes[c * h * w..(c + 1) * h * w];
            for _ in 0..3 {
                let cy = rng.random_range(0.0..h as f32);
                let cx = rng.random_range(0.0..w as f32);
                for y in 0..h {
                    for x in 0..w {
                        let d2 = (y as f32 - cy).powi(2) + (x as f32 - cx).powi(2);
                        proto[y * w + x] += (-d2 / (2.0 * sigma * sigma)).exp();
                    }
                }
            }
            let max = proto.iter().cloned().fold(f32::MIN, f32::max).max(1e-6);
            proto.iter_mut().for_each(|v| *v /= max);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x9e37_79b9_7f4a_7c15);
        let labels = balanced_labels(self.samples, classes, &mut rng);
        let mut features = Vec::with_capacity(self.samples * h * w);
        for &l in &labels {
            let proto = &prototypes[l as usize * h * w..(l as usize + 1) * h * w];
            let dy = rng.random_range(-1i64..=1);
            let dx = rng.random_range(-1i64..=1);
            for y in 0..h as i64 {
                for x in 0..w as i64 {
                    let (sy, sx) = (y - dy, x - dx);
                    let base = if (0..h as i64).contains(&sy) && (0..w as i64).contains(&sx) {
                        proto[sy as usize * w + sx as usize]
                    } else {
                        0.0
                    };
                    features.push((base + self.noise * normal(&mut rng)).clamp(0.0, 1.0));
                }
            }
        }
        Dataset {
            features,
            labels,
            feature_shape: vec![1, h, w],
            num_classes: classes,
        }
    }
}

/// Shorthand for [`SyntheticClusters`] with default separation and noise.
pub fn synthetic_clusters(samples: usize, dims: usize, classes: usize, seed: u64) -> Dataset {
    SyntheticClusters {
        samples,
        dims,
        classes,
        seed,
        ..Default::default()
    }
    .generate()
}

/// Shorthand for [`SyntheticImages`] with default noise.
pub fn synthetic_images(
    samples: usize,
    height: usize,
    width: usize,
    classes: usize,
    seed: u64,
) -> Dataset {
    SyntheticImages {
        samples,
        height,
        width,
        classes,
        seed,
        ..Default::default()
    }
    .generate()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_balanced_and_shaped() {
        let a = synthetic_clusters(100, 8, 10, 3);
        assert_eq!(a, synthetic_clusters(100, 8, 10, 3));
        assert_ne!(a, synthetic_clusters(100, 8, 10, 4));
        assert_eq!(a.feature_shape, vec![8]);
        assert_eq!(a.class_counts(), vec![10; 10]);
        assert!(Dataset::new(a.features.clone(), a.labels.clone(), vec![8], 10).is_ok());
        let img = synthetic_images(30, 9, 7, 3, 1);
        assert_eq!(img.feature_shape, vec![1, 9, 7]);
        assert_eq!(img.features.len(), 30 * 63);
        assert!(img.features.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(img, synthetic_images(30, 9, 7, 3, 1));
    }

    /// The clusters overlap: nearest-true-mean classification (the Bayes rule here) is good but
    /// not perfect with the defaults, so accuracy targets in training tests mean something.
    #[test]
    fn default_clusters_are_learnable_but_not_trivial() {
        let cfg = SyntheticClusters {
            samples: 4000,
            ..Default::default()
        };
        let d = cfg.generate();
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let means: Vec<f32> = (0..10 * 32)
            .map(|_| cfg.separation * normal(&mut rng))
            .collect();
        let correct = (0..d.len())
            .filter(|&i| {
                let x = d.sample(i);
                let dist = |c: usize| -> f32 {
                    x.iter()
                        .zip(&means[c * 32..])
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum()
                };
                let best = (0..10)
                    .min_by(|&a, &b| dist(a).total_cmp(&dist(b)))
                    .unwrap();
                best as u32 == d.labels[i]
            })
            .count();
        let acc = correct as f64 / d.len() as f64;
        assert!(acc > 0.75 && acc < 0.99, "Bayes accuracy {acc}");
    }
}

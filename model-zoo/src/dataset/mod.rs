//! In-memory labelled datasets, their file loaders, and a seeded synthetic generator.
//!
//! Loaders never panic on file contents: every malformed file gives a [`DatasetError`] that
//! names the file and the problem.

mod cifar10;
mod csv;
mod idx;
mod image_folder;
mod synthetic;

use std::fmt;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use cifar10::{load_cifar10, load_cifar10_files, CIFAR10_RECORD_BYTES};
pub use csv::{load_csv, write_csv};
pub use idx::{labels_path_for_images, load_mnist_idx, write_mnist_idx};
pub use image_folder::{decode_pnm, encode_pnm, load_image_folder, ImageFolder, PnmImage};
pub use synthetic::{synthetic_clusters, synthetic_images, SyntheticClusters, SyntheticImages};

/// A labelled dataset held in memory.
#[derive(Clone, PartialEq)]
pub struct Dataset {
    /// Samples back to back, each `feature_shape.iter().product()` values, row-major.
    pub features: Vec<f32>,
    /// One label per sample, each `< num_classes`.
    pub labels: Vec<u32>,
    /// Shape of one sample: `[d]` for tabular data, `[channels, height, width]` for images.
    pub feature_shape: Vec<usize>,
    /// Number of classes the labels are drawn from.
    pub num_classes: usize,
}

impl fmt::Debug for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("samples", &self.len())
            .field("feature_shape", &self.feature_shape)
            .field("num_classes", &self.num_classes)
            .finish()
    }
}

/// Why a dataset could not be loaded or built. File errors carry the path.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: gzip stream is corrupt: {source}", path.display())]
    Gzip {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: bad magic number: expected {expected}, found {found}", path.display())]
    BadMagic {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{}: truncated: {what} needs {expected} bytes, the file has {actual}", path.display())]
    Truncated {
        path: PathBuf,
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("{}: {extra} unexpected bytes after the last {what}", path.display())]
    TrailingBytes {
        path: PathBuf,
        what: String,
        extra: u64,
    },
    #[error("{}: {problem}", path.display())]
    BadHeader { path: PathBuf, problem: String },
    #[error("{} has {images} images but {} has {labels} labels", images_path.display(), labels_path.display())]
    CountMismatch {
        images_path: PathBuf,
        labels_path: PathBuf,
        images: usize,
        labels: usize,
    },
    #[error("{}: line {line}, column `{column}`: `{value}` is not {expected}", path.display())]
    BadCell {
        path: PathBuf,
        line: usize,
        column: String,
        value: String,
        expected: &'static str,
    },
    #[error("{}: line {line} has {found} cells, the header has {expected}", path.display())]
    RaggedRow {
        path: PathBuf,
        line: usize,
        expected: usize,
        found: usize,
    },
    #[error("{}: sample {index} has label {label}, outside 0..{num_classes}", path.display())]
    LabelOutOfRange {
        path: PathBuf,
        index: usize,
        label: u64,
        num_classes: usize,
    },
    #[error("{}: contains no samples", path.display())]
    Empty { path: PathBuf },
    #[error("{}: {problem}", path.display())]
    BadImage { path: PathBuf, problem: String },
    #[error("{}: image is {found:?} (channels, height, width), the others are {expected:?}", path.display())]
    ImageShapeMismatch {
        path: PathBuf,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("invalid dataset: {0}")]
    Invalid(String),
}

impl DatasetError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DatasetError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl Dataset {
    /// Builds a dataset, checking that the sizes agree and every label is in range.
    pub fn new(
        features: Vec<f32>,
        labels: Vec<u32>,
        feature_shape: Vec<usize>,
        num_classes: usize,
    ) -> Result<Self, DatasetError> {
        let d: usize = feature_shape.iter().product();
        if feature_shape.is_empty() || d == 0 {
            return Err(DatasetError::Invalid(format!(
                "feature shape {feature_shape:?} is empty"
            )));
        }
        if num_classes == 0 {
            return Err(DatasetError::Invalid("num_classes is 0".into()));
        }
        if features.len() != labels.len() * d {
            return Err(DatasetError::Invalid(format!(
                "{} feature values for {} samples of {d} features",
                features.len(),
                labels.len()
            )));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= num_classes)
        {
            return Err(DatasetError::Invalid(format!(
                "sample {i} has label {l}, outside 0..{num_classes}"
            )));
        }
        Ok(Dataset {
            features,
            labels,
            feature_shape,
            num_classes,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per sample.
    pub fn feature_len(&self) -> usize {
        self.feature_shape.iter().product()
    }

    /// Features of sample `i`.
    pub fn sample(&self, i: usize) -> &[f32] {
        let d = self.feature_len();
        &self.features[i * d..(i + 1) * d]
    }

    /// Samples per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// Widens (or checks) the class count, e.g. to give every client of a federation the same
    /// number of classes although one partition lacks the highest label.
    pub fn with_num_classes(mut self, num_classes: usize) -> Result<Self, DatasetError> {
        if let Some((i, &l)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= num_classes)
        {
            return Err(DatasetError::Invalid(format!(
                "sample {i} has label {l}, outside 0..{num_classes}"
            )));
        }
        self.num_classes = num_classes;
        Ok(self)
    }

    /// The samples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let d = self.feature_len();
        let mut features = Vec::with_capacity(indices.len() * d);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            features.extend_from_slice(self.sample(i));
            labels.push(self.labels[i]);
        }
        Dataset {
            features,
            labels,
            feature_shape: self.feature_shape.clone(),
            num_classes: self.num_classes,
        }
    }

    /// Seeded random split into `(train, test)`, with `round(len * test_fraction)` test samples,
    /// at least one on each side.
    pub fn train_test_split(
        &self,
        test_fraction: f64,
        seed: u64,
    ) -> Result<(Dataset, Dataset), DatasetError> {
        if !(test_fraction > 0.0 && test_fraction < 1.0) {
            return Err(DatasetError::Invalid(format!(
                "test fraction {test_fraction} is not in (0, 1)"
            )));
        }
        if self.len() < 2 {
            return Err(DatasetError::Invalid(format!(
                "cannot split {} samples",
                self.len()
            )));
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let n_test =
            ((self.len() as f64 * test_fraction).round() as usize).clamp(1, self.len() - 1);
        let (test, train) = order.split_at(n_test);
        Ok((self.subset(train), self.subset(test)))
    }

    /// Concatenates datasets of the same feature shape (class count: the largest).
    pub fn concat(parts: &[Dataset]) -> Result<Dataset, DatasetError> {
        let first = parts
            .first()
            .ok_or_else(|| DatasetError::Invalid("nothing to concatenate".into()))?;
        let mut out = Dataset {
            features: Vec::new(),
            labels: Vec::new(),
            feature_shape: first.feature_shape.clone(),
            num_classes: 0,
        };
        for p in parts {
            if p.feature_shape != first.feature_shape {
                return Err(DatasetError::Invalid(format!(
                    "feature shapes differ: {:?} and {:?}",
                    first.feature_shape, p.feature_shape
                )));
            }
            out.features.extend_from_slice(&p.features);
            out.labels.extend_from_slice(&p.labels);
            out.num_classes = out.num_classes.max(p.num_classes);
        }
        Ok(out)
    }
}

/// Reads a whole file, transparently un-gzipping it when it starts with the gzip magic.
pub(crate) fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DatasetError> {
    let bytes = std::fs::read(path).map_err(|e| DatasetError::io(path, e))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .map_err(|source| DatasetError::Gzip {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_sizes_and_labels() {
        assert!(Dataset::new(vec![0.0; 6], vec![0, 1, 2], vec![2], 3).is_ok());
        assert!(matches!(
            Dataset::new(vec![0.0; 5], vec![0, 1, 2], vec![2], 3),
            Err(DatasetError::Invalid(_))
        ));
        assert!(matches!(
            Dataset::new(vec![0.0; 6], vec![0, 1, 3], vec![2], 3),
            Err(DatasetError::Invalid(_))
        ));
        let d = Dataset::new(vec![0.0; 6], vec![0, 1, 1], vec![2], 2).unwrap();
        assert_eq!(d.class_counts(), vec![1, 2]);
        assert!(d.clone().with_num_classes(1).is_err());
        assert_eq!(d.with_num_classes(10).unwrap().num_classes, 10);
    }

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let n = 50;
        let d = Dataset::new((0..n).map(|i| i as f32).collect(), vec![0; n], vec![1], 1).unwrap();
        let (tr, te) = d.train_test_split(0.2, 7).unwrap();
        assert_eq!((tr.len(), te.len()), (40, 10));
        let mut all: Vec<f32> = tr.features.iter().chain(&te.features).copied().collect();
        all.sort_by(f32::total_cmp);
        assert_eq!(all, d.features);
        assert_eq!(d.train_test_split(0.2, 7).unwrap().1, te);
        assert_ne!(d.train_test_split(0.2, 8).unwrap().1, te);
        assert!(d.train_test_split(1.0, 7).is_err());
    }
}

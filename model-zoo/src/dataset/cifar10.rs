//! CIFAR-10 binary batches: records of 1 label byte (0..=9) and 3072 pixel bytes (1024 red,
//! 1024 green, 1024 blue, each 32×32 row-major). Samples are `[3, 32, 32]` scaled to `[0, 1]`.

use std::path::{Path, PathBuf};

use super::{read_maybe_gzip, Dataset, DatasetError};

/// Bytes per CIFAR-10 record.
pub const CIFAR10_RECORD_BYTES: usize = 1 + 3 * 32 * 32;
const CLASSES: usize = 10;

/// Loads CIFAR-10 from one batch file, or from a directory: its `data_batch_*.bin` files in name
/// order (or, if there are none, every `*.bin` file in name order).
pub fn load_cifar10(path: &Path) -> Result<Dataset, DatasetError> {
    if !path.is_dir() {
        return load_cifar10_files(&[path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| DatasetError::io(path, e))?;
    let mut bins: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let p = entry.map_err(|e| DatasetError::io(path, e))?.path();
        if p.is_file() && p.extension().is_some_and(|e| e == "bin") {
            bins.push(p);
        }
    }
    bins.sort();
    let data: Vec<PathBuf> = bins
        .iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("data_batch"))
        })
        .cloned()
        .collect();
    let files = if data.is_empty() { bins } else { data };
    if files.is_empty() {
        return Err(DatasetError::Empty {
            path: path.to_path_buf(),
        });
    }
    load_cifar10_files(&files)
}

/// Loads and concatenates CIFAR-10 batch files (plain or gzip).
pub fn load_cifar10_files(files: &[PathBuf]) -> Result<Dataset, DatasetError> {
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for path in files {
        let bytes = read_maybe_gzip(path)?;
        if bytes.is_empty() {
            return Err(DatasetError::Empty { path: path.clone() });
        }
        if bytes.len() % CIFAR10_RECORD_BYTES != 0 {
            let whole = bytes.len() / CIFAR10_RECORD_BYTES;
            return Err(DatasetError::Truncated {
                path: path.clone(),
                what: format!("record {} ({CIFAR10_RECORD_BYTES} bytes per record)", whole),
                expected: ((whole + 1) * CIFAR10_RECORD_BYTES) as u64,
                actual: bytes.len() as u64,
            });
        }
        features.reserve(bytes.len());
        for (i, record) in bytes.chunks_exact(CIFAR10_RECORD_BYTES).enumerate() {
            if record[0] as usize >= CLASSES {
                return Err(DatasetError::LabelOutOfRange {
                    path: path.clone(),
                    index: i,
                    label: record[0] as u64,
                    num_classes: CLASSES,
                });
            }
            labels.push(record[0] as u32);
            features.extend(record[1..].iter().map(|&p| p as f32 / 255.0));
        }
    }
    Ok(Dataset {
        features,
        labels,
        feature_shape: vec![3, 32, 32],
        num_classes: CLASSES,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: u8, fill: u8) -> Vec<u8> {
        let mut r = vec![label];
        r.extend((0..3072).map(|i| if i < 1024 { fill } else { (i % 251) as u8 }));
        r
    }

    #[test]
    fn loads_batches_from_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let a: Vec<u8> = [record(3, 255), record(9, 0)].concat();
        let b: Vec<u8> = record(0, 51);
        std::fs::write(dir.path().join("data_batch_1.bin"), &a).unwrap();
        std::fs::write(dir.path().join("data_batch_2.bin"), &b).unwrap();
        std::fs::write(dir.path().join("test_batch.bin"), record(1, 1)).unwrap();
        let d = load_cifar10(dir.path()).unwrap();
        assert_eq!(d.labels, vec![3, 9, 0]);
        assert_eq!(d.feature_shape, vec![3, 32, 32]);
        assert_eq!(d.sample(0)[0], 1.0);
        assert_eq!(d.sample(2)[0], 0.2);
        assert_eq!(d.sample(0)[1024 + 300], ((1024 + 300) % 251) as f32 / 255.0);
        let t = load_cifar10(&dir.path().join("test_batch.bin")).unwrap();
        assert_eq!(t.labels, vec![1]);
    }

    #[test]
    fn rejects_truncated_files_and_bad_labels() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data_batch_1.bin");
        let mut bytes = [record(1, 0), record(2, 0)].concat();
        bytes.truncate(bytes.len() - 10);
        std::fs::write(&p, &bytes).unwrap();
        let err = load_cifar10(&p).unwrap_err();
        assert!(matches!(err, DatasetError::Truncated { .. }), "{err}");
        assert!(
            err.to_string().contains("data_batch_1.bin") && err.to_string().contains("record 1"),
            "{err}"
        );
        std::fs::write(&p, [record(1, 0), record(10, 0)].concat()).unwrap();
        let err = load_cifar10(&p).unwrap_err();
        assert!(
            matches!(
                err,
                DatasetError::LabelOutOfRange {
                    index: 1,
                    label: 10,
                    ..
                }
            ),
            "{err}"
        );
        std::fs::write(&p, []).unwrap();
        assert!(matches!(load_cifar10(&p), Err(DatasetError::Empty { .. })));
        let empty_dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_cifar10(empty_dir.path()),
            Err(DatasetError::Empty { .. })
        ));
    }
}

//! MNIST-style IDX files: an images file (`idx3`, unsigned bytes, `count × rows × cols`) and a
//! labels file (`idx1`, unsigned bytes), each plain or gzip (detected by its magic bytes).

use std::path::{Path, PathBuf};

use super::{read_maybe_gzip, Dataset, DatasetError};

const UBYTE: u8 = 0x08;

/// The labels file paired with an images file: `labels-idx1` in place of `images-idx3` in the
/// file name (`train-images-idx3-ubyte.gz` → `train-labels-idx1-ubyte.gz`). `None` when the
/// name does not contain `images-idx3`.
pub fn labels_path_for_images(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_str()?;
    if !name.contains("images-idx3") {
        return None;
    }
    Some(images.with_file_name(name.replace("images-idx3", "labels-idx1")))
}

/// Parses the IDX header; returns the dimensions and the payload.
fn parse_idx<'a>(
    path: &Path,
    bytes: &'a [u8],
    ndims: u8,
    what: &str,
) -> Result<(Vec<usize>, &'a [u8]), DatasetError> {
    let expected_magic = format!("0x000008{ndims:02x} ({what} IDX, unsigned bytes)");
    if bytes.len() < 4 {
        return Err(DatasetError::Truncated {
            path: path.to_path_buf(),
            what: "the IDX magic number".into(),
            expected: 4,
            actual: bytes.len() as u64,
        });
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != UBYTE || bytes[3] != ndims {
        return Err(DatasetError::BadMagic {
            path: path.to_path_buf(),
            expected: expected_magic,
            found: format!(
                "0x{:02x}{:02x}{:02x}{:02x}",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        });
    }
    let header_len = 4 + 4 * ndims as usize;
    if bytes.len() < header_len {
        return Err(DatasetError::Truncated {
            path: path.to_path_buf(),
            what: "the IDX header".into(),
            expected: header_len as u64,
            actual: bytes.len() as u64,
        });
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let payload_len = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| DatasetError::BadHeader {
            path: path.to_path_buf(),
            problem: format!("IDX dimensions {dims:?} overflow"),
        })?;
    let payload = &bytes[header_len..];
    if (payload.len() as u64) < payload_len {
        return Err(DatasetError::Truncated {
            path: path.to_path_buf(),
            what: format!("{what} of dimensions {dims:?}"),
            expected: header_len as u64 + payload_len,
            actual: bytes.len() as u64,
        });
    }
    if payload.len() as u64 > payload_len {
        return Err(DatasetError::TrailingBytes {
            path: path.to_path_buf(),
            what: what.to_string(),
            extra: payload.len() as u64 - payload_len,
        });
    }
    Ok((dims, payload))
}

/// Loads an IDX images file and its labels file. Images of any `rows × cols` the header gives
/// become samples of shape `[1, rows, cols]` scaled to `[0, 1]`; `num_classes` is the largest
/// label plus one (widen it with [`Dataset::with_num_classes`] to align partitions).
pub fn load_mnist_idx(images_path: &Path, labels_path: &Path) -> Result<Dataset, DatasetError> {
    let image_bytes = read_maybe_gzip(images_path)?;
    let (dims, pixels) = parse_idx(images_path, &image_bytes, 3, "images")?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    if rows == 0 || cols == 0 {
        return Err(DatasetError::BadHeader {
            path: images_path.to_path_buf(),
            problem: format!("images are {rows}×{cols}"),
        });
    }
    let label_bytes = read_maybe_gzip(labels_path)?;
    let (label_dims, labels) = parse_idx(labels_path, &label_bytes, 1, "labels")?;
    if label_dims[0] != count {
        return Err(DatasetError::CountMismatch {
            images_path: images_path.to_path_buf(),
            labels_path: labels_path.to_path_buf(),
            images: count,
            labels: label_dims[0],
        });
    }
    if count == 0 {
        return Err(DatasetError::Empty {
            path: images_path.to_path_buf(),
        });
    }
    let features: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    let labels: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    let num_classes = labels.iter().max().map_or(1, |&m| m as usize + 1);
    Ok(Dataset {
        features,
        labels,
        feature_shape: vec![1, rows, cols],
        num_classes,
    })
}

/// Writes IDX files (plain or gzip). For tests and for `flic` tools that export partitions.
pub fn write_mnist_idx(
    images_path: &Path,
    labels_path: &Path,
    images: &[u8],
    labels: &[u8],
    rows: usize,
    cols: usize,
    gzip: bool,
) -> std::io::Result<()> {
    let mut img = vec![0, 0, UBYTE, 3];
    for d in [labels.len(), rows, cols] {
        img.extend_from_slice(&(d as u32).to_be_bytes());
    }
    img.extend_from_slice(images);
    let mut lab = vec![0, 0, UBYTE, 1];
    lab.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    lab.extend_from_slice(labels);
    for (path, bytes) in [(images_path, img), (labels_path, lab)] {
        if gzip {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&bytes)?;
            std::fs::write(path, enc.finish()?)?;
        } else {
            std::fs::write(path, bytes)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        (
            dir.join(format!("{stem}-images-idx3-ubyte")),
            dir.join(format!("{stem}-labels-idx1-ubyte")),
        )
    }

    #[test]
    fn loads_gzip_with_non_28_size_and_plain() {
        let dir = tempfile::tempdir().unwrap();
        let (rows, cols, n) = (7, 5, 4);
        let images: Vec<u8> = (0..n * rows * cols).map(|i| (i * 37 % 256) as u8).collect();
        let labels = vec![3u8, 0, 9, 3];
        let (ip, lp) = pair(dir.path(), "gz");
        write_mnist_idx(&ip, &lp, &images, &labels, rows, cols, true).unwrap();
        assert_eq!(&std::fs::read(&ip).unwrap()[..2], &[0x1f, 0x8b]);
        let d = load_mnist_idx(&ip, &lp).unwrap();
        assert_eq!(d.feature_shape, vec![1, 7, 5]);
        assert_eq!(d.len(), 4);
        assert_eq!(d.num_classes, 10);
        assert_eq!(d.labels, vec![3, 0, 9, 3]);
        assert_eq!(d.features[1], 37.0 / 255.0);
        assert!(d.features.iter().all(|&x| (0.0..=1.0).contains(&x)));
        assert_eq!(labels_path_for_images(&ip).unwrap(), lp);

        let (ip2, lp2) = pair(dir.path(), "plain");
        write_mnist_idx(&ip2, &lp2, &images, &labels, rows, cols, false).unwrap();
        assert_eq!(load_mnist_idx(&ip2, &lp2).unwrap(), d);
    }

    #[test]
    fn rejects_malformed_files_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let (ip, lp) = pair(dir.path(), "t");
        write_mnist_idx(&ip, &lp, &[1u8; 3 * 4 * 4], &[0, 1, 2], 4, 4, false).unwrap();

        // Wrong magic: a labels file given as images.
        let err = load_mnist_idx(&lp, &lp).unwrap_err();
        assert!(matches!(err, DatasetError::BadMagic { .. }), "{err}");
        assert!(err.to_string().contains("t-labels-idx1-ubyte"), "{err}");

        // Truncated payload.
        let bytes = std::fs::read(&ip).unwrap();
        let short = dir.path().join("short-images-idx3-ubyte");
        std::fs::write(&short, &bytes[..bytes.len() - 5]).unwrap();
        let err = load_mnist_idx(&short, &lp).unwrap_err();
        assert!(matches!(err, DatasetError::Truncated { .. }), "{err}");
        assert!(err.to_string().contains("short-images"), "{err}");

        // Truncated header.
        std::fs::write(&short, &bytes[..9]).unwrap();
        assert!(matches!(
            load_mnist_idx(&short, &lp),
            Err(DatasetError::Truncated { .. })
        ));

        // Trailing bytes.
        let mut long = bytes.clone();
        long.push(0);
        std::fs::write(&short, &long).unwrap();
        assert!(matches!(
            load_mnist_idx(&short, &lp),
            Err(DatasetError::TrailingBytes { .. })
        ));

        // Count mismatch between images and labels.
        let (ip2, lp2) = pair(dir.path(), "m");
        write_mnist_idx(&ip2, &lp2, &[1u8; 3 * 4 * 4], &[0, 1, 2], 4, 4, false).unwrap();
        write_mnist_idx(&dir.path().join("x"), &lp2, &[], &[0, 1], 4, 4, false).unwrap();
        let err = load_mnist_idx(&ip2, &lp2).unwrap_err();
        assert!(
            matches!(
                err,
                DatasetError::CountMismatch {
                    images: 3,
                    labels: 2,
                    ..
                }
            ),
            "{err}"
        );

        // Corrupt gzip.
        let gz = dir.path().join("bad.gz");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
        let err = load_mnist_idx(&gz, &lp).unwrap_err();
        assert!(matches!(err, DatasetError::Gzip { .. }), "{err}");
        assert!(err.to_string().contains("bad.gz"));

        // Missing file.
        assert!(matches!(
            load_mnist_idx(&dir.path().join("nope"), &lp),
            Err(DatasetError::Io { .. })
        ));
        // Overflowing dimensions in the header.
        let mut huge = vec![0, 0, 8, 3];
        for _ in 0..3 {
            huge.extend_from_slice(&u32::MAX.to_be_bytes());
        }
        std::fs::write(&short, &huge).unwrap();
        assert!(load_mnist_idx(&short, &lp).is_err());
    }
}

//! Loading local data by format, and the dataset commitment a contributor registers.

use std::path::{Path, PathBuf};

use anyhow::Context;
use flic_model_zoo::dataset::{self, Dataset};
use flic_proofs::sample::{SampleProof, SAMPLE_PROOF_FORMAT};
use flic_protocol::{merkle, Hash};
use serde_bytes::ByteBuf;

/// How a local dataset is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    /// A header row, `label` first, then the features.
    Csv,
    /// MNIST IDX images and labels (plain or gzip).
    MnistIdx,
    /// CIFAR-10 binary batches.
    Cifar10,
    /// One folder per class of PGM/PPM images.
    ImageFolder,
}

/// Loads a dataset file (or folder) in `format`. For `mnist-idx`, `path` is the images file
/// and the labels file is found by replacing `images-idx3` with `labels-idx1` in its name.
pub fn load(path: &Path, format: DataFormat) -> anyhow::Result<Dataset> {
    Ok(match format {
        DataFormat::Csv => dataset::load_csv(path)?,
        DataFormat::MnistIdx => {
            let labels = mnist_labels_path(path)?;
            dataset::load_mnist_idx(path, &labels)?
        }
        DataFormat::Cifar10 => dataset::load_cifar10(path)?,
        DataFormat::ImageFolder => dataset::load_image_folder(path)?.dataset,
    })
}

pub fn mnist_labels_path(images: &Path) -> anyhow::Result<PathBuf> {
    dataset::labels_path_for_images(images).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: cannot find the labels file: an MNIST images file name must contain `images-idx3` \
             (its labels file has `labels-idx1` in its place)",
            images.display()
        )
    })
}

/// Canonical bytes of one sample: domain tag, label (u32 LE), then features (f32 LE).
pub fn sample_bytes(label: u32, features: &[f32]) -> Vec<u8> {
    flic_protocol::sample::sample_bytes(label, features)
}

/// Per-sample leaf hashes, in dataset order (RFC 6962 leaves).
pub fn sample_leaves(data: &Dataset) -> Vec<[u8; 32]> {
    flic_protocol::sample::sample_leaves((0..data.len()).map(|i| (data.labels[i], data.sample(i))))
}

/// The commitment a contributor registers: the RFC 6962 Merkle root over its samples.
pub fn dataset_commitment(data: &Dataset) -> [u8; 32] {
    flic_protocol::sample::dataset_commitment(
        (0..data.len()).map(|i| (data.labels[i], data.sample(i))),
    )
}

/// The commitment a dataset registers: its root, or with a salt the salted root
/// (`flic_protocol::sample::salted_commitment`).
pub fn registered_commitment(data: &Dataset, salt: Option<&[u8; 32]>) -> [u8; 32] {
    let root = dataset_commitment(data);
    match salt {
        Some(salt) => flic_protocol::sample::salted_commitment(salt, &root),
        None => root,
    }
}

/// [`registered_commitment`], reporting the samples hashed as a `commitment` phase (a
/// large dataset takes a while).
pub fn registered_commitment_with_progress(
    data: &Dataset,
    salt: Option<&[u8; 32]>,
    progress: &mut dyn crate::output::Progress,
) -> [u8; 32] {
    let n = data.len() as u64;
    progress.start("commitment", n);
    // About a hundred updates, whatever the size.
    let step = (n / 100).max(1);
    let root = flic_protocol::sample::dataset_commitment((0..data.len()).map(|i| {
        if i as u64 % step == 0 {
            progress.set(i as u64);
        }
        (data.labels[i], data.sample(i))
    }));
    progress.set(n);
    let commitment = match salt {
        Some(salt) => flic_protocol::sample::salted_commitment(salt, &root),
        None => root,
    };
    progress.finish(&format!(
        "commitment {} over {n} samples",
        hex::encode(commitment)
    ));
    commitment
}

/// Reads a salt file: 64 hex digits (what `flic dataset register --salted` writes).
pub fn read_salt(path: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the salt file {}", path.display()))?;
    let bytes =
        hex::decode(text.trim()).with_context(|| format!("{} is not hex", path.display()))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{} does not hold 32 bytes of hex", path.display()))
}

/// Writes a fresh random salt to `path` (mode 0600, never over an existing file).
pub fn write_new_salt(path: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    use rand::RngCore;
    let mut salt = [0u8; 32];
    rand::rng().fill_bytes(&mut salt);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| {
        format!(
            "creating the salt file {} (an existing salt is never overwritten)",
            path.display()
        )
    })?;
    std::io::Write::write_all(&mut file, format!("{}\n", hex::encode(salt)).as_bytes())?;
    Ok(salt)
}

/// The salt a registration commits with. With `fresh`, a new salt is written to `salt_file`
/// (default: `DATA.salt` beside the data) and its path returned; otherwise the salt in
/// `salt_file`, if one is named.
pub fn registration_salt(
    data: &std::path::Path,
    salt_file: Option<&std::path::Path>,
    fresh: bool,
) -> anyhow::Result<(Option<[u8; 32]>, Option<std::path::PathBuf>)> {
    if !fresh {
        return Ok((salt_file.map(read_salt).transpose()?, None));
    }
    let path = salt_file
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| {
            let mut p = data.as_os_str().to_owned();
            p.push(".salt");
            p.into()
        });
    let salt = write_new_salt(&path)?;
    Ok((Some(salt), Some(path)))
}

/// A membership proof of sample `index` in the dataset's commitment.
pub fn sample_proof(data: &Dataset, index: u64) -> anyhow::Result<SampleProof> {
    let leaves = sample_leaves(data);
    let proof = merkle::inclusion_proof(&leaves, index)
        .map_err(|e| anyhow::anyhow!("cannot prove sample {index}: {e}"))?;
    let i = index as usize;
    Ok(SampleProof {
        format: SAMPLE_PROOF_FORMAT.into(),
        sample: ByteBuf::from(sample_bytes(data.labels[i], data.sample(i))),
        index,
        sample_count: leaves.len() as u64,
        proof: proof.into_iter().map(Hash::new).collect(),
        root: Hash::new(merkle::root(&leaves)),
        salt: None,
    })
}

/// Proves sample `index` of `data` (committed with `salt`, which the proof then
/// discloses) and writes the proof to `out` as JSON: `flic dataset prove`.
pub fn write_sample_proof(
    data: &Dataset,
    index: u64,
    salt: Option<[u8; 32]>,
    out: &Path,
) -> anyhow::Result<SampleProof> {
    let mut proof = sample_proof(data, index)?;
    proof.salt = salt.map(Hash::new);
    let json = serde_json::to_vec_pretty(&proof)?;
    std::fs::write(out, json).with_context(|| format!("writing {}", out.display()))?;
    Ok(proof)
}

/// Reads a sample proof file (it is checked by `flic_proofs::sample`, not here).
pub fn read_sample_proof(file: &Path) -> anyhow::Result<SampleProof> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a flic sample proof", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commitment_with_progress_is_the_commitment() {
        let data = dataset::synthetic_clusters(250, 4, 3, 1);
        let salt = [7u8; 32];
        for salt in [None, Some(&salt)] {
            let mut seen = Vec::new();
            struct Record<'a>(&'a mut Vec<u64>);
            impl crate::output::Progress for Record<'_> {
                fn start(&mut self, _: &str, total: u64) {
                    assert_eq!(total, 250);
                }
                fn set(&mut self, done: u64) {
                    self.0.push(done);
                }
                fn finish(&mut self, _: &str) {}
                fn note(&mut self, _: &str) {}
            }
            let c = registered_commitment_with_progress(&data, salt, &mut Record(&mut seen));
            assert_eq!(c, registered_commitment(&data, salt));
            assert_eq!(seen.last(), Some(&250));
            assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        }
    }

    #[test]
    fn commitment_binds_every_sample() {
        let data = flic_model_zoo::dataset::synthetic_clusters(50, 4, 3, 1);
        let root = dataset_commitment(&data);
        let mut changed = data.clone();
        changed.features[7] += 1.0;
        assert_ne!(dataset_commitment(&changed), root);
        let mut relabeled = data.clone();
        relabeled.labels[3] = (relabeled.labels[3] + 1) % 3;
        assert_ne!(dataset_commitment(&relabeled), root);
        let leaves = sample_leaves(&data);
        let proof = merkle::inclusion_proof(&leaves, 10).unwrap();
        assert_eq!(
            merkle::root_from_proof(&leaves[10], 10, leaves.len() as u64, &proof).unwrap(),
            root
        );
    }

    #[test]
    fn sample_proofs_verify_and_bind_the_sample() {
        let data = flic_model_zoo::dataset::synthetic_clusters(37, 4, 3, 2);
        let root = dataset_commitment(&data);
        for i in [0u64, 17, 36] {
            let p = sample_proof(&data, i).unwrap();
            flic_proofs::sample::verify_sample_against(&p, &root).unwrap();
            let mut other = p.clone();
            other.sample = ByteBuf::from(sample_bytes(data.labels[0] + 1, data.sample(0)));
            assert!(flic_proofs::sample::verify_sample(&other).is_err());
        }
        assert!(sample_proof(&data, 37).is_err());
    }
}

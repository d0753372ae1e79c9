//! Image folders: one subfolder per class (classes numbered in name order), holding binary
//! PGM (`P5`, grey) or PPM (`P6`, RGB) images, decoded here by hand. Other files are ignored;
//! PNG and JPEG are not supported (convert with e.g. `convert x.png x.ppm`).

use std::path::{Path, PathBuf};

use super::{Dataset, DatasetError};

/// A dataset loaded from an image folder, with the class names (subfolder names) by label.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    pub dataset: Dataset,
    pub class_names: Vec<String>,
}

/// A decoded image: `[channels, height, width]` and values scaled to `[0, 1]`, channel-major.
#[derive(Debug, Clone, PartialEq)]
pub struct PnmImage {
    pub shape: [usize; 3],
    pub pixels: Vec<f32>,
}

struct Header<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Header<'_> {
    fn skip_space_and_comments(&mut self) {
        while self.pos < self.bytes.len() {
            match self.bytes[self.pos] {
                b'#' => {
                    while self.pos < self.bytes.len() && self.bytes[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                c if c.is_ascii_whitespace() => self.pos += 1,
                _ => break,
            }
        }
    }

    fn number(&mut self, what: &str) -> Result<usize, String> {
        self.skip_space_and_comments();
        let start = self.pos;
        while self.pos < self.bytes.len() && self.bytes[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(format!("missing or non-numeric {what} in the PNM header"));
        }
        std::str::from_utf8(&self.bytes[start..self.pos])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{what} in the PNM header is too large"))
    }
}

/// Decodes a binary PGM (`P5`) or PPM (`P6`) image (8 or 16 bits per sample).
pub fn decode_pnm(bytes: &[u8]) -> Result<PnmImage, String> {
    let channels = match bytes.get(..2) {
        Some(b"P5") => 1,
        Some(b"P6") => 3,
        _ => {
            let found = String::from_utf8_lossy(&bytes[..bytes.len().min(2)]).into_owned();
            return Err(format!(
                "not a binary PGM/PPM image: magic `{found}`, expected `P5` or `P6`"
            ));
        }
    };
    let mut h = Header { bytes, pos: 2 };
    let width = h.number("width")?;
    let height = h.number("height")?;
    let maxval = h.number("maxval")?;
    if width == 0 || height == 0 || width > 1 << 16 || height > 1 << 16 {
        return Err(format!("image size {width}×{height} is outside 1..=65536"));
    }
    if maxval == 0 || maxval > 65535 {
        return Err(format!("maxval {maxval} is outside 1..=65535"));
    }
    // Exactly one whitespace byte separates the header from the raster.
    if !bytes.get(h.pos).is_some_and(|c| c.is_ascii_whitespace()) {
        return Err("missing whitespace after maxval in the PNM header".into());
    }
    let raster = &bytes[h.pos + 1..];
    let bytes_per_sample = if maxval < 256 { 1 } else { 2 };
    let samples = width * height * channels;
    let needed = samples * bytes_per_sample;
    if raster.len() < needed {
        return Err(format!(
            "truncated: a {width}×{height} image needs {needed} raster bytes, found {}",
            raster.len()
        ));
    }
    let scale = maxval as f32;
    let mut pixels = vec![0f32; samples];
    let plane = width * height;
    for i in 0..samples {
        let v = if bytes_per_sample == 1 {
            raster[i] as usize
        } else {
            u16::from_be_bytes([raster[2 * i], raster[2 * i + 1]]) as usize
        };
        if v > maxval {
            return Err(format!("sample value {v} exceeds maxval {maxval}"));
        }
        // Interleaved RGB on disk → channel-major in memory.
        let (pixel, channel) = (i / channels, i % channels);
        pixels[channel * plane + pixel] = v as f32 / scale;
    }
    Ok(PnmImage {
        shape: [channels, height, width],
        pixels,
    })
}

fn is_pnm(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "pgm" | "ppm" | "pnm"))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DatasetError::io(dir, e))? {
        let path = entry.map_err(|e| DatasetError::io(dir, e))?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'))
        {
            continue;
        }
        out.push(path);
    }
    out.sort();
    Ok(out)
}

/// Loads an image folder (see the module docs). Every image must have the same channels and
/// size; samples are `[channels, height, width]` in `[0, 1]`.
pub fn load_image_folder(root: &Path) -> Result<ImageFolder, DatasetError> {
    let class_dirs: Vec<PathBuf> = sorted_entries(root)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    if class_dirs.is_empty() {
        return Err(DatasetError::Empty {
            path: root.to_path_buf(),
        });
    }
    let mut shape: Option<[usize; 3]> = None;
    let mut features = Vec::new();
    let mut labels = Vec::new();
    let mut class_names = Vec::new();
    for (label, dir) in class_dirs.iter().enumerate() {
        class_names.push(
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        let images: Vec<PathBuf> = sorted_entries(dir)?
            .into_iter()
            .filter(|p| p.is_file() && is_pnm(p))
            .collect();
        if images.is_empty() {
            return Err(DatasetError::BadImage {
                path: dir.clone(),
                problem: "class folder has no PGM/PPM images (.pgm, .ppm, .pnm; PNG and JPEG are not supported)".into(),
            });
        }
        for path in images {
            let bytes = std::fs::read(&path).map_err(|e| DatasetError::io(&path, e))?;
            let img = decode_pnm(&bytes).map_err(|problem| DatasetError::BadImage {
                path: path.clone(),
                problem,
            })?;
            match shape {
                None => shape = Some(img.shape),
                Some(s) if s != img.shape => {
                    return Err(DatasetError::ImageShapeMismatch {
                        path,
                        expected: s.to_vec(),
                        found: img.shape.to_vec(),
                    })
                }
                Some(_) => {}
            }
            features.extend_from_slice(&img.pixels);
            labels.push(label as u32);
        }
    }
    let feature_shape = shape.map(|s| s.to_vec()).unwrap_or_default();
    let num_classes = class_names.len();
    Ok(ImageFolder {
        dataset: Dataset {
            features,
            labels,
            feature_shape,
            num_classes,
        },
        class_names,
    })
}

/// Encodes an 8-bit PGM (1 channel) or PPM (3 channels) image from channel-major values in
/// `[0, 1]`. For tests and for exporting synthetic images.
pub fn encode_pnm(shape: [usize; 3], pixels: &[f32]) -> Vec<u8> {
    let [c, h, w] = shape;
    let mut out = format!("{}\n{w} {h}\n255\n", if c == 1 { "P5" } else { "P6" }).into_bytes();
    for p in 0..h * w {
        for ch in 0..c {
            out.push((pixels[ch * h * w + p].clamp(0.0, 1.0) * 255.0).round() as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pgm_and_ppm_with_comments() {
        let pgm = b"P5\n# a comment\n3 2\n# another\n255\n\x00\x33\xff\x10\x20\x30";
        let img = decode_pnm(pgm).unwrap();
        assert_eq!(img.shape, [1, 2, 3]);
        assert_eq!(img.pixels[1], 0.2);
        assert_eq!(img.pixels[2], 1.0);
        let ppm = b"P6 2 1 255 \x01\x02\x03\x04\x05\x06";
        let img = decode_pnm(ppm).unwrap();
        assert_eq!(img.shape, [3, 1, 2]);
        let want: Vec<f32> = [1u8, 4, 2, 5, 3, 6]
            .iter()
            .map(|&v| v as f32 / 255.0)
            .collect();
        assert_eq!(img.pixels, want);
        let wide = b"P5 1 1 1000 \x03\xe8";
        assert_eq!(decode_pnm(wide).unwrap().pixels, vec![1.0]);
        let enc = encode_pnm([3, 1, 2], &img.pixels);
        assert_eq!(decode_pnm(&enc).unwrap(), img);
    }

    #[test]
    fn rejects_malformed_images() {
        assert!(decode_pnm(b"P2 1 1 255 1").unwrap_err().contains("magic"));
        assert!(decode_pnm(b"\x89PNG").unwrap_err().contains("magic"));
        assert!(decode_pnm(b"P5 2 2 255 \x00")
            .unwrap_err()
            .contains("truncated"));
        assert!(decode_pnm(b"P5 2 x 255 \x00")
            .unwrap_err()
            .contains("height"));
        assert!(decode_pnm(b"P5 0 2 255 ").is_err());
        assert!(decode_pnm(b"P5 1 1 70000 \x00\x00").is_err());
        assert!(decode_pnm(b"P5 1 1 10 \x0b")
            .unwrap_err()
            .contains("exceeds"));
        assert!(decode_pnm(b"P5 1 1 99999999999999999999999 ").is_err());
        assert!(decode_pnm(b"").is_err());
    }

    #[test]
    fn loads_a_folder_per_class_and_names_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        for (class, values) in [
            ("cat", [0.0f32, 1.0, 0.2, 0.4]),
            ("dog", [1.0, 0.0, 0.6, 0.8]),
        ] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            for k in 0..2 {
                let p = dir.path().join(class).join(format!("{k}.pgm"));
                std::fs::write(p, encode_pnm([1, 2, 2], &values)).unwrap();
            }
            std::fs::write(dir.path().join(class).join("notes.txt"), "ignored").unwrap();
        }
        let f = load_image_folder(dir.path()).unwrap();
        assert_eq!(f.class_names, vec!["cat", "dog"]);
        assert_eq!(f.dataset.labels, vec![0, 0, 1, 1]);
        assert_eq!(f.dataset.feature_shape, vec![1, 2, 2]);
        assert_eq!(f.dataset.sample(2), &[1.0, 0.0, 0.6, 0.8][..]);

        let bad = dir.path().join("dog").join("2.pgm");
        std::fs::write(&bad, encode_pnm([1, 3, 2], &[0.0; 6])).unwrap();
        let err = load_image_folder(dir.path()).unwrap_err();
        assert!(
            matches!(err, DatasetError::ImageShapeMismatch { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("2.pgm"), "{err}");
        std::fs::write(&bad, b"P5 2 2 255 \x00").unwrap();
        let err = load_image_folder(dir.path()).unwrap_err();
        assert!(
            matches!(err, DatasetError::BadImage { .. }) && err.to_string().contains("2.pgm"),
            "{err}"
        );
        std::fs::remove_file(&bad).unwrap();
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let err = load_image_folder(dir.path()).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }
}

//! Run-time choice of the compute backend.
//!
//! burn 0.22 picks the backend through a [`Device`]; which constructors exist depends on the
//! cargo features this crate was built with (`flex`, `wgpu`, `cuda`; ndarray is always there).

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

/// A compute backend for training and evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// burn's ndarray CPU backend (the default; always compiled).
    #[default]
    NdArray,
    /// burn's pure-Rust `flex` CPU backend (feature `flex`).
    Flex,
    /// Any GPU through wgpu (feature `wgpu`).
    Wgpu,
    /// NVIDIA CUDA, device 0 (feature `cuda`).
    Cuda,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("unknown backend `{0}` (expected ndarray, flex, wgpu or cuda)")]
    Unknown(String),
    #[error("backend `{backend}` is not compiled in: rebuild with `--features {feature}`")]
    NotCompiled {
        backend: Backend,
        feature: &'static str,
    },
}

impl Backend {
    pub const ALL: [Backend; 4] = [
        Backend::NdArray,
        Backend::Flex,
        Backend::Wgpu,
        Backend::Cuda,
    ];

    /// The id used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::NdArray => "ndarray",
            Backend::Flex => "flex",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }

    /// Whether the backend computes on the CPU.
    pub fn is_cpu(self) -> bool {
        matches!(self, Backend::NdArray | Backend::Flex)
    }

    /// Whether this build can run the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            Backend::NdArray => true,
            Backend::Flex => cfg!(feature = "flex"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// Backends this build can run.
    pub fn compiled() -> Vec<Backend> {
        Backend::ALL
            .into_iter()
            .filter(|b| b.is_compiled())
            .collect()
    }

    /// The (non-autodiff) device of this backend. Creating a GPU device is lazy: a missing GPU
    /// shows up at the first tensor operation.
    #[allow(deprecated)] // ndarray is the project's default CPU backend (see DEPENDENCIES.md)
    pub fn device(self) -> Result<Device, BackendError> {
        match self {
            Backend::NdArray => Ok(Device::ndarray()),
            #[cfg(feature = "flex")]
            Backend::Flex => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "cuda")]
            Backend::Cuda => Ok(Device::cuda(0usize)),
            #[allow(unreachable_patterns)]
            other => Err(BackendError::NotCompiled {
                backend: other,
                feature: other.as_str(),
            }),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Backend {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ndarray" | "cpu" => Ok(Backend::NdArray),
            "flex" => Ok(Backend::Flex),
            "wgpu" | "gpu" => Ok(Backend::Wgpu),
            "cuda" => Ok(Backend::Cuda),
            _ => Err(BackendError::Unknown(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reports_missing_features() {
        assert_eq!("ndarray".parse::<Backend>(), Ok(Backend::NdArray));
        assert_eq!("CUDA".parse::<Backend>(), Ok(Backend::Cuda));
        assert!(matches!(
            "tpu".parse::<Backend>(),
            Err(BackendError::Unknown(_))
        ));
        assert!(Backend::NdArray.device().is_ok());
        for b in Backend::ALL {
            match b.device() {
                Ok(_) => assert!(b.is_compiled()),
                Err(BackendError::NotCompiled { backend, feature }) => {
                    assert!(!b.is_compiled());
                    assert_eq!(backend, b);
                    assert!(BackendError::NotCompiled { backend, feature }
                        .to_string()
                        .contains("--features"));
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
    }
}

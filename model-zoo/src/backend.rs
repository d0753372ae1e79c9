//! Run-time choice of the compute backend.
//!
//! burn 0.22 picks the backend through a [`Device`]; which constructors exist depends on the
//! cargo features this crate was built with (`flex`, `wgpu`, `cuda`; ndarray is always there).
//!
//! A run asks for a [`BackendRequest`] (a backend by name, or `auto`); [`plan`] turns it into
//! a [`Plan`] from what [`hardware::discover`](crate::hardware::discover) found (pure, so the
//! rules are tested without hardware), and [`start`] creates the device, checks that it
//! computes, and falls back to the CPU with the reason when it does not.

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Device, Tensor};
use serde::Serialize;

use crate::hardware::{AdapterKind, Discovery};

/// A compute backend for training and evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
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
    #[error("unknown backend `{0}` (expected auto, ndarray, flex, wgpu or cuda)")]
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

/// What a run asks for: one backend, or the best this machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendRequest {
    /// CUDA, then a discrete or integrated GPU through wgpu, then flex for convolutional
    /// models and ndarray otherwise.
    #[default]
    Auto,
    Named(Backend),
}

impl FromStr for BackendRequest {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("auto") {
            Ok(BackendRequest::Auto)
        } else {
            s.parse().map(BackendRequest::Named)
        }
    }
}

impl fmt::Display for BackendRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendRequest::Auto => f.write_str("auto"),
            BackendRequest::Named(b) => b.fmt(f),
        }
    }
}

/// Which device of a backend to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceChoice {
    Cpu,
    /// The `index`-th wgpu adapter of this kind on the graphics API cubecl settles on (the
    /// first one that has a GPU); `None` is wgpu's default device (the best it finds).
    Wgpu {
        kind: Option<AdapterKind>,
        index: usize,
    },
    Cuda {
        index: usize,
    },
}

/// A backend chosen for a run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub backend: Backend,
    pub device: DeviceChoice,
    /// The adapter's name, for GPU backends.
    pub adapter: Option<String>,
    /// One line: why this backend.
    pub reason: String,
    /// Why the requested backend is not the one used, when it is not.
    pub fallback: Option<String>,
}

/// The CPU backend for a model: flex for convolutional models where it is compiled in
/// (12-21x faster than ndarray on the zoo's CNNs), ndarray otherwise.
pub fn cpu_backend(convolutional: bool) -> Backend {
    if convolutional && Backend::Flex.is_compiled() {
        Backend::Flex
    } else {
        Backend::NdArray
    }
}

fn cpu_plan(convolutional: bool, reason: String, fallback: Option<String>) -> Plan {
    Plan {
        backend: cpu_backend(convolutional),
        device: DeviceChoice::Cpu,
        adapter: None,
        reason,
        fallback,
    }
}

/// Turns a request into a plan from what discovery found. Only a backend that is not
/// compiled in is an error; one without hardware falls back to the CPU, saying why.
pub fn plan(
    request: BackendRequest,
    convolutional: bool,
    found: &Discovery,
) -> Result<Plan, BackendError> {
    let cpu_why = if convolutional {
        "flex for a convolutional model"
    } else {
        "ndarray for a dense model"
    };
    let best_wgpu = |gpu_only: bool| {
        // Best kind first; the index counts adapters of that kind on one graphics API, as
        // cubecl does, so take the first API that has one.
        let order = [
            AdapterKind::DiscreteGpu,
            AdapterKind::IntegratedGpu,
            AdapterKind::VirtualGpu,
            AdapterKind::Other,
            AdapterKind::Cpu,
        ];
        order
            .into_iter()
            .filter(|k| !gpu_only || k.is_gpu())
            .find_map(|kind| found.of(Backend::Wgpu).find(|a| a.kind == kind))
    };
    let wgpu_plan = |a: &crate::hardware::Adapter, reason: String| Plan {
        backend: Backend::Wgpu,
        device: DeviceChoice::Wgpu {
            kind: Some(a.kind),
            index: 0,
        },
        adapter: Some(a.name.clone()),
        reason,
        fallback: None,
    };
    let cuda_plan = |a: &crate::hardware::Adapter, reason: String| Plan {
        backend: Backend::Cuda,
        device: DeviceChoice::Cuda { index: 0 },
        adapter: Some(a.name.clone()),
        reason,
        fallback: None,
    };
    match request {
        BackendRequest::Auto => {
            if Backend::Cuda.is_compiled() {
                if let Some(a) = found.of(Backend::Cuda).next() {
                    return Ok(cuda_plan(a, format!("auto: CUDA device 0, {}", a.name)));
                }
            }
            if Backend::Wgpu.is_compiled() {
                if let Some(a) = best_wgpu(true) {
                    return Ok(wgpu_plan(
                        a,
                        format!("auto: {} {} through wgpu ({})", a.kind.as_str(), a.name, a.api),
                    ));
                }
            }
            let software = found
                .of(Backend::Wgpu)
                .find(|a| a.kind == AdapterKind::Cpu)
                .map(|a| format!("; the software adapter {} runs with --backend wgpu", a.name))
                .unwrap_or_default();
            Ok(cpu_plan(
                convolutional,
                format!("auto: no GPU found, {cpu_why}{software}"),
                None,
            ))
        }
        BackendRequest::Named(b) if !b.is_compiled() => Err(BackendError::NotCompiled {
            backend: b,
            feature: b.as_str(),
        }),
        BackendRequest::Named(Backend::Wgpu) => match best_wgpu(false) {
            Some(a) => Ok(wgpu_plan(
                a,
                format!("wgpu: {} {} ({})", a.kind.as_str(), a.name, a.api),
            )),
            None => Ok(cpu_plan(
                convolutional,
                format!("fallback: {cpu_why}"),
                Some(
                    "wgpu found no adapter on Vulkan, Metal, DX12 or GL (install a GPU driver;                      on Linux `mesa-vulkan-drivers` has the lavapipe software driver)"
                        .into(),
                ),
            )),
        },
        BackendRequest::Named(Backend::Cuda) => match found.of(Backend::Cuda).next() {
            Some(a) => Ok(cuda_plan(a, format!("cuda: device 0, {}", a.name))),
            None => Ok(cpu_plan(
                convolutional,
                format!("fallback: {cpu_why}"),
                Some(
                    found
                        .problems
                        .iter()
                        .find(|p| p.starts_with("cuda"))
                        .cloned()
                        .unwrap_or_else(|| "cuda found no device".into()),
                ),
            )),
        },
        BackendRequest::Named(b) => Ok(Plan {
            backend: b,
            device: DeviceChoice::Cpu,
            adapter: None,
            reason: format!("{b}: as asked"),
            fallback: None,
        }),
    }
}

impl Plan {
    /// The device this plan names.
    #[allow(unused_variables)]
    pub fn device(&self) -> Result<Device, BackendError> {
        match &self.device {
            DeviceChoice::Cpu => self.backend.device(),
            #[cfg(feature = "wgpu")]
            DeviceChoice::Wgpu { kind, index } => {
                use burn::tensor::DeviceKind;
                let index = *index;
                Ok(Device::wgpu(match kind {
                    Some(AdapterKind::DiscreteGpu) => DeviceKind::DiscreteGpu(index),
                    Some(AdapterKind::IntegratedGpu) => DeviceKind::IntegratedGpu(index),
                    Some(AdapterKind::VirtualGpu) => DeviceKind::VirtualGpu(index),
                    Some(AdapterKind::Cpu) => DeviceKind::Cpu,
                    Some(AdapterKind::Other) | None => DeviceKind::DefaultDevice,
                }))
            }
            #[cfg(feature = "cuda")]
            DeviceChoice::Cuda { index } => Ok(Device::cuda(*index)),
            #[allow(unreachable_patterns)]
            _ => Err(BackendError::NotCompiled {
                backend: self.backend,
                feature: self.backend.as_str(),
            }),
        }
    }
}

/// A started backend: the plan that ran and its device.
#[derive(Debug, Clone)]
pub struct Started {
    pub plan: Plan,
    pub device: Device,
}

/// Creates the plan's device and runs one small computation on it. A GPU device that
/// fails (no adapter after all, a driver error, a kernel that does not compile) falls back
/// to the CPU backend, the failure in [`Plan::fallback`]; it never panics.
pub fn start(plan: Plan, convolutional: bool) -> Result<Started, BackendError> {
    let device = plan.device()?;
    if plan.device == DeviceChoice::Cpu {
        return Ok(Started { plan, device });
    }
    match smoke_test(&device) {
        Ok(()) => Ok(Started { plan, device }),
        Err(why) => {
            let fallback = format!(
                "{} failed at start ({why})",
                plan.adapter
                    .as_deref()
                    .map(|a| format!("{} on {a}", plan.backend))
                    .unwrap_or_else(|| plan.backend.to_string())
            );
            let cpu = cpu_plan(convolutional, "fallback: the CPU".into(), Some(fallback));
            let device = cpu.backend.device()?;
            Ok(Started { plan: cpu, device })
        }
    }
}

/// `sum([1, 2, 3]) == 6` on the device, with any panic in the runtime caught and quiet.
fn smoke_test(device: &Device) -> Result<(), String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Tensor::<1>::from_floats([1.0f32, 2.0, 3.0], device)
            .sum()
            .into_scalar::<f32>()
    }));
    std::panic::set_hook(hook);
    match result {
        Ok(v) if v == 6.0 => Ok(()),
        Ok(v) => Err(format!("sum([1, 2, 3]) gave {v}")),
        Err(p) => Err(panic_message(p.as_ref())),
    }
}

/// The text of a caught panic (a driver binding's or a runtime's).
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::Adapter;

    fn adapter(backend: Backend, kind: AdapterKind, name: &str) -> Adapter {
        Adapter {
            backend,
            api: if backend == Backend::Cuda {
                "CUDA"
            } else {
                "Vulkan"
            }
            .into(),
            name: name.into(),
            kind,
            driver: String::new(),
            memory_bytes: None,
        }
    }

    fn found(adapters: Vec<Adapter>) -> Discovery {
        Discovery {
            adapters,
            problems: Vec::new(),
        }
    }

    #[test]
    fn auto_prefers_a_gpu_and_never_a_software_rasterizer() {
        let lavapipe = adapter(Backend::Wgpu, AdapterKind::Cpu, "llvmpipe");
        let igpu = adapter(Backend::Wgpu, AdapterKind::IntegratedGpu, "Intel UHD");
        let dgpu = adapter(Backend::Wgpu, AdapterKind::DiscreteGpu, "RTX");
        let cuda = adapter(Backend::Cuda, AdapterKind::DiscreteGpu, "H200");

        // Nothing, or only a software adapter: the CPU backend for the model.
        for f in [found(vec![]), found(vec![lavapipe.clone()])] {
            let p = plan(BackendRequest::Auto, false, &f).unwrap();
            assert_eq!(
                (p.backend, &p.device),
                (Backend::NdArray, &DeviceChoice::Cpu)
            );
            let p = plan(BackendRequest::Auto, true, &f).unwrap();
            assert_eq!(p.backend, cpu_backend(true));
            assert!(
                p.fallback.is_none(),
                "auto choosing the CPU is not a fallback"
            );
        }
        let p = plan(BackendRequest::Auto, true, &found(vec![lavapipe.clone()])).unwrap();
        assert!(p.reason.contains("--backend wgpu"), "{}", p.reason);

        let f = found(vec![
            lavapipe.clone(),
            igpu.clone(),
            dgpu.clone(),
            cuda.clone(),
        ]);
        let p = plan(BackendRequest::Auto, false, &f).unwrap();
        if Backend::Cuda.is_compiled() {
            assert_eq!(p.backend, Backend::Cuda);
        } else if Backend::Wgpu.is_compiled() {
            assert_eq!(p.backend, Backend::Wgpu);
            assert_eq!(
                p.adapter.as_deref(),
                Some("RTX"),
                "discrete before integrated"
            );
            assert_eq!(
                p.device,
                DeviceChoice::Wgpu {
                    kind: Some(AdapterKind::DiscreteGpu),
                    index: 0
                }
            );
        }
        if Backend::Wgpu.is_compiled() {
            let p = plan(
                BackendRequest::Auto,
                false,
                &found(vec![lavapipe.clone(), igpu]),
            )
            .unwrap();
            assert_eq!(p.adapter.as_deref(), Some("Intel UHD"));
        }
    }

    #[test]
    fn a_named_backend_without_hardware_falls_back_saying_why() {
        if Backend::Wgpu.is_compiled() {
            let p = plan(BackendRequest::Named(Backend::Wgpu), true, &found(vec![])).unwrap();
            assert!(p.backend.is_cpu());
            assert!(p.fallback.as_deref().unwrap().contains("no adapter"));
            // Named, a software adapter is used.
            let lavapipe = adapter(Backend::Wgpu, AdapterKind::Cpu, "llvmpipe");
            let p = plan(
                BackendRequest::Named(Backend::Wgpu),
                true,
                &found(vec![lavapipe]),
            )
            .unwrap();
            assert_eq!(p.backend, Backend::Wgpu);
            assert!(p.fallback.is_none());
        } else {
            assert!(matches!(
                plan(BackendRequest::Named(Backend::Wgpu), true, &found(vec![])),
                Err(BackendError::NotCompiled { .. })
            ));
        }
        let p = plan(
            BackendRequest::Named(Backend::NdArray),
            true,
            &found(vec![]),
        )
        .unwrap();
        assert_eq!(
            p.backend,
            Backend::NdArray,
            "a CPU backend named is a CPU backend used"
        );
        assert_eq!("auto".parse::<BackendRequest>(), Ok(BackendRequest::Auto));
        assert_eq!(
            "gpu".parse::<BackendRequest>(),
            Ok(BackendRequest::Named(Backend::Wgpu))
        );
    }

    #[test]
    fn the_cpu_plan_starts() {
        let p = plan(
            BackendRequest::Named(Backend::NdArray),
            false,
            &found(vec![]),
        )
        .unwrap();
        let s = start(p, false).unwrap();
        assert_eq!(s.plan.backend, Backend::NdArray);
        assert!(smoke_test(&s.device).is_ok());
    }

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

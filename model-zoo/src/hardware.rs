//! The compute hardware this machine offers to the compiled backends: wgpu adapters on every
//! graphics API (Vulkan, Metal, DX12, GL) and CUDA devices. Found at run time, so a build
//! with the GPU backends starts on a machine without any GPU or driver.
//!
//! Discovery never panics: a missing driver or loader is an empty list plus a line in
//! [`Discovery::problems`].

use serde::Serialize;

use crate::backend::Backend;

/// What kind of device an adapter is, as the driver reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdapterKind {
    DiscreteGpu,
    IntegratedGpu,
    VirtualGpu,
    /// A software rasterizer on the CPU (Mesa's lavapipe and llvmpipe, WARP).
    Cpu,
    Other,
}

impl AdapterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterKind::DiscreteGpu => "discrete GPU",
            AdapterKind::IntegratedGpu => "integrated GPU",
            AdapterKind::VirtualGpu => "virtual GPU",
            AdapterKind::Cpu => "CPU (software)",
            AdapterKind::Other => "other",
        }
    }

    /// Whether `--backend auto` considers it: real GPUs only. A software rasterizer runs the
    /// kernels, several times slower than the native CPU backends, so it is used only when
    /// named (`--backend wgpu`).
    pub fn is_gpu(self) -> bool {
        matches!(self, AdapterKind::DiscreteGpu | AdapterKind::IntegratedGpu)
    }
}

/// One adapter (wgpu) or device (CUDA).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Adapter {
    /// The burn backend that reaches it: `wgpu` or `cuda`.
    pub backend: Backend,
    /// The graphics or compute API: `Vulkan`, `Metal`, `Dx12`, `Gl`, `CUDA`.
    pub api: String,
    pub name: String,
    pub kind: AdapterKind,
    /// Driver name and version, as the driver reports them.
    pub driver: String,
    /// Device-local memory in bytes, where the API reports it (Vulkan and CUDA).
    pub memory_bytes: Option<u64>,
}

/// Everything found, plus why an API found nothing where that is known.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Discovery {
    pub adapters: Vec<Adapter>,
    pub problems: Vec<String>,
}

impl Discovery {
    /// The adapters of one backend, in discovery order.
    pub fn of(&self, backend: Backend) -> impl Iterator<Item = &Adapter> {
        self.adapters.iter().filter(move |a| a.backend == backend)
    }
}

/// Looks for adapters of every compiled GPU backend.
pub fn discover() -> Discovery {
    let mut found = Discovery::default();
    #[cfg(feature = "wgpu")]
    wgpu_adapters::discover(&mut found);
    #[cfg(feature = "cuda")]
    cuda_devices::discover(&mut found);
    found
}

/// Runs `f`, turning a panic inside a driver binding into an error line.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|p| format!("{what}: {}", crate::backend::panic_message(p.as_ref())))
}

#[cfg(feature = "wgpu")]
mod wgpu_adapters {
    use std::sync::Mutex;

    use super::{guarded, Adapter, AdapterKind, Discovery};
    use crate::backend::Backend;

    /// The Vulkan loader is not safe against instances created and dropped on several threads
    /// at once (cubecl-wgpu keeps the same kind of lock for its own instances).
    static INSTANCE_LOCK: Mutex<()> = Mutex::new(());

    const APIS: [wgpu::Backend; 4] = [
        wgpu::Backend::Vulkan,
        wgpu::Backend::Metal,
        wgpu::Backend::Dx12,
        wgpu::Backend::Gl,
    ];

    pub(super) fn discover(found: &mut Discovery) {
        let _lock = INSTANCE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let enabled = wgpu::Instance::enabled_backend_features();
        for api in APIS {
            if !enabled.contains(api.into()) {
                continue;
            }
            match guarded(&format!("wgpu {api:?}"), || enumerate(api)) {
                Ok(list) => found.adapters.extend(list),
                Err(e) => found.problems.push(e),
            }
        }
        if found.of(Backend::Wgpu).next().is_none() {
            found.problems.push(
                "wgpu found no adapter: no GPU driver is installed (on Linux, Mesa's \
                 `mesa-vulkan-drivers` gives Vulkan drivers, lavapipe among them)"
                    .into(),
            );
        }
    }

    fn enumerate(api: wgpu::Backend) -> Vec<Adapter> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: api.into(),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapters = block_on(instance.enumerate_adapters(api.into()));
        adapters
            .iter()
            .map(|adapter| {
                let info = adapter.get_info();
                let driver = match (info.driver.is_empty(), info.driver_info.is_empty()) {
                    (false, false) => format!("{} {}", info.driver, info.driver_info),
                    (false, true) => info.driver.clone(),
                    (true, false) => info.driver_info.clone(),
                    (true, true) => String::new(),
                };
                Adapter {
                    backend: Backend::Wgpu,
                    api: format!("{:?}", info.backend),
                    name: info.name.clone(),
                    kind: match info.device_type {
                        wgpu::DeviceType::DiscreteGpu => AdapterKind::DiscreteGpu,
                        wgpu::DeviceType::IntegratedGpu => AdapterKind::IntegratedGpu,
                        wgpu::DeviceType::VirtualGpu => AdapterKind::VirtualGpu,
                        wgpu::DeviceType::Cpu => AdapterKind::Cpu,
                        wgpu::DeviceType::Other => AdapterKind::Other,
                    },
                    driver,
                    memory_bytes: vulkan_memory(adapter),
                }
            })
            .collect()
    }

    /// The sum of the device-local memory heaps, read through the Vulkan adapter under
    /// wgpu (wgpu itself does not report memory).
    #[cfg(not(target_family = "wasm"))]
    fn vulkan_memory(adapter: &wgpu::Adapter) -> Option<u64> {
        // SAFETY: the raw handles are used only while `adapter` (and so the instance)
        // lives, for one read-only query.
        unsafe {
            let hal = adapter.as_hal::<wgpu::hal::api::Vulkan>()?;
            let instance = hal.shared_instance().raw_instance();
            let props = instance.get_physical_device_memory_properties(hal.raw_physical_device());
            let heaps = &props.memory_heaps[..props.memory_heap_count as usize];
            let local: u64 = heaps
                .iter()
                .filter(|h| h.flags.contains(ash::vk::MemoryHeapFlags::DEVICE_LOCAL))
                .map(|h| h.size)
                .sum();
            (local > 0).then_some(local)
        }
    }

    /// Native wgpu resolves these futures at once; poll until ready without a runtime.
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::yield_now();
        }
    }
}

#[cfg(feature = "cuda")]
mod cuda_devices {
    use super::{guarded, Adapter, AdapterKind, Discovery};
    use crate::backend::Backend;
    use cudarc::driver::CudaContext;

    pub(super) fn discover(found: &mut Discovery) {
        // Loading libcuda dynamically panics when it is absent: ask first.
        // SAFETY: only tries to open the library.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            found
                .problems
                .push("cuda: no NVIDIA driver (libcuda.so) on this machine".into());
            return;
        }
        match guarded("cuda", list) {
            Ok(Ok(list)) => found.adapters.extend(list),
            Ok(Err(e)) => found.problems.push(format!("cuda: {e}")),
            Err(e) => found.problems.push(e),
        }
    }

    fn list() -> Result<Vec<Adapter>, cudarc::driver::DriverError> {
        let count = CudaContext::device_count()?;
        (0..count.max(0) as usize)
            .map(|i| {
                let ctx = CudaContext::new(i)?;
                let (major, minor) = ctx.compute_capability()?;
                Ok(Adapter {
                    backend: Backend::Cuda,
                    api: "CUDA".into(),
                    name: ctx.name()?,
                    kind: AdapterKind::DiscreteGpu,
                    driver: format!("compute capability {major}.{minor}"),
                    memory_bytes: Some(ctx.total_mem()? as u64),
                })
            })
            .collect()
    }
}

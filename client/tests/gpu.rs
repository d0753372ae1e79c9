//! GPU training that has run: burn's wgpu backend against ndarray on the same model, data,
//! initial weights and seed, `flic simulate --backend wgpu` end to end, `flic backends`, the
//! fallback when no adapter exists, and `bench/gpu/run.sh` end to end.
//!
//! In CI the adapter is Mesa's lavapipe, a software Vulkan driver: `.ci/run` installs
//! `mesa-vulkan-drivers`, points `VK_ICD_FILENAMES` at it and sets `FLIC_REQUIRE_WGPU=1`,
//! which turns a missing adapter into a failure. Elsewhere a machine without any wgpu
//! adapter skips these tests, saying why; one with a GPU runs them on it.
//!
//! Tolerances (float32, summation order differs between the backends' kernels): after 8 SGD
//! steps, losses agree to 1e-4 relative and weights to 1e-4 absolute (measured on lavapipe:
//! equal losses, weights within 1.5e-8; the margin is for real GPUs' other summation
//! orders); a 3-round simulation ends within 2 points of test accuracy of the CPU run
//! (measured: equal).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use flic_model_zoo::backend::{self, BackendRequest};
use flic_model_zoo::dataset::{SyntheticClusters, SyntheticImages};
use flic_model_zoo::hardware;
use flic_model_zoo::{
    evaluate, init_weights, train_local, Backend, Dataset, ModelConfig, OptimizerKind, TrainParams,
};

/// wgpu's instances and devices are process-wide (and the Vulkan loader is not safe against
/// instances made on several threads at once): tests that touch them in-process take turns.
static GPU: Mutex<()> = Mutex::new(());

fn flic() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_flic"));
    c.env("FLIC_NO_PROGRESS", "true");
    c
}

/// The GPU turn, if wgpu has an adapter here; `None` (skip) otherwise, unless CI requires
/// one. A test that trains in-process keeps the turn; one that runs `flic` lets it go.
fn wgpu_available(test: &str) -> Option<MutexGuard<'static, ()>> {
    let turn = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let found = hardware::discover();
    if found.of(Backend::Wgpu).next().is_some() {
        return Some(turn);
    }
    let why = format!(
        "{test}: wgpu found no adapter ({}); install a Vulkan driver (Debian: \
         mesa-vulkan-drivers) and set VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json",
        found.problems.join("; ")
    );
    if std::env::var("FLIC_REQUIRE_WGPU").as_deref() == Ok("1") {
        panic!("{why} (FLIC_REQUIRE_WGPU=1)");
    }
    eprintln!("skipped: {why}");
    None
}

fn mlp_workload() -> (ModelConfig, Dataset) {
    let data = SyntheticClusters {
        samples: 256,
        dims: 784,
        seed: 7,
        ..Default::default()
    }
    .generate();
    let config = ModelConfig::for_data("mlp", &data.feature_shape, 10, &[64]).unwrap();
    (config, data)
}

fn lenet_workload() -> (ModelConfig, Dataset) {
    let data = SyntheticImages {
        samples: 256,
        height: 28,
        width: 28,
        seed: 7,
        ..Default::default()
    }
    .generate();
    let config = ModelConfig::for_data("lenet", &data.feature_shape, 10, &[]).unwrap();
    (config, data)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn rel(a: f32, b: f32) -> f32 {
    (a - b).abs() / b.abs().max(1e-6)
}

#[test]
fn mlp_and_lenet_train_on_wgpu_as_on_ndarray() {
    let Some(_gpu) = wgpu_available("mlp_and_lenet_train_on_wgpu_as_on_ndarray") else {
        return;
    };
    let started = {
        let found = hardware::discover();
        let plan = backend::plan(BackendRequest::Named(Backend::Wgpu), false, &found).unwrap();
        backend::start(plan, false).unwrap()
    };
    assert_eq!(
        started.plan.backend,
        Backend::Wgpu,
        "wgpu did not start: {:?}",
        started.plan.fallback
    );
    let gpu = started.device;
    let cpu = Backend::NdArray.device().unwrap();
    for (config, data) in [mlp_workload(), lenet_workload()] {
        let name = config.architecture();
        let weights = init_weights(&config, 11).unwrap();
        // 256 samples in batches of 32: 8 SGD steps.
        let params = TrainParams {
            lr: 0.05,
            batch_size: 32,
            local_epochs: 1,
            optimizer: OptimizerKind::Sgd,
            seed: 5,
            proximal_mu: 0.0,
        };
        let on_cpu = train_local(&config, &weights, &data, &params, &cpu, &mut |_| {}).unwrap();
        let on_gpu = train_local(&config, &weights, &data, &params, &gpu, &mut |_| {}).unwrap();
        assert_eq!(on_cpu.steps, 8);
        assert_eq!(on_gpu.steps, on_cpu.steps);
        let moved = max_abs_diff(&on_cpu.weights, &weights);
        assert!(
            moved > 1e-3,
            "{name}: training barely moved the weights ({moved})"
        );
        let loss = rel(on_gpu.mean_loss, on_cpu.mean_loss);
        let last = rel(on_gpu.last_epoch_loss, on_cpu.last_epoch_loss);
        let w = max_abs_diff(&on_gpu.weights, &on_cpu.weights);
        eprintln!(
            "{name} on {}: mean loss {} vs {} (rel {loss:.2e}), weights max |diff| {w:.2e} \
             (moved {moved:.2e})",
            started.plan.adapter.as_deref().unwrap_or("?"),
            on_gpu.mean_loss,
            on_cpu.mean_loss
        );
        assert!(
            loss < 1e-4 && last < 1e-4,
            "{name}: losses differ by {loss:.2e}"
        );
        assert!(w < 1e-4, "{name}: weights differ by up to {w:.2e}");
        // Evaluation on the device agrees as well.
        let e_cpu = evaluate(&config, &on_cpu.weights, &data, &cpu).unwrap();
        let e_gpu = evaluate(&config, &on_cpu.weights, &data, &gpu).unwrap();
        assert!((e_cpu.accuracy - e_gpu.accuracy).abs() <= 1.0 / 256.0 + 1e-9);
        assert!((e_cpu.loss - e_gpu.loss).abs() / e_cpu.loss.max(1e-9) < 1e-4);
    }
}

fn simulate(dir: &Path, backend: &str) -> (serde_json::Value, String) {
    let report = dir.join(format!("{backend}.json"));
    let out = flic()
        .args([
            "simulate",
            "--model",
            "mlp",
            "--clients",
            "3",
            "--rounds",
            "3",
        ])
        .args(["--samples", "1200", "--seed", "9", "--backend", backend])
        .arg("--json")
        .arg(&report)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "simulate --backend {backend}: {stderr}"
    );
    let v = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    (v, stderr)
}

#[test]
fn simulate_on_wgpu_reaches_the_cpu_accuracy() {
    if wgpu_available("simulate_on_wgpu_reaches_the_cpu_accuracy").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cpu, _) = simulate(dir.path(), "ndarray");
    let (gpu, stderr) = simulate(dir.path(), "wgpu");
    assert_eq!(cpu["backend"], "ndarray");
    assert_eq!(gpu["backend"], "wgpu", "no fallback: {stderr}");
    assert!(
        stderr.contains("backend wgpu"),
        "says what it picked: {stderr}"
    );
    let a_cpu = cpu["final_accuracy"].as_f64().unwrap();
    let a_gpu = gpu["final_accuracy"].as_f64().unwrap();
    let a_init = cpu["initial_accuracy"].as_f64().unwrap();
    eprintln!("final accuracy: ndarray {a_cpu:.4}, wgpu {a_gpu:.4} (initial {a_init:.4})");
    assert!(
        a_cpu > a_init + 0.2,
        "the federation learned: {a_init} -> {a_cpu}"
    );
    assert!(
        (a_gpu - a_cpu).abs() <= 0.02,
        "wgpu {a_gpu} vs ndarray {a_cpu}"
    );
    // Same initial model: the same starting accuracy.
    assert_eq!(gpu["initial_accuracy"], cpu["initial_accuracy"]);
}

#[test]
fn flic_backends_lists_adapters_and_the_auto_pick() {
    let out = flic().args(["backends", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let compiled: Vec<&str> = v["compiled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect();
    assert!(
        compiled.contains(&"ndarray") && compiled.contains(&"wgpu"),
        "{compiled:?}"
    );
    for a in v["adapters"].as_array().unwrap() {
        assert!(!a["name"].as_str().unwrap().is_empty());
        assert!(a["kind"].is_string() && a["api"].is_string());
    }
    let gpu = v["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| matches!(a["kind"].as_str(), Some("discrete-gpu" | "integrated-gpu")));
    let dense = v["auto_dense"]["backend"].as_str().unwrap();
    let conv = v["auto_convolutional"]["backend"].as_str().unwrap();
    if gpu {
        assert!(matches!(dense, "wgpu" | "cuda"), "{dense}");
    } else {
        // lavapipe and llvmpipe are never picked by auto.
        assert_eq!((dense, conv), ("ndarray", "flex"));
    }
    let text = flic().arg("backends").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("compiled backends:") && text.contains("--backend auto picks"));
    if std::env::var("FLIC_REQUIRE_WGPU").as_deref() == Ok("1") {
        // CI's lavapipe: a Vulkan software adapter with its memory.
        let lvp = v["adapters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["api"] == "Vulkan" && a["kind"] == "cpu")
            .unwrap_or_else(|| panic!("no Vulkan software adapter in {v}"));
        assert!(lvp["memory_bytes"].as_u64().unwrap() > 0, "{lvp}");
        assert!(
            lvp["driver"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("mesa")
                || lvp["driver"].as_str().unwrap().contains("llvmpipe"),
            "{lvp}"
        );
    }
}

#[test]
fn without_an_adapter_wgpu_falls_back_to_the_cpu_with_the_reason() {
    // No Vulkan driver, no GL: what a machine without a GPU driver looks like to wgpu.
    let dir = tempfile::tempdir().unwrap();
    let no_gpu = |c: &mut Command| {
        c.env("VK_ICD_FILENAMES", dir.path().join("none.json"))
            .env("VK_DRIVER_FILES", dir.path().join("none.json"))
            .env("LIBGL_ALWAYS_SOFTWARE", "0")
            .env("EGL_PLATFORM", "none-such")
            .env(
                "__EGL_VENDOR_LIBRARY_FILENAMES",
                dir.path().join("none.json"),
            );
    };
    let mut c = flic();
    no_gpu(&mut c);
    let out = c.args(["backends", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["adapters"].as_array().unwrap().len(), 0, "{v}");
    assert!(v["problems"].to_string().contains("no adapter"), "{v}");
    assert_eq!(v["auto_dense"]["backend"], "ndarray");

    let mut c = flic();
    no_gpu(&mut c);
    let report = dir.path().join("r.json");
    let out = c
        .args([
            "simulate",
            "--clients",
            "2",
            "--rounds",
            "1",
            "--samples",
            "400",
        ])
        .args(["--backend", "wgpu", "--json"])
        .arg(&report)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a fallback, not a failure: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("warning: backend wgpu is not usable") && stderr.contains("no adapter"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(v["backend"], "ndarray");
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_gpu_benchmark_runs_end_to_end() {
    if wgpu_available("the_gpu_benchmark_runs_end_to_end").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let out = Command::new(repo_root().join("bench/gpu/pack.sh"))
        .args(["--no-loader", "--flic", env!("CARGO_BIN_EXE_flic")])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pack.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let travels: u64 = std::fs::read_dir(&bundle)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        travels < 60 << 20,
        "the bundle is {travels} bytes, over 60 MB"
    );

    let report = dir.path().join("report");
    let out = Command::new(bundle.join("run.sh"))
        .arg(&report)
        .env("FLIC_BENCH_SAMPLES_SCALE", "0")
        .env("FLIC_BENCH_EPOCHS", "1")
        .env("FLIC_NO_PROGRESS", "true")
        .env_remove("FLIC")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run.sh: {stderr}");
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(
        md.contains("burn/wgpu samples/s") && md.contains("burn/flex samples/s"),
        "{md}"
    );
    assert!(md.contains("## flic backends"), "{md}");
    let train: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("train.json")).unwrap()).unwrap();
    let models = train["models"].as_array().unwrap();
    assert_eq!(models.len(), 4, "every zoo model");
    for m in models {
        let results = m["results"].as_array().unwrap();
        let wgpu = results
            .iter()
            .find(|t| t["framework"] == "burn/wgpu")
            .unwrap();
        let flex = results
            .iter()
            .find(|t| t["framework"] == "burn/flex")
            .unwrap();
        assert!(wgpu["device"].is_string(), "the adapter is named: {wgpu}");
        let (a, b) = (
            wgpu["initial_loss"].as_f64().unwrap(),
            flex["initial_loss"].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() / b < 1e-4,
            "{}: same model on both ({a} vs {b})",
            m["model"]
        );
    }
    assert!(report.join("backends.json").exists());
}

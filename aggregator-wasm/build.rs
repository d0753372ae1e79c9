//! Compiles `flic-aggregator` for `wasm32-unknown-unknown` with a nested cargo and embeds
//! the module, so `cargo test` and `cargo run -p flic-client` need no separate build step.
//!
//! Set `FLIC_AGGREGATOR_WASM=/path/to/aggregator.wasm` to embed a prebuilt module instead,
//! and `FLIC_CANISTER_RUSTFLAGS` to change codegen (they replace the `simd128` flags of
//! `.cargo/config.toml`; `-C target-feature=-simd128` builds the scalar canister).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("crate lives in the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    let dest = out_dir.join("aggregator.wasm");

    // Relative to this package: cargo resolves them against the checkout being built, so
    // two checkouts sharing a target directory never reuse each other's wasm.
    for path in [
        "../aggregator-canister/src",
        "../aggregator-canister/Cargo.toml",
        "../protocol/src",
        "../protocol/Cargo.toml",
        "../Cargo.toml",
        "../Cargo.lock",
        "../.cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=FLIC_AGGREGATOR_WASM");
    println!("cargo:rerun-if-env-changed=FLIC_CANISTER_RUSTFLAGS");

    if let Some(prebuilt) = env::var_os("FLIC_AGGREGATOR_WASM") {
        std::fs::copy(&prebuilt, &dest).unwrap_or_else(|e| {
            panic!(
                "FLIC_AGGREGATOR_WASM={}: cannot copy: {e}",
                Path::new(&prebuilt).display()
            )
        });
        return;
    }

    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    ensure_wasm_target(&rustc);

    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out: keep the nested build inside
    // the same target directory (so it is cached with it) but in a folder of its own, so
    // the two cargo invocations never wait on each other's lock.
    let target_root = out_dir
        .ancestors()
        .nth(4)
        .expect("OUT_DIR has the usual depth");
    // Several checkouts (git worktrees) may share one target directory: each gets its own
    // nested folder, named by a hash of its path, so none embeds another's wasm.
    let nested_target = target_root.join(format!("canister-wasm-{:016x}", path_hash(&workspace)));

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "-p",
            "flic-aggregator",
        ])
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&nested_target);
    // Variables cargo sets for this build script describe the host build; they must not
    // leak into the wasm build.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let host_only = key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_FEATURE_")
            || key.starts_with("DEP_")
            || matches!(
                key.as_str(),
                "CARGO_ENCODED_RUSTFLAGS"
                    | "RUSTFLAGS"
                    | "CARGO_TARGET_DIR"
                    | "CARGO_BUILD_TARGET"
                    | "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_CRATE_NAME"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "PROFILE"
                    | "OPT_LEVEL"
                    | "DEBUG"
                    | "NUM_JOBS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "RUSTDOC"
                    | "RUSTC_LINKER"
            );
        if host_only {
            cmd.env_remove(&key);
        }
    }
    // Size and speed matter for a canister, build time does not: LTO across crates and one
    // codegen unit, for this nested build only (native builds keep the fast profile).
    cmd.env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
    if let Ok(flags) = env::var("FLIC_CANISTER_RUSTFLAGS") {
        cmd.env(
            "CARGO_ENCODED_RUSTFLAGS",
            flags.split_whitespace().collect::<Vec<_>>().join("\x1f"),
        );
    }

    let status = cmd
        .status()
        .expect("failed to spawn the nested cargo build of the canister");
    if !status.success() {
        panic!(
            "building the aggregator canister for {TARGET} failed (see the output above); \
             reproduce with: cargo build --release --target {TARGET} -p flic-aggregator"
        );
    }
    let built = nested_target
        .join(TARGET)
        .join("release")
        .join("flic_aggregator.wasm");
    std::fs::copy(&built, &dest)
        .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", built.display(), dest.display()));
}

/// FNV-1a of the workspace path: stable across runs, unlike `DefaultHasher`'s seed.
fn path_hash(path: &Path) -> u64 {
    path.as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        })
}

/// The toolchain file names the target, but rustup only installs it with a new toolchain:
/// add it here when it is missing, or fail with the command that fixes it.
fn ensure_wasm_target(rustc: &str) {
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = |root: &Path| root.join("lib/rustlib").join(TARGET).exists();
    if sysroot.as_deref().is_some_and(installed) {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target with rustup");
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    if !matches!(added, Ok(s) if s.success()) {
        panic!("the {TARGET} target is missing; install it with: rustup target add {TARGET}");
    }
}

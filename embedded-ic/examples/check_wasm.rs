//! Loads a canister wasm into the embedded IC and installs it, reporting missing
//! imports, the install result and its instruction count.
//!
//! `cargo run --release -p flic-embedded-ic --example check_wasm -- CANISTER.wasm [INIT_ARG_HEX]`
//! (without an argument, the init argument is empty Candid, `()`).

use flic_embedded_ic::{EmbeddedIc, InstallMode, Principal};

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: check_wasm CANISTER.wasm [INIT_ARG_HEX]");
        return std::process::ExitCode::from(2);
    };
    let wasm = match std::fs::read(&path) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{path}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let arg = match args.next() {
        Some(h) => hex::decode(h).expect("INIT_ARG_HEX is hex"),
        None => candid::encode_args(()).expect("empty candid"),
    };
    let admin = Principal::from_slice(&[1]);
    let mut ic = EmbeddedIc::new();
    let id = ic.create_canister(vec![admin]);
    let started = std::time::Instant::now();
    let result = ic.install_code(id, &wasm, arg, InstallMode::Install, admin);
    println!(
        "{path}: {} bytes, sha256 {}",
        wasm.len(),
        hex::encode(flic_embedded_ic::wasm_hash(&wasm))
    );
    println!("load + install took {:?}", started.elapsed());
    for line in ic.logs(id) {
        println!("log: {line}");
    }
    match result {
        Ok(out) => {
            println!(
                "installed: {} instructions, heap {} bytes",
                out.instructions,
                ic.heap_size(id).unwrap_or(0)
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            println!("failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! Loading a canister module: check its imports, expose its mutable state, compile once.
//!
//! Rollback must restore every mutable global, but Rust's `__stack_pointer` (and any
//! other global the toolchain keeps private) is not exported, and wasmtime only lets
//! the host read exported globals. So, as the IC's own instrumentation does, the
//! module is rewritten at load: each mutable global it defines is additionally
//! exported as `__flic_global_<index>`, its memory as `__flic_memory`, and its first
//! table (where the callbacks of inter-canister calls are) as `__flic_table`. Only the
//! export section changes; code and data are copied byte for byte, so the
//! instruction counts are those of the module as deployed. Re-instantiating from a
//! snapshot instead would not help: a fresh instance starts from the globals'
//! initial values, not from the committed ones.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest, Sha256};
use wasmparser::{Encoding, ExternalKind, Imports, Parser, Payload, TypeRef};

use crate::error::CallError;
use crate::host::{Host, GLOBAL_EXPORT_PREFIX, MEMORY_EXPORT, TABLE_EXPORT};
use crate::system_api;

/// A module ready to instantiate: compiled, with what the host needs to know of it.
pub(crate) struct Prepared {
    pub hash: [u8; 32],
    /// The module exactly as given (what `save` writes and a hash identifies).
    pub wasm: Arc<Vec<u8>>,
    /// The module linked against the System API, types checked: instantiating is cheap.
    pub pre: wasmtime::InstancePre<Host>,
    /// Names of exported functions of the original module.
    pub exports: BTreeSet<String>,
    /// The module's custom sections (name, contents), in order: parsed once, here.
    pub custom_sections: Vec<(String, Vec<u8>)>,
    /// Export names of the mutable globals, in index order.
    pub global_exports: Vec<String>,
}

impl Prepared {
    pub fn exports(&self, name: &str) -> bool {
        self.exports.contains(name)
    }
}

/// The engine and the System API linker, shared by every host in the process.
pub(crate) struct Runtime {
    pub engine: wasmtime::Engine,
    pub linker: wasmtime::Linker<Host>,
    modules: Mutex<HashMap<[u8; 32], Arc<Prepared>>>,
}

/// The process-wide runtime: one engine, one linker, one compiled-module cache, so a
/// module (the canister wasm of a test suite, say) is compiled once per process.
pub(crate) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let engine =
            wasmtime::Engine::new(&engine_config()).expect("the wasmtime configuration is valid");
        let linker = system_api::linker(&engine);
        Runtime {
            engine,
            linker,
            modules: Mutex::new(HashMap::new()),
        }
    })
}

/// Wasm features as on the IC: deterministic SIMD yes, relaxed SIMD and threads no
/// (threads are not compiled into this wasmtime build), canonical NaNs, wasm32 only.
fn engine_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config
        .consume_fuel(true)
        .wasm_simd(true)
        .wasm_relaxed_simd(false)
        .wasm_memory64(false)
        .wasm_multi_memory(false)
        .wasm_bulk_memory(true)
        .wasm_multi_value(true)
        .cranelift_nan_canonicalization(true);
    config
}

/// SHA-256 of a module, the key of the compile cache and of saved state.
pub fn wasm_hash(wasm: &[u8]) -> [u8; 32] {
    Sha256::digest(wasm).into()
}

impl Runtime {
    /// Checks, rewrites and compiles `wasm`, or returns the cached result.
    pub fn prepare(
        &self,
        wasm: &[u8],
        cache_dir: Option<&Path>,
    ) -> Result<Arc<Prepared>, CallError> {
        let hash = wasm_hash(wasm);
        if let Some(p) = self.modules.lock().expect("module cache lock").get(&hash) {
            return Ok(p.clone());
        }
        let scan = scan(wasm)?;
        check_imports(&scan.imports)?;
        let rewritten = rewrite_exports(wasm, &scan);
        let module = self.compile(&rewritten, &hash, cache_dir)?;
        // Every import is provided (checked above); this checks their types.
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| CallError::InvalidWasm(format!("{e:#}")))?;
        let prepared = Arc::new(Prepared {
            hash,
            wasm: Arc::new(wasm.to_vec()),
            pre,
            exports: scan.function_exports,
            custom_sections: scan.custom_sections,
            global_exports: scan
                .mutable_globals
                .iter()
                .map(|i| format!("{GLOBAL_EXPORT_PREFIX}{i}"))
                .collect(),
        });
        self.modules
            .lock()
            .expect("module cache lock")
            .insert(hash, prepared.clone());
        Ok(prepared)
    }

    pub(crate) fn compile(
        &self,
        wasm: &[u8],
        hash: &[u8; 32],
        cache_dir: Option<&Path>,
    ) -> Result<wasmtime::Module, CallError> {
        let file = cache_dir.map(|dir| cache_file(&self.engine, dir, hash));
        if let Some(file) = &file {
            if file.exists() {
                // SAFETY: the file was written by `Module::serialize` of this same
                // engine configuration (its name carries the engine's compatibility
                // hash, and wasmtime checks it again); the cache directory is the
                // caller's own.
                if let Ok(module) =
                    unsafe { wasmtime::Module::deserialize_file(&self.engine, file) }
                {
                    return Ok(module);
                }
            }
        }
        let module = wasmtime::Module::new(&self.engine, wasm)
            .map_err(|e| CallError::InvalidWasm(format!("{e:#}")))?;
        if let Some(file) = &file {
            // The disk cache is an optimisation: failing to write it is not an error.
            // Written to a file of this process's own, then renamed into place: another
            // process may be reading (mapping) the cache file at this moment, and a file
            // written in place could be read half-written. Found when two `flic` processes
            // compiled a new wasm at once, and one ran a canister whose post_upgrade
            // had not run.
            if let Ok(bytes) = module.serialize() {
                let _ = std::fs::create_dir_all(file.parent().expect("cache file has a parent"));
                static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let tmp = file.with_extension(format!("tmp.{}.{n}", std::process::id()));
                if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, file).is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
            }
        }
        Ok(module)
    }
}

fn cache_file(engine: &wasmtime::Engine, dir: &Path, hash: &[u8; 32]) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    dir.join(format!("{}-{:016x}.cwasm", hex::encode(hash), h.finish()))
}

#[derive(Default)]
struct Scan {
    imports: Vec<(String, String, bool)>,
    function_exports: BTreeSet<String>,
    custom_sections: Vec<(String, Vec<u8>)>,
    mutable_globals: Vec<u32>,
    memories: u32,
    /// Tables, imported or defined: the first holds the callbacks of inter-canister calls.
    tables: u32,
    /// (section id, header start, body range) of every section, in order.
    sections: Vec<(u8, usize, std::ops::Range<usize>)>,
    export_section: Option<usize>,
}

fn invalid(e: impl std::fmt::Display) -> CallError {
    CallError::InvalidWasm(e.to_string())
}

fn scan(wasm: &[u8]) -> Result<Scan, CallError> {
    let mut scan = Scan::default();
    let mut imported_globals = 0u32;
    let mut previous_end = 8usize;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(invalid)?;
        if let Some((id, range)) = payload.as_section() {
            if id == 7 {
                scan.export_section = Some(scan.sections.len());
            }
            scan.sections.push((id, previous_end, range.clone()));
            previous_end = range.end;
        }
        match payload {
            Payload::Version { encoding, .. } if encoding != Encoding::Module => {
                return Err(invalid("a component, not a core wasm module"));
            }
            Payload::CustomSection(c) => {
                scan.custom_sections
                    .push((c.name().to_string(), c.data().to_vec()));
            }
            Payload::ImportSection(reader) => {
                for group in reader {
                    let mut push = |module: &str, name: &str, ty: TypeRef| {
                        if matches!(ty, TypeRef::Global(_)) {
                            imported_globals += 1;
                        }
                        if matches!(ty, TypeRef::Table(_)) {
                            scan.tables += 1;
                        }
                        scan.imports.push((
                            module.to_string(),
                            name.to_string(),
                            matches!(ty, TypeRef::Func(_)),
                        ));
                    };
                    match group.map_err(invalid)? {
                        Imports::Single(_, import) => push(import.module, import.name, import.ty),
                        Imports::Compact1 { module, items } => {
                            for item in items {
                                let item = item.map_err(invalid)?;
                                push(module, item.name, item.ty);
                            }
                        }
                        Imports::Compact2 { module, ty, names } => {
                            for name in names {
                                push(module, name.map_err(invalid)?, ty);
                            }
                        }
                    }
                }
            }
            Payload::MemorySection(reader) => scan.memories = reader.count(),
            Payload::TableSection(reader) => scan.tables += reader.count(),
            Payload::GlobalSection(reader) => {
                for (i, global) in reader.into_iter().enumerate() {
                    if global.map_err(invalid)?.ty.mutable {
                        scan.mutable_globals.push(imported_globals + i as u32);
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(invalid)?;
                    if export.kind == ExternalKind::Func {
                        scan.function_exports.insert(export.name.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(scan)
}

/// Fails with every import this host cannot satisfy, by name.
fn check_imports(imports: &[(String, String, bool)]) -> Result<(), CallError> {
    let mut unknown = Vec::new();
    let mut not_modelled = Vec::new();
    for (module, name, is_func) in imports {
        let full = format!("{module}.{name}");
        if module == "ic0" && *is_func && system_api::PROVIDED.contains(&name.as_str()) {
            continue;
        }
        if module == "ic0" && system_api::NOT_MODELLED.contains(&name.as_str()) {
            not_modelled.push(full);
        } else {
            unknown.push(full);
        }
    }
    if unknown.is_empty() && not_modelled.is_empty() {
        Ok(())
    } else {
        Err(CallError::MissingImports {
            unknown,
            not_modelled,
        })
    }
}

fn write_leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_leb(bytes: &[u8]) -> (u64, usize) {
    let (mut v, mut shift) = (0u64, 0);
    for (i, b) in bytes.iter().enumerate() {
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return (v, i + 1);
        }
        shift += 7;
    }
    (v, bytes.len())
}

/// Returns `wasm` with the memory and the mutable globals also exported. The new
/// entries are appended to the export section (created if absent).
fn rewrite_exports(wasm: &[u8], scan: &Scan) -> Vec<u8> {
    let mut extra: Vec<(String, u8, u32)> = scan
        .mutable_globals
        .iter()
        .map(|i| (format!("{GLOBAL_EXPORT_PREFIX}{i}"), 0x03, *i))
        .collect();
    if scan.memories > 0 {
        extra.push((MEMORY_EXPORT.to_string(), 0x02, 0));
    }
    if scan.tables > 0 {
        extra.push((TABLE_EXPORT.to_string(), 0x01, 0));
    }
    let mut entries = Vec::new();
    for (name, kind, index) in &extra {
        write_leb(&mut entries, name.len() as u64);
        entries.extend_from_slice(name.as_bytes());
        entries.push(*kind);
        write_leb(&mut entries, u64::from(*index));
    }
    let (old_count, old_entries, replace) = match scan.export_section {
        Some(i) => {
            let (_, header, range) = &scan.sections[i];
            let (count, len) = read_leb(&wasm[range.clone()]);
            (
                count,
                &wasm[range.start + len..range.end],
                *header..range.end,
            )
        }
        None => {
            // The export section goes before start, element, data count, code, data.
            let at = scan
                .sections
                .iter()
                .find(|(id, _, _)| matches!(id, 8..=12))
                .map_or(wasm.len(), |(_, header, _)| *header);
            (0, &[][..], at..at)
        }
    };
    let mut body = Vec::new();
    write_leb(&mut body, old_count + extra.len() as u64);
    body.extend_from_slice(old_entries);
    body.extend_from_slice(&entries);
    let mut out = Vec::with_capacity(wasm.len() + body.len() + 8);
    out.extend_from_slice(&wasm[..replace.start]);
    out.push(7);
    write_leb(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    out.extend_from_slice(&wasm[replace.end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fuelled_store() -> wasmtime::Store<()> {
        let mut store = wasmtime::Store::new(&runtime().engine, ());
        store.set_fuel(1_000_000).unwrap();
        store
    }

    #[test]
    fn mutable_globals_and_memory_are_exported_when_there_is_no_export_section() {
        let wasm = wat::parse_str(
            r#"(module
                (memory 1)
                (global (mut i32) (i32.const 5))
                (global i32 (i32.const 1))
                (global (mut i64) (i64.const 2))
                (func (result i32) i32.const 0)
                (data (i32.const 0) "x"))"#,
        )
        .unwrap();
        let scan = scan(&wasm).unwrap();
        assert_eq!(scan.mutable_globals, vec![0, 2]);
        let rewritten = rewrite_exports(&wasm, &scan);
        let module = wasmtime::Module::new(&runtime().engine, &rewritten).unwrap();
        let mut store = fuelled_store();
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let g0 = instance.get_global(&mut store, "__flic_global_0").unwrap();
        let g2 = instance.get_global(&mut store, "__flic_global_2").unwrap();
        assert_eq!(g0.get(&mut store).i32(), Some(5));
        assert_eq!(g2.get(&mut store).i64(), Some(2));
        assert!(
            instance.get_global(&mut store, "__flic_global_1").is_none(),
            "immutable: not exported"
        );
        let memory = instance.get_memory(&mut store, MEMORY_EXPORT).unwrap();
        assert_eq!(memory.data(&store)[0], b'x');
    }

    #[test]
    fn existing_exports_are_kept() {
        let wasm = wat::parse_str(
            r#"(module (global $g (mut i32) (i32.const 3)) (memory 1)
                (func (export "f") (result i32) global.get $g) (export "g" (global $g)))"#,
        )
        .unwrap();
        let rewritten = rewrite_exports(&wasm, &scan(&wasm).unwrap());
        let module = wasmtime::Module::new(&runtime().engine, &rewritten).unwrap();
        let names: Vec<_> = module.exports().map(|e| e.name().to_string()).collect();
        assert_eq!(names, ["f", "g", "__flic_global_0", MEMORY_EXPORT]);
    }

    #[test]
    fn modules_are_compiled_once_per_process() {
        let wasm = wat::parse_str(r#"(module (memory 1) (func (export "canister_update once")))"#)
            .unwrap();
        let a = runtime().prepare(&wasm, None).unwrap();
        let b = runtime().prepare(&wasm, None).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn compiled_modules_round_trip_through_the_disk_cache() {
        let dir = tempfile::tempdir().unwrap();
        let wasm =
            wat::parse_str(r#"(module (func (export "x") (result i32) i32.const 9))"#).unwrap();
        let hash = wasm_hash(&wasm);
        runtime().compile(&wasm, &hash, Some(dir.path())).unwrap();
        let file = cache_file(&runtime().engine, dir.path(), &hash);
        assert!(file.exists());
        // A second compile loads the file; a corrupt file falls back to compiling.
        let module = runtime().compile(&wasm, &hash, Some(dir.path())).unwrap();
        let mut store = fuelled_store();
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let x = instance.get_typed_func::<(), i32>(&mut store, "x").unwrap();
        assert_eq!(x.call(&mut store, ()).unwrap(), 9);
        // The loaded module maps the file: replace it (as the cache itself does) rather
        // than truncate it under the mapping, which faults (SIGBUS) on the next access.
        drop(store);
        drop(module);
        let corrupt = file.with_extension("corrupt");
        std::fs::write(&corrupt, b"not a module").unwrap();
        std::fs::rename(&corrupt, &file).unwrap();
        assert!(runtime().compile(&wasm, &hash, Some(dir.path())).is_ok());
        // Rewriting the cache leaves no temporary file behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}

//! One canister: its system state, its live instance, and transactional execution.
//!
//! A message runs against a snapshot: before it starts, the heap is copied and the
//! mutable globals are read (through the exports added at load, see `module.rs`),
//! the small system fields (certified data, timer, cycles) are kept, and stable
//! memory opens a page journal. Commit drops the snapshot; rollback writes it back.
//! The heap copy is O(heap size) per message, acceptable for canister heaps of a few
//! tens of MiB; stable memory, which may be large, costs only the pages written.

use std::sync::Arc;

use wasmtime::{Memory, Store, Val};

use crate::host::{Host, SystemState, MEMORY_EXPORT, TABLE_EXPORT};
use crate::message::MessageContext;
use crate::module::{runtime, Prepared};
use crate::system_api::HostStop;

/// How a message ended, before the host decides what that means for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    Trap(String),
    OutOfInstructions,
}

/// The result of running one entry point.
pub(crate) struct Exec {
    pub outcome: Result<(), Stop>,
    pub ctx: MessageContext,
    pub instructions: u64,
}

/// A live instance of a canister module in its own store.
pub(crate) struct LiveInstance {
    pub prepared: Arc<Prepared>,
    store: Store<Host>,
    instance: wasmtime::Instance,
}

/// What a rollback restores.
pub(crate) struct Snapshot {
    heap: Vec<u8>,
    globals: Vec<Val>,
    certified_data: Vec<u8>,
    global_timer: u64,
    cycles: u128,
}

impl LiveInstance {
    /// Instantiates `prepared` (running its wasm start function, if any, with `fuel`).
    pub fn new(prepared: Arc<Prepared>, fuel: u64) -> Result<(LiveInstance, u64), Stop> {
        let rt = runtime();
        let mut store = Store::new(&rt.engine, Host::default());
        store
            .set_fuel(fuel)
            .map_err(|e| Stop::Trap(format!("{e:#}")))?;
        let instance = match prepared.pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(e) => return Err(classify(e)),
        };
        let used = fuel - store.get_fuel().unwrap_or(0);
        Ok((
            LiveInstance {
                prepared,
                store,
                instance,
            },
            used,
        ))
    }

    pub fn exports(&self, name: &str) -> bool {
        self.prepared.exports(name)
    }

    fn memory(&mut self) -> Option<Memory> {
        self.instance.get_memory(&mut self.store, MEMORY_EXPORT)
    }

    /// Runs the callback at `fun` in the module's table with argument `env` (a reply,
    /// reject or cleanup callback), with `ctx`, given `fuel` instructions.
    pub fn call_callback(
        &mut self,
        sys: &mut SystemState,
        (fun, env): (u32, u32),
        ctx: MessageContext,
        fuel: u64,
    ) -> Exec {
        let func = self
            .instance
            .get_table(&mut self.store, TABLE_EXPORT)
            .and_then(|t| t.get(&mut self.store, u64::from(fun)))
            .and_then(|r| r.as_func().flatten().copied())
            .and_then(|f| f.typed::<i32, ()>(&self.store).ok());
        let Some(func) = func else {
            return Exec {
                outcome: Err(Stop::Trap(format!(
                    "the callback at table index {fun} is not a function of one i32"
                ))),
                ctx,
                instructions: 0,
            };
        };
        self.run(sys, ctx, fuel, |store| func.call(store, env as i32))
    }

    /// Runs the exported function `export` with `ctx`, given `fuel` instructions.
    /// `sys` moves into the store for the call and back out after.
    pub fn call(
        &mut self,
        sys: &mut SystemState,
        export: &str,
        ctx: MessageContext,
        fuel: u64,
    ) -> Exec {
        let func = match self
            .instance
            .get_typed_func::<(), ()>(&mut self.store, export)
        {
            Ok(f) => f,
            Err(e) => {
                return Exec {
                    outcome: Err(Stop::Trap(format!(
                        "export `{export}` is not a function of no arguments: {e:#}"
                    ))),
                    ctx,
                    instructions: 0,
                }
            }
        };
        self.run(sys, ctx, fuel, |store| func.call(store, ()))
    }

    fn run(
        &mut self,
        sys: &mut SystemState,
        mut ctx: MessageContext,
        fuel: u64,
        body: impl FnOnce(&mut Store<Host>) -> wasmtime::Result<()>,
    ) -> Exec {
        ctx.fuel_at_start = fuel;
        self.store.set_fuel(fuel).expect("fuel is enabled");
        let host = self.store.data_mut();
        host.sys = std::mem::take(sys);
        host.msg = Some(ctx);
        let result = body(&mut self.store);
        let left = self.store.get_fuel().expect("fuel is enabled");
        let host = self.store.data_mut();
        *sys = std::mem::take(&mut host.sys);
        let ctx = host
            .msg
            .take()
            .expect("the message context stays in the store during a call");
        Exec {
            outcome: result.map_err(classify),
            ctx,
            instructions: fuel - left,
        }
    }

    /// Takes what a rollback needs to restore the heap, globals and system fields;
    /// also opens the stable-memory journal.
    pub fn snapshot(&mut self, sys: &mut SystemState) -> Snapshot {
        let heap = match self.memory() {
            Some(m) => m.data(&self.store).to_vec(),
            None => Vec::new(),
        };
        let globals = self
            .prepared
            .global_exports
            .clone()
            .iter()
            .map(|name| {
                self.instance
                    .get_global(&mut self.store, name)
                    .expect("mutable globals are exported at load")
                    .get(&mut self.store)
            })
            .collect();
        sys.stable.begin();
        Snapshot {
            heap,
            globals,
            certified_data: sys.certified_data.clone(),
            global_timer: sys.global_timer,
            cycles: sys.cycles,
        }
    }

    /// Restores the state of `snapshot`. A heap that grew cannot shrink in place, so
    /// then the instance is rebuilt and the snapshot copied into it.
    pub fn rollback(&mut self, sys: &mut SystemState, snapshot: Snapshot) {
        restore_system(sys, &snapshot);
        let grew = self
            .memory()
            .is_some_and(|m| m.data_size(&self.store) != snapshot.heap.len());
        if grew {
            let (fresh, _) =
                LiveInstance::new(self.prepared.clone(), u64::MAX / 2).unwrap_or_else(|e| {
                    panic!("re-instantiating a module that instantiated before failed: {e:?}")
                });
            *self = fresh;
            let memory = self.memory().expect("the module has a memory");
            let have = memory.data_size(&self.store) as u64;
            let want = snapshot.heap.len() as u64;
            if want > have {
                memory
                    .grow(&mut self.store, (want - have) / crate::stable::PAGE_SIZE)
                    .expect("growing to a size the memory had before");
            }
        }
        if let Some(memory) = self.memory() {
            memory
                .data_mut(&mut self.store)
                .copy_from_slice(&snapshot.heap);
        }
        for (name, value) in self
            .prepared
            .global_exports
            .clone()
            .iter()
            .zip(snapshot.globals)
        {
            self.instance
                .get_global(&mut self.store, name)
                .expect("mutable globals are exported at load")
                .set(&mut self.store, value)
                .expect("a global takes back a value of its own type");
        }
    }

    /// Keeps the changes since `snapshot`.
    pub fn commit(sys: &mut SystemState, _snapshot: Snapshot) {
        sys.stable.commit();
    }

    /// Current heap size in bytes.
    pub fn heap_size(&mut self) -> u64 {
        self.memory().map_or(0, |m| m.data_size(&self.store) as u64)
    }
}

fn restore_system(sys: &mut SystemState, snapshot: &Snapshot) {
    sys.stable.rollback();
    sys.certified_data = snapshot.certified_data.clone();
    sys.global_timer = snapshot.global_timer;
    sys.cycles = snapshot.cycles;
}

fn classify(error: wasmtime::Error) -> Stop {
    if let Some(stop) = error.downcast_ref::<HostStop>() {
        return match stop {
            HostStop::Trap(message) => Stop::Trap(message.clone()),
            HostStop::OutOfInstructions => Stop::OutOfInstructions,
        };
    }
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::OutOfFuel => Stop::OutOfInstructions,
            other => Stop::Trap(format!("wasm trap: {other}")),
        };
    }
    Stop::Trap(format!("{error:#}"))
}

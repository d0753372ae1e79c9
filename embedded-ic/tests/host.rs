//! Host tests on tiny hand-written canisters: one behaviour per test.

use std::time::Duration;

use flic_embedded_ic::{
    CallError, CallOutcome, Config, EmbeddedIc, HostCertificate, InstallMode, InstructionLimits,
    Principal, SystemTask,
};

const COUNTER: &str = include_str!("canisters/counter.wat");

fn admin() -> Principal {
    Principal::from_slice(&[0xad])
}

fn user() -> Principal {
    Principal::from_slice(&[0x05, 0xe5])
}

fn counter_wasm() -> Vec<u8> {
    wat::parse_str(COUNTER).expect("counter.wat parses")
}

fn setup_with(config: Config) -> (EmbeddedIc, Principal) {
    let mut ic = EmbeddedIc::with_config(config);
    let id = ic.create_canister(vec![admin()]);
    ic.install_code(
        id,
        &counter_wasm(),
        b"init-arg".to_vec(),
        InstallMode::Install,
        admin(),
    )
    .expect("install succeeds");
    (ic, id)
}

fn setup() -> (EmbeddedIc, Principal) {
    setup_with(Config::default())
}

fn u64s(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// (heap counter, global counter, stable copy of the counter).
fn state(ic: &mut EmbeddedIc, id: Principal) -> (u64, u64, u64) {
    let v = u64s(&ic.query(id, user(), "get", vec![]).unwrap().reply);
    (v[0], v[1], v[2])
}

fn call(
    ic: &mut EmbeddedIc,
    id: Principal,
    method: &str,
    arg: Vec<u8>,
) -> Result<CallOutcome, CallError> {
    ic.update(id, user(), method, arg)
}

// --- install, update, query ------------------------------------------------------------

#[test]
fn init_receives_the_install_argument() {
    let (mut ic, id) = setup();
    let v = ic.query(id, user(), "init_arg", vec![]).unwrap().reply;
    assert_eq!(u64s(&v[..8]), vec![8]);
    assert_eq!(&v[8..16], b"init-arg");
}

#[test]
fn update_commits_heap_global_and_stable() {
    let (mut ic, id) = setup();
    call(&mut ic, id, "inc", vec![]).unwrap();
    call(&mut ic, id, "inc", vec![]).unwrap();
    assert_eq!(state(&mut ic, id), (2, 2, 2));
}

#[test]
fn trap_rolls_back_heap_global_and_stable() {
    let (mut ic, id) = setup();
    call(&mut ic, id, "inc", vec![]).unwrap();
    let err = call(&mut ic, id, "inc_then_trap", vec![]).unwrap_err();
    match err {
        CallError::Trap {
            message,
            instructions,
            ..
        } => {
            assert_eq!(message, "boom");
            assert!(instructions > 0);
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_eq!(state(&mut ic, id), (1, 1, 1));
}

#[test]
fn trap_after_heap_growth_restores_size_and_globals() {
    let (mut ic, id) = setup();
    call(&mut ic, id, "inc", vec![]).unwrap();
    assert_eq!(ic.heap_size(id), Some(65536));
    assert!(matches!(
        call(&mut ic, id, "grow_then_trap", vec![]),
        Err(CallError::Trap { .. })
    ));
    assert_eq!(ic.heap_size(id), Some(65536));
    assert_eq!(state(&mut ic, id), (1, 1, 1));
    // The rebuilt instance keeps working and committing.
    call(&mut ic, id, "inc", vec![]).unwrap();
    assert_eq!(state(&mut ic, id), (2, 2, 2));
}

#[test]
fn query_changes_are_discarded() {
    let (mut ic, id) = setup();
    call(&mut ic, id, "inc", vec![]).unwrap();
    let seen = ic.query(id, user(), "inc_in_query", vec![]).unwrap();
    assert_eq!(u64s(&seen.reply), vec![2], "the query saw its own write");
    assert_eq!(state(&mut ic, id), (1, 1, 1));
}

#[test]
fn query_method_called_as_update_is_not_committed() {
    let (mut ic, id) = setup();
    let out = call(&mut ic, id, "inc_in_query", vec![]).unwrap();
    assert_eq!(u64s(&out.reply), vec![1]);
    assert_eq!(state(&mut ic, id), (0, 0, 0));
}

#[test]
fn reject_is_a_typed_error_and_keeps_state_as_on_the_ic() {
    let (mut ic, id) = setup();
    match call(&mut ic, id, "inc_then_reject", vec![]).unwrap_err() {
        CallError::Reject {
            message,
            instructions,
            ..
        } => {
            assert_eq!(message, "nope");
            assert!(instructions > 0);
        }
        other => panic!("expected a reject, got {other:?}"),
    }
    assert_eq!(state(&mut ic, id), (1, 1, 1));
}

#[test]
fn method_without_reply_is_reported_and_committed() {
    let (mut ic, id) = setup();
    assert!(matches!(
        call(&mut ic, id, "inc_silently", vec![]),
        Err(CallError::DidNotReply { .. })
    ));
    assert_eq!(state(&mut ic, id), (1, 1, 1));
}

#[test]
fn unknown_methods_are_method_not_found() {
    let (mut ic, id) = setup();
    assert!(matches!(
        call(&mut ic, id, "missing", vec![]),
        Err(CallError::MethodNotFound { kind: "update", .. })
    ));
    // An update method is not a query.
    assert!(matches!(
        ic.query(id, user(), "inc", vec![]),
        Err(CallError::MethodNotFound { kind: "query", .. })
    ));
}

#[test]
fn inspect_message_can_refuse_an_update() {
    let (mut ic, id) = setup();
    match call(&mut ic, id, "forbidden", vec![]).unwrap_err() {
        CallError::InspectRejected {
            message,
            instructions,
            ..
        } => {
            assert!(message.contains("accept_message"), "{message}");
            assert!(instructions > 0);
        }
        other => panic!("expected an inspect rejection, got {other:?}"),
    }
    assert_eq!(state(&mut ic, id), (0, 0, 0), "the method never ran");
}

#[test]
fn argument_and_reply_bytes_round_trip() {
    let (mut ic, id) = setup();
    let out = call(&mut ic, id, "echo", b"hello".to_vec()).unwrap();
    assert_eq!(out.reply, b"hello");
}

// --- errors at load ------------------------------------------------------------------------

#[test]
fn missing_imports_are_listed_by_name_at_load() {
    let wasm = wat::parse_str(
        r#"(module
            (import "ic0" "call_cycles_add" (func (param i64)))
            (import "ic0" "mint_cycles" (func (param i64) (result i64)))
            (import "ic0" "msg_reply" (func))
            (import "ic0" "no_such_function" (func))
            (import "env" "foo" (func))
            (memory 1))"#,
    )
    .unwrap();
    let mut ic = EmbeddedIc::new();
    let id = ic.create_canister(vec![admin()]);
    match ic
        .install_code(id, &wasm, vec![], InstallMode::Install, admin())
        .unwrap_err()
    {
        CallError::MissingImports {
            unknown,
            not_modelled,
        } => {
            assert_eq!(unknown, vec!["ic0.no_such_function", "env.foo"]);
            assert_eq!(not_modelled, vec!["ic0.call_cycles_add", "ic0.mint_cycles"]);
        }
        other => panic!("expected missing imports, got {other:?}"),
    }
    assert_eq!(ic.module_hash(id), None, "nothing was installed");
}

#[test]
fn an_import_with_the_wrong_type_is_rejected_at_load() {
    let wasm =
        wat::parse_str(r#"(module (import "ic0" "msg_reply" (func (param i32))) (memory 1))"#)
            .unwrap();
    let mut ic = EmbeddedIc::new();
    let id = ic.create_canister(vec![admin()]);
    match ic
        .install_code(id, &wasm, vec![], InstallMode::Install, admin())
        .unwrap_err()
    {
        CallError::InvalidWasm(message) => assert!(message.contains("msg_reply"), "{message}"),
        other => panic!("expected an invalid module, got {other:?}"),
    }
}

#[test]
fn invalid_wasm_is_rejected_at_load() {
    let mut ic = EmbeddedIc::new();
    let id = ic.create_canister(vec![admin()]);
    let err = ic.install_code(
        id,
        b"\0asm\x01\0\0\0garbage",
        vec![],
        InstallMode::Install,
        admin(),
    );
    assert!(matches!(err, Err(CallError::InvalidWasm(_))), "{err:?}");
}

#[test]
fn relaxed_simd_is_not_available() {
    let wasm = wat::parse_str(
        r#"(module (func (export "canister_update f")
              (drop (i32x4.relaxed_trunc_f32x4_s (v128.const i32x4 0 0 0 0)))))"#,
    )
    .unwrap();
    let mut ic = EmbeddedIc::new();
    let id = ic.create_canister(vec![admin()]);
    let err = ic.install_code(id, &wasm, vec![], InstallMode::Install, admin());
    assert!(matches!(err, Err(CallError::InvalidWasm(_))), "{err:?}");
}

#[test]
fn install_code_requires_a_controller_and_an_empty_canister() {
    let mut ic = EmbeddedIc::new();
    let id = ic.create_canister(vec![admin()]);
    assert!(matches!(
        ic.install_code(id, &counter_wasm(), vec![], InstallMode::Install, user()),
        Err(CallError::NotController { .. })
    ));
    ic.install_code(id, &counter_wasm(), vec![], InstallMode::Install, admin())
        .unwrap();
    assert!(matches!(
        ic.install_code(id, &counter_wasm(), vec![], InstallMode::Install, admin()),
        Err(CallError::CodeAlreadyInstalled(_))
    ));
}

// --- upgrades ----------------------------------------------------------------------------

#[test]
fn upgrade_keeps_stable_memory_and_resets_the_heap() {
    let (mut ic, id) = setup();
    for _ in 0..3 {
        call(&mut ic, id, "inc", vec![]).unwrap();
    }
    let out = ic
        .install_code(
            id,
            &counter_wasm(),
            b"up".to_vec(),
            InstallMode::Upgrade,
            admin(),
        )
        .unwrap();
    assert!(out.instructions > 0);
    // Heap and global start afresh; stable memory still holds the counter copy.
    assert_eq!(state(&mut ic, id), (0, 0, 3));
    // post_upgrade got its argument and read what pre_upgrade saved.
    let info = u64s(&ic.query(id, user(), "upgrade_info", vec![]).unwrap().reply);
    assert_eq!(info, vec![2, 3]);
}

#[test]
fn failed_upgrade_leaves_the_canister_as_it_was() {
    let (mut ic, id) = setup();
    call(&mut ic, id, "inc", vec![]).unwrap();
    let hash = ic.module_hash(id);
    let bad = wat::parse_str(
        r#"(module
            (import "ic0" "trap" (func $trap (param i32 i32)))
            (memory 1)
            (func (export "canister_post_upgrade") (call $trap (i32.const 0) (i32.const 3))))"#,
    )
    .unwrap();
    let err = ic
        .install_code(id, &bad, vec![], InstallMode::Upgrade, admin())
        .unwrap_err();
    assert!(matches!(err, CallError::Trap { .. }), "{err:?}");
    assert_eq!(ic.module_hash(id), hash);
    assert_eq!(state(&mut ic, id), (1, 1, 1));
    // pre_upgrade's write to stable[8..16] was rolled back too.
    assert_eq!(ic.read_stable_memory(id, 8, 8), Some(vec![0; 8]));
}

#[test]
fn reinstall_wipes_stable_memory_and_heap() {
    let (mut ic, id) = setup();
    call(&mut ic, id, "inc", vec![]).unwrap();
    ic.install_code(
        id,
        &counter_wasm(),
        b"again".to_vec(),
        InstallMode::Reinstall,
        admin(),
    )
    .unwrap();
    assert_eq!(ic.stable_memory_size(id), Some(0));
    assert_eq!(state(&mut ic, id), (0, 0, 0));
    let v = ic.query(id, user(), "init_arg", vec![]).unwrap().reply;
    assert_eq!(&v[8..13], b"again");
}

// --- time and timers -------------------------------------------------------------------------

#[test]
fn time_is_set_by_the_host() {
    let (mut ic, id) = setup();
    let t0 = ic.time();
    assert_eq!(
        u64s(&ic.query(id, user(), "now", vec![]).unwrap().reply),
        vec![t0]
    );
    ic.advance_time(Duration::from_secs(5));
    assert_eq!(
        u64s(&ic.query(id, user(), "now", vec![]).unwrap().reply),
        vec![t0 + 5_000_000_000]
    );
}

#[test]
#[should_panic(expected = "time must not go backwards")]
fn time_cannot_go_backwards() {
    let mut ic = EmbeddedIc::new();
    let t = ic.time();
    ic.set_time(t - 1);
}

#[test]
fn global_timer_fires_once_time_passes_it() {
    let (mut ic, id) = setup();
    let due = ic.time() + 10_000_000_000;
    let previous = call(&mut ic, id, "set_timer_at", due.to_le_bytes().to_vec()).unwrap();
    assert_eq!(u64s(&previous.reply), vec![0], "no timer was set before");
    assert!(ic.advance_time(Duration::from_secs(5)).is_empty());
    assert_eq!(
        u64s(&ic.query(id, user(), "fired", vec![]).unwrap().reply),
        vec![0]
    );
    let outcomes = ic.advance_time(Duration::from_secs(6));
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].task, SystemTask::GlobalTimer);
    assert!(outcomes[0].result.as_ref().unwrap().instructions > 0);
    assert_eq!(
        u64s(&ic.query(id, user(), "fired", vec![]).unwrap().reply),
        vec![1]
    );
    assert_eq!(ic.global_timer(id), Some(0), "a timer fires once");
    assert!(ic.tick().is_empty());
}

#[test]
fn trapping_timer_is_rolled_back_and_stays_deactivated() {
    // The handler re-arms the timer and bumps a counter, then traps: both undone.
    let wasm = wat::parse_str(
        r#"(module
            (import "ic0" "global_timer_set" (func $set (param i64) (result i64)))
            (import "ic0" "trap" (func $trap (param i32 i32)))
            (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
            (import "ic0" "msg_reply" (func $reply))
            (memory 1)
            (func (export "canister_init") (drop (call $set (i64.const 1))))
            (func (export "canister_global_timer")
              (i64.store (i32.const 0) (i64.const 1))
              (drop (call $set (i64.const 5)))
              (call $trap (i32.const 0) (i32.const 0)))
            (func (export "canister_query ran") (call $append (i32.const 0) (i32.const 8)) (call $reply)))"#,
    )
    .unwrap();
    let mut ic = EmbeddedIc::new();
    let id = ic.create_canister(vec![admin()]);
    ic.install_code(id, &wasm, vec![], InstallMode::Install, admin())
        .unwrap();
    let outcomes = ic.tick();
    assert_eq!(outcomes.len(), 1);
    assert!(matches!(outcomes[0].result, Err(CallError::Trap { .. })));
    assert_eq!(ic.global_timer(id), Some(0));
    assert_eq!(
        u64s(&ic.query(id, user(), "ran", vec![]).unwrap().reply),
        vec![0]
    );
    assert!(ic.tick().is_empty());
}

#[test]
fn global_timer_set_returns_the_previous_value() {
    let (mut ic, id) = setup();
    call(&mut ic, id, "set_timer_at", 77u64.to_le_bytes().to_vec()).unwrap();
    let previous = call(&mut ic, id, "set_timer_at", 0u64.to_le_bytes().to_vec()).unwrap();
    assert_eq!(u64s(&previous.reply), vec![77]);
    assert_eq!(ic.global_timer(id), Some(0));
}

#[test]
fn upgrade_clears_the_global_timer() {
    let (mut ic, id) = setup();
    let due = ic.time() + 1_000;
    call(&mut ic, id, "set_timer_at", due.to_le_bytes().to_vec()).unwrap();
    ic.install_code(id, &counter_wasm(), vec![], InstallMode::Upgrade, admin())
        .unwrap();
    assert_eq!(ic.global_timer(id), Some(0));
    assert!(ic.advance_time(Duration::from_secs(1)).is_empty());
}

#[test]
fn global_timer_cannot_be_set_in_a_query() {
    let (mut ic, id) = setup();
    match ic
        .query(id, user(), "set_timer_in_query", vec![])
        .unwrap_err()
    {
        CallError::Trap { message, .. } => assert!(
            message.contains("cannot be executed in query mode"),
            "{message}"
        ),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn heartbeat_runs_every_tick_and_commits() {
    let wasm = wat::parse_str(
        r#"(module
            (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
            (import "ic0" "msg_reply" (func $reply))
            (memory 1)
            (func (export "canister_heartbeat")
              (i64.store (i32.const 0) (i64.add (i64.load (i32.const 0)) (i64.const 1))))
            (func (export "canister_query beats") (call $append (i32.const 0) (i32.const 8)) (call $reply)))"#,
    )
    .unwrap();
    let mut ic = EmbeddedIc::new();
    let id = ic.create_canister(vec![admin()]);
    ic.install_code(id, &wasm, vec![], InstallMode::Install, admin())
        .unwrap();
    assert_eq!(ic.tick().len(), 1);
    assert_eq!(
        ic.advance_time(Duration::from_secs(1))[0].task,
        SystemTask::Heartbeat
    );
    assert_eq!(
        u64s(&ic.query(id, user(), "beats", vec![]).unwrap().reply),
        vec![2]
    );
}

// --- identity and balance --------------------------------------------------------------------

#[test]
fn caller_is_the_sender_of_each_call() {
    let (mut ic, id) = setup();
    assert_eq!(
        ic.update(id, user(), "whoami", vec![]).unwrap().reply,
        user().as_slice()
    );
    assert_eq!(
        ic.update(id, admin(), "whoami", vec![]).unwrap().reply,
        admin().as_slice()
    );
}

#[test]
fn canister_sees_its_own_id() {
    let (mut ic, id) = setup();
    assert_eq!(
        ic.query(id, user(), "self", vec![]).unwrap().reply,
        id.as_slice()
    );
}

#[test]
fn is_controller_reflects_the_controllers() {
    let (mut ic, id) = setup();
    assert_eq!(
        ic.query(id, admin(), "caller_is_controller", vec![])
            .unwrap()
            .reply,
        vec![1]
    );
    assert_eq!(
        ic.query(id, user(), "caller_is_controller", vec![])
            .unwrap()
            .reply,
        vec![0]
    );
    ic.set_controllers(id, vec![user()]).unwrap();
    assert_eq!(
        ic.query(id, user(), "caller_is_controller", vec![])
            .unwrap()
            .reply,
        vec![1]
    );
}

#[test]
fn cycle_balance_is_settable() {
    let (mut ic, id) = setup();
    ic.set_cycle_balance(id, (1u128 << 70) + 5).unwrap();
    let reply = ic.query(id, user(), "balance", vec![]).unwrap().reply;
    assert_eq!(
        u128::from_le_bytes(reply.try_into().unwrap()),
        (1u128 << 70) + 5
    );
}

// --- certification ---------------------------------------------------------------------------

#[test]
fn certified_data_is_stored_and_certified_in_queries_only() {
    let (mut ic, id) = setup();
    ic.set_certificate_issuer(Box::new(flic_embedded_ic::HostCertificateIssuer));
    call(&mut ic, id, "certify", b"root-hash".to_vec()).unwrap();
    assert_eq!(ic.certified_data(id), Some(&b"root-hash"[..]));

    let reply = ic.query(id, user(), "certificate", vec![]).unwrap().reply;
    assert_eq!(reply[0], 1, "present in a query");
    let cert = HostCertificate::parse(&reply[1..]).expect("a host certificate");
    assert_eq!(cert.certified_data, b"root-hash");
    assert_eq!(cert.canister, id);
    assert_eq!(cert.time_ns, ic.time());

    let reply = call(&mut ic, id, "certificate_in_update", vec![])
        .unwrap()
        .reply;
    assert_eq!(reply, vec![0], "absent in an update");
    match call(&mut ic, id, "certificate_size_in_update", vec![]).unwrap_err() {
        CallError::Trap { message, .. } => {
            assert!(message.contains("data_certificate_size"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn default_certificates_are_ic_format_and_signed_by_the_root_key() {
    let (mut ic, id) = setup();
    call(&mut ic, id, "certify", b"root-hash".to_vec()).unwrap();
    let reply = ic.query(id, user(), "certificate", vec![]).unwrap().reply;
    assert_eq!(reply[0], 1, "present in a query");
    let cert: ic_certification::Certificate =
        serde_cbor::from_slice(&reply[1..]).expect("a CBOR IC certificate");
    assert_eq!(
        cert.tree
            .lookup_path([b"canister".as_slice(), id.as_slice(), b"certified_data"]),
        ic_certification::LookupResult::Found(b"root-hash")
    );
    let der = ic.root_key();
    assert_eq!(&der[..37], flic_embedded_ic::BLS_DER_PREFIX);
    let mut msg = flic_embedded_ic::IC_STATE_ROOT_DOMAIN_SEPARATOR.to_vec();
    msg.extend_from_slice(&cert.tree.digest());
    ic_verify_bls_signature::verify_bls_signature(&cert.signature, &msg, &der[37..])
        .expect("signed by the host's root key");
}

#[test]
fn certified_data_is_at_most_32_bytes() {
    let (mut ic, id) = setup();
    assert!(matches!(
        call(&mut ic, id, "certify", vec![7; 33]),
        Err(CallError::Trap { .. })
    ));
    assert_eq!(ic.certified_data(id), Some(&[][..]));
}

#[test]
fn failed_reinstall_keeps_certified_data_and_stable_memory() {
    let (mut ic, id) = setup();
    call(&mut ic, id, "inc", vec![]).unwrap();
    call(&mut ic, id, "certify", b"first".to_vec()).unwrap();
    // Reinstalling with a module whose init traps must not touch certified data.
    let bad = wat::parse_str(r#"(module (memory 1) (func (export "canister_init") unreachable))"#)
        .unwrap();
    assert!(matches!(
        ic.install_code(id, &bad, vec![], InstallMode::Reinstall, admin()),
        Err(CallError::Trap { .. })
    ));
    assert_eq!(ic.certified_data(id), Some(&b"first"[..]));
    assert_eq!(ic.stable_memory_size(id), Some(65536));
}

// --- instructions ---------------------------------------------------------------------------

#[test]
fn every_result_carries_its_instruction_count() {
    let (mut ic, id) = setup();
    let small = call(&mut ic, id, "spin", 10u64.to_le_bytes().to_vec()).unwrap();
    let large = call(&mut ic, id, "spin", 10_000u64.to_le_bytes().to_vec()).unwrap();
    assert!(
        large.instructions > small.instructions + 9_990 * 3,
        "{small:?} {large:?}"
    );
    // performance_counter(0) sees the instructions so far, fewer than the total.
    let counted = u64s(&large.reply)[0];
    assert!(
        counted > 10_000 && counted < large.instructions,
        "{counted} vs {}",
        large.instructions
    );
    assert!(ic.query(id, user(), "get", vec![]).unwrap().instructions > 0);
}

#[test]
fn system_calls_are_charged_per_byte() {
    let (mut ic, id) = setup();
    let empty = call(&mut ic, id, "echo", vec![]).unwrap().instructions;
    let hundred = call(&mut ic, id, "echo", vec![1; 100])
        .unwrap()
        .instructions;
    // Same wasm instructions; 100 bytes copied in (msg_arg_data_copy) and out
    // (msg_reply_data_append) at one instruction per byte.
    assert_eq!(hundred - empty, 200);
}

#[test]
fn instruction_limit_is_a_typed_error_and_rolls_back() {
    let limits = InstructionLimits {
        update: 1_000_000,
        ..InstructionLimits::default()
    };
    let (mut ic, id) = setup_with(Config {
        limits,
        ..Config::default()
    });
    call(&mut ic, id, "inc", vec![]).unwrap();
    match call(&mut ic, id, "inc_then_loop", vec![]).unwrap_err() {
        CallError::InstructionLimit {
            limit,
            instructions,
            ..
        } => {
            assert_eq!(limit, 1_000_000);
            assert_eq!(instructions, 1_000_000);
        }
        other => panic!("expected the instruction limit, got {other:?}"),
    }
    assert_eq!(state(&mut ic, id), (1, 1, 1));
}

#[test]
fn default_limits_are_the_ics() {
    let l = InstructionLimits::default();
    assert_eq!(
        (l.update, l.query, l.install, l.inspect_message),
        (40_000_000_000, 5_000_000_000, 300_000_000_000, 200_000_000)
    );
}

// --- stable memory and logs -------------------------------------------------------------------

#[test]
fn stable_memory_is_capped_by_the_configuration() {
    let config = Config {
        stable_memory_max_bytes: 3 * 65536,
        ..Config::default()
    };
    let (mut ic, id) = setup_with(config);
    let grow = |ic: &mut EmbeddedIc, n: u64| {
        u64s(
            &call(ic, id, "grow_stable", n.to_le_bytes().to_vec())
                .unwrap()
                .reply,
        )[0]
    };
    assert_eq!(grow(&mut ic, 2), 0);
    assert_eq!(grow(&mut ic, 2), u64::MAX, "over the cap: -1");
    assert_eq!(grow(&mut ic, 1), 2);
    assert_eq!(ic.stable_memory_size(id), Some(3 * 65536));
}

#[test]
fn debug_print_and_traps_are_logged() {
    let (mut ic, id) = setup();
    call(&mut ic, id, "print", b"hello log".to_vec()).unwrap();
    let _ = call(&mut ic, id, "inc_then_trap", vec![]);
    assert_eq!(
        ic.logs(id),
        ["hello log".to_string(), "[TRAP]: boom".to_string()]
    );
}

// --- persistence ------------------------------------------------------------------------------

#[test]
fn save_and_load_restart_through_post_upgrade() {
    let (mut ic, id) = setup();
    for _ in 0..3 {
        call(&mut ic, id, "inc", vec![]).unwrap();
    }
    call(&mut ic, id, "certify", b"cert".to_vec()).unwrap();
    ic.advance_time(Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    ic.save(dir.path()).unwrap();

    // Saving ran pre_upgrade but left the live host untouched.
    assert_eq!(state(&mut ic, id), (3, 3, 3));
    assert_eq!(ic.read_stable_memory(id, 8, 8), Some(vec![0; 8]));

    let mut loaded = EmbeddedIc::load(dir.path()).unwrap();
    assert_eq!(loaded.time(), ic.time());
    assert_eq!(loaded.canister_ids(), vec![id]);
    assert_eq!(loaded.controllers(id), Some(&[admin()][..]));
    assert_eq!(loaded.certified_data(id), Some(&b"cert"[..]));
    assert_eq!(loaded.module_hash(id), ic.module_hash(id));
    // Heap reset as after an upgrade; stable memory kept; post_upgrade read what
    // pre_upgrade saved (restart argument: empty Candid, 6 bytes).
    assert_eq!(state(&mut loaded, id), (0, 0, 3));
    let info = u64s(
        &loaded
            .query(id, user(), "upgrade_info", vec![])
            .unwrap()
            .reply,
    );
    assert_eq!(info, vec![6, 3]);
    // New canisters get fresh ids.
    assert_ne!(loaded.create_canister(vec![]), id);
}

#[test]
fn saves_replace_each_other_whole_and_the_layout_before_generations_loads() {
    let (mut ic, id) = setup();
    call(&mut ic, id, "inc", vec![]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    ic.save(dir.path()).unwrap();
    call(&mut ic, id, "inc", vec![]).unwrap();
    ic.stop_canister(id).unwrap();
    ic.save(dir.path()).unwrap();
    // One generation's files remain, and no temporary file.
    let files = |sub: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.path().join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(files("stable"), vec![format!("{}.2.bin", id.to_text())]);
    assert!(files(".").iter().all(|f| !f.ends_with(".tmp")));
    let mut loaded = EmbeddedIc::load(dir.path()).unwrap();
    assert_eq!(
        loaded.is_stopped(id),
        Some(true),
        "the stopped state is saved"
    );
    loaded.start_canister(id).unwrap();
    assert_eq!(state(&mut loaded, id).2, 2);

    // A directory saved before generations: `stable/<id>.bin`, no generation or file name.
    let manifest_path = dir.path().join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest.as_object_mut().unwrap().remove("generation");
    let saved = &mut manifest["canisters"][0];
    saved.as_object_mut().unwrap().remove("stable_file");
    saved.as_object_mut().unwrap().remove("stopped");
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let stable = dir.path().join("stable");
    std::fs::rename(
        stable.join(format!("{}.2.bin", id.to_text())),
        stable.join(format!("{}.bin", id.to_text())),
    )
    .unwrap();
    let mut old = EmbeddedIc::load(dir.path()).unwrap();
    assert_eq!(old.is_stopped(id), Some(false));
    assert_eq!(state(&mut old, id).2, 2);
    // Its next save moves it to generations and removes the old file.
    old.save(dir.path()).unwrap();
    assert_eq!(files("stable"), vec![format!("{}.1.bin", id.to_text())]);
}

// --- inter-canister calls --------------------------------------------------------------

/// Calls the management canister's `raw_rand` (or another canister) and records what its
/// callbacks see: heap 100 replies, 104 rejects, 108 last reject code, 112 cleanups, 116
/// reply length, 120.. the reply, 200 the env the reply callback got.
const CALLER: &str = r#"(module
  (import "ic0" "call_new" (func $call_new (param i32 i32 i32 i32 i32 i32 i32 i32)))
  (import "ic0" "call_data_append" (func $call_data_append (param i32 i32)))
  (import "ic0" "call_on_cleanup" (func $call_on_cleanup (param i32 i32)))
  (import "ic0" "call_perform" (func $call_perform (result i32)))
  (import "ic0" "msg_reject_code" (func $reject_code (result i32)))
  (import "ic0" "msg_arg_data_size" (func $arg_size (result i32)))
  (import "ic0" "msg_arg_data_copy" (func $arg_copy (param i32 i32 i32)))
  (import "ic0" "msg_reply_data_append" (func $reply_append (param i32 i32)))
  (import "ic0" "msg_reply" (func $msg_reply))
  (import "ic0" "trap" (func $trap (param i32 i32)))
  (memory 1)
  (table 4 funcref)
  (elem (i32.const 1) $on_reply $on_reject $on_cleanup)
  (data (i32.const 16) "raw_rand")
  (data (i32.const 32) "DIDL\00\00")
  (data (i32.const 48) "\01\02")
  (func $bump (param $at i32)
    (i32.store (local.get $at) (i32.add (i32.load (local.get $at)) (i32.const 1))))
  (func $on_reply (param $env i32)
    (call $bump (i32.const 100))
    (i32.store (i32.const 200) (local.get $env))
    (i32.store (i32.const 108) (call $reject_code))
    (i32.store (i32.const 116) (call $arg_size))
    (call $arg_copy (i32.const 120) (i32.const 0) (call $arg_size))
    (if (i32.eq (local.get $env) (i32.const 7))
      (then (call $trap (i32.const 16) (i32.const 8)))))
  (func $on_reject (param $env i32)
    (call $bump (i32.const 104))
    (i32.store (i32.const 108) (call $reject_code)))
  (func $on_cleanup (param $env i32) (call $bump (i32.const 112)))
  (func $call (param $callee i32) (param $callee_len i32) (param $env i32)
    (call $call_new (local.get $callee) (local.get $callee_len) (i32.const 16) (i32.const 8)
      (i32.const 1) (local.get $env) (i32.const 2) (local.get $env))
    (call $call_on_cleanup (i32.const 3) (local.get $env))
    (call $call_data_append (i32.const 32) (i32.const 6))
    (drop (call $call_perform)))
  (func (export "canister_update rand") (call $call (i32.const 0) (i32.const 0) (i32.const 5)) (call $msg_reply))
  (func (export "canister_update rand_then_trap")
    (call $call (i32.const 0) (i32.const 0) (i32.const 5))
    (call $trap (i32.const 16) (i32.const 8)))
  (func (export "canister_update rand_trapping_callback")
    (call $call (i32.const 0) (i32.const 0) (i32.const 7)) (call $msg_reply))
  (func (export "canister_update other") (call $call (i32.const 48) (i32.const 2) (i32.const 5)) (call $msg_reply))
  (func (export "canister_query state") (call $reply_append (i32.const 100) (i32.const 104)) (call $msg_reply))
  (func (export "canister_query call_in_query") (call $call (i32.const 0) (i32.const 0) (i32.const 5)) (call $msg_reply)))"#;

/// (replies, rejects, last reject code, cleanups, env of the last reply, reply bytes).
fn caller_state(ic: &mut EmbeddedIc, id: Principal) -> (u32, u32, u32, u32, u32, Vec<u8>) {
    let v = ic.query(id, user(), "state", vec![]).unwrap().reply;
    let word = |at: usize| u32::from_le_bytes(v[at..at + 4].try_into().unwrap());
    let len = word(16) as usize;
    (
        word(0),
        word(4),
        word(8),
        word(12),
        word(100),
        v[20..20 + len.min(80)].to_vec(),
    )
}

fn caller(config: Config) -> (EmbeddedIc, Principal) {
    let mut ic = EmbeddedIc::with_config(config);
    let id = ic.create_canister(vec![admin()]);
    let wasm = wat::parse_str(CALLER).unwrap();
    ic.install_code(id, &wasm, vec![], InstallMode::Install, admin())
        .unwrap();
    (ic, id)
}

#[test]
fn raw_rand_replies_to_the_reply_callback_with_32_fresh_bytes() {
    let (mut ic, id) = caller(Config::default());
    call(&mut ic, id, "rand", vec![]).unwrap();
    let (replies, rejects, code, cleanups, env, reply) = caller_state(&mut ic, id);
    assert_eq!((replies, rejects, code, cleanups, env), (1, 0, 0, 0, 5));
    let first: Vec<u8> = candid::decode_one(&reply).expect("a candid blob");
    assert_eq!(first.len(), 32);
    call(&mut ic, id, "rand", vec![]).unwrap();
    let second: Vec<u8> = candid::decode_one(&caller_state(&mut ic, id).5).unwrap();
    assert_ne!(first, second, "every answer is fresh");
    // A seed makes the answers reproducible; without one they are unpredictable.
    let seeded = |seed| {
        let (mut ic, id) = caller(Config {
            randomness_seed: Some(seed),
            ..Config::default()
        });
        call(&mut ic, id, "rand", vec![]).unwrap();
        candid::decode_one::<Vec<u8>>(&caller_state(&mut ic, id).5).unwrap()
    };
    assert_eq!(seeded([1; 32]), seeded([1; 32]));
    assert_ne!(seeded([1; 32]), seeded([2; 32]));
    let (mut other, other_id) = caller(Config::default());
    call(&mut other, other_id, "rand", vec![]).unwrap();
    assert_ne!(
        candid::decode_one::<Vec<u8>>(&caller_state(&mut other, other_id).5).unwrap(),
        first
    );
}

#[test]
fn a_call_goes_out_only_if_its_message_commits() {
    let (mut ic, id) = caller(Config::default());
    assert!(matches!(
        call(&mut ic, id, "rand_then_trap", vec![]),
        Err(CallError::Trap { .. })
    ));
    assert_eq!(caller_state(&mut ic, id).0, 0, "no callback ran");
    // Queries cannot call.
    match ic.query(id, user(), "call_in_query", vec![]) {
        Err(CallError::Trap { message, .. }) => {
            assert!(
                message.contains("ic0.call_new cannot be executed in query mode"),
                "{message}"
            )
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn a_trapping_callback_is_rolled_back_and_its_cleanup_runs() {
    let (mut ic, id) = caller(Config::default());
    call(&mut ic, id, "rand_trapping_callback", vec![]).unwrap();
    let (replies, _, _, cleanups, _, _) = caller_state(&mut ic, id);
    assert_eq!((replies, cleanups), (0, 1));
    assert!(ic.logs(id).iter().any(|l| l.contains("reply callback")));
}

#[test]
fn calls_to_canisters_not_modelled_are_rejected_to_the_reject_callback() {
    let (mut ic, id) = caller(Config::default());
    call(&mut ic, id, "other", vec![]).unwrap();
    let (replies, rejects, code, cleanups, _, _) = caller_state(&mut ic, id);
    // Reject code 3: destination invalid.
    assert_eq!((replies, rejects, code, cleanups), (0, 1, 3, 0));
}

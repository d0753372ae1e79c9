;; A tiny canister for host tests. Each method does one thing, so a failing test
;; points at the host, not at canister logic.
;;
;; Heap layout (all i64 little-endian):
;;   0  counter               8  init arg length      16 init arg first 8 bytes
;;   24 timer fired count     32 post_upgrade arg len 40 value restored from stable[8]
;;   64.. reply scratch       128.. principal scratch 256.. arg scratch  2048.. certificate
;; Stable memory: [0..8] a copy of the counter (written by every bump),
;;                [8..16] the counter saved by pre_upgrade.
;; The mutable global $g counts bumps too; it is not exported, like Rust's
;; __stack_pointer, so rolling it back needs the host's load-time rewrite.
(module
  (import "ic0" "msg_arg_data_size" (func $arg_size (result i32)))
  (import "ic0" "msg_arg_data_copy" (func $arg_copy (param i32 i32 i32)))
  (import "ic0" "msg_caller_size" (func $caller_size (result i32)))
  (import "ic0" "msg_caller_copy" (func $caller_copy (param i32 i32 i32)))
  (import "ic0" "msg_reply_data_append" (func $reply_append (param i32 i32)))
  (import "ic0" "msg_reply" (func $msg_reply))
  (import "ic0" "msg_reject" (func $msg_reject (param i32 i32)))
  (import "ic0" "msg_method_name_size" (func $method_name_size (result i32)))
  (import "ic0" "accept_message" (func $accept))
  (import "ic0" "canister_self_size" (func $self_size (result i32)))
  (import "ic0" "canister_self_copy" (func $self_copy (param i32 i32 i32)))
  (import "ic0" "canister_cycle_balance128" (func $balance (param i32)))
  (import "ic0" "is_controller" (func $is_controller (param i32 i32) (result i32)))
  (import "ic0" "stable64_size" (func $stable_size (result i64)))
  (import "ic0" "stable64_grow" (func $stable_grow (param i64) (result i64)))
  (import "ic0" "stable64_write" (func $stable_write (param i64 i64 i64)))
  (import "ic0" "stable64_read" (func $stable_read (param i64 i64 i64)))
  (import "ic0" "certified_data_set" (func $certified_data_set (param i32 i32)))
  (import "ic0" "data_certificate_present" (func $cert_present (result i32)))
  (import "ic0" "data_certificate_size" (func $cert_size (result i32)))
  (import "ic0" "data_certificate_copy" (func $cert_copy (param i32 i32 i32)))
  (import "ic0" "time" (func $time (result i64)))
  (import "ic0" "global_timer_set" (func $timer_set (param i64) (result i64)))
  (import "ic0" "performance_counter" (func $perf (param i32) (result i64)))
  (import "ic0" "debug_print" (func $debug_print (param i32 i32)))
  (import "ic0" "trap" (func $trap (param i32 i32)))

  (memory 1)
  (global $g (mut i64) (i64.const 0))
  (data (i32.const 4096) "boom")
  (data (i32.const 4100) "nope")

  (func $reply (param $ptr i32) (param $len i32)
    (call $reply_append (local.get $ptr) (local.get $len))
    (call $msg_reply))

  (func $reply_i64 (param $v i64)
    (i64.store (i32.const 64) (local.get $v))
    (call $reply (i32.const 64) (i32.const 8)))

  ;; Copies the argument to 256 and returns its length.
  (func $arg (result i32)
    (local $n i32)
    (local.set $n (call $arg_size))
    (call $arg_copy (i32.const 256) (i32.const 0) (local.get $n))
    (local.get $n))

  ;; Heap counter, global and stable copy all move together.
  (func $bump
    (i64.store (i32.const 0) (i64.add (i64.load (i32.const 0)) (i64.const 1)))
    (global.set $g (i64.add (global.get $g) (i64.const 1)))
    (if (i64.eqz (call $stable_size)) (then (drop (call $stable_grow (i64.const 1)))))
    (call $stable_write (i64.const 0) (i64.const 0) (i64.const 8)))

  (func (export "canister_init")
    (local $n i32)
    (local.set $n (call $arg))
    (i64.store (i32.const 8) (i64.extend_i32_u (local.get $n)))
    (i64.store (i32.const 16) (i64.load (i32.const 256))))

  (func (export "canister_pre_upgrade")
    (if (i64.eqz (call $stable_size)) (then (drop (call $stable_grow (i64.const 1)))))
    (call $stable_write (i64.const 8) (i64.const 0) (i64.const 8)))

  (func (export "canister_post_upgrade")
    (i64.store (i32.const 32) (i64.extend_i32_u (call $arg)))
    (if (i64.ne (call $stable_size) (i64.const 0))
      (then (call $stable_read (i64.const 40) (i64.const 8) (i64.const 8)))))

  ;; Refuses any method whose name has 9 bytes ("forbidden").
  (func (export "canister_inspect_message")
    (if (i32.ne (call $method_name_size) (i32.const 9)) (then (call $accept))))

  (func (export "canister_global_timer")
    (i64.store (i32.const 24) (i64.add (i64.load (i32.const 24)) (i64.const 1))))

  (func (export "canister_update inc") (call $bump) (call $reply (i32.const 0) (i32.const 0)))
  (func (export "canister_update forbidden") (call $bump) (call $reply (i32.const 0) (i32.const 0)))
  (func (export "canister_update inc_then_trap") (call $bump) (call $trap (i32.const 4096) (i32.const 4)))
  (func (export "canister_update inc_then_reject") (call $bump) (call $msg_reject (i32.const 4100) (i32.const 4)))
  (func (export "canister_update inc_silently") (call $bump))
  (func (export "canister_update inc_then_loop") (call $bump) (loop $forever (br $forever)))
  ;; Grows the heap by 10 pages, writes there, then traps: rollback must shrink it.
  (func (export "canister_update grow_then_trap")
    (call $bump)
    (drop (memory.grow (i32.const 10)))
    (i64.store (i32.const 327680) (i64.const 7))
    (call $trap (i32.const 4096) (i32.const 4)))

  ;; Replies counter, global, stable copy (3 x i64).
  (func (export "canister_query get")
    (i64.store (i32.const 64) (i64.load (i32.const 0)))
    (i64.store (i32.const 72) (global.get $g))
    (i64.store (i32.const 80) (i64.const 0))
    (if (i64.ne (call $stable_size) (i64.const 0))
      (then (call $stable_read (i64.const 80) (i64.const 0) (i64.const 8))))
    (call $reply (i32.const 64) (i32.const 24)))
  (func (export "canister_query inc_in_query")
    (call $bump)
    (call $reply_i64 (i64.load (i32.const 0))))
  (func (export "canister_query init_arg") (call $reply (i32.const 8) (i32.const 16)))
  (func (export "canister_query upgrade_info") (call $reply (i32.const 32) (i32.const 16)))
  (func (export "canister_query fired") (call $reply_i64 (i64.load (i32.const 24))))
  (func (export "canister_query now") (call $reply_i64 (call $time)))

  (func (export "canister_update echo")
    (call $reply (i32.const 256) (call $arg)))
  (func (export "canister_update whoami")
    (local $n i32)
    (local.set $n (call $caller_size))
    (call $caller_copy (i32.const 128) (i32.const 0) (local.get $n))
    (call $reply (i32.const 128) (local.get $n)))
  (func (export "canister_query self")
    (local $n i32)
    (local.set $n (call $self_size))
    (call $self_copy (i32.const 128) (i32.const 0) (local.get $n))
    (call $reply (i32.const 128) (local.get $n)))
  (func (export "canister_query caller_is_controller")
    (local $n i32)
    (local.set $n (call $caller_size))
    (call $caller_copy (i32.const 128) (i32.const 0) (local.get $n))
    (i32.store8 (i32.const 64) (call $is_controller (i32.const 128) (local.get $n)))
    (call $reply (i32.const 64) (i32.const 1)))
  (func (export "canister_query balance")
    (call $balance (i32.const 64))
    (call $reply (i32.const 64) (i32.const 16)))

  (func (export "canister_update certify")
    (call $certified_data_set (i32.const 256) (call $arg))
    (call $reply (i32.const 0) (i32.const 0)))
  ;; Replies one byte (certificate present?) then the certificate, if any.
  (func $certificate_reply
    (local $n i32)
    (i32.store8 (i32.const 64) (call $cert_present))
    (call $reply_append (i32.const 64) (i32.const 1))
    (if (i32.load8_u (i32.const 64))
      (then
        (local.set $n (call $cert_size))
        (call $cert_copy (i32.const 2048) (i32.const 0) (local.get $n))
        (call $reply_append (i32.const 2048) (local.get $n))))
    (call $msg_reply))
  (func (export "canister_query certificate") (call $certificate_reply))
  (func (export "canister_update certificate_in_update") (call $certificate_reply))
  (func (export "canister_update certificate_size_in_update") (drop (call $cert_size)))

  ;; Sets the global timer to the i64 argument and replies the previous value.
  (func (export "canister_update set_timer_at")
    (drop (call $arg))
    (call $reply_i64 (call $timer_set (i64.load (i32.const 256)))))
  (func (export "canister_query set_timer_in_query")
    (drop (call $timer_set (i64.const 1)))
    (call $reply (i32.const 0) (i32.const 0)))

  ;; Grows stable memory by the i64 argument (pages) and replies the result.
  (func (export "canister_update grow_stable")
    (drop (call $arg))
    (call $reply_i64 (call $stable_grow (i64.load (i32.const 256)))))

  (func (export "canister_update print")
    (call $debug_print (i32.const 256) (call $arg))
    (call $reply (i32.const 0) (i32.const 0)))

  ;; Spins the i64 argument times, then replies performance_counter(0).
  (func (export "canister_update spin")
    (local $i i64)
    (drop (call $arg))
    (local.set $i (i64.load (i32.const 256)))
    (block $done
      (loop $again
        (br_if $done (i64.eqz (local.get $i)))
        (local.set $i (i64.sub (local.get $i) (i64.const 1)))
        (br $again)))
    (call $reply_i64 (call $perf (i32.const 0))))
)

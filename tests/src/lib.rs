//! Integration tests of flic across crates.
//!
//! Scenarios ([`scenarios`]) are written once against [`env::IcEnv`] and run on the
//! embedded IC ([`embedded::EmbeddedEnv`]) always, and on PocketIC ([`pocket::PocketIcEnv`])
//! when `POCKET_IC_BIN` is set. [`fixture`] installs the aggregator's release wasm and
//! plays controller and contributors with real Ed25519 keys.

pub mod embedded;
pub mod env;
pub mod fixture;
pub mod pocket;
pub mod scenarios;

/// Declares one `#[test]` per scenario for a backend constructor returning
/// `Result<impl IcEnv, String>`; an `Err` prints the reason and skips.
#[macro_export]
macro_rules! scenario_tests {
    ($make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                match $make {
                    Ok(env) => $crate::scenarios::$name(env),
                    Err(reason) => eprintln!("skipped {}: {}", stringify!($name), reason),
                }
            }
        )*
    };
}

//! `flic-app`: the contributors' desktop app. It joins a federation, registers local data,
//! trains and uploads, and shows what the contributor's data built, on the same client
//! library as the `flic` CLI (`flic-client`), with nothing of its own in between.
//!
//! - [`app`]: state and screens, drawn into any `egui::Ui`.
//! - [`worker`]: the thread that does the slow work and reports back as events.
//! - [`failure`]: what went wrong, by what a contributor can do about it.

pub mod app;
pub mod failure;
pub mod worker;

pub use app::{Config, FlicApp, Page};

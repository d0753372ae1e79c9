//! What the app's UI tests share: a simulated federation to join, a headless harness,
//! and helpers that drive widgets by their labels as a person would.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use flic_app::{Config, FlicApp};
use flic_client::cli::{Cli, Command};

/// A saved embedded IC with one open round that one contribution closes (a simulation's
/// rounds close at as many commits as it has clients): a linear model
/// over 32 features and 10 classes, as `flic simulate` makes it, retaining contributions
/// so that its models can be recomputed.
pub fn simulated_state(dir: &Path) -> PathBuf {
    use clap::Parser;
    let state = dir.join("state");
    let cli = Cli::parse_from([
        "flic",
        "simulate",
        "--clients",
        "1",
        "--rounds",
        "1",
        "--samples",
        "300",
        "--retain-contributions",
        "--state",
        state.to_str().unwrap(),
    ]);
    let Command::Simulate(args) = cli.command else {
        unreachable!()
    };
    flic_client::simulate::run(&args.config().unwrap(), &mut flic_client::output::Silent)
        .expect("simulating the federation");
    state
}

/// A home folder holding an identity made from `seed` (the same principal every run).
pub fn seeded_home(seed: u8) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    flic_client::identity::Identity::from_seed([seed; 32])
        .write_new(&home.path().join("identity.pem"))
        .unwrap();
    home
}

/// Waits until the app has loaded its identity and has nothing in flight.
pub fn wait_for_identity(h: &mut Harness<'_, FlicApp>) {
    wait(h, "the identity", |a| {
        matches!(a.identity, flic_app::app::IdentityState::Loaded(_)) && idle(a)
    });
}

pub fn config(dir: &Path) -> Config {
    Config {
        identity_path: dir.join("identity.pem"),
        work_dir: dir.join("work"),
        connect: None,
        scale: 1.0,
    }
}

pub fn harness(config: Config) -> Harness<'static, FlicApp> {
    Harness::builder()
        // Tall enough that each page's widgets are on screen (and in the accessibility tree).
        .with_size(egui::vec2(1100.0, 1500.0))
        .build_ui_state(|ui, app: &mut FlicApp| app.show(ui), FlicApp::new(config))
}

/// Steps the UI until `done` holds (the worker answers off the UI thread).
pub fn wait(h: &mut Harness<'_, FlicApp>, what: &str, done: impl Fn(&FlicApp) -> bool) {
    let start = Instant::now();
    while !done(h.state()) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}; busy {}, notes: {:?}",
            h.state().busy,
            h.state().notes
        );
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    h.step();
}

pub fn idle(app: &FlicApp) -> bool {
    app.busy == 0 && !app.connecting && !app.training
}

/// Lets the UI settle: to rest when nothing is in flight (which runs the harness's
/// accessibility check: every input widget has a name), else a few frames (a spinner
/// keeps repainting).
pub fn settle(h: &mut Harness<'_, FlicApp>) {
    // The first frames handle the input, which may send a request.
    h.run_steps(2);
    if idle(h.state()) && h.state().phase.is_none() {
        h.run();
    }
}

pub fn type_into(h: &mut Harness<'_, FlicApp>, label: &str, text: &str) {
    h.get_by_label(label).scroll_to_me();
    settle(h);
    h.get_by_label(label).focus();
    settle(h);
    h.get_by_label(label).type_text(text);
    settle(h);
}

pub fn click(h: &mut Harness<'_, FlicApp>, label: &str) {
    // As a person would: scroll it into view first.
    h.get_by_label(label).scroll_to_me();
    settle(h);
    h.get_by_label(label).click();
    settle(h);
}

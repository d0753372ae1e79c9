//! Image snapshots of the app's main screens, rendered by wgpu on the software Vulkan
//! driver (lavapipe) and compared with `tests/snapshots/*.png` (egui_kittest's default
//! tolerance). Text that is not the same on every machine is masked: temporary paths, a
//! model version (trained floats differ across CPUs' SIMD) and the backend `auto` picks.
//!
//! CI installs `mesa-vulkan-drivers` and sets `FLIC_REQUIRE_WGPU=1`, which turns a missing
//! adapter into a failure; elsewhere these tests skip without one, saying why. Where the
//! lavapipe ICD is installed it is used even if others are, so the pixels are lavapipe's.
//! After a deliberate change to a screen: `UPDATE_SNAPSHOTS=1 cargo test --release -p
//! flic-app --test snapshots`, then look at the new images before committing them.

mod common;

use std::path::Path;

use common::{
    click, config, idle, seeded_home, simulated_state, type_into, wait, wait_for_identity,
};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use flic_app::app::IdentityState;
use flic_app::{Config, FlicApp, Page};
use flic_model_zoo::backend::Backend;

const LAVAPIPE: &str = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";

/// Whether wgpu can render here; skipping says why, unless CI requires it.
fn renderer_available(test: &str) -> bool {
    if std::env::var_os("VK_ICD_FILENAMES").is_none() && Path::new(LAVAPIPE).exists() {
        // Before any thread starts: this binary's tests render on lavapipe only.
        unsafe { std::env::set_var("VK_ICD_FILENAMES", LAVAPIPE) };
    }
    let found = flic_model_zoo::hardware::discover();
    if found.of(Backend::Wgpu).next().is_some() {
        return true;
    }
    let why = format!(
        "{test}: wgpu found no adapter to render snapshots ({}); install a Vulkan driver (Debian: mesa-vulkan-drivers)",
        found.problems.join("; ")
    );
    if std::env::var("FLIC_REQUIRE_WGPU").as_deref() == Ok("1") {
        panic!("{why} (FLIC_REQUIRE_WGPU=1)");
    }
    eprintln!("skipped: {why}");
    false
}

fn rendering_harness(config: Config, size: egui::Vec2, scale: f32) -> Harness<'static, FlicApp> {
    Harness::builder()
        .with_size(size)
        .with_pixels_per_point(scale)
        .wgpu()
        .build_ui_state(|ui, app: &mut FlicApp| app.show(ui), FlicApp::new(config))
}

fn mask_node(h: &mut Harness<'_, FlicApp>, label: &str) {
    let rect = h.get_by_label(label).rect();
    h.mask(rect);
}

fn connected(h: &mut Harness<'_, FlicApp>, state: &Path) {
    wait_for_identity(h);
    type_into(h, "State folder", state.to_str().unwrap());
    click(h, "Connect");
    wait(h, "the connection", |a| a.overview.is_some() && idle(a));
    h.run();
}

fn mask_federation(h: &mut Harness<'_, FlicApp>) {
    mask_node(h, "State folder");
    let version = h
        .state()
        .overview
        .as_ref()
        .unwrap()
        .info
        .model_version
        .unwrap();
    mask_node(h, &hex::encode(version.as_slice()));
}

#[test]
fn first_start_offers_to_create_or_import_an_identity() {
    if !renderer_available("first_start") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let mut h = rendering_harness(config(home.path()), egui::vec2(900.0, 360.0), 1.0);
    wait(&mut h, "the identity check", |a| {
        a.identity == IdentityState::Missing && idle(a)
    });
    h.run();
    mask_node(&mut h, home.path().join("identity.pem").to_str().unwrap());
    h.snapshot("identity");
}

/// The Federation page once connected, at `scale` (the window grows with it).
fn federation_snapshot(name: &str, size: egui::Vec2, scale: f32) {
    if !renderer_available(name) {
        return;
    }
    // A fixed identity: the principal in the title bar is the same everywhere.
    let home = seeded_home(42);
    let state = simulated_state(home.path());
    let mut h = rendering_harness(config(home.path()), size, scale);
    connected(&mut h, &state);
    mask_federation(&mut h);
    h.snapshot(name);
}

#[test]
fn the_federation_page_shows_the_verified_job() {
    federation_snapshot("federation", egui::vec2(1000.0, 720.0), 1.0);
}

#[test]
fn the_federation_page_reads_at_125_percent() {
    federation_snapshot("federation_125", egui::vec2(1000.0, 760.0), 1.25);
}

/// 28x28 images with a pattern per label: the same bytes on every machine.
fn write_images(dir: &Path) -> std::path::PathBuf {
    let (n, side) = (60usize, 28usize);
    let mut images = Vec::with_capacity(n * side * side);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let label = (i % 10) as u8;
        labels.push(label);
        for y in 0..side {
            for x in 0..side {
                let on = (x + y * (label as usize + 1) + i).is_multiple_of(label as usize + 3);
                images.push(if on { 255 } else { 0 });
            }
        }
    }
    let path = dir.join("scans-images-idx3-ubyte");
    flic_model_zoo::dataset::write_mnist_idx(
        &path,
        &dir.join("scans-labels-idx1-ubyte"),
        &images,
        &labels,
        side,
        side,
        false,
    )
    .unwrap();
    path
}

#[test]
fn my_data_previews_images_and_label_counts() {
    if !renderer_available("my_data") {
        return;
    }
    let home = seeded_home(42);
    let state = simulated_state(home.path());
    let images = write_images(home.path());
    let mut h = rendering_harness(config(home.path()), egui::vec2(1000.0, 900.0), 1.0);
    connected(&mut h, &state);
    click(&mut h, "My data");
    type_into(&mut h, "Data file or folder", images.to_str().unwrap());
    h.get_by_label("Format").click();
    h.run();
    click(&mut h, "MNIST IDX images");
    click(&mut h, "Preview");
    wait(&mut h, "the preview", |a| a.preview.is_some() && idle(a));
    h.run();
    assert!(
        matches!(&h.state().preview, Some(Ok(p)) if p.samples == 60),
        "{:?}",
        h.state().preview
    );
    assert_eq!(h.state().page, Page::Data);
    mask_node(&mut h, "Data file or folder");
    h.snapshot("my_data");
}

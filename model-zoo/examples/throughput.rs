//! Local training throughput on synthetic data.
//!
//! `cargo run --release -p flic-model-zoo --example throughput [-- BACKEND]`
//! (BACKEND: ndarray (default), flex, wgpu or cuda, as compiled in).

use flic_model_zoo::dataset::SyntheticClusters;
use flic_model_zoo::{
    evaluate, init_weights, train_local, Backend, ModelConfig, OptimizerKind, TrainParams,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backend: Backend = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("ndarray")
        .parse()?;
    let device = backend.device()?;
    for (dims, hidden, samples) in [(32, vec![64], 20_000), (784, vec![128], 10_000)] {
        let data = SyntheticClusters {
            samples,
            dims,
            seed: 1,
            ..Default::default()
        }
        .generate();
        let (train, test) = data.train_test_split(0.1, 0)?;
        let config = ModelConfig::for_data("mlp", &train.feature_shape, 10, &hidden)?;
        let w0 = init_weights(&config, 0)?;
        for optimizer in [OptimizerKind::Sgd, OptimizerKind::Adam] {
            let lr = if optimizer == OptimizerKind::Adam {
                0.001
            } else {
                0.05
            };
            let params = TrainParams {
                lr,
                batch_size: 64,
                local_epochs: 1,
                optimizer,
                seed: 0,
                proximal_mu: 0.0,
            };
            // One warm-up epoch, then the measured one.
            train_local(&config, &w0, &train, &params, &device, &mut |_| {})?;
            let out = train_local(&config, &w0, &train, &params, &device, &mut |_| {})?;
            let eval = evaluate(&config, &out.weights, &test, &device)?;
            println!(
                "{backend} mlp {dims}-{hidden:?}-10 {optimizer} batch 64: {:.0} samples/s ({} samples in {:.2}s), test accuracy {:.3}",
                out.samples_per_sec,
                out.samples,
                out.elapsed.as_secs_f64(),
                eval.accuracy
            );
        }
    }
    Ok(())
}

//! Measurement helpers shared by Paddock's benchmarks.
//!
//! Machines here are shared and noisy, so contenders are measured
//! alternately, batch by batch, in one run, and compared by the ratio of
//! their medians.

use std::path::{Path, PathBuf};
use std::time::Instant;

pub mod native;
pub mod process;
pub mod webhook;

/// One contender: a name and the work of one iteration.
pub struct Contender<'a> {
    /// The name in the report.
    pub name: &'static str,
    /// One iteration.
    pub run: Box<dyn FnMut() + 'a>,
}

impl std::fmt::Debug for Contender<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contender")
            .field("name", &self.name)
            .finish()
    }
}

/// The median nanoseconds per iteration of each contender, in order.
///
/// Each round runs every contender for `batch` iterations, one contender
/// after the other; `rounds` rounds give `rounds` samples per contender.
pub fn alternate(contenders: &mut [Contender<'_>], rounds: usize, batch: usize) -> Vec<f64> {
    let mut samples = vec![Vec::with_capacity(rounds); contenders.len()];
    for contender in contenders.iter_mut() {
        for _ in 0..batch {
            (contender.run)();
        }
    }
    for _ in 0..rounds {
        for (index, contender) in contenders.iter_mut().enumerate() {
            let started = Instant::now();
            for _ in 0..batch {
                (contender.run)();
            }
            let elapsed = started.elapsed().as_nanos() as f64;
            samples[index].push(elapsed / batch as f64);
        }
    }
    samples.into_iter().map(median).collect()
}

/// The workspace root, and the folder of the built guest components
/// (`PADDOCK_GUESTS_DIR`, else `target/guests/wasm32-wasip2/release`).
pub fn workspace_dirs() -> (PathBuf, PathBuf) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let guests = std::env::var_os("PADDOCK_GUESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/guests/wasm32-wasip2/release"));
    (root, guests)
}

/// A controllers file of `count` replica-floor controllers (`floor-0`,
/// `floor-1`, ...) running `module`, each watching Deployments, scaling
/// them and recording events.
pub fn floor_controllers(count: usize, module: &Path) -> String {
    let mut text = String::from("controllers:\n");
    for index in 0..count {
        text.push_str(&format!(
            "- name: floor-{index}
  module: {}
  grant:
  - {{apiGroups: [apps], resources: [deployments], verbs: [get, list, watch]}}
  - {{apiGroups: [apps], resources: [deployments/scale], verbs: [patch]}}
  - {{apiGroups: [\"\"], resources: [events], verbs: [create, patch]}}
",
            module.display()
        ));
    }
    text
}

/// The median of some samples.
pub fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    let middle = samples.len() / 2;
    match samples.len() {
        0 => f64::NAN,
        n if n % 2 == 0 => (samples[middle - 1] + samples[middle]) / 2.0,
        _ => samples[middle],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }
}

//! The latency recorder: one `Instant` pair per operation into a `Vec`, sorted at the end.

use std::time::{Duration, Instant};

/// Latency percentiles of one measure, in microseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Latency {
    pub(crate) iters: usize,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) mean_us: f64,
    pub(crate) min_us: f64,
}

impl Latency {
    pub(crate) fn from_samples(mut samples: Vec<Duration>) -> Latency {
        samples.sort_unstable();
        let n = samples.len().max(1);
        let at = |q: f64| {
            let i = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
            samples.get(i).map_or(0.0, us)
        };
        let total: Duration = samples.iter().sum();
        Latency {
            iters: samples.len(),
            p50_us: at(0.50),
            p99_us: at(0.99),
            mean_us: us(&total) / n as f64,
            min_us: samples.first().map_or(0.0, us),
        }
    }
}

fn us(d: &Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// How many times to run a measure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) warmup: usize,
    pub(crate) iters: usize,
}

/// Runs `op` `plan.warmup` times unmeasured, then `plan.iters` times measured. The iteration
/// number is passed in so that `op` can alternate.
pub(crate) async fn measure<E>(
    plan: Plan,
    mut op: impl AsyncFnMut(usize) -> Result<(), E>,
) -> Result<Latency, E> {
    for i in 0..plan.warmup {
        op(i).await?;
    }
    let mut samples = Vec::with_capacity(plan.iters);
    for i in 0..plan.iters {
        let start = Instant::now();
        op(plan.warmup + i).await?;
        samples.push(start.elapsed());
    }
    Ok(Latency::from_samples(samples))
}

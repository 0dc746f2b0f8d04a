//! Engine scale: a simulated rollout of 1k, 10k and 100k servers, start to finish.
//!
//! `cargo bench -p mwdeploy-benches` (a few minutes on 2 cores). The target (design.md
//! section 7): 100,000 servers in under 2 s of wall time, and 10x the servers costs
//! about 10x the time. Each iteration builds the fleet and plan and runs the whole
//! deploy, so the figure is what `mwdeploy simulate` spends, minus its output.

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use mwdeploy_benches::rollout;

fn bench_rollout(c: &mut Criterion) {
    let mut group = c.benchmark_group("rollout");
    for servers in [1_000usize, 10_000, 100_000] {
        // A benchmark of a run that breaks the rules or stops early would measure
        // the wrong thing: check one run first.
        let report = rollout(servers).run().expect("the plan is valid");
        report.assert_ok();
        assert_eq!(report.summary.skipped, 0, "every server is deployed");

        // Flat sampling runs the same number of iterations per sample: with runs of
        // 30 ms and more, linear sampling's growing counts would need minutes.
        if servers >= 100_000 {
            group.sample_size(10);
            group.sampling_mode(SamplingMode::Flat);
        } else if servers >= 10_000 {
            group.sample_size(30);
            group.sampling_mode(SamplingMode::Flat);
        } else {
            group.sample_size(30);
            group.sampling_mode(SamplingMode::Auto);
        }
        group.measurement_time(Duration::from_secs(10));
        group.throughput(Throughput::Elements(servers as u64));
        group.bench_with_input(BenchmarkId::from_parameter(servers), &servers, |b, &n| {
            b.iter(|| black_box(rollout(n).run().expect("the plan is valid")))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_rollout);
criterion_main!(benches);

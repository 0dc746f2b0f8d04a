//! Benchmarks of the mwdeploy engine; see `benches/` and README.md.

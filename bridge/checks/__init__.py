"""Cross-checks, circuit demos and circuit benchmarks, one module per family of circuits."""

"""Benchmarks of minifcn against PyTorch: ``python -m benchmarks.run`` (see docs/performance.md)."""

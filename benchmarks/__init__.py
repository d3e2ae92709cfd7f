"""Benchmarks for task_mcp: `make bench` (or `python -m benchmarks`). See benchmarks/README.md."""

"""Benchmark harness for llm-service: see bench/README.md."""

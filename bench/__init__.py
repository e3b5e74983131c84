"""Measured benchmarks: each writes JSON + Markdown under bench/results/."""

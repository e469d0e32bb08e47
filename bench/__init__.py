"""Benchmarks: `python -m bench.train_speed` measures our trainer against a plain-Trainer baseline."""

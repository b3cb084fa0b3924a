"""Speed benchmarks, each suite against a peer in the same run: `python -m vitpose_hf.benchmarks --help`."""

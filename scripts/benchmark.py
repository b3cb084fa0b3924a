"""Speed benchmarks of vitpose_hf against its peers, measured in one process and reported as ratios.

    python scripts/benchmark.py --help        # the same as `python -m vitpose_hf.benchmarks`
"""

from vitpose_hf.benchmarks.__main__ import main

if __name__ == "__main__":
    main()

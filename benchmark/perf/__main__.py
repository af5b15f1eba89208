"""``python -m benchmark.perf``: see :mod:`benchmark.perf`."""
from benchmark.perf.cli import main

if __name__ == "__main__":  # not in the processes that multiprocessing starts, which import this module too
    main()

"""`python -m benchmark ...` is an alias of the `sslbench` console script."""
from benchmark.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

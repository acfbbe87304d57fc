import os

# OpenMP threads that spin-wait for each other collapse when another process takes a core
# (a 2-thread SFT on 2 cores beside one busy process ran >16x slower): idle threads sleep.
# Set before torch loads libgomp; a value in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pipeline.cli import main  # noqa: E402

raise SystemExit(main())

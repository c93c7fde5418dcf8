"""``python -m symphainy``."""

from symphainy.cli import main

raise SystemExit(main())

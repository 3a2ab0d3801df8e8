"""`python -m vivified` runs the `vivified` command."""

from vivified.cli import main

raise SystemExit(main())

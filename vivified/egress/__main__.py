"""`python -m vivified.egress` runs the egress proxy alone (same as `vivified egress`)."""

import sys

from vivified.cli import main

raise SystemExit(main(["egress", *sys.argv[1:]]))

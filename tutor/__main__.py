"""`python -m tutor` runs the command-line interface."""

from tutor.cli import main

raise SystemExit(main())

"""Start the tutor in the browser: `python launch.py [--port 7860]`."""

import sys

from tutor.cli import main

raise SystemExit(main(["serve", *sys.argv[1:]]))

"""``python -m streamer``: the command line."""

import sys

from streamer.cli import main

sys.exit(main())

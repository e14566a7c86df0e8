#!/usr/bin/env python3
"""Train or fine-tune a CTC model: a thin entry over ``streamer train`` (see streamer/train/cli.py)."""

import sys

from streamer.train.cli import main

if __name__ == "__main__":
    sys.exit(main())

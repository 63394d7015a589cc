#!/usr/bin/env python3
"""Camera demo: `python tools/camera_demo.py [--source 0] [--task classify|enhance|generate] [--output out.mp4]`.
The same as `edgevision demo`; with no arguments it labels the bundled sample clip with the bundled
EfficientNet-Lite0 and prints a latency summary."""
import sys

from edgevision.stream.demo import main

if __name__ == "__main__":
    sys.exit(main())

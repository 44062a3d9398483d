"""``python -m kubenas_dev.cluster.agent <config.json>``: the launcher starts the agent this way."""

from __future__ import annotations

import sys

from kubenas_dev.cluster import log as devlog
from kubenas_dev.cluster.agent.agent import main

if __name__ == "__main__":
    devlog.configure()
    sys.exit(main(sys.argv[1]))

"""``python -m kubenas.devcluster.agent <config.json>``: the launcher starts the agent this way."""

from __future__ import annotations

import sys

from kubenas.devcluster import log as devlog
from kubenas.devcluster.agent.agent import main

if __name__ == "__main__":
    devlog.configure()
    sys.exit(main(sys.argv[1]))

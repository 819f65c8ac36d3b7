"""Fine-tuning jobs: a persistent queue in the registry and a worker that runs it."""

import logging
from pathlib import Path


def log_to(path: Path) -> None:
    """Where a job's or build's own process writes its log."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=path, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

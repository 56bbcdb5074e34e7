"""``python -m womac.pipeline`` runs the CLI, as the ``womac`` console script does."""

from womac.pipeline.cli import main

main()

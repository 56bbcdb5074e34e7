"""``python -m pipeline`` runs the CLI, as the ``womac`` console script does."""

from pipeline.cli import main

main()

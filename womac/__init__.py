"""womac: expected 12-month WOMAC improvement after MSC therapy for knee and hip OA, explained.

The parts live under this one package (``womac.data``, ``womac.features``, ``womac.models``,
``womac.pipeline``, ``womac.serve``) so that the code shipped with a registered model can be
imported beside a data scientist's own ``data`` or ``models`` packages without displacing them.
"""

"""probe's own model zoo: the bundled tiny models, minilm-mlm's head, model cards, and the tuned lenses
shipped for the default models (``LENSES/<model name>/``, written by ``benchmarks/lens.py --train``)."""

from pathlib import Path

LENSES = Path(__file__).resolve().parent / "lenses"

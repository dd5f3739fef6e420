#!/usr/bin/env bash
# Family parity and capture speed on a CUDA machine: the numbers issue #12 asks for.
#
# Needs only torch, transformers and pytest (+ probe's source: run from the repository root).
# Without transformer_lens the bridge parity tests skip and the benchmark leaves out its TL rows;
# without pandas the few tests that return frames (verify, logit-lens table, models list) skip.
# Nothing is downloaded: every model is built from a config with random weights.
#
#   bash benchmarks/gpu_check.sh            # parity on cuda, then the benchmark
#   REPS=20 bash benchmarks/gpu_check.sh    # more repetitions for the timings
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error

python - <<'PY'
import importlib.util, torch, transformers
print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
      f"cuda {torch.cuda.is_available()} ({torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-'}), "
      f"transformer_lens {'yes' if importlib.util.find_spec('transformer_lens') else 'no'}, "
      f"pandas {'yes' if importlib.util.find_spec('pandas') else 'no'}")
assert torch.cuda.is_available(), "no CUDA device: run this on a GPU machine"
PY

echo "== family parity on cuda (every hook vs HF on a right-padded batch; vs TL's bridge where installed)"
PROBE_TEST_DEVICE=cuda python -m pytest -q -p no:cacheprovider tests/test_families.py -rs

echo "== capture benchmark, GPT-2-small shape, cuda (wall clock, synchronised)"
python benchmarks/capture.py --device cuda --reps "${REPS:-10}"
python benchmarks/capture.py --device cuda --reps "${REPS:-10}" --batch 16 --seq 512

#!/usr/bin/env bash
# Two trials at once on one GPU: does TensorFlow see the GPU, does each trial get it (its
# CUDA_VISIBLE_DEVICES), do the two share it without running out of memory (memory growth), and
# how long does an epoch take? Prints all of it; asserts nothing.
#
#   benchmarks/gpu_check.sh [DIR]     # DIR keeps the study, MLflow store and logs (default: a temp dir)
#
# Run from anywhere; uses the repository's .venv (override with PY=... DUALTUNE=...).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DUALTUNE=${DUALTUNE:-.venv/bin/dualtune}
DIR=${1:-$(mktemp -d -t dualtune-gpu-check-XXXXXX)}
mkdir -p "$DIR"
export TF_FORCE_GPU_ALLOW_GROWTH=true
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-0}  # keep TF's "Created device" lines

echo "== $(date -u +%FT%TZ) $(hostname); results in $DIR"
nvidia-smi
"$PY" -c "import tensorflow as tf; print(tf.__version__, tf.config.list_physical_devices('GPU'))"

# While the study runs: the GPU memory each process holds, and each process's CUDA_VISIBLE_DEVICES
# as /proc shows it. /proc shows the environment a process was started with: a trial forked by
# the trial server (local/launcher.py) shows the server's, not the one it runs with; its own
# is its MLflow tag dualtune.gpu, and the GPU TensorFlow created in it is in its log (below).
sample() {
  declare -A seen=()
  while sleep 1; do
    for pid in $(pgrep -f 'trainer\.task|local/launcher\.py' || true); do
      [[ -n "${seen[$pid]:-}" ]] && continue
      seen[$pid]=1
      cvd=$(tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep '^CUDA_VISIBLE_DEVICES=' || echo 'CUDA_VISIBLE_DEVICES unset')
      cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-90)
      echo "process $pid: $cvd  ($cmd)" >> "$DIR/processes.txt"
    done
    nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader >> "$DIR/gpu_memory.txt" 2>/dev/null
  done
}
sample &
SAMPLER=$!

start=$(date +%s)
"$DUALTUNE" tune --study gpu-check --max-trials 2 --parallel-trials 2 \
  --workdir "$DIR/studies" --tracking-uri "sqlite:///$DIR/mlflow.db" \
  -- --num_examples=20000 --num_epochs=2 2>&1 | tee "$DIR/tune.log"
status=${PIPESTATUS[0]}
kill "$SAMPLER" 2>/dev/null
wait "$SAMPLER" 2>/dev/null
echo "== dualtune tune exited $status after $(( $(date +%s) - start )) s"

echo "== trial processes seen (pid: CUDA_VISIBLE_DEVICES)"
cat "$DIR/processes.txt" 2>/dev/null
echo "== peak GPU memory per process (nvidia-smi samples)"
sort -u "$DIR/gpu_memory.txt" 2>/dev/null | sort -t, -k2 -h | tail -4

"$PY" - "$DIR" <<'EOF'
"""Per trial: the CUDA_VISIBLE_DEVICES dualtune gave it (its MLflow tag dualtune.gpu), the GPU
TensorFlow created in it, and each epoch's duration from the trainer's own log lines."""
import datetime
import pathlib
import re
import sqlite3
import sys

root = pathlib.Path(sys.argv[1])
rows = sqlite3.connect(root / "mlflow.db").execute(
    "SELECT d.value, g.value FROM tags d JOIN tags g ON d.run_uuid = g.run_uuid "
    "WHERE d.key = 'dualtune.dir' AND g.key = 'dualtune.gpu'"
)
gpu_of = {pathlib.Path(d).name: g for d, g in rows}

def stamp(line):
    return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")

for trial in sorted((root / "studies" / "gpu-check" / "trials").iterdir()):
    out = (trial / "stdout.log").read_text(errors="replace").splitlines()
    err = (trial / "stderr.log").read_text(errors="replace")
    devices = sorted(set(re.findall(r"Created device (\S+GPU:\d+).*?(pci bus id: [0-9a-f:.]+)", err)))
    gpu = gpu_of.get(trial.name, "?") or "not set (no GPU found)"
    print(f"== trial {trial.name}: CUDA_VISIBLE_DEVICES={gpu}; "
          f"TensorFlow devices: {devices or 'no GPU device created (see stderr.log)'}")
    epochs = [(stamp(l), l) for l in out if " INFO epoch " in l]
    begin = next((stamp(l) for l in out if "read " in l and "eval" in l), None)
    for (t, line), prev in zip(epochs, [begin] + [t for t, _ in epochs]):
        took = f"{(t - prev).total_seconds():6.2f} s" if prev else "   ?"
        print(f"  {took}  {line[24:110]}")
    print("  (the first epoch's time includes building the model and tracing it)")
EOF
exit "$status"

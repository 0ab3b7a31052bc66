#!/bin/bash
# Bit-for-bit test of recipe.py: same recipe, different thread counts and CPU code paths.
cd /work/scratch13
PY=/work/main/.venv/bin/python
run() { name=$1; shift; env "$@" nice -n 19 $PY recipe.py runs/det-$name --steps 20 --layers 2 --mlp 384 --loss all --mix 0.25,0.15,0.4,0.2 --log-every 20 $EXTRA 2>&1 | grep -E "saved|^step"; }
EXTRA="--threads 1" run t1 OMP_NUM_THREADS=1
EXTRA="--threads 2" run t2 OMP_NUM_THREADS=2
EXTRA="--threads 1 --deterministic" run t1-det OMP_NUM_THREADS=1
EXTRA="--threads 1" run t1-noavx ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 OMP_NUM_THREADS=1
EXTRA="--threads 1" run t1-mklsse ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=SSE4_2 OMP_NUM_THREADS=1

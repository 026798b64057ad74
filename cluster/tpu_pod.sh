#!/usr/bin/env bash
# Runs the same sdfjax command on every worker of a Cloud TPU VM pod slice.
#
#   TPU_NAME=my-v4-32 ZONE=us-central2-b cluster/tpu_pod.sh \
#     python -m sdfjax.launch.train --config=configs/chair16.py --workdir=gs://bucket/runs/chairs
#
# Needs: gcloud with access to the TPU, this repository cloned at the same path on every
# worker (REPO, default ~/sdfjax) with `make setup` run there and jax[tpu] installed, and
# the dataset (or a copy of data/<name>) readable from every worker. The JAX TPU runtime
# supplies the coordinator, so the launcher's jax.distributed.initialize() needs no flags.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
REPO=${REPO:-~/sdfjax}
[ $# -gt 0 ] || { echo "usage: TPU_NAME=... ZONE=... $0 <command...>"; exit 2; }
printf -v CMD '%q ' "$@"
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all \
  --command "cd $REPO && source .venv/bin/activate && $CMD"

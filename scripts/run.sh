#!/usr/bin/env bash
# The whole system on this machine: local Kafka, one SQLite file per service, a demo clinic.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
exec $UV run --frozen clinic run "$@"

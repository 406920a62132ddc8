#!/usr/bin/env bash
# Every check and every test, against a real Apache Kafka broker and a real PostgreSQL server
# that the test session starts itself (settings pointing at existing servers win:
# CLINIC_TEST_KAFKA_BOOTSTRAP, CLINIC_TEST_POSTGRES_DSN).
set -euo pipefail
cd "$(dirname "$0")/.."
export CLINIC_NEED_POSTGRES=1
source scripts/bootstrap.sh
started=$(date +%s)

echo "== ruff";          $UV run --frozen ruff check .
echo "== ruff format";   $UV run --frozen ruff format --check --quiet .
echo "== mypy";          $UV run --frozen mypy
echo "== import-linter"; $UV run --frozen lint-imports --no-cache
echo "== Kafka jars";    $UV run --frozen python -m clinic_local.kafka fetch
echo "== stripe-mock";   $UV run --frozen python -m clinic_local.stripe_mock fetch

echo "== pytest"
set +e
$UV run --frozen pytest -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
echo "== test command finished in $(( $(date +%s) - started ))s with pytest status $status"
exit "$status"

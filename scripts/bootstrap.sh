# Sourced by run.sh and test.sh: make sure uv, Java, Maven (and for tests PostgreSQL) exist,
# then install the locked workspace. Safe to run again; it only installs what is missing.
set -euo pipefail

UV_VERSION="0.13.8"

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
if [ "${CLINIC_NEED_POSTGRES:-0}" = "1" ] && [ -z "${CLINIC_TEST_POSTGRES_DSN:-}" ] \
    && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_apt+=(postgresql postgresql-contrib)
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" != "0" ]; then
    echo "missing: ${need_apt[*]}; install them (Debian: apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
  echo "installing ${need_apt[*]} from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  python3 -m pip install --quiet --disable-pip-version-check "uv==${UV_VERSION}"
fi
UV="python3 -m uv"
$UV --version >/dev/null 2>&1 || UV="uv"
export UV
$UV sync --frozen --all-packages --quiet

# Sourced by the scripts in this folder: make sure .venv exists and holds what pyproject.toml asks
# for (reinstalling only when pyproject.toml changed), and put it first on PATH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DISTILLERY_VENV:-$ROOT/.venv}"
PYTHON_BIN="${PYTHON:-python3}"
EXTRAS="${DISTILLERY_EXTRAS:-dev,local}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV" >&2
    "$PYTHON_BIN" -m venv "$VENV"
fi

stamp="$VENV/.distillery-installed"
want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1) $EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> installing distillery[$EXTRAS] into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[$EXTRAS]"
    echo "$want" > "$stamp"
fi

export PATH="$VENV/bin:$PATH"
cd "$ROOT"

# Shared set-up for scripts/serve and scripts/test: a virtualenv in .venv with the project installed (editable).
# Re-installs only when pyproject.toml changed (a stamp under .venv keeps its hash and the extras installed).

pick_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys; raise SystemExit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "error: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

ensure_venv() {
  local extras="$1" python stamp want
  if [ ! -x .venv/bin/python ]; then
    python=$(pick_python)
    echo "==> creating virtualenv .venv with $("$python" --version)"
    "$python" -m venv .venv
  fi
  stamp=.venv/.hr-registry-installed
  want="$(sha256sum pyproject.toml | cut -d' ' -f1) extras=${extras:-none}"
  if [ ! -f "$stamp" ] || ! grep -qxF "$want" "$stamp"; then
    # a stamp for more extras also satisfies fewer: dev implies the runtime set
    if [ -z "$extras" ] && [ -f "$stamp" ] && grep -qxF "$(sha256sum pyproject.toml | cut -d' ' -f1) extras=dev" "$stamp"; then
      return 0
    fi
    echo "==> installing hr-registry${extras:+[$extras]} and its dependencies into .venv (first run takes a minute)"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
    if ! .venv/bin/python -m pip install --disable-pip-version-check -e ".${extras:+[$extras]}" \
        > .venv/pip-install.log 2>&1 || ! .venv/bin/python -c "import registry, catalog" 2>/dev/null; then
      tail -n 40 .venv/pip-install.log >&2
      echo "error: installing the project failed (full log: .venv/pip-install.log)" >&2
      return 1
    fi
    echo "$want" > "$stamp"
  fi
}

#!/usr/bin/env bash
# Lock files: the exact version of every installed package of one stack (transitive ones included).
#   tools/lock.sh freeze PYTHON LOCKFILE HEADER  write LOCKFILE from `pip freeze` of PYTHON's environment
#   tools/lock.sh check  PYTHON LOCKFILE         fail if PYTHON's environment differs from LOCKFILE
# Both ignore pip itself and the editable lt-detectron (and detectron2 where it is built from source: its
# version is pinned by the commit in the Makefile, not by the registry).
set -euo pipefail
cmd="${1:?usage: tools/lock.sh freeze|check PYTHON LOCKFILE [HEADER]}"
py="${2:?python}"
lock="${3:?lock file}"

frozen() {
  "$py" -m pip freeze --all --exclude-editable --disable-pip-version-check 2>/dev/null \
    | grep -v -i -E '^(pip|lt-detectron|lt_detectron|detectron2)([=@ ]|$)' \
    | grep -v -E '^-e |@ file:' \
    | LC_ALL=C sort -f
}

case "$cmd" in
  freeze)
    header="${4:-}"
    tmp="$(mktemp "${lock}.XXXXXX")"
    {
      printf '%s\n' "$header" | sed 's/^/# /'
      echo "# Python $("$py" -c 'import platform; print(platform.python_version())') on $(uname -sm)."
      echo "# Regenerate with: make lock STACK=<stack> (fresh virtual environment from the intent file + pip freeze)."
      frozen
    } >"$tmp"
    mv -f "$tmp" "$lock"
    echo "wrote $lock ($(grep -c -v '^#' "$lock") packages)"
    ;;
  check)
    want="$(grep -v -E '^\s*(#|$)' "$lock" | LC_ALL=C sort -f)"
    have="$(frozen)"
    if [ "$want" != "$have" ]; then
      echo "error: the environment of $py differs from $lock (< lock, > installed):" >&2
      diff <(echo "$want") <(echo "$have") >&2 || true
      echo "Fix: rebuild the environment (make clean-venv STACK=...; make setup STACK=...) or refresh the lock" \
        "(make lock STACK=...) if the change is intended." >&2
      exit 1
    fi
    echo "environment matches $lock"
    ;;
  *)
    echo "error: unknown command '$cmd' (freeze or check)" >&2
    exit 2
    ;;
esac

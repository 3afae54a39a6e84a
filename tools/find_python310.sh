#!/usr/bin/env bash
# Print the path of a Python 3.10 interpreter (sal-detectron2 ships only a cp310 wheel).
# Order: $PYTHON310, python3.10 on PATH (if it really runs), pyenv's 3.10.x, common system paths.
set -u
try() { "$1" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1 && { echo "$1"; exit 0; }; }
[ -n "${PYTHON310:-}" ] && try "$PYTHON310"
command -v python3.10 >/dev/null 2>&1 && try "$(command -v python3.10)"
for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10*/bin/python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10; do
  [ -x "$p" ] && try "$p"
done
echo "error: no Python 3.10 found. Install it (e.g. 'pyenv install 3.10.13') or set PYTHON310=/path/to/python3.10." >&2
exit 1

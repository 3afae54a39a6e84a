#!/usr/bin/env bash
# Print the path of a Python interpreter of the version given as the first argument (default 3.10).
# Order: $PYTHON<major><minor> (e.g. PYTHON312), python<ver> on PATH (if it really runs), pyenv's <ver>.x,
# common system paths. The quick-start stack needs 3.10 (sal-detectron2 ships only a cp310 wheel); the current
# stack needs 3.12.
set -u
ver="${1:-3.10}"
major="${ver%%.*}"
minor="${ver#*.}"
var="PYTHON${major}${minor}"
try() {
  "$1" -c "import sys; assert sys.version_info[:2] == ($major, $minor)" >/dev/null 2>&1 && { echo "$1"; exit 0; }
}
[ -n "${!var:-}" ] && try "${!var}"
command -v "python$ver" >/dev/null 2>&1 && try "$(command -v "python$ver")"
for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$ver".*/bin/python"$ver" /usr/bin/python"$ver" \
  /usr/local/bin/python"$ver"; do
  [ -x "$p" ] && try "$p"
done
echo "error: no Python $ver found. Install it (e.g. 'pyenv install $ver') or set $var=/path/to/python$ver." >&2
exit 1

#!/usr/bin/env bash
# Build Detectron2 from source into PYTHON's environment (the current stack): tools/install_detectron2.sh PYTHON SOURCE
# SOURCE is anything pip accepts: a git URL pinned to a commit, a source tarball or a directory. The build uses the
# environment's torch (--no-build-isolation), so torch must be installed first. The built wheel is kept in
# $LT_D2_WHEEL_CACHE (default ~/.cache/lt-detectron/detectron2), keyed by the source (its content for a file), the
# Python and torch versions and the CUDA settings, so a second virtual environment reuses it instead of compiling
# again; LT_D2_WHEEL_CACHE= (empty) turns that off. Runtime dependencies come from the lock file: installed here
# with --no-deps unless D2_WITH_DEPS=1 (used when a lock is generated, with D2_CONSTRAINTS=<intent file>).
set -euo pipefail
py="${1:?usage: tools/install_detectron2.sh PYTHON SOURCE}"
src="${2:?usage: tools/install_detectron2.sh PYTHON SOURCE}"
export MAX_JOBS="${MAX_JOBS:-2}"
cache_root="${LT_D2_WHEEL_CACHE-${XDG_CACHE_HOME:-$HOME/.cache}/lt-detectron/detectron2}"
deps="--no-deps"
[ "${D2_WITH_DEPS:-0}" = 1 ] && deps=""

if [ -f "$src" ]; then
  src="$(cd "$(dirname "$src")" && pwd)/$(basename "$src")"
  src_id="$(sha256sum "$src" | cut -c1-64)"
elif [ -d "$src" ]; then
  src="$(cd "$src" && pwd)"
  src_id="dir:$src"  # a working copy can change: never cached
  cache_root=""
else
  src_id="$src"
fi

if [ -z "$cache_root" ]; then
  echo "building Detectron2 from $src (MAX_JOBS=$MAX_JOBS)"
  # shellcheck disable=SC2086
  "$py" -m pip install -q --no-build-isolation $deps ${D2_CONSTRAINTS:+-c "$D2_CONSTRAINTS"} "$src"
  exit 0
fi

env_id="$("$py" -c 'import platform, torch; print(platform.python_version(), torch.__version__)')"
key="$(printf '%s\n' "$src_id" "$env_id" "${FORCE_CUDA:-}" "${TORCH_CUDA_ARCH_LIST:-}" "${CUDA_HOME:-}" \
  | sha256sum | cut -c1-16)"
dir="$cache_root/$key"
wheel="$(ls "$dir"/detectron2-*.whl 2>/dev/null | head -n1 || true)"
if [ -z "$wheel" ]; then
  echo "building a Detectron2 wheel from $src (python/torch $env_id, MAX_JOBS=$MAX_JOBS; several minutes)"
  mkdir -p "$cache_root"
  tmp="$(mktemp -d "$cache_root/.build.XXXXXX")"
  "$py" -m pip wheel -q --no-build-isolation --no-deps -w "$tmp" "$src"
  mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"  # another process may have finished first
  wheel="$(ls "$dir"/detectron2-*.whl | head -n1)"
else
  echo "reusing the Detectron2 wheel $wheel"
fi
"$py" -m pip install -q --force-reinstall --no-deps "$wheel"
if [ -z "$deps" ]; then
  # Its missing dependencies only (nothing installed is upgraded), within $D2_CONSTRAINTS (the stack's intent file).
  "$py" -m pip install -q ${D2_CONSTRAINTS:+-c "$D2_CONSTRAINTS"} "$wheel"
fi

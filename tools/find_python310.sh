#!/usr/bin/env bash
# Kept for existing scripts: print the path of a Python 3.10 interpreter (see find_python.sh).
exec "$(dirname "$0")/find_python.sh" 3.10

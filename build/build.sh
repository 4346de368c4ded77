#!/usr/bin/env bash
# Builds Heron's frozen one-dir programs with PyInstaller: dist/heron-manager/ and dist/heron-agent/.
#
#   bash build/build.sh [manager|agent|all]      (default: all; `make build` runs this)
#
# Environment:
#   PYTHON    interpreter with PyInstaller and Heron's runtime deps (default: the build venv
#             .venv-build/bin/python that `make build` installs, else .venv/bin/python)
#   DISTPATH  output directory (default: dist)       WORKPATH  PyInstaller work dir (default: .pyi-work)
#   NICE      niceness for the build (default: 10; the build machines are shared)
#
# PyInstaller's default work path is ./build, which is this folder: never let it write here.
# It cannot cross-compile: the Windows programs are built on Windows (.github/workflows/windows.yml).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv-build/bin/python ]; then PYTHON=.venv-build/bin/python
    elif [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python
    elif [ -x .venv/Scripts/python.exe ]; then PYTHON=.venv/Scripts/python.exe
    else PYTHON=python3; fi
fi
DISTPATH="${DISTPATH:-$ROOT/dist}"
WORKPATH="${WORKPATH:-$ROOT/.pyi-work}"
NICE="${NICE:-10}"
what="${1:-all}"

case "$what" in
    all) programs=(heron-manager heron-agent) ;;
    manager|heron-manager) programs=(heron-manager) ;;
    agent|heron-agent) programs=(heron-agent) ;;
    *) echo "usage: $0 [manager|agent|all]" >&2; exit 2 ;;
esac

run_nice=()
if command -v nice >/dev/null 2>&1; then run_nice=(nice -n "$NICE"); fi

mkdir -p "$DISTPATH" "$WORKPATH"
for program in "${programs[@]}"; do
    start=$(date +%s)
    "${run_nice[@]}" "$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
        --workpath "$WORKPATH/$program" --distpath "$DISTPATH" "build/$program.spec"
    took=$(( $(date +%s) - start ))
    # The program must start from its one-dir (a missing module or data file fails here, not
    # on a customer's machine).
    exe="$DISTPATH/$program/$program"
    [ -f "$exe.exe" ] && exe="$exe.exe"
    if ! (cd / && env -u PYTHONPATH -u PYTHONHOME "$exe" --help >/dev/null); then
        echo "$exe does not start" >&2
        exit 1
    fi
    size=$(du -sm "$DISTPATH/$program" | cut -f1)
    files=$(find "$DISTPATH/$program" -type f | wc -l)
    echo "built $DISTPATH/$program in ${took}s: ${size} MiB, ${files} files"
done

#!/usr/bin/env bash
# Install llama-cpp-python[server] into a virtualenv, for the HTTP backend tests.
#
# Why this script exists: PyPI has only the source of llama-cpp-python, so pip compiles
# it (~10 minutes on 2 cores). The default native build uses AMX instructions that fault
# in our VMs (crash on the first request), hence GGML_NATIVE=OFF (AVX2, no AVX-512/AMX).
# The version is pinned so pip's wheel cache (~/.cache/pip/wheels, keyed by the sdist
# URL) is hit on every later run: a cached reinstall takes seconds, not minutes (measured
# here: build 574 s; install into a fresh venv from the cache 11 s). pip's cache key ignores
# CMAKE_ARGS: if a natively built wheel of this version is already cached, remove it with
# `pip cache remove llama_cpp_python` before running this script.
#
# Usage: .ci/install_llama_server.sh [VENV]   (default .venv)
# Exits 0 even when the build is impossible (no compiler, no network, build error): the
# tests that need the server then skip, naming the reason this script printed.
set -u

VENV="${1:-.venv}"
PY="$VENV/bin/python"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
REASON_FILE="$VENV/.llama_server_unavailable"

give_up() {
    echo "install_llama_server: cannot install llama-cpp-python[server]: $1" >&2
    echo "install_llama_server: the tests that need the llama.cpp server will be skipped." >&2
    mkdir -p "$VENV" && echo "$1" >"$REASON_FILE"
    exit 0
}

[ -x "$PY" ] || give_up "no python at $PY (create the virtualenv first)"

if "$PY" -c "import llama_cpp, llama_cpp.server, sys; sys.exit(llama_cpp.__version__ != '$VERSION')" 2>/dev/null; then
    echo "install_llama_server: llama-cpp-python $VERSION already installed in $VENV"
    rm -f "$REASON_FILE"
    exit 0
fi

# a failed compile costs ~10 minutes: `make test` does not retry it on every call
FAILED_MARK="$VENV/.llama_server_build_failed"
if [ "$(cat "$FAILED_MARK" 2>/dev/null)" = "$VERSION" ] && [ -z "${LLAMA_RETRY:-}" ]; then
    echo "install_llama_server: building llama-cpp-python $VERSION failed before ($(cat "$REASON_FILE" 2>/dev/null));" \
         "not retrying (LLAMA_RETRY=1 to retry)" >&2
    exit 0
fi

for tool in cmake cc c++; do
    command -v "$tool" >/dev/null || give_up "no '$tool' on PATH (needed to compile llama.cpp)"
done

export CMAKE_ARGS="-DGGML_NATIVE=OFF ${LLAMA_EXTRA_CMAKE_ARGS:-}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-1}"

start=$(date +%s)
echo "install_llama_server: installing llama-cpp-python[server]==$VERSION into $VENV" \
     "(CMAKE_ARGS='$CMAKE_ARGS', jobs=$CMAKE_BUILD_PARALLEL_LEVEL; ~10 min when not cached)"
if ! "$PY" -m pip install --disable-pip-version-check --prefer-binary \
        "llama-cpp-python[server]==$VERSION"; then
    echo "$VERSION" >"$FAILED_MARK"
    give_up "pip install llama-cpp-python[server]==$VERSION failed (see the log above)"
fi
"$PY" -c "import llama_cpp.server" 2>/dev/null || give_up "installed, but 'import llama_cpp.server' fails"
rm -f "$REASON_FILE" "$FAILED_MARK"
echo "install_llama_server: done in $(( $(date +%s) - start ))s"

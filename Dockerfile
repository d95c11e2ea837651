# The tagging service: one uvicorn process that owns the model and its batching queue.
#
#   DOCKER_BUILDKIT=1 docker build -t music-tagger .
#   DOCKER_BUILDKIT=1 docker build --build-arg TORCH_FLAVOUR=cu126 -t music-tagger:cu126 .
#   DOCKER_BUILDKIT=1 docker build --build-arg 'TAGGER_EXTRAS=[scale]' -t music-tagger:scale .
#     (with Ray Data, for `tagger tag --engine ray` and the KubeRay job in deploy/kuberay/)
#
# No CUDA base image: torch's wheels carry their CUDA runtime, so a GPU host needs only the NVIDIA
# driver and the NVIDIA container toolkit. docs/deployment.md says which TORCH_FLAVOUR fits which
# driver, and how to build without access to Docker Hub. There is no `# syntax=` line on purpose:
# it would pull the Dockerfile frontend from Docker Hub, and the built-in frontend of Docker
# 20.10 and later already knows `RUN --mount=type=secret`.

FROM debian:bookworm-slim AS build
# Debian stable keeps package versions fixed for the release; pinning exact revisions would only
# break the build at each security update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY model ./model
COPY app ./app
COPY training ./training

# cu130: the pyproject pins as they are (torch 2.14.1 from PyPI, CUDA 13.0: NVIDIA driver >= 580,
# Turing to Blackwell GPUs). cu126 and cpu: the same torch and torchaudio versions from PyTorch's
# own index, built for CUDA 12.6 (drivers from 525, Maxwell to Hopper GPUs) or for CPU only (a
# much smaller image). Every other dependency and every version still comes from pyproject.toml.
ARG TORCH_FLAVOUR=cu130
# Optional extras of pyproject.toml, e.g. "[scale]" (Ray Data); none for the service.
ARG TAGGER_EXTRAS=""
# The cacert secret is the CA bundle of a TLS-intercepting proxy, when the build runs behind one.
RUN --mount=type=secret,id=cacert,required=false \
    set -eu; \
    case "$TORCH_FLAVOUR" in \
      cu130|cu126|cpu) ;; \
      *) echo "TORCH_FLAVOUR must be cu130, cu126 or cpu, not '$TORCH_FLAVOUR'" >&2; exit 1 ;; \
    esac; \
    if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi; \
    python3 -m venv /venv; \
    if [ "$TORCH_FLAVOUR" != "cu130" ]; then \
      python3 -c 'import tomllib; deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; print("\n".join(d for d in deps if d.split("==")[0] in ("torch", "torchaudio")))' > torch-pins.txt; \
      /venv/bin/pip install --no-cache-dir --index-url "https://download.pytorch.org/whl/$TORCH_FLAVOUR" -r torch-pins.txt; \
    fi; \
    /venv/bin/pip install --no-cache-dir .; \
    if [ -n "$TAGGER_EXTRAS" ]; then /venv/bin/pip install --no-cache-dir ".$TAGGER_EXTRAS"; fi; \
    /venv/bin/pip check; \
    /venv/bin/python -c "import torchaudio.transforms, app.service.app"

FROM debian:bookworm-slim
LABEL org.opencontainers.image.title="music-tagger" \
      org.opencontainers.image.description="Music auto-tagging service (Query2Label over a ResCNN backbone)" \
      org.opencontainers.image.licenses="MIT"
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tagger \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin tagger
COPY --from=build /venv /venv
# The root filesystem may be read-only (compose, Kubernetes): nothing writes byte code, and HOME
# points at /tmp, the one writable place, for any library that wants a cache directory.
# Compiled graphs are off: building them (a child process of the service, or `tagger compile`)
# needs a C++ compiler and Python headers (450 MB more), and the package's library is loaded from
# a temporary folder, which compose mounts noexec (docs/deployment.md, "Compiled graphs in the
# image"). Set TAGGER_COMPILE=auto in an image that has them, with an exec-able cache volume.
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    TAGGER_HOST=0.0.0.0 \
    TAGGER_PORT=8000 \
    TAGGER_COMPILE=off
USER 10001:10001
EXPOSE 8000
# Ready means loaded and warmed up: 5 to 20 s for the bundled model on 2 CPU cores
# (scripts/docker-smoke); CUDA start-up and larger checkpoints take longer, hence the start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python3", "-c", "import os, sys, urllib.request; port = os.environ.get('TAGGER_PORT', '8000'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=4).status != 200)"]
# One process per GPU: several workers would each load the model and split the batching queue.
CMD ["tagger", "serve"]

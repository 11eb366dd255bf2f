# syntax=docker/dockerfile:1
# kube-lxcfs node agent: the FUSE filesystem (`kube-lxcfs fs`) that the DaemonSet runs on
# every node. Build from the repository root (pure Python: any architecture Debian ships):
#   docker build -f deploy/docker/node-agent.Dockerfile -t kube-lxcfs/node-agent:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -f deploy/docker/node-agent.Dockerfile .
# Nothing is fetched at run time; the package and its dependencies are in the image.
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# Only the base package: the node agent needs no webhook or Kubernetes client libraries.
RUN python3 -m venv /opt/kube-lxcfs \
    && /opt/kube-lxcfs/bin/pip install --no-cache-dir . \
    && /opt/kube-lxcfs/bin/pip uninstall -y pip

FROM ${BASE}
# fuse3 gives libfuse3 (used by mfusepy) and fusermount3 (unmounting a dead mount).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 fuse3 libfuse3-3 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/kube-lxcfs /opt/kube-lxcfs
ENV PATH=/opt/kube-lxcfs/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN kube-lxcfs --version
# SIGTERM unmounts cleanly (the DaemonSet's terminationGracePeriodSeconds covers it).
STOPSIGNAL SIGTERM
ENTRYPOINT ["kube-lxcfs"]
CMD ["fs", "/var/lib/lxcfs"]

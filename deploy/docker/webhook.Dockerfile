# syntax=docker/dockerfile:1
# kube-lxcfs webhook: the mutating admission webhook (`kube-lxcfs webhook`), run as a
# non-root user with a read-only root filesystem. Build from the repository root:
#   docker build -f deploy/docker/webhook.Dockerfile -t kube-lxcfs/webhook:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -f deploy/docker/webhook.Dockerfile .
# Nothing is fetched at run time.
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# The webhook extra (TLS, certificates) and the kubernetes extra (self-provisioning).
RUN python3 -m venv /opt/kube-lxcfs \
    && /opt/kube-lxcfs/bin/pip install --no-cache-dir ".[webhook,kubernetes]" \
    && /opt/kube-lxcfs/bin/pip uninstall -y pip

FROM ${BASE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/kube-lxcfs /opt/kube-lxcfs
ENV PATH=/opt/kube-lxcfs/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN kube-lxcfs --version
# The same ids as the Deployment's securityContext (runAsUser/runAsGroup 65532).
USER 65532:65532
EXPOSE 8443 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["kube-lxcfs"]
CMD ["webhook"]

# One image for every Waymark Python process: the APIs, the outbox relays, the journeys worker
# and bridge, and the one-shot `waymark migrate` / `waymark topics` jobs. Which process a
# container runs is chosen by its command (`waymark run <part>`), never by a different image,
# so what was tested is exactly what runs everywhere.
#
# Nothing secret is in here: passwords arrive as WAYMARK_* environment variables and the JWT /
# pseudonymisation keys as files mounted under /var/lib/waymark/keys at run time.

# ---- build: install the project and its pinned dependencies into a virtualenv ----------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# only what `pip install .` needs (pyproject names README.md as the readme); tests, bench and
# deploy files stay out of the image
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY workflows ./workflows
# the `waymark` command each container runs (`waymark run <part>`, `migrate`, `topics`) is the
# dev tooling's CLI; no service, workflow or shared module imports it
COPY devtools ./devtools

# a virtualenv so the runtime stage can copy one directory; every dependency ships a
# manylinux wheel for CPython 3.11, so no compiler is needed
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install .


# ---- runtime ----------------------------------------------------------------------------------
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WAYMARK_HOME=/var/lib/waymark

# A fixed uid/gid: every Waymark container runs as the same user, so the key files one of them
# writes into the shared `waymark-keys` volume (mode 0600) are readable by the others, and
# Kubernetes can check runAsNonRoot against a numeric user.
RUN groupadd --system --gid 10001 waymark \
 && useradd --system --uid 10001 --gid waymark --home-dir /var/lib/waymark \
            --shell /usr/sbin/nologin waymark \
 && mkdir -p /var/lib/waymark/keys /var/lib/waymark/run /var/lib/waymark/logs \
 && chown -R waymark:waymark /var/lib/waymark
# (keys/ exists in the image, owned by waymark, because Docker initialises a new named volume
# from the image's directory: the `waymark-keys` volume then starts out writable by uid 10001)

COPY --from=build /opt/venv /opt/venv

# fail the build, not the first deploy, if the console script cannot import
RUN waymark --help > /dev/null

USER 10001:10001
WORKDIR /var/lib/waymark

# Each Compose service / Kubernetes container sets its own command, e.g.
#   ["waymark", "run", "referrals-api"]   ["waymark", "migrate"]   ["waymark", "topics"]
CMD ["waymark", "--help"]

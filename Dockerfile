# pyproxy: the proxy, the watchdog and the admin tool in one image.
#
#   docker build -t pyproxy .
#   docker run -v "$PWD/conf/icd.yml:/etc/pyproxy/icd.yml:ro" -p 22121:22121 pyproxy
#   docker run pyproxy pyproxy-watchdog -f /etc/pyproxy/zoo-watchdog.conf -dc HOST:PORT PATH
#   docker compose up              # the seed's whole cluster: see docker-compose.yml
#
# The default command runs `pyproxy -c /etc/pyproxy/icd.yml`: mount your icd.yml there (its
# `listen` should be 0.0.0.0:22121). The HEALTHCHECK sends PING to PYPROXY_HEALTH_ADDR.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/pyproxy/bin:$PATH \
    PYPROXY_HEALTH_ADDR=127.0.0.1:22121

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY pyproxy ./pyproxy
# pyproxy/examples/ links to these: the package ships them
COPY conf/example.yml conf/icd.yml conf/zoo-watchdog.conf ./conf/

# The install steps of the Makefile's venv target, which `make demo` and `make test` run
# (`python -m venv`, upgrade pip, install the package from pyproject.toml), with the image's
# differences: no test extras, not editable. uvloop and hiredis install as manylinux wheels,
# so the image needs no compiler.
RUN python -m venv /opt/pyproxy \
    && /opt/pyproxy/bin/python -m pip install --no-cache-dir --upgrade pip \
    && /opt/pyproxy/bin/python -m pip install --no-cache-dir --only-binary=uvloop,hiredis . \
    && /opt/pyproxy/bin/python -c "import uvloop, hiredis, kazoo, pyproxy" \
    && groupadd --system --gid 10001 pyproxy \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin \
        pyproxy \
    && mkdir -p /etc/pyproxy \
    && rm -rf /src

WORKDIR /
# pyproxy:pyproxy, by number so that Kubernetes' runAsNonRoot can check it
USER 10001:10001

EXPOSE 22121

HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, socket; host, _, port = os.environ['PYPROXY_HEALTH_ADDR'].rpartition(':'); s = socket.create_connection((host, int(port)), timeout=2); s.sendall(b'PING\\r\\n'); raise SystemExit(0 if s.recv(64).startswith(b'+PONG') else 1)"]

CMD ["pyproxy", "-c", "/etc/pyproxy/icd.yml"]

"""Checks the wiring of deploy/ without a container engine (none runs on CI).

Parses docker-compose.yml and the Dockerfile and asserts what a running stack would
depend on: the image the replicas run is the one the Dockerfile builds, each replica
reaches the PostgreSQL service with its credentials, listens where its ports and
health check point, is healthy only through the gRPC health protocol, and stops
within the compose grace period. Exits non-zero with every problem found.

    python deploy/check_deploy.py
"""

import os
import re
import sys
from urllib.parse import urlparse

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
problems = []


def check(ok, message):
    if not ok:
        problems.append(message)


def seconds(value):
    match = re.fullmatch(r"(\d+)s", str(value))
    return int(match.group(1)) if match else None


with open(os.path.join(HERE, "docker-compose.yml")) as f:
    compose = yaml.safe_load(f)
services = compose.get("services", {})
postgres = services.get("postgres")
check(postgres is not None, "no postgres service")
replicas = {name: s for name, s in services.items() if name.startswith("replica-")}
credentials = services.get("credentials")
check(credentials is not None, "no credentials service writes the TLS and JWT material")
check(len(replicas) >= 2, f"expected at least two replicas, found {sorted(replicas)}")

pg_env = (postgres or {}).get("environment", {})
pg_test = (postgres or {}).get("healthcheck", {}).get("test", [])
check("pg_isready" in pg_test and pg_env.get("POSTGRES_USER") in pg_test and pg_env.get("POSTGRES_DB") in pg_test,
      f"postgres health check {pg_test} does not probe its own user and database")

built = [s for s in services.values() if "build" in s]
check(len(built) == 1, "exactly one service should build the image")
image = built[0].get("image") if built else None
if built:
    build = built[0]["build"]
    dockerfile = os.path.normpath(os.path.join(HERE, build.get("context", "."), build.get("dockerfile", "Dockerfile")))
    check(os.path.exists(dockerfile), f"the build's Dockerfile {dockerfile} does not exist")

host_ports = []
for name, s in sorted(replicas.items()):
    env = s.get("environment", {})
    check(s.get("image") == image, f"{name} runs {s.get('image')!r}, not the built image {image!r}")
    url = urlparse(env.get("DATABASE_URL", ""))
    check(url.scheme in ("postgres", "postgresql"), f"{name}: DATABASE_URL is not a PostgreSQL URL")
    check(url.hostname == "postgres" and (url.port or 5432) == 5432, f"{name}: DATABASE_URL does not reach the postgres service")
    check(url.username == pg_env.get("POSTGRES_USER") and url.password == pg_env.get("POSTGRES_PASSWORD"),
          f"{name}: DATABASE_URL credentials differ from the postgres service's")
    check(url.path.lstrip("/") == pg_env.get("POSTGRES_DB"), f"{name}: DATABASE_URL names another database")
    check(s.get("depends_on", {}).get("postgres", {}).get("condition") == "service_healthy",
          f"{name}: does not wait for a healthy postgres")
    listen_port = env.get("PM_LISTEN", "").rsplit(":", 1)[-1]
    check(env.get("PM_LISTEN", "").startswith("0.0.0.0:"), f"{name}: PM_LISTEN must bind all interfaces in a container")
    ports = s.get("ports", [])
    check(len(ports) == 1 and str(ports[0]).split(":")[-1] == listen_port,
          f"{name}: ports {ports} do not publish the listen port {listen_port}")
    host_ports += [str(p).split(":")[0] for p in ports]
    test = s.get("healthcheck", {}).get("test", [])
    check(test[:3] == ["CMD", "partnership-metrics", "health"],
          f"{name}: health check {test} is not the gRPC health check")
    target = urlparse(env.get("PM_TARGET", ""))
    check(target.scheme == "https" and target.hostname in ("localhost", "127.0.0.1") and str(target.port) == listen_port,
          f"{name}: PM_TARGET {env.get('PM_TARGET')!r} is not https on the listen port, as the health check needs")
    # Beyond loopback the server refuses to start without TLS and authentication.
    check(env.get("PM_TLS_CERT") and env.get("PM_TLS_KEY"), f"{name}: no TLS certificate and key")
    check((env.get("PM_JWT_JWKS") and env.get("PM_JWT_ISSUER") and env.get("PM_JWT_AUDIENCE")) or env.get("PM_TLS_CLIENT_CA"),
          f"{name}: no authentication method (PM_JWT_* or PM_TLS_CLIENT_CA)")
    check(env.get("PM_CA_CERT"), f"{name}: the health check has no PM_CA_CERT to trust the server's certificate")
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in s.get("volumes", [])}
    for var in ("PM_TLS_CERT", "PM_TLS_KEY", "PM_JWT_JWKS", "PM_CA_CERT"):
        path = env.get(var, "")
        mounted = [m for m in mounts if path.startswith(m + "/")]
        check(bool(mounted), f"{name}: {var}={path} is on no mounted volume")
        if mounted and credentials:
            writer = [str(v).split(":") for v in credentials.get("volumes", [])]
            check(any(w[0] == mounts[mounted[0]] for w in writer),
                  f"{name}: {var} lives on volume {mounts[mounted[0]]!r}, which the credentials service does not write")
    check(s.get("depends_on", {}).get("credentials", {}).get("condition") == "service_completed_successfully",
          f"{name}: does not wait for the credentials to be written")
    grace = int(env.get("PM_SHUTDOWN_GRACE_SECS", "10"))
    stop = seconds(s.get("stop_grace_period", "10s"))
    check(stop is not None and stop > grace, f"{name}: stop_grace_period {stop} must exceed the drain time {grace}")
check(len(set(host_ports)) == len(host_ports), f"replicas publish clashing host ports {host_ports}")

with open(os.path.join(HERE, "Dockerfile")) as f:
    dockerfile_text = f.read()
check(len(re.findall(r"^FROM ", dockerfile_text, re.M)) >= 2, "the Dockerfile is not multi-stage")
users = re.findall(r"^USER (\S+)", dockerfile_text, re.M)
check(bool(users) and users[-1].split(":")[0] not in ("0", "root"), "the image runs as root")
check(re.search(r'^HEALTHCHECK .*\n?.*"partnership-metrics", "health"', dockerfile_text, re.M) is not None,
      "the Dockerfile's HEALTHCHECK does not use the gRPC health check")
check(re.search(r"PM_TARGET=http://127\.0\.0\.1:50051", dockerfile_text) is not None,
      "the Dockerfile does not point the health check (PM_TARGET) at its own port")
check(re.search(r"--bin partnership-metrics", dockerfile_text) is not None, "the build stage does not build the binary")
check("EXPOSE 50051" in dockerfile_text, "the image does not expose 50051")

if problems:
    for p in problems:
        print(f"deploy check: {p}", file=sys.stderr)
    sys.exit(1)
print(f"deploy check: compose wiring ok ({len(replicas)} replicas over postgres, TLS and JWT, image {image})")

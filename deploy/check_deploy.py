"""Checks deploy/ without a container engine or a cluster (neither runs on CI).

    python deploy/check_deploy.py --binary target/debug/partnership-metrics

- docker-compose.yml and the Dockerfile: the image the replicas run is the one the
  Dockerfile builds, each replica reaches the PostgreSQL service with its
  credentials, listens where its ports and health check point, is healthy only
  through the gRPC health protocol, and stops within the compose grace period; the
  Dockerfile builds its dependencies in a layer of their own and .dockerignore keeps
  build output out of the context.
- k8s/: every manifest validates against the Kubernetes schemas (kubernetes-validate,
  strict: unknown fields are errors), and the wiring holds: selectors match the pod
  labels, ports agree with PM_LISTEN, probes are the gRPC health check with timeouts
  that fit, TLS and JWT files live on mounted Secrets, the memory limit covers the
  server's budgets, the grace period covers the drain.
- Every environment variable either file sets is one the binary reads (from its own
  `--help`), or a standard OTEL_* variable.

Exits non-zero with every problem found.
"""

import argparse
import glob
import os
import re
import subprocess
import sys
from urllib.parse import urlparse

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# The versions manifests are validated against: the newest the validator knows and
# the oldest still supported upstream that has every field used (preStop sleep).
KUBERNETES_VERSIONS = ("1.37", "1.33")
problems = []


def check(ok, message):
    if not ok:
        problems.append(message)


def seconds(value):
    match = re.fullmatch(r"(\d+)s", str(value))
    return int(match.group(1)) if match else None


def known_env(binary):
    """The environment variables the binary's commands read, from their --help."""
    names = set()
    for command in (["serve"], ["health"], [], ["report"]):
        out = subprocess.run([binary, *command, "--help"], capture_output=True, text=True, check=True).stdout
        names.update(re.findall(r"\[env: ([A-Z0-9_]+)=", out))
    return names


def check_env_names(where, names, known):
    for name in names:
        check(name in known or name.startswith("OTEL_"), f"{where}: {name} is not a setting the binary reads")


def check_compose(known):
    with open(os.path.join(HERE, "docker-compose.yml")) as f:
        compose = yaml.safe_load(f)
    services = compose.get("services", {})
    postgres = services.get("postgres")
    check(postgres is not None, "compose: no postgres service")
    replicas = {name: s for name, s in services.items() if name.startswith("replica-")}
    credentials = services.get("credentials")
    check(credentials is not None, "compose: no credentials service writes the TLS and JWT material")
    check(len(replicas) >= 2, f"compose: expected at least two replicas, found {sorted(replicas)}")

    pg_env = (postgres or {}).get("environment", {})
    pg_test = (postgres or {}).get("healthcheck", {}).get("test", [])
    check("pg_isready" in pg_test and pg_env.get("POSTGRES_USER") in pg_test and pg_env.get("POSTGRES_DB") in pg_test,
          f"compose: postgres health check {pg_test} does not probe its own user and database")

    built = [s for s in services.values() if "build" in s]
    check(len(built) == 1, "compose: exactly one service should build the image")
    image = built[0].get("image") if built else None
    if built:
        build = built[0]["build"]
        context = os.path.normpath(os.path.join(HERE, build.get("context", ".")))
        dockerfile = os.path.join(context, build.get("dockerfile", "Dockerfile"))
        check(os.path.exists(dockerfile), f"compose: the build's Dockerfile {dockerfile} does not exist")
        check(os.path.exists(os.path.join(context, ".dockerignore")), "compose: the build context has no .dockerignore")

    host_ports = []
    for name, s in sorted(replicas.items()):
        env = s.get("environment", {})
        check_env_names(f"compose {name}", env, known)
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
        # The health check follows PM_LISTEN; a PM_TARGET would have to repeat it.
        check("PM_TARGET" not in env, f"{name}: PM_TARGET set; the health check already follows PM_LISTEN")
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
    check(len(set(host_ports)) == len(host_ports), f"compose: replicas publish clashing host ports {host_ports}")
    return len(replicas), image


def check_dockerfile(known):
    with open(os.path.join(HERE, "Dockerfile")) as f:
        text = f.read()
    check(len(re.findall(r"^FROM ", text, re.M)) >= 2, "Dockerfile: not multi-stage")
    users = re.findall(r"^USER (\S+)", text, re.M)
    check(bool(users) and users[-1].split(":")[0] not in ("0", "root"), "Dockerfile: the image runs as root")
    check(re.search(r'^HEALTHCHECK .*\n?.*"partnership-metrics", "health"', text, re.M) is not None,
          "Dockerfile: the HEALTHCHECK does not use the gRPC health check")
    env_block = re.search(r"^ENV ((?:.*\\\n)*.*)$", text, re.M)
    env_names = re.findall(r"([A-Z][A-Z0-9_]*)=", env_block.group(1)) if env_block else []
    check_env_names("Dockerfile ENV", env_names, known)
    check("PM_TARGET" not in env_names, "Dockerfile: PM_TARGET pins the health check to a port PM_LISTEN may move")
    check("EXPOSE 50051" in text and "PM_LISTEN=0.0.0.0:50051" in text, "Dockerfile: EXPOSE and PM_LISTEN disagree")
    builds = [m.start() for m in re.finditer(r"cargo build --release --locked --bin partnership-metrics", text)]
    copy_src = text.find("COPY src ")
    check(len(builds) == 2 and builds[0] < copy_src < builds[1],
          "Dockerfile: no dependency layer (a cargo build before the sources are copied, then the real build)")
    manifest = text.find("COPY Cargo.toml Cargo.lock")
    check(0 <= manifest < builds[0] if builds else False, "Dockerfile: the dependency layer does not start from the manifests")
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        ignore = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    check(ignore[:1] == ["*"], ".dockerignore: not an allowlist starting with '*'")
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in copied.split():
            check(path in allowed, f".dockerignore: {path} is copied by the Dockerfile but not in the context")
    check(not {"target", ".git", ".tools"} & allowed, ".dockerignore: build output or tools re-admitted")


def quantity_mib(value):
    match = re.fullmatch(r"(\d+)(Mi|Gi)", str(value))
    if not match:
        return None
    return int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)


def check_kubernetes(known):
    import kubernetes_validate

    resources = {}
    for path in sorted(glob.glob(os.path.join(HERE, "k8s", "*.yaml"))):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if not doc:
                    continue
                for version in KUBERNETES_VERSIONS:
                    try:
                        kubernetes_validate.validate(doc, version, strict=True)
                    except kubernetes_validate.ValidationError as err:
                        problems.append(f"k8s {os.path.basename(path)} {doc.get('kind')}/{doc['metadata'].get('name')} "
                                        f"against {version}: {err.path}: {err.message}")
                resources.setdefault(doc["kind"], []).append(doc)

    def one(kind):
        found = resources.get(kind, [])
        check(len(found) >= 1, f"k8s: no {kind}")
        return found[0] if found else {}

    namespace = one("Namespace").get("metadata", {}).get("name")
    for kind, docs in resources.items():
        for doc in docs:
            if kind != "Namespace":
                check(doc["metadata"].get("namespace") == namespace, f"k8s {kind}/{doc['metadata']['name']}: not in namespace {namespace}")

    deployment = one("Deployment")
    spec = deployment.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
    check(spec.get("replicas", 1) >= 2, "k8s Deployment: fewer than 2 replicas")
    check(spec.get("selector", {}).get("matchLabels", {}).items() <= labels.items(), "k8s Deployment: selector misses the pod labels")
    containers = pod.get("containers", [])
    check(len(containers) == 1, "k8s Deployment: expected one container")
    container = containers[0] if containers else {}

    configmaps = {c["metadata"]["name"]: c.get("data", {}) for c in resources.get("ConfigMap", [])}
    env = {}
    for source in container.get("envFrom", []):
        name = source.get("configMapRef", {}).get("name")
        check(name in configmaps, f"k8s Deployment: envFrom names ConfigMap {name!r}, which is not here")
        env.update(configmaps.get(name, {}))
    secret_env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var.get("valueFrom", {}):
            secret_env[var["name"]] = var["valueFrom"]["secretKeyRef"]
    check_env_names("k8s Deployment", list(env) + list(secret_env), known)
    check("DATABASE_URL" in secret_env, "k8s Deployment: DATABASE_URL does not come from a Secret")
    check(not any(k in env for k in ("DATABASE_URL", "PM_TOKEN")), "k8s: a secret setting is given in plain text")
    check("PM_TARGET" not in env, "k8s: PM_TARGET set; the probes follow PM_LISTEN")

    listen = env.get("PM_LISTEN", "")
    check(listen.startswith("0.0.0.0:"), f"k8s: PM_LISTEN {listen!r} must bind all interfaces in a pod")
    listen_port = int(listen.rsplit(":", 1)[-1]) if listen[-1:].isdigit() else None
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
    check(listen_port in ports.values(), f"k8s Deployment: containerPort {list(ports.values())} is not the PM_LISTEN port {listen_port}")

    # TLS and JWT material: files on read-only mounts of Secrets, never a subPath (a
    # rotated Secret would not reach the server).
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = container.get("volumeMounts", [])
    for var in ("PM_TLS_CERT", "PM_TLS_KEY", "PM_CA_CERT", "PM_JWT_JWKS"):
        path = env.get(var)
        check(path, f"k8s Deployment: {var} is not set")
        if not path:
            continue
        mount = [m for m in mounts if path.startswith(m["mountPath"].rstrip("/") + "/")]
        check(len(mount) == 1, f"k8s Deployment: {var}={path} is on no mount")
        if mount:
            m = mount[0]
            check(m.get("readOnly") and "subPath" not in m, f"k8s Deployment: {var}'s mount is writable or a subPath")
            check("secret" in volumes.get(m["name"], {}), f"k8s Deployment: {var} is not on a Secret volume")
    if env.get("PM_TLS_CERT"):
        check(os.path.basename(env["PM_TLS_CERT"]) == "tls.crt" and os.path.basename(env.get("PM_TLS_KEY", "")) == "tls.key",
              "k8s Deployment: the TLS files are not the kubernetes.io/tls keys tls.crt and tls.key")
    check(env.get("PM_JWT_ISSUER") and env.get("PM_JWT_AUDIENCE"), "k8s: PM_JWT_ISSUER and PM_JWT_AUDIENCE are not set")

    services = resources.get("Service", [])
    for svc in services:
        check(svc["spec"].get("selector", {}).items() <= labels.items(), f"k8s Service/{svc['metadata']['name']}: selector misses the pods")
        for p in svc["spec"].get("ports", []):
            target = p.get("targetPort")
            check(target in ports or target in ports.values(), f"k8s Service/{svc['metadata']['name']}: targetPort {target} is no container port")
    # The probes reach localhost but the certificate names the Service.
    if services:
        expected = f"{services[0]['metadata']['name']}.{namespace}.svc"
        check(env.get("PM_TLS_SERVER_NAME") == expected,
              f"k8s: PM_TLS_SERVER_NAME {env.get('PM_TLS_SERVER_NAME')!r} is not the Service's name {expected!r}")

    grace = int(env.get("PM_SHUTDOWN_GRACE_SECS", "10"))
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    termination = pod.get("terminationGracePeriodSeconds", 30)
    check(termination > grace + pre_stop,
          f"k8s Deployment: terminationGracePeriodSeconds {termination} must exceed the drain {grace} + preStop {pre_stop}")
    wait = int(env.get("PM_DATABASE_WAIT_SECS", "30"))
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(kind, {})
        command = probe.get("exec", {}).get("command", [])
        check(command[:2] == ["partnership-metrics", "health"], f"k8s Deployment: {kind} {command} is not the gRPC health check")
        timeout = int(command[command.index("--timeout-secs") + 1]) if "--timeout-secs" in command else 3
        check(probe.get("timeoutSeconds", 1) > timeout, f"k8s Deployment: {kind} timeoutSeconds must exceed the check's own {timeout} s")
    startup = container.get("startupProbe", {})
    check(startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3) >= wait,
          f"k8s Deployment: the startup probe gives up before PM_DATABASE_WAIT_SECS ({wait} s)")
    liveness = container.get("livenessProbe", {})
    check(liveness.get("periodSeconds", 10) * liveness.get("failureThreshold", 3) > grace,
          "k8s Deployment: liveness fails within the drain, when the server reports NOT_SERVING")

    limit = quantity_mib(container.get("resources", {}).get("limits", {}).get("memory"))
    request = quantity_mib(container.get("resources", {}).get("requests", {}).get("memory"))
    budget = int(env.get("PM_REQUEST_MEMORY_MIB", "256")) + int(env.get("PM_REPORT_CACHE_MIB", "64"))
    check(limit is not None and limit >= budget + 128, f"k8s Deployment: memory limit {limit} Mi leaves under 128 Mi beside the {budget} Mi of budgets")
    check(request is not None and container.get("resources", {}).get("requests", {}).get("cpu"), "k8s Deployment: no CPU and memory requests")

    pod_sc, sc = pod.get("securityContext", {}), container.get("securityContext", {})
    check(pod_sc.get("runAsNonRoot") and pod_sc.get("runAsUser", 0) != 0, "k8s Deployment: pods may run as root")
    with open(os.path.join(HERE, "Dockerfile")) as f:
        user = re.findall(r"^USER (\d+)", f.read(), re.M)
    check(user and str(pod_sc.get("runAsUser")) == user[-1], f"k8s Deployment: runAsUser is not the image's user {user}")
    check(sc.get("allowPrivilegeEscalation") is False and sc.get("readOnlyRootFilesystem") is True
          and "ALL" in sc.get("capabilities", {}).get("drop", []),
          "k8s Deployment: the container may escalate, write its root filesystem or keep capabilities")
    check(pod.get("automountServiceAccountToken") is False, "k8s Deployment: mounts a service account token it never uses")
    accounts = [a["metadata"]["name"] for a in resources.get("ServiceAccount", [])]
    check(pod.get("serviceAccountName") in accounts, "k8s Deployment: its ServiceAccount is not here")

    pdb = one("PodDisruptionBudget").get("spec", {})
    check(pdb.get("selector", {}).get("matchLabels", {}).items() <= labels.items(), "k8s PodDisruptionBudget: selector misses the pods")
    check(pdb.get("minAvailable", 0) >= 1 and pdb.get("minAvailable", 0) < spec.get("replicas", 1),
          "k8s PodDisruptionBudget: minAvailable must keep one pod yet allow a drain")
    hpa = one("HorizontalPodAutoscaler").get("spec", {})
    ref = hpa.get("scaleTargetRef", {})
    check(ref.get("kind") == "Deployment" and ref.get("name") == deployment.get("metadata", {}).get("name"),
          "k8s HorizontalPodAutoscaler: does not scale the Deployment")
    check(hpa.get("minReplicas", 1) >= 2, "k8s HorizontalPodAutoscaler: minReplicas under 2")
    policy = one("NetworkPolicy").get("spec", {})
    check(policy.get("podSelector", {}).get("matchLabels", {}).items() <= labels.items(), "k8s NetworkPolicy: selector misses the pods")
    ingress_ports = [p.get("port") for rule in policy.get("ingress", []) for p in rule.get("ports", [])]
    check(ingress_ports and all(p in (listen_port, "grpc") for p in ingress_ports),
          f"k8s NetworkPolicy: ingress ports {ingress_ports} are not just the gRPC port {listen_port}")
    egress_ports = {p.get("port") for rule in policy.get("egress", []) for p in rule.get("ports", [])}
    database_port = 5432
    otlp = urlparse(env.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""))
    for needed, what in ((53, "DNS"), (database_port, "PostgreSQL"), (otlp.port, "the OTLP endpoint")):
        check(needed is None or needed in egress_ports, f"k8s NetworkPolicy: egress does not allow {what} ({needed})")
    return sum(len(d) for d in resources.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", required=True, help="the partnership-metrics binary whose settings to check against")
    args = parser.parse_args()
    known = known_env(args.binary)
    check({"PM_LISTEN", "DATABASE_URL", "PM_TLS_CERT", "PM_TARGET"} <= known, f"could not read the settings from {args.binary} --help")
    replicas, image = check_compose(known)
    check_dockerfile(known)
    manifests = check_kubernetes(known)
    if problems:
        for p in problems:
            print(f"deploy check: {p}", file=sys.stderr)
        sys.exit(1)
    print(f"deploy check: compose ok ({replicas} replicas over postgres, TLS and JWT, image {image}); "
          f"Dockerfile ok; {manifests} Kubernetes manifests valid against {', '.join(KUBERNETES_VERSIONS)} and wired")


if __name__ == "__main__":
    main()

"""The deploy check must fail: each case copies deploy/ (and .dockerignore), breaks
one thing a running stack depends on, and expects check_deploy.py to name it.

    python deploy/test_check_deploy.py --binary target/debug/partnership-metrics
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# (file under the copy's root, text to replace, replacement, words the report must contain)
CASES = [
    ("deploy/k8s/deployment.yaml", "containerPort: 50051", "containerPort: 50052", "is not the PM_LISTEN port"),
    ("deploy/k8s/deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "root filesystem"),
    ("deploy/k8s/deployment.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalatio: false", "against 1.37"),
    ("deploy/k8s/deployment.yaml", "terminationGracePeriodSeconds: 40", "terminationGracePeriodSeconds: 20", "must exceed the drain"),
    ("deploy/k8s/deployment.yaml", "memory: 768Mi", "memory: 256Mi", "memory limit"),
    ("deploy/k8s/deployment.yaml", "key: DATABASE_URL", "key: url", None),  # a key name is the Secret's business
    ("deploy/k8s/deployment.yaml", "value: /etc/partnership-metrics/jwks/jwks.json", "value: /srv/jwks.json", "PM_JWT_JWKS=/srv/jwks.json is on no mount"),
    ("deploy/k8s/deployment.yaml", '["partnership-metrics", "health", "--timeout-secs", "3"]\n            periodSeconds: 10',
     '["partnership-metrics", "health", "--timeout-secs", "3"]\n            periodSeconds: 5', "liveness fails within the drain"),
    ("deploy/k8s/configmap.yaml", "PM_LOG_FORMAT: json", "PM_LOG_FORMATE: json", "PM_LOG_FORMATE is not a setting"),
    ("deploy/k8s/configmap.yaml", "PM_TLS_SERVER_NAME: partnership-metrics.partnership-metrics.svc", "PM_TLS_SERVER_NAME: localhost", "not the Service's name"),
    ("deploy/k8s/service.yaml", "targetPort: grpc\n      protocol: TCP\n---", "targetPort: http\n      protocol: TCP\n---", "is no container port"),
    ("deploy/k8s/poddisruptionbudget.yaml", "      app.kubernetes.io/name: partnership-metrics", "      app.kubernetes.io/name: other", "PodDisruptionBudget: selector"),
    ("deploy/k8s/horizontalpodautoscaler.yaml", "minReplicas: 2", "minReplicas: 1", "minReplicas under 2"),
    ("deploy/k8s/networkpolicy.yaml", "port: 5432", "port: 5433", "egress does not allow PostgreSQL"),
    ("deploy/Dockerfile", "COPY Cargo.toml Cargo.lock ./\nRUN", "RUN", "dependency layer"),
    ("deploy/Dockerfile", "USER 10001:10001", "USER root", "runs as root"),
    (".dockerignore", "\n*\n", "\n", "allowlist"),
    (".dockerignore", "!migrations/\n", "", "migrations is copied by the Dockerfile but not in the context"),
    ("deploy/docker-compose.yml", "PM_LISTEN: 0.0.0.0:50051", "PM_LISTEN: 0.0.0.0:50051\n    PM_TARGET: https://localhost:50051", "PM_TARGET set"),
    ("deploy/docker-compose.yml", "stop_grace_period: 30s", "stop_grace_period: 10s", "stop_grace_period"),
]


def run(binary, root):
    return subprocess.run([sys.executable, os.path.join(root, "deploy", "check_deploy.py"), "--binary", binary],
                          capture_output=True, text=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    binary = os.path.abspath(parser.parse_args().binary)
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (path, old, new, expected) in enumerate(CASES):
            root = os.path.join(tmp, str(i))
            shutil.copytree(HERE, os.path.join(root, "deploy"))
            shutil.copy(os.path.join(ROOT, ".dockerignore"), root)
            target = os.path.join(root, path)
            with open(target) as f:
                text = f.read()
            if old not in text:
                failures.append(f"case {i}: {old!r} is not in {path}; the case is stale")
                continue
            with open(target, "w") as f:
                f.write(text.replace(old, new, 1))
            out = run(binary, root)
            if expected is None:
                if out.returncode != 0:
                    failures.append(f"case {i} ({path}: {new!r}) should pass:\n{out.stderr}")
            elif out.returncode == 0 or expected not in out.stderr:
                failures.append(f"case {i} ({path}: {new!r}): expected a failure naming {expected!r}, got "
                                f"{out.returncode}:\n{out.stderr}{out.stdout}")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)
    print(f"deploy check test: {len(CASES)} cases, each broken manifest caught or each harmless one passed")


if __name__ == "__main__":
    main()

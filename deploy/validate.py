#!/usr/bin/env python3
"""Offline checks of the deployment files, strict: a misspelt field is an error.

  python deploy/validate.py            # everything below; exit 1 on any error
  python deploy/validate.py FILE.yaml  # only these manifests

- Kubernetes manifests (deploy/k8s/): against the Kubernetes OpenAPI schemas bundled in the
  `kubernetes-validate` package, in strict mode (no unknown field), for the oldest and the
  newest Kubernetes version we claim.
- KServe resources (deploy/kserve/): against KServe's generated API models (the `kserve`
  package's `kserve.models`, plus `kubernetes.client.models` for the pod fields inside), each
  field checked by name and type, unknown fields refused, required fields enforced by the
  models' own constructors.
- The manifests agree with each other and with the binary: same image and port, the
  runtime's arguments and probes, the Service and the HPA aimed at the Deployment.
- The Dockerfile's final stage: empty base, numeric non-root USER, EXPOSE 8080, the ENV
  defaults, HEALTHCHECK through the binary, the layout from deploy/build-image-layout.sh.
- A self-test: a misspelt field and a mistyped value planted in every manifest must each
  be refused, so a validator that accepts anything fails CI.

Needs deploy/requirements.txt (see deploy/validate.sh, which makes the venv).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import sys
import types
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S_MANIFESTS = sorted((ROOT / "deploy/k8s").glob("*.yaml"))
KSERVE_MANIFESTS = sorted((ROOT / "deploy/kserve").glob("*.yaml"))
DOCKERFILE = ROOT / "Dockerfile"
# The oldest Kubernetes the manifests must work on (the preStop `sleep` action is GA from
# 1.30 on) and the newest schema kubernetes-validate bundles.
K8S_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
IMAGE = "ghcr.io/example/onnx-serve:0.1.0"
PORT = 8080
RUNTIME_ARGS = ["--model-name={{.Name}}", "--model=/mnt/models", "--port=8080", "--host=0.0.0.0"]


def load_kserve_models():
    """`kserve.models` without `kserve/__init__.py`, which starts importing the whole model
    server (FastAPI, gRPC, pandas...): only the generated API classes are needed."""
    spec = importlib.util.find_spec("kserve")
    if spec is None:
        sys.exit("the kserve package is not installed: pip install -r deploy/requirements.txt")
    package = types.ModuleType("kserve")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["kserve"] = package
    import kserve.models  # noqa: E402  (after the stub above)
    import kubernetes.client.models

    return kserve.models, kubernetes.client.models


KSERVE_MODELS, K8S_MODELS = load_kserve_models()


# ---------------------------------------------------------------------------------------
# Strict checking against OpenAPI-generated model classes (KServe's and Kubernetes').


def model_class(type_name: str):
    return getattr(KSERVE_MODELS, type_name, None) or getattr(K8S_MODELS, type_name, None)


def check_typed(value, type_name: str, path: str, errors: list[str]) -> None:
    """Checks `value` (parsed YAML) against an openapi_types type string (`list[X]` or
    `List[X]`, `dict(str, X)` or `Dict[str, X]`, a scalar, or a model class name)."""
    inner = re.fullmatch(r"[Ll]ist\[(.+)\]", type_name)
    if inner:
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            check_typed(item, inner.group(1), f"{path}[{i}]", errors)
        return
    inner = re.fullmatch(r"dict\((\w+), (.+)\)", type_name) or re.fullmatch(
        r"Dict\[(\w+), (.+)\]", type_name
    )
    if inner:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {type(value).__name__}")
            return
        for key, item in value.items():
            check_typed(item, inner.group(2), f"{path}.{key}", errors)
        return
    scalars = {
        "str": (str,),
        "bytes": (str,),
        "int": (int,),
        "float": (int, float),
        "bool": (bool,),
        "datetime": (str,),
        "date": (str,),
    }
    if type_name in scalars:
        ok = isinstance(value, scalars[type_name])
        if type_name in ("int", "float") and isinstance(value, bool):
            ok = False
        if not ok:
            errors.append(f"{path}: expected {type_name}, got {value!r}")
        return
    if type_name == "object":  # free-form (IntOrString, raw extensions)
        return
    cls = model_class(type_name)
    if cls is None:  # a named scalar such as ResourceQuantity
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            errors.append(f"{path}: expected a {type_name} (a string or number), got {value!r}")
        return
    check_object(value, cls, path, errors)


def check_object(value, cls, path: str, errors: list[str]) -> None:
    if not isinstance(value, dict):
        errors.append(f"{path}: expected a {cls.__name__} mapping, got {value!r}")
        return
    by_json_name = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    known = {}
    for key, item in value.items():
        attr = by_json_name.get(key)
        if attr is None:
            errors.append(f"{path}.{key}: unknown field (not in {cls.__name__})")
            continue
        check_typed(item, cls.openapi_types[attr], f"{path}.{key}", errors)
        known[attr] = item
    try:  # the generated constructors refuse a missing required field
        cls(**known)
    except (ValueError, TypeError) as e:
        # pydantic-based models write several lines, with a link after each error.
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        lines = [line for line in lines if not line.startswith("For further information")]
        errors.append(f"{path}: {'; '.join(lines)}")


def check_kserve(doc: dict) -> list[str]:
    group_version = doc.get("apiVersion", "")
    version = group_version.rpartition("/")[2]
    class_name = version[:1].upper() + version[1:] + doc.get("kind", "")
    cls = getattr(KSERVE_MODELS, class_name, None)
    if cls is None:
        return [f"no KServe model for apiVersion {group_version!r} kind {doc.get('kind')!r}"]
    errors: list[str] = []
    check_object(doc, cls, doc.get("kind", "?"), errors)
    return errors


# ---------------------------------------------------------------------------------------
# Kubernetes built-in kinds: kubernetes-validate's bundled JSON schemas, strict mode.


def check_kubernetes(doc: dict) -> list[str]:
    errors = []
    for version in K8S_VERSIONS:
        try:
            # validate() reports the first error only: on a failure, list them all.
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError:
            for e in all_schema_errors(doc, version):
                where = ".".join(str(p) for p in e.path) or "(top)"
                errors.append(f"Kubernetes {version}: {where}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"Kubernetes {version}: no schema: {e}")
    return errors


def all_schema_errors(doc: dict, version: str):
    """Every error of `doc` against kubernetes-validate's strict schema for `version` (the
    schema lookup of kubernetes_validate.validate, with jsonschema's iter_errors)."""
    import jsonschema
    from referencing import Registry, Resource

    from kubernetes_validate.utils import schema_contents

    schema_dir = f"kubernetes-json-schema/v{version}-local-strict"
    api_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", doc["apiVersion"])
    schema = schema_contents(f"{schema_dir}/{doc['kind'].lower()}-{api_version}.json", version)
    definitions = schema_contents(f"{schema_dir}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    validator = jsonschema.validators.Draft202012Validator(schema, registry=registry)
    return sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))


def check_document(doc: dict) -> list[str]:
    if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
        return ["not a Kubernetes object (apiVersion and kind are required)"]
    if doc["apiVersion"].startswith("serving.kserve.io/"):
        return check_kserve(doc)
    return check_kubernetes(doc)


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


# ---------------------------------------------------------------------------------------
# The manifests agree with each other and with the binary.


def by_kind(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def check_consistency(docs: list[dict]) -> list[str]:
    errors = []

    def expect(condition, message):
        if not condition:
            errors.append(message)

    runtime = by_kind(docs, "ClusterServingRuntime")
    spec = runtime["spec"]
    container = spec["containers"][0]
    expect(container["name"] == "kserve-container", "the runtime's container must be kserve-container")
    expect(container.get("args") == RUNTIME_ARGS, f"the runtime's args must be {RUNTIME_ARGS}")
    expect(
        [f for f in spec["supportedModelFormats"] if f["name"] == "onnx" and f.get("autoSelect")],
        "the runtime must declare modelFormat onnx with autoSelect",
    )
    expect(spec.get("protocolVersions") == ["v2", "v1"], "protocolVersions must be [v2, v1]")
    expect(
        set(spec.get("protocolVersions", [])) <= {"v1", "v2", "grpc-v1", "grpc-v2"},
        "protocolVersions: unknown protocol",
    )
    expect(container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready", "runtime readiness probe")
    expect(container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live", "runtime liveness probe")
    annotations = spec.get("annotations", {})
    for key, want in [
        ("prometheus.io/scrape", "true"),
        ("prometheus.io/port", str(PORT)),
        ("prometheus.io/path", "/metrics"),
        ("prometheus.kserve.io/port", str(PORT)),
        ("prometheus.kserve.io/path", "/metrics"),
    ]:
        expect(annotations.get(key) == want, f"runtime annotation {key} must be {want!r}")

    isvc = by_kind(docs, "InferenceService")
    model = isvc["spec"]["predictor"]["model"]
    expect(model.get("runtime") == runtime["metadata"]["name"], "the InferenceService must use the runtime")
    expect(model["modelFormat"]["name"] == "onnx", "the InferenceService's modelFormat must be onnx")
    expect(model.get("protocolVersion") in spec["protocolVersions"], "protocolVersion not served by the runtime")
    expect("storageUri" in model, "the InferenceService needs a storageUri")

    deployment = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    expect(
        deployment["spec"]["selector"]["matchLabels"].items() <= labels.items(),
        "the Deployment's selector must match its pod labels",
    )
    (server,) = pod["spec"]["containers"]
    port_names = {p.get("name"): p["containerPort"] for p in server["ports"]}
    service = by_kind(docs, "Service")
    expect(service["spec"]["selector"].items() <= labels.items(), "the Service must select the Deployment's pods")
    for port in service["spec"]["ports"]:
        target = port["targetPort"]
        expect(
            target in port_names if isinstance(target, str) else target in port_names.values(),
            f"the Service's targetPort {target!r} is not a container port",
        )
    hpa = by_kind(docs, "HorizontalPodAutoscaler")
    ref = hpa["spec"]["scaleTargetRef"]
    expect(
        (ref["kind"], ref["name"]) == ("Deployment", deployment["metadata"]["name"]),
        "the HPA must scale the Deployment",
    )
    expect(
        all("cpu" in c.get("resources", {}).get("requests", {}) for c in pod["spec"]["containers"]),
        "a CPU HPA needs CPU requests on every container",
    )

    for name, c in [("runtime", container), ("Deployment", server)]:
        expect(c["image"] == IMAGE, f"the {name}'s image must be {IMAGE}")
        expect(PORT in [p["containerPort"] for p in c["ports"]], f"the {name} must expose {PORT}")
        context = {**pod["spec"].get("securityContext", {}), **c.get("securityContext", {})}
        if name == "runtime":
            context = c.get("securityContext", {})
        expect(context.get("runAsNonRoot") is True, f"the {name} must run as non-root")
        expect(context.get("readOnlyRootFilesystem") is True, f"the {name} needs a read-only root")
        expect(context.get("allowPrivilegeEscalation") is False, f"the {name} must forbid privilege escalation")
        expect(context.get("capabilities", {}).get("drop") == ["ALL"], f"the {name} must drop all capabilities")
        expect("requests" in c.get("resources", {}), f"the {name} needs resource requests")
        expect("limits" in c.get("resources", {}), f"the {name} needs resource limits")
    return errors


# ---------------------------------------------------------------------------------------
# The Dockerfile.


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def check_dockerfile(text: str) -> list[str]:
    errors = []

    def expect(condition, message):
        if not condition:
            errors.append(f"Dockerfile: {message}")

    instructions = dockerfile_instructions(text)
    froms = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    expect(len(froms) >= 2, "must be multi-stage (a builder, then the runtime image)")
    if not froms:
        return errors
    builder = instructions[: froms[-1]]
    final = instructions[froms[-1]:]
    base = final[0][1].split()[0]
    expect(
        base == "scratch" or base.startswith("gcr.io/distroless/static"),
        f"the final stage must be FROM scratch or distroless static, not {base}",
    )
    runs = " ".join(rest for word, rest in builder if word == "RUN")
    expect("deploy/build-static.sh" in runs, "the builder must run deploy/build-static.sh")
    expect("deploy/build-image-layout.sh" in runs, "the builder must run deploy/build-image-layout.sh")
    final_words = {}
    for word, rest in final[1:]:
        final_words.setdefault(word, []).append(rest)
    expect(
        any(re.fullmatch(r"--from=\S+ /rootfs/ /", c) for c in final_words.get("COPY", [])),
        "the final stage must copy the layout (COPY --from=build /rootfs/ /) and nothing else",
    )
    expect(len(final_words.get("COPY", [])) == 1, "the final stage copies one tree only")
    users = final_words.get("USER", [])
    expect(
        len(users) == 1 and re.fullmatch(r"[1-9]\d*(:\d+)?", users[0]),
        "USER must be one numeric non-root uid (runAsNonRoot checks it)",
    )
    expect(users[-1:] == ["65532:65532"], "USER must be 65532:65532")
    expect(final_words.get("EXPOSE") == [str(PORT)], f"EXPOSE must be {PORT}")
    env = {}
    for line in final_words.get("ENV", []):
        for word in line.split():
            key, eq, value = word.partition("=")
            expect(eq, f"ENV must use NAME=VALUE words: {word!r}")
            env[key] = value
    for key, want in [
        ("ONNX_SERVE_HOST", "0.0.0.0"),
        ("ONNX_SERVE_PORT", str(PORT)),
        ("ONNX_SERVE_MODEL", "/mnt/models"),
    ]:
        expect(env.get(key) == want, f"ENV {key} must be {want}")
    healthchecks = final_words.get("HEALTHCHECK", [])
    expect(len(healthchecks) == 1, "one HEALTHCHECK")
    if healthchecks:
        _, cmd, exec_form = healthchecks[0].partition("CMD ")
        try:
            argv = json.loads(exec_form)
        except json.JSONDecodeError:
            argv = None
        expect(
            argv == ["/usr/local/bin/onnx-serve", "healthcheck"],
            "HEALTHCHECK must be CMD [\"/usr/local/bin/onnx-serve\", \"healthcheck\"] (exec form: no shell)",
        )
    expect(
        final_words.get("ENTRYPOINT") == ['["/usr/local/bin/onnx-serve"]'],
        'ENTRYPOINT must be ["/usr/local/bin/onnx-serve"]',
    )
    return errors


# ---------------------------------------------------------------------------------------
# The self-test: planted mistakes must be refused.


def mutations(doc: dict):
    """(description, broken copy, text the error must name) triples: a misspelt field at
    the top of the spec and in the first container, and a wrongly typed value."""
    spec_key = next(iter(doc["spec"]))
    broken = copy.deepcopy(doc)
    broken["spec"][spec_key + "s"] = broken["spec"].pop(spec_key)
    yield f"spec.{spec_key} misspelt as {spec_key}s", broken, spec_key

    containers_path = {
        "Deployment": ["spec", "template", "spec", "containers"],
        "ClusterServingRuntime": ["spec", "containers"],
    }.get(doc["kind"])
    if containers_path:
        broken = copy.deepcopy(doc)
        node = broken
        for key in containers_path:
            node = node[key]
        node[0]["readinessProbes"] = node[0].pop("readinessProbe")
        yield "readinessProbe misspelt as readinessProbes", broken, "readinessProbes"
    if doc["kind"] == "InferenceService":
        broken = copy.deepcopy(doc)
        model = broken["spec"]["predictor"]["model"]
        model["storageURI"] = model.pop("storageUri")
        yield "storageUri misspelt as storageURI", broken, "storageURI"

    broken = copy.deepcopy(doc)
    broken["metadata"]["labelz"] = {"a": "b"}
    yield "metadata.labelz", broken, "labelz"
    broken = copy.deepcopy(doc)
    broken["metadata"]["name"] = 42
    yield "metadata.name as a number", broken, "metadata.name"


def self_test(docs: list[tuple[Path, dict]]) -> list[str]:
    errors = []
    for path, doc in docs:
        for description, broken, needle in mutations(doc):
            if not any(needle in e for e in check_document(broken)):
                errors.append(f"self-test: {path.name} {doc['kind']}: {description} was not reported")
    # A Dockerfile whose final stage runs as root is refused.
    if not check_dockerfile(DOCKERFILE.read_text().replace("USER 65532:65532", "USER root")):
        errors.append("self-test: a Dockerfile with USER root was accepted")
    return errors


def main(argv: list[str]) -> int:
    paths = [Path(a).resolve() for a in argv] or K8S_MANIFESTS + KSERVE_MANIFESTS
    failures = 0
    loaded = []
    for path in paths:
        for doc in documents(path):
            loaded.append((path, doc))
            errors = check_document(doc)
            shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            name = f"{shown}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
            print(("ok   " if not errors else "FAIL ") + name)
            for e in errors:
                print(f"       {e}")
            failures += bool(errors)
    if argv:
        return 1 if failures else 0

    checks = [
        ("the manifests agree with each other and with the binary", check_consistency([d for _, d in loaded])),
        ("Dockerfile final stage", check_dockerfile(DOCKERFILE.read_text())),
        ("self-test: misspelt or mistyped fields are refused", self_test(loaded)),
    ]
    for name, errors in checks:
        print(("ok   " if not errors else "FAIL ") + name)
        for e in errors:
            print(f"       {e}")
        failures += bool(errors)
    total = len(loaded) + len(checks)
    print(f"deployment files: {total - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Checks of the deployment files that need no cluster and no helm.

Run by scripts/validate-deploy.sh (which also runs kubernetes-validate and
yamllint); each subcommand prints what it checked and exits 1 on a problem.

  values-paths CHART        every .Values path used in CHART/templates exists
                            in CHART/values.yaml, and every value is used
  values-keys CHART FILES   every key of the values FILES exists in values.yaml
  wiring NAME FILES...      cross-object checks of a set of manifests (labels,
                            selectors, ports, Secret/ConfigMap keys, security,
                            drain timing)
  names FILES...            SWITCHBOARD_* variables exist in settings.rs;
                            switchboard_* metrics exist in the crates
  rules ALERTS PLAIN COPY [RENDERED...]
                            the PrometheusRules (plain, the chart's copy of the
                            rule file, rendered charts) hold ALERTS' groups
  dockerfile                the Dockerfile's user, ports, entrypoint, context

Needs PyYAML (installed with kubernetes-validate).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
problems: list[str] = []


def problem(text: str) -> None:
    problems.append(text)
    print(f"  FAIL {text}")


def finish(summary: str) -> int:
    if problems:
        print(f"  {len(problems)} problem(s)")
        return 1
    print(f"  ok: {summary}")
    return 0


# === values-paths ===========================================================
#
# A small reader of Go template actions. It follows the dot through `with`
# and `range` (a range's dot is an element: `[]` in a path), variables
# assigned from a path (`$x := .Values.a`), `$.Values` and `.root.Values`
# (the helpers' convention for a dict argument). Limits: keys given as
# strings (`index .Values "a"`, `get`), `tpl` text, and values only reached
# through an empty list or map in values.yaml are not checked; a `define`
# body is assumed to receive the root context (or a dict with `.root`).

ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
# `$var.a.b`, `$var`, `.a.b` or a lone `.` (not `(x).a`, not `0.5`).
CHAIN = re.compile(r"(\$\w*)((?:\.\w+)*)|(?<![\w)\].$])((?:\.\w+)+|\.(?![\w.]))")


def actions(text: str):
    """Yields the body of every `{{ ... }}` action, without trim markers,
    comments and string literals."""
    pos = 0
    while True:
        start = text.find("{{", pos)
        if start < 0:
            return
        comment = re.match(r"\{\{-?\s*/\*", text[start:])
        if comment:
            end = text.find("*/", start)
            pos = text.find("}}", end) + 2
            continue
        i = start + 2
        body = []
        quote = None
        while i < len(text):
            c = text[i]
            if quote:
                if quote == '"' and c == "\\":
                    i += 2
                    continue
                if c == quote:
                    quote = None
                    body.append('""')
                i += 1
                continue
            if c in "\"`":
                quote = c
                i += 1
                continue
            if text.startswith("}}", i):
                break
            body.append(c)
            i += 1
        pos = i + 2
        action = "".join(body).strip()
        yield action.removeprefix("-").removesuffix("-").strip()


class Frame:
    def __init__(self, kind: str, dot, outer_dot):
        self.kind = kind
        self.dot = dot
        self.outer_dot = outer_dot
        self.vars: dict[str, tuple | None] = {}


def resolve(var: str | None, fields: str, stack: list[Frame]):
    """The values path (a tuple) a chain names, `()` for the root context,
    or None when unknown."""
    parts = [p for p in fields.split(".") if p]
    if var is not None:
        if var == "$":
            base = ("<root>",)
        else:
            base = None
            for frame in reversed(stack):
                if var in frame.vars:
                    base = frame.vars[var]
                    break
            if base is None:
                return None
    else:
        base = stack[-1].dot
        if base is None:
            return None
    path = list(base)
    if path and path[0] == "<root>":
        if parts[:1] == ["root"]:  # helpers called with (dict "root" $ ...)
            parts = parts[1:]
        if parts[:1] != ["Values"]:
            return None if parts else ("<root>",)
        return tuple(parts[1:])
    return tuple(path + parts)


def exists(values, path: tuple) -> bool:
    """Whether `path` exists; a step into an empty map or list counts as
    existing (free-form values such as podLabels)."""
    nodes = [values]
    for i, key in enumerate(path):
        nxt = []
        for node in nodes:
            if key == "[]":
                if isinstance(node, list):
                    nxt.extend(node)
                elif isinstance(node, dict):
                    nxt.extend(node.values())
            elif isinstance(node, dict) and key in node:
                nxt.append(node[key])
            if isinstance(node, (dict, list)) and not node:
                return True
        if not nxt:
            return False
        nodes = nxt
    return True


def leaves(node, prefix=()):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, prefix + (key,))
    elif isinstance(node, list) and node and any(isinstance(v, (dict, list)) for v in node):
        for value in node:
            yield from leaves(value, prefix + ("[]",))
    else:
        yield prefix


def values_paths(chart: Path) -> int:
    print(f"== .Values paths of {chart.relative_to(ROOT)}/templates against values.yaml")
    values = yaml.safe_load((chart / "values.yaml").read_text())
    refs = 0
    used: set[tuple] = set()
    files = sorted(p for p in (chart / "templates").rglob("*") if p.is_file())
    for path in files:
        text = path.read_text()
        stack = [Frame("file", ("<root>",), None)]
        for action in actions(text):
            words = action.split()
            keyword = words[0] if words else ""
            head_dot = None
            marks = True
            if keyword == "end":
                if len(stack) > 1:
                    stack.pop()
                continue
            if keyword == "define":
                stack.append(Frame("define", ("<root>",), None))
                continue
            if keyword == "else":
                frame = stack[-1]
                rest = action[4:].strip()
                if frame.kind in ("with", "range"):
                    frame.dot = frame.outer_dot
                if rest.startswith(("if", "with")):
                    action = rest[rest.index(" ") + 1 :] if " " in rest else ""
                    keyword = rest.split()[0]
                    if keyword == "with":
                        marks = False
                else:
                    continue
            elif keyword in ("if", "with", "range", "block"):
                action = action[len(keyword) :]
                marks = keyword in ("if", "block")
                if keyword != "if":
                    stack.append(Frame(keyword, stack[-1].dot, stack[-1].dot))
                else:
                    stack.append(Frame("if", stack[-1].dot, stack[-1].dot))
            assign = re.match(r"\s*(\$\w+)\s*(?:,\s*(\$\w+)\s*)?:?=\s*(.*)", action, re.S)
            target_vars = []
            if assign:
                target_vars = [v for v in assign.group(1, 2) if v]
                action = assign.group(3)
                marks = marks and keyword not in ("range",) and not (keyword == "" or keyword.startswith("$"))
            chains = list(CHAIN.finditer(action))
            first = None
            for m in chains:
                if m.group(1) is not None:
                    resolved = resolve(m.group(1), m.group(2), stack)
                elif m.group(3) == ".":
                    resolved = stack[-1].dot
                else:
                    resolved = resolve(None, m.group(3), stack)
                if first is None and m.start() == len(action) - len(action.lstrip()):
                    first = resolved
                if resolved is None or (resolved and resolved[0] == "<root>"):
                    continue
                refs += 1
                if not exists(values, resolved):
                    problem(f"{path.relative_to(ROOT)}: .Values.{'.'.join(resolved)} is not in values.yaml")
                if marks:
                    used.add(resolved)
            if keyword in ("with", "range") and stack[-1].kind == keyword:
                head_dot = first
                if keyword == "range" and head_dot is not None:
                    head_dot = head_dot + ("[]",)
                if keyword == "range" and target_vars:
                    # `range $k, $v := X`: the dot is the element too.
                    stack[-1].vars[target_vars[-1]] = head_dot
                stack[-1].dot = head_dot
            elif target_vars:
                stack[-1].vars[target_vars[0]] = first
    unused = []
    for leaf in leaves(values):
        if not any(leaf[: len(u)] == u or u[: len(leaf)] == leaf for u in used):
            unused.append(".".join(leaf))
    for name in unused:
        problem(f"values.yaml: {name} is used by no template")
    return finish(
        f"{refs} references in {len(files)} files, {len(used)} distinct paths; "
        f"every one is in values.yaml and every value is used"
    )


def values_keys(chart: Path, files: list[str]) -> int:
    print(f"== keys of {len(files)} values files against {chart.relative_to(ROOT)}/values.yaml")
    values = yaml.safe_load((chart / "values.yaml").read_text())
    count = 0
    for name in files:
        for leaf in leaves(yaml.safe_load(Path(name).read_text()) or {}):
            count += 1
            if not exists(values, leaf):
                problem(f"{name}: {'.'.join(leaf)} is not a value of the chart")
    return finish(f"{count} keys, all known (free-form maps and lists excepted)")


# === wiring =================================================================


def load_docs(files: list[str]) -> list[dict]:
    docs = []
    for name in files:
        for doc in yaml.safe_load_all(Path(name).read_text()):
            if doc:
                doc.setdefault("_file", str(Path(name).resolve()))
                docs.append(doc)
    return docs


def pod_spec(doc: dict):
    if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet"):
        return doc["spec"]["template"]
    return None


def matches(selector: dict, labels: dict) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        value = labels.get(expr["key"])
        op = expr["operator"]
        if op == "In" and value not in expr["values"]:
            return False
        if op == "NotIn" and value in expr["values"]:
            return False
        if op == "Exists" and value is None:
            return False
        if op == "DoesNotExist" and value is not None:
            return False
    return True


def duration_seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def wiring(label: str, files: list[str]) -> int:
    print(f"== wiring of {label}")
    docs = load_docs(files)
    by_kind: dict[str, dict[str, dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    workloads = [d for d in docs if pod_spec(d)]
    data_keys = {}
    for kind in ("Secret", "ConfigMap"):
        for name, doc in by_kind.get(kind, {}).items():
            data_keys[(kind, name)] = set(doc.get("data") or {}) | set(doc.get("stringData") or {})
    checks = 0

    for w in workloads:
        name = f"{w['kind']}/{w['metadata']['name']}"
        template = pod_spec(w)
        labels = template["metadata"].get("labels") or {}
        spec = template["spec"]
        checks += 1
        if not matches(w["spec"]["selector"], labels):
            problem(f"{name}: its selector does not match its pod labels")
        psc = spec.get("securityContext") or {}
        if not psc.get("runAsNonRoot") or (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problem(f"{name}: pod securityContext needs runAsNonRoot and seccompProfile RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False or spec.get("enableServiceLinks") is not False:
            problem(f"{name}: automountServiceAccountToken and enableServiceLinks should be false")
        for topo in spec.get("topologySpreadConstraints") or []:
            if topo.get("labelSelector") and not matches(topo["labelSelector"], labels):
                problem(f"{name}: a topologySpreadConstraint does not select its own pods")
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for c in spec["containers"]:
            cname = f"{name} container {c['name']}"
            sc = c.get("securityContext") or {}
            if (
                sc.get("allowPrivilegeEscalation") is not False
                or sc.get("readOnlyRootFilesystem") is not True
                or "ALL" not in ((sc.get("capabilities") or {}).get("drop") or [])
            ):
                problem(f"{cname}: needs allowPrivilegeEscalation false, readOnlyRootFilesystem, drop ALL")
            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(res.get(part) or {}):
                    problem(f"{cname}: resources.{part} needs cpu and memory")
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
            numbers = set(ports.values())
            for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
                probe = c.get(probe_name)
                if not probe:
                    if probe_name != "startupProbe":
                        problem(f"{cname}: no {probe_name}")
                    continue
                for kind in ("httpGet", "tcpSocket", "grpc"):
                    if kind in probe:
                        port = probe[kind]["port"]
                        if (isinstance(port, str) and port not in ports) or (
                            isinstance(port, int) and port not in numbers
                        ):
                            problem(f"{cname}: {probe_name} port {port!r} is not a container port")
            env_names = set()
            for env in c.get("env") or []:
                env_names.add(env["name"])
                ref = (env.get("valueFrom") or {})
                for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                    if key in ref:
                        r = ref[key]
                        keys = data_keys.get((kind, r["name"]))
                        if keys is None:
                            if not label.startswith("chart"):
                                problem(f"{cname}: env {env['name']} names {kind} {r['name']}, not in the set")
                        elif r["key"] not in keys and not r.get("optional"):
                            problem(f"{cname}: env {env['name']}: {kind} {r['name']} has no key {r['key']}")
                for var in re.findall(r"\$\((\w+)\)", env.get("value") or ""):
                    if var not in env_names:
                        problem(f"{cname}: env {env['name']} uses $({var}) before it is defined")
            config = {}
            for src in c.get("envFrom") or []:
                if "configMapRef" in src:
                    cm = by_kind.get("ConfigMap", {}).get(src["configMapRef"]["name"])
                    if cm is None:
                        problem(f"{cname}: envFrom names ConfigMap {src['configMapRef']['name']}, not in the set")
                    else:
                        config.update(cm.get("data") or {})
            for env in c.get("env") or []:
                if "value" in env:
                    config[env["name"]] = env["value"]
            for mount in c.get("volumeMounts") or []:
                if mount["name"] not in volumes:
                    problem(f"{cname}: volumeMount {mount['name']} has no volume")
            # Role-specific checks (the role is the first argument).
            role = (c.get("args") or ["standalone"])[0]
            if role in ("gateway", "router"):
                checks += 1
                for needed in ("SWITCHBOARD_NODE_ID", "SWITCHBOARD_REDIS_URL"):
                    if needed not in env_names and needed not in config:
                        problem(f"{cname}: {needed} is not set")
                advertise = "SWITCHBOARD_ADVERTISE" if role == "gateway" else "SWITCHBOARD_GRPC_ADVERTISE"
                listen = "SWITCHBOARD_LISTEN" if role == "gateway" else "SWITCHBOARD_GRPC_LISTEN"
                value = config.get(advertise, "")
                port = value.rsplit(":", 1)[-1]
                if "$(POD_IP)" not in value or not config.get(listen, "").endswith(":" + port):
                    problem(f"{cname}: {advertise}={value!r} is not the pod IP with the {listen} port")
                admin = config.get("SWITCHBOARD_ADMIN_LISTEN", "0.0.0.0:9090").rsplit(":", 1)[-1]
                if ports.get("admin") != int(admin):
                    problem(f"{cname}: container port `admin` is not SWITCHBOARD_ADMIN_LISTEN's {admin}")
            if role == "gateway":
                checks += 1
                if "SWITCHBOARD_CLUSTER_SECRET" not in env_names:
                    problem(f"{cname}: SWITCHBOARD_CLUSTER_SECRET is not set")
                auth = [n for n in ("SWITCHBOARD_JWT_SECRET", "SWITCHBOARD_JWT_PUBLIC_KEY_FILE", "SWITCHBOARD_JWKS_FILE")
                        if n in env_names or n in config]
                if len(auth) != 1:
                    problem(f"{cname}: exactly one of the JWT settings must be set, found {auth}")
                listen_port = int(config.get("SWITCHBOARD_LISTEN", "0.0.0.0:3000").rsplit(":", 1)[-1])
                if ports.get("http") != listen_port:
                    problem(f"{cname}: container port `http` is not SWITCHBOARD_LISTEN's {listen_port}")
                drain = duration_seconds(config.get("SWITCHBOARD_DRAIN_PERIOD", "10s"))
                pre = 0
                exec_cmd = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command")
                if exec_cmd:
                    if exec_cmd[0] != "sleep":
                        problem(f"{cname}: preStop is not a sleep")
                    pre = float(exec_cmd[1])
                grace = spec.get("terminationGracePeriodSeconds", 30)
                if grace <= pre + drain:
                    problem(f"{cname}: terminationGracePeriodSeconds {grace} <= preStop {pre} + drain {drain}")
                else:
                    print(f"  {cname}: grace {grace}s > preStop {pre:g}s + drain {drain:g}s")

    for svc in by_kind.get("Service", {}).values():
        checks += 1
        sel = {"matchLabels": svc["spec"].get("selector") or {}}
        targets = [w for w in workloads if matches(sel, pod_spec(w)["metadata"].get("labels") or {})]
        if len(targets) != 1:
            problem(f"Service/{svc['metadata']['name']}: selects {len(targets)} workloads, not 1")
            continue
        names = {p.get("name") for c in pod_spec(targets[0])["spec"]["containers"] for p in c.get("ports") or []}
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if isinstance(target, str) and target not in names:
                problem(f"Service/{svc['metadata']['name']}: targetPort {target} is not a port of its pods")
    for sts in by_kind.get("StatefulSet", {}).values():
        if sts["spec"]["serviceName"] not in by_kind.get("Service", {}):
            problem(f"StatefulSet/{sts['metadata']['name']}: serviceName {sts['spec']['serviceName']} missing")
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for doc in by_kind.get(kind, {}).values():
            checks += 1
            sel = doc["spec"]["selector"] if kind == "PodDisruptionBudget" else doc["spec"]["podSelector"]
            if not any(matches(sel, pod_spec(w)["metadata"].get("labels") or {}) for w in workloads):
                problem(f"{kind}/{doc['metadata']['name']}: selects no pods")
    for doc in by_kind.get("NetworkPolicy", {}).values():
        for rule in doc["spec"].get("ingress") or []:
            for peer in rule.get("from") or []:
                if "podSelector" in peer:
                    sources = [w for w in workloads if matches(peer["podSelector"], pod_spec(w)["metadata"]["labels"])]
                    if len(sources) < 2:
                        problem(f"NetworkPolicy/{doc['metadata']['name']}: admits {len(sources)} workloads, not 2")
    for hpa in by_kind.get("HorizontalPodAutoscaler", {}).values():
        checks += 1
        ref = hpa["spec"]["scaleTargetRef"]
        target = by_kind.get(ref["kind"], {}).get(ref["name"])
        if target is None:
            problem(f"HorizontalPodAutoscaler/{hpa['metadata']['name']}: target {ref['kind']}/{ref['name']} missing")
        elif "replicas" in target["spec"] and "/deploy/kubernetes/" not in target["_file"]:
            problem(f"{ref['kind']}/{ref['name']}: sets replicas although an HPA owns the count")
    for ing in by_kind.get("Ingress", {}).values():
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                backend = p["backend"]["service"]
                svc = by_kind.get("Service", {}).get(backend["name"])
                if svc is None or backend["port"].get("number") not in [x["port"] for x in svc["spec"]["ports"]]:
                    problem(f"Ingress/{ing['metadata']['name']}: backend {backend} is not a Service port")
    for sm in by_kind.get("ServiceMonitor", {}).values():
        checks += 1
        selected = [s for s in by_kind.get("Service", {}).values()
                    if matches(sm["spec"]["selector"], s["metadata"].get("labels") or {})]
        ports = {p.get("name") for s in selected for p in s["spec"]["ports"]}
        for endpoint in sm["spec"]["endpoints"]:
            jobs = [r for r in endpoint.get("relabelings") or [] if r.get("targetLabel") == "job"]
            if [(r.get("sourceLabels"), r.get("replacement")) for r in jobs] != [
                (["__meta_kubernetes_pod_label_app_kubernetes_io_component"], "switchboard-$1")
            ]:
                problem(f"ServiceMonitor/{sm['metadata']['name']}: job must be switchboard-<component> "
                        f"(the alert rules' job names)")
        if len(selected) != 2 or any(e["port"] not in ports for e in sm["spec"]["endpoints"]):
            problem(f"ServiceMonitor/{sm['metadata']['name']}: should select the gateway and router Services "
                    f"with their `admin` port (selects {[s['metadata']['name'] for s in selected]})")
    kinds = ", ".join(f"{len(v)} {k}" for k, v in sorted(by_kind.items()))
    return finish(f"{len(docs)} objects ({kinds}); {checks} cross-object checks")


# === names ==================================================================

def names(files: list[str]) -> int:
    print("== SWITCHBOARD_* variables and switchboard_* metrics against the code")
    settings = set(re.findall(r'env = "(SWITCHBOARD_\w+)"', (ROOT / "crates/switchboard/src/settings.rs").read_text()))
    source = "\n".join(p.read_text() for p in (ROOT / "crates").rglob("*.rs") if "/tests/" not in str(p))
    metrics = set(re.findall(r'"(switchboard_[a-z0-9_]+)"', source))
    seen_vars, seen_metrics = set(), set()
    for name in files:
        text = Path(name).read_text()
        for var in set(re.findall(r"\bSWITCHBOARD_[A-Z0-9_]+\b", text)):
            seen_vars.add(var)
            if var not in settings:
                problem(f"{name}: {var} is not a setting of crates/switchboard/src/settings.rs")
        for metric in set(re.findall(r"\bswitchboard_[a-z0-9_]+\b", text)):
            base = re.sub(r"_(bucket|sum|count)$", "", metric)
            seen_metrics.add(metric)
            if metric not in metrics and base not in metrics:
                problem(f"{name}: metric {metric} is exported by no crate")
    return finish(f"{len(seen_vars)} variables and {len(seen_metrics)} metrics named in {len(files)} files exist")


# === rules =================================================================


def rules(alerts: str, plain: str, chart_copy: str, rendered: list[str]) -> int:
    print(f"== PrometheusRules against {alerts}")
    expected = yaml.safe_load(Path(alerts).read_text())["groups"]
    if yaml.safe_load(Path(plain).read_text())["spec"]["groups"] != expected:
        problem(f"{plain}: spec.groups differ from the groups of {alerts}")
    if Path(chart_copy).read_bytes() != Path(alerts).read_bytes():
        problem(f"{chart_copy} is not a copy of {alerts}: cp {alerts} {chart_copy}")
    for name in rendered:
        for doc in load_docs([name]):
            if doc["kind"] == "PrometheusRule":
                groups = [g for g in doc["spec"]["groups"] if g["name"] != "switchboard-extra"]
                if groups != expected:
                    problem(f"{name}: the chart's PrometheusRule differs from {alerts}")
    count = sum(len(g["rules"]) for g in expected)
    return finish(f"{count} alerts in {len(expected)} groups, the same in the plain manifest, the chart's copy"
                  f"{' and ' + str(len(rendered)) + ' renders' if rendered else ''}")


# === dockerfile =============================================================


def dockerfile() -> int:
    print("== Dockerfile and .dockerignore")
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in re.sub(r"\\\n", " ", text).splitlines() if ln.strip() and not ln.startswith("#")]
    stages = [i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")]
    final = lines[stages[-1]:]
    user = [ln.split()[1] for ln in final if ln.upper().startswith("USER ")]
    if not user or not re.fullmatch(r"10001(:10001)?", user[-1]):
        problem(f"final stage: USER should be 10001 (found {user})")
    exposed = {p for ln in final if ln.upper().startswith("EXPOSE ") for p in ln.split()[1:]}
    if exposed != {"3000", "9090", "50051"}:
        problem(f"final stage: EXPOSE {sorted(exposed)}, expected 3000 9090 50051")
    entry = [ln for ln in final if ln.upper().startswith("ENTRYPOINT ")]
    if entry != ['ENTRYPOINT ["switchboard"]']:
        problem(f"final stage: {entry}, expected ENTRYPOINT [\"switchboard\"]")
    if not any("cargo build --release --locked -p switchboard" in ln for ln in lines):
        problem("no `cargo build --release --locked -p switchboard`")
    copies = [ln for ln in final if ln.upper().startswith("COPY ")]
    if copies != ["COPY --from=builder /out/switchboard /usr/local/bin/switchboard"]:
        problem(f"final stage copies more than the binary: {copies}")
    # The context: what .dockerignore lets through must hold the workspace.
    ignore = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
              if ln.strip() and not ln.startswith("#")]
    needed = ["Cargo.toml", "Cargo.lock", "crates/switchboard/src/main.rs", "crates/proto/build.rs",
              "proto/switchboard/v1/router.proto"]
    for path in needed:
        if not (ROOT / path).exists() or not dockerignore_allows(ignore, path):
            problem(f"the build context lacks {path}")
    for path in ("target/debug/switchboard", "tests/js/package.json", "crates/protocol/fuzz/Cargo.toml"):
        if dockerignore_allows(ignore, path):
            problem(f".dockerignore lets {path} into the context")
    return finish(f"{len(stages)} stages; runtime: USER {user[-1]}, EXPOSE 3000 9090 50051, "
                  f"ENTRYPOINT [\"switchboard\"]; the context holds the workspace and nothing else")


def dockerignore_allows(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last matching pattern decides (`!` re-includes); a
    pattern matches a path or any of its parent directories."""
    allowed = True
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        regex = re.escape(pat).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        for i in range(1, len(parts) + 1):
            if re.fullmatch(regex, "/".join(parts[:i])):
                allowed = negate
                break
    return allowed


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    command, args = argv[0], argv[1:]
    if command == "values-paths":
        return values_paths(Path(args[0]).resolve())
    if command == "values-keys":
        return values_keys(Path(args[0]).resolve(), args[1:])
    if command == "wiring":
        return wiring(args[0], args[1:])
    if command == "names":
        return names(args)
    if command == "rules":
        return rules(args[0], args[1], args[2], args[3:])
    if command == "dockerfile":
        return dockerfile()
    print(f"unknown command {command}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

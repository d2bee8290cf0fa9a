#!/usr/bin/env python3
"""deploy/: every YAML under deploy/kubernetes parses and the objects fit together; the
configuration in the ConfigMap and the package's example configuration pass the gateway's own
loader (knooppunt-gateway --check); the Dockerfile builds with the project's scripts."""
import os
import re
import shutil
import subprocess
import sys

import yaml

SRC = os.environ["KNOOPPUNT_SOURCE_DIR"]
BIN = os.environ["KNOOPPUNT_BIN_DIR"]
WORK = sys.argv[1]
GATEWAY = os.path.join(BIN, "gateway", "knooppunt-gateway")
K8S = os.path.join(SRC, "deploy", "kubernetes")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# 1. Every file parses; every object has apiVersion, kind, metadata.name.
objects = {}
files = sorted(f for f in os.listdir(K8S) if f.endswith((".yaml", ".yml")))
check(files, "no YAML files in deploy/kubernetes")
for name in files:
    try:
        docs = load_all(os.path.join(K8S, name))
    except yaml.YAMLError as e:
        check(False, f"{name}: {e}")
        continue
    for d in docs:
        if d.get("kind") == "Kustomization":
            continue
        for key in ("apiVersion", "kind"):
            check(key in d, f"{name}: object without {key}")
        check(d.get("metadata", {}).get("name"), f"{name}: object without metadata.name")
        objects[(d.get("kind"), d["metadata"]["name"])] = (name, d)
print("parsed:", ", ".join(f"{k}/{n}" for k, n in sorted(objects)))

# 2. kustomization lists every manifest except the *.example.yaml (objects made from files
# outside kustomize: Secrets, agreements, CRLs), and only existing files.
kust = load_all(os.path.join(K8S, "kustomization.yaml"))[0]
resources = set(kust["resources"])
for r in resources:
    check(os.path.exists(os.path.join(K8S, r)), f"kustomization: {r} missing")
for name in files:
    if name != "kustomization.yaml" and not name.endswith(".example.yaml"):
        check(name in resources, f"kustomization does not list {name}")
    if name.endswith(".example.yaml"):
        check(name not in resources, f"{name} must not be applied by kustomize")
# Applying the kustomization must not reset what operators manage from files.
for (kind, n), (fname, _) in objects.items():
    if fname in resources:
        check(kind != "Secret", f"{fname}: Secret {n} in the kustomization")
        check(n not in ("knooppunt-agreements", "knooppunt-crl"), f"{fname}: {n} in the kustomization")

# 3. The objects the issue asks for exist.
kinds = {k for k, _ in objects}
for k in ("Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget",
          "PersistentVolumeClaim", "NetworkPolicy"):
    check(k in kinds, f"no {k}")

# 4. The Deployment: probes, resources, security context, volumes that resolve.
_, dep = objects[("Deployment", "knooppunt-gateway")]
pod = dep["spec"]["template"]["spec"]
labels = dep["spec"]["template"]["metadata"]["labels"]
check(dep["spec"]["selector"]["matchLabels"].items() <= labels.items(), "selector/labels")
check(dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate",
      "one replica, Recreate (SQLite: one process per file)")
c = pod["containers"][0]
config_arg = [a for a in c["args"] if a.startswith("--config=")]
check(len(config_arg) == 1, "container args name --config")
config_path = config_arg[0].split("=", 1)[1]
for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
    cmd = c.get(probe, {}).get("exec", {}).get("command", [])
    check(cmd[:1] == ["/usr/bin/knooppunt-health"], f"{probe} runs knooppunt-health")
    check(f"--config={config_path}" in cmd, f"{probe} uses the container's config")
check("--any_status" not in c["readinessProbe"]["exec"]["command"], "readiness needs SERVING")
check("--any_status" in c["livenessProbe"]["exec"]["command"], "liveness: any answer")
for kind in ("requests", "limits"):
    for res in ("cpu", "memory"):
        check(res in c.get("resources", {}).get(kind, {}), f"resources.{kind}.{res}")
sc = pod["securityContext"]
check(sc.get("runAsNonRoot") is True, "runAsNonRoot")
check(c["securityContext"].get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
check(c["securityContext"].get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation")
check(c["securityContext"]["capabilities"]["drop"] == ["ALL"], "capabilities dropped")
check(pod["terminationGracePeriodSeconds"] > 20, "terminationGracePeriodSeconds > shutdown_grace")
mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
volumes = {v["name"]: v for v in pod["volumes"]}
check(set(mounts) == set(volumes), "every volume mounted, every mount a volume")
for v in volumes.values():
    if "configMap" in v:
        check(("ConfigMap", v["configMap"]["name"]) in objects, f"ConfigMap {v['configMap']['name']}")
    if "secret" in v:
        check(("Secret", v["secret"]["secretName"]) in objects, f"Secret {v['secret']['secretName']}")
        check(v["secret"].get("defaultMode") in (0o400, 0o440), f"Secret {v['name']} mode")
    if "persistentVolumeClaim" in v:
        check(("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in objects, "PVC")
ports = {p["name"]: p["containerPort"] for p in c["ports"]}

# 5. Service and PDB select the pod; the Service's port is a container port.
for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
    for (k, n), (_, o) in objects.items():
        if k != kind:
            continue
        sel = o["spec"].get("selector", o["spec"].get("podSelector", {}))
        sel = sel.get("matchLabels", sel)
        check(sel.items() <= labels.items(), f"{kind}/{n} selects the gateway pod")
_, svc = objects[("Service", "knooppunt-gateway")]
for p in svc["spec"]["ports"]:
    check(p["targetPort"] in ports or p["targetPort"] in ports.values(), f"Service targetPort {p['targetPort']}")

# 6. The ConfigMap's gateway.yaml, registry and agreements pass the gateway's loader, with
# /etc/knooppunt/ mapped to a scratch directory laid out as the pod's mounts.
shutil.rmtree(WORK, ignore_errors=True)
root = os.path.join(WORK, "etc-knooppunt")
for key, mount in mounts.items():
    if mount.startswith("/etc/knooppunt/"):
        os.makedirs(os.path.join(root, mount[len("/etc/knooppunt/"):]), exist_ok=True)
for v in volumes.values():
    if "configMap" in v:
        _, cm = objects[("ConfigMap", v["configMap"]["name"])]
        target = os.path.join(root, mounts[v["name"]][len("/etc/knooppunt/"):])
        for fname, content in (cm.get("data") or {}).items():
            content = content.replace("/etc/knooppunt/", root + "/")
            with open(os.path.join(target, fname), "w") as f:
                f.write(content)
mapped_config = config_path.replace("/etc/knooppunt/", root + "/")
check(os.path.exists(mapped_config), f"{config_path} is not in a ConfigMap")
gw_cfg = yaml.safe_load(open(mapped_config))
check(gw_cfg["listen"].endswith(":%d" % ports["grpc-mtls"]), "listen port = containerPort grpc-mtls")
check(gw_cfg["metrics"]["listen"].endswith(":%d" % ports["metrics"]), "metrics port = containerPort metrics")
for path in (gw_cfg["tls"]["cert_file"], gw_cfg["tls"]["key_file"], gw_cfg["tls"]["client_ca_file"],
             gw_cfg["audit"]["hmac_key_file"], gw_cfg["audit"]["signing_key_file"]):
    # Checked as the pod sees it: the scratch root mapped back to /etc/knooppunt/ (a scratch
    # directory under some other mount, /tmp say, must not pass by accident).
    in_pod = path.replace(root + "/", "/etc/knooppunt/")
    check(any(in_pod.startswith(m + "/") for m in mounts.values()), f"{in_pod} is on a mounted volume")
check(gw_cfg["audit"]["db_path"].startswith(mounts["state"] + "/"), "audit db on the volume")
check(gw_cfg["melding"]["store_path"].startswith(mounts["state"] + "/"), "melding store on the volume")
r = subprocess.run([GATEWAY, f"--config={mapped_config}", "--check"], capture_output=True, text=True)
print("configmap gateway.yaml --check:", r.returncode, (r.stdout + r.stderr).strip())
check(r.returncode == 0, "the ConfigMap's gateway.yaml passes knooppunt-gateway --check")

# 7. The package's example configuration passes the loader as well.
example = os.path.join(SRC, "deploy", "config", "gateway.yaml")
r = subprocess.run([GATEWAY, f"--config={example}", "--check"], capture_output=True, text=True)
print("deploy/config/gateway.yaml --check:", r.returncode, (r.stdout + r.stderr).strip())
check(r.returncode == 0, "deploy/config/gateway.yaml passes knooppunt-gateway --check")

# 8. The Dockerfile: multi-stage on bookworm; its build runs the project's scripts (the same
# install-deps.sh CI runs, and package.sh, which CI runs on its build in deploy_package); the
# runtime user is the pod's runAsUser.
dockerfile = open(os.path.join(SRC, "deploy", "docker", "Dockerfile")).read()
froms = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
check(len(froms) >= 2 and all(f.startswith("debian:bookworm") for f in froms), f"FROM lines: {froms}")
runs = re.findall(r"^RUN\s+(.*)$", dockerfile, re.M)
check("tools/install-deps.sh" in runs, "Dockerfile RUN tools/install-deps.sh")
check(any(r.startswith("tools/package.sh") for r in runs), "Dockerfile RUN tools/package.sh")
ci = open(os.path.join(SRC, ".ci", "run")).read() + open(os.path.join(SRC, "tools", "test.sh")).read()
check("tools/test.sh" in ci and "tools/install-deps.sh" in ci, "CI runs tools/test.sh -> install-deps.sh")
user = re.search(r"^USER\s+(\d+):(\d+)", dockerfile, re.M)
check(user and int(user.group(1)) == sc.get("runAsUser"), "Dockerfile USER = runAsUser")
entry = re.search(r'^ENTRYPOINT\s+\["([^"]+)"', dockerfile, re.M)
check(entry and entry.group(1) == "/usr/bin/knooppunt-gateway", "ENTRYPOINT is the gateway")

# 9. The overlay for several replicas on PostgreSQL (replicas/): every patch names an object of
# the base; the Deployment runs several replicas, each named by its pod, with no volume of its
# own; its gateway.yaml keeps meldingen and audit log in PostgreSQL and passes --check.
OVERLAY = os.path.join(K8S, "replicas")
kust = load_all(os.path.join(OVERLAY, "kustomization.yaml"))[0]
check(kust.get("resources") == ["../"], "replicas/ builds on the base")
patched = {}
for entry in kust.get("patches", []):
    for doc in load_all(os.path.join(OVERLAY, entry["path"])):
        key = (doc["kind"], doc["metadata"]["name"])
        check(key in objects, f"replicas/{entry['path']} patches {key}, which the base has")
        patched[key] = doc
dep = patched.get(("Deployment", "knooppunt-gateway"))
check(dep is not None, "replicas/ patches the Deployment")
if dep:
    check(dep["spec"]["replicas"] >= 2, "several replicas")
    check(dep["spec"]["strategy"]["type"] == "RollingUpdate", "rolling updates")
    pc = dep["spec"]["template"]["spec"]["containers"][0]
    check("--instance_id=$(POD_NAME)" in pc["args"], "each replica named by its pod")
    check(any(e["name"] == "POD_NAME" and e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
              for e in pc["env"]), "POD_NAME from the downward API")
    pvols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    check("emptyDir" in pvols.get("state", {}) and pvols["state"].get("persistentVolumeClaim", 1) is None,
          "the state volume is scratch space, not the claim")
    for m in pc.get("volumeMounts", []):
        check(m["name"] in pvols or m["name"] in volumes, f"overlay mount {m['name']} has a volume")
    for v in pvols.values():
        if "secret" in v:
            check(("Secret", v["secret"]["secretName"]) in objects, f"Secret {v['secret']['secretName']}")
            check(v["secret"].get("defaultMode") in (0o400, 0o440), f"Secret {v['name']} mode")
check(patched.get(("PersistentVolumeClaim", "knooppunt-state"), {}).get("$patch") == "delete",
      "replicas/ drops the PersistentVolumeClaim")
cm = patched.get(("ConfigMap", "knooppunt-config"))
if cm:
    text = cm["data"]["gateway.yaml"]
    replica_cfg = yaml.safe_load(text)
    check("postgres" in replica_cfg["melding"] and "store_path" not in replica_cfg["melding"],
          "replica meldingen in PostgreSQL")
    check("postgres" in replica_cfg["audit"] and "db_path" not in replica_cfg["audit"],
          "replica audit log in PostgreSQL")
    check("knooppunt_auditor" in replica_cfg["audit"]["postgres_reader"]["conninfo"],
          "the Auditor service reads with the read-only role")
    mapped_replica = os.path.join(root, "config", "gateway-replicas.yaml")
    with open(mapped_replica, "w") as f:
        f.write(text.replace("/etc/knooppunt/", root + "/"))
    r = subprocess.run([GATEWAY, f"--config={mapped_replica}", "--instance_id=knooppunt-gateway-abc12",
                        "--check"], capture_output=True, text=True)
    print("replicas/ gateway.yaml --check:", r.returncode, (r.stdout + r.stderr).strip())
    check(r.returncode == 0, "the replicas' gateway.yaml passes knooppunt-gateway --check")
else:
    check(False, "replicas/ patches the ConfigMap knooppunt-config")

if failures:
    print(f"{len(failures)} failure(s)")
    sys.exit(1)
print("PASS")

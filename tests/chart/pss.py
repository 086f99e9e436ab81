"""Pod Security Standard `restricted` (Kubernetes 1.29+ policy), checked on a pod spec.

A re-implementation of the checks of the Pod Security admission controller for the
`restricted` level (which includes `baseline`); returns human-readable violations.
"""

from __future__ import annotations

RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def _containers(spec: dict) -> list[tuple[str, dict]]:
    out = []
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or []:
            out.append((f"{field}[{c.get('name', '?')}]", c))
    return out


def violations(spec: dict, annotations: dict | None = None) -> list[str]:
    v: list[str] = []
    psc = spec.get("securityContext") or {}
    containers = _containers(spec)
    annotations = annotations or {}

    # --- baseline
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            v.append(f"{field} must not be true")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        v.append("pod windowsOptions.hostProcess must not be true")
    for vol in spec.get("volumes") or []:
        types = set(vol) - {"name"}
        if "hostPath" in types:
            v.append(f"volume {vol.get('name')}: hostPath is forbidden")
        bad = types - RESTRICTED_VOLUME_TYPES
        if bad:
            v.append(f"volume {vol.get('name')}: type {sorted(bad)} not allowed")
    for s in psc.get("sysctls") or []:
        if s.get("name") not in SAFE_SYSCTLS:
            v.append(f"sysctl {s.get('name')} is not in the safe set")
    for key, value in annotations.items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            v.append(f"annotation {key}={value}: AppArmor must be runtime/default or localhost/*")

    def check_selinux(where: str, sc: dict) -> None:
        se = sc.get("seLinuxOptions") or {}
        if se.get("type", "") not in SELINUX_TYPES or se.get("user") or se.get("role"):
            v.append(f"{where}: seLinuxOptions not allowed: {se}")

    def check_apparmor(where: str, sc: dict) -> None:
        profile = (sc.get("appArmorProfile") or {}).get("type")
        if profile is not None and profile not in {"RuntimeDefault", "Localhost"}:
            v.append(f"{where}: appArmorProfile {profile} not allowed")

    check_selinux("pod", psc)
    check_apparmor("pod", psc)

    # --- restricted, pod level
    pod_non_root = psc.get("runAsNonRoot") is True
    if psc.get("runAsNonRoot") is False:
        v.append("pod runAsNonRoot must not be false")
    if psc.get("runAsUser") == 0:
        v.append("pod runAsUser must not be 0")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in {"RuntimeDefault", "Localhost"}:
        v.append(f"pod seccompProfile {pod_seccomp} not allowed")

    for where, c in containers:
        sc = c.get("securityContext") or {}
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            v.append(f"{where}: hostProcess must not be true")
        if sc.get("privileged"):
            v.append(f"{where}: privileged must not be true")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                v.append(f"{where}: hostPort {p['hostPort']} not allowed")
        if sc.get("procMount") not in (None, "Default"):
            v.append(f"{where}: procMount must be Default")
        check_selinux(where, sc)
        check_apparmor(where, sc)
        if sc.get("allowPrivilegeEscalation") is not False:
            v.append(f"{where}: allowPrivilegeEscalation must be false")
        if sc.get("runAsNonRoot") is False:
            v.append(f"{where}: runAsNonRoot must not be false")
        if not pod_non_root and sc.get("runAsNonRoot") is not True:
            v.append(f"{where}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser") == 0:
            v.append(f"{where}: runAsUser must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is not None and seccomp not in {"RuntimeDefault", "Localhost"}:
            v.append(f"{where}: seccompProfile {seccomp} not allowed")
        if seccomp is None and pod_seccomp is None:
            v.append(
                f"{where}: seccompProfile must be RuntimeDefault or Localhost (pod or container)"
            )
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            v.append(f"{where}: capabilities must drop ALL")
        extra = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if extra:
            v.append(f"{where}: capabilities.add {sorted(extra)} not allowed")
    return v

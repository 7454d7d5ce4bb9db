"""A cluster's driver settings (``clusters.driver_config``): checked before they are stored, read when used.

Credentials are referenced, never stored: a Slurm cluster authenticates through munge on the host, a Kubernetes
cluster through a kubeconfig file (or the pod's service account) named by path. A setting that looks like a secret
itself (a token, a password, key or certificate data) is refused with the reason, so it never lands in the database
in plain text, and nothing here ever logs a setting's value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpufleet.adapters.drivers.kubernetes import KubernetesSettings
from gpufleet.adapters.drivers.slurm import COMMANDS, SlurmSettings
from gpufleet.platform.errors import InvalidInput

CLUSTER_SETTING_KEYS = frozenset({"reboot_timeout_minutes", "drain_deadline_minutes", "escalate_after_failures"})
"""Settings of the cluster's automation, not of its driver: they have one home, the cluster settings."""
SIMULATED_KEYS = frozenset({"seed", "reboot_no_return", "detect_per_pass", "boot_minutes"})
SLURM_KEYS = frozenset({"conf", "bin_dir", "timeout_seconds", "reservation_user", *COMMANDS})
KUBERNETES_KEYS = frozenset({"kubeconfig", "context", "in_cluster", "timeout_seconds", "eviction_grace_seconds"})
KEYS = {"simulated": SIMULATED_KEYS, "slurm": SLURM_KEYS, "kubernetes": KUBERNETES_KEYS}
PATH_KEYS = frozenset({"conf", "bin_dir", "kubeconfig", *COMMANDS})
_SECRET_WORDS = (
    "token",
    "password",
    "passwd",
    "secret",
    "credential",
    "key-data",
    "key_data",
    "cert-data",
    "certificate-data",
    "certificate_data",
    "private",
)


def _where(cluster: str, key: str | None = None) -> str:
    return f"clusters.{cluster}.driver_config" + (f".{key}" if key else "")


def _number(cluster: str, config: Mapping[str, Any], key: str, low: float, high: float, default: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidInput(f"expected a number from {low:g} to {high:g}, got {value!r}", field=_where(cluster, key))
    return float(value)


def _text(cluster: str, config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 1000:
        raise InvalidInput("expected a non-empty text of at most 1000 characters", field=_where(cluster, key))
    return value.strip()


def check_driver_config(cluster: str, driver: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings as they will be stored, or InvalidInput naming the setting that is wrong."""
    if driver not in KEYS:
        raise InvalidInput(f"unknown driver '{driver}'; expected one of {', '.join(sorted(KEYS))}", field="driver")
    for key, value in config.items():
        lowered = str(key).lower()
        if any(word in lowered for word in _SECRET_WORDS):
            raise InvalidInput(
                "credentials are not stored in gpufleet; put them in a file (a kubeconfig, munge on the host) "
                "and give its path",
                field=_where(cluster, str(key)),
            )
        if isinstance(value, str) and "\n" in value:
            raise InvalidInput("expected one line (a path or a name), not file contents", field=_where(cluster, key))
    moved = sorted(CLUSTER_SETTING_KEYS & set(config))
    if moved:
        raise InvalidInput(
            f"{moved[0]} is a cluster setting, not a driver setting: set it with `gpufleet policy override --cluster"
            f" {cluster} --set {moved[0]}=VALUE --reason TEXT`",
            field=_where(cluster, moved[0]),
        )
    unknown = sorted(set(config) - KEYS[driver])
    if unknown:
        allowed = ", ".join(sorted(KEYS[driver]))
        raise InvalidInput(f"unknown setting(s) {', '.join(unknown)} for {driver}; allowed: {allowed}", _where(cluster))
    for key in PATH_KEYS & set(config):
        path = _text(cluster, config, key)
        if path is not None and not path.startswith("/"):
            raise InvalidInput(f"expected an absolute path, got {path!r}", field=_where(cluster, key))
    if driver == "slurm":
        slurm_settings(cluster, config)
    elif driver == "kubernetes":
        kubernetes_settings(cluster, config)
    return dict(config)


def slurm_settings(cluster: str, config: Mapping[str, Any]) -> SlurmSettings:
    commands = {name: path for name in COMMANDS if (path := _text(cluster, config, name)) is not None}
    return SlurmSettings(
        conf=_text(cluster, config, "conf"),
        bin_dir=_text(cluster, config, "bin_dir"),
        commands=commands,
        timeout_seconds=_number(cluster, config, "timeout_seconds", 1, 600, 30),
        reservation_user=_text(cluster, config, "reservation_user") or "root",
    )


def kubernetes_settings(cluster: str, config: Mapping[str, Any]) -> KubernetesSettings:
    in_cluster = config.get("in_cluster", False)
    if not isinstance(in_cluster, bool):
        raise InvalidInput("expected true or false", field=_where(cluster, "in_cluster"))
    kubeconfig = _text(cluster, config, "kubeconfig")
    if in_cluster and kubeconfig:
        raise InvalidInput("give a kubeconfig or in_cluster, not both", field=_where(cluster))
    grace = config.get("eviction_grace_seconds")
    return KubernetesSettings(
        kubeconfig=kubeconfig,
        context=_text(cluster, config, "context"),
        in_cluster=in_cluster,
        timeout_seconds=_number(cluster, config, "timeout_seconds", 1, 600, 30),
        eviction_grace_seconds=int(_number(cluster, config, "eviction_grace_seconds", 0, 86400, 0))
        if grace is not None
        else None,
    )

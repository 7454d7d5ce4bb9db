"""The Kubernetes driver: cordon, taints, drain through the Eviction API, and node conditions read back.

It uses the official ``kubernetes`` client for what is hard to get right (kubeconfig contexts, exec plugins,
in-cluster service accounts, TLS) and reads objects as the API's own JSON, so that what the driver looks at is
spelled exactly as in the Kubernetes API reference (``spec.unschedulable``, ``status.conditions``).

- Cordon is ``spec.unschedulable: true`` plus an annotation saying gpufleet did it and why; a node someone else
  cordoned is reported as theirs and never uncordoned without an override.
- Drain evicts pod by pod (``POST .../pods/NAME/eviction``). A 429 means a PodDisruptionBudget forbids it for now:
  the pod stays in ``remaining`` and the next call asks again. Past the drain's deadline the driver escalates to
  deleting the pod, which ignores the budget. DaemonSet pods are skipped (the DaemonSet would put them straight
  back, and they tolerate the unschedulable taint); mirror pods (static pods, annotation
  ``kubernetes.io/config.mirror``) cannot be evicted through the API and are skipped too: the kubelet owns them.
- Kubernetes has no reboot API: a reboot is asked for with annotations that the node's agent acts on, and observed
  through ``status.nodeInfo.bootID`` changing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from urllib3.exceptions import HTTPError

from gpufleet.adapters.drivers.base import (
    MAINTENANCE_TAINT,
    DrainStatus,
    DriverError,
    NodeStatus,
    PowerState,
    PowerStatus,
    SiteValidation,
    Taint,
    UnknownNode,
    Work,
)
from gpufleet.adapters.drivers.ownership import HeldByOthers, reason_ref
from gpufleet.domain.clock import Clock

log = logging.getLogger("gpufleet.drivers.kubernetes")

CORDON_ANNOTATION = "gpufleet.io/cordon-reason"
REBOOT_ANNOTATION = "gpufleet.io/reboot-requested"
REBOOT_BOOT_ID = "gpufleet.io/reboot-boot-id"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
MERGE_PATCH = "application/merge-patch+json"
GPU_LABEL_PREFIXES = ("nvidia.com/", "feature.node.kubernetes.io/pci-10de")
STANDARD_CONDITIONS = frozenset({"Ready", "MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable"})
T = TypeVar("T")


@dataclass(frozen=True)
class KubernetesSettings:
    """Where the cluster's credentials are: a kubeconfig path (and context), or the pod's service account."""

    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False
    timeout_seconds: float = 30.0
    eviction_grace_seconds: int | None = None


def _api_error_type() -> type[Exception]:
    from kubernetes.client.exceptions import ApiException

    return ApiException


class KubernetesDriver(SiteValidation):
    """One Kubernetes cluster, through its API server. Every operation reads first and does only what is missing."""

    scheduler = "Kubernetes"

    def __init__(self, cluster: str, settings: KubernetesSettings, clock: Clock, api_client: Any = None) -> None:
        self._cluster = cluster
        self.settings = settings
        self.clock = clock
        self._client = api_client
        self._core: Any = None

    @property
    def cluster(self) -> str:
        return self._cluster

    # -- talking to the API server -----------------------------------------------------------------------------

    def _api(self) -> Any:
        if self._core is None:
            from kubernetes import client, config

            if self._client is None:
                try:
                    if self.settings.in_cluster:
                        configuration = client.Configuration()
                        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                        self._client = client.ApiClient(configuration)
                    else:
                        self._client = config.new_client_from_config(  # type: ignore[no-untyped-call]
                            config_file=self.settings.kubeconfig, context=self.settings.context, persist_config=False
                        )
                except Exception as exc:  # the client raises several types; none may carry secrets into our logs
                    where = "in-cluster service account" if self.settings.in_cluster else self.settings.kubeconfig
                    raise DriverError(
                        f"cannot load the Kubernetes configuration of '{self._cluster}' from {where}: "
                        f"{type(exc).__name__}"
                    ) from None
            self._core = client.CoreV1Api(self._client)
        return self._core

    def _call(self, what: str, fn: Callable[..., T], *args: Any, node: str | None = None, **kwargs: Any) -> T:
        api_error = _api_error_type()
        timeout = self.settings.timeout_seconds
        try:
            return fn(*args, _request_timeout=timeout, **kwargs)
        except api_error as exc:
            status = getattr(exc, "status", None)
            if status == 404 and node is not None and what.endswith("node"):
                raise UnknownNode(node, self._cluster) from None
            retryable = status in (409, 429, 500, 502, 503, 504) or status is None
            raise _ApiError(
                f"{what} on '{self._cluster}' answered {status} {_reason(exc)}", node, retryable, status
            ) from None
        except DriverError:
            raise
        except (OSError, HTTPError) as exc:  # connection refused, TLS, timeouts: the API server did not answer
            raise DriverError(
                f"{what}: the API server of '{self._cluster}' did not answer ({type(exc).__name__})",
                node=node,
                retryable=True,
            ) from None
        except Exception as exc:  # the client refused what we sent or what came back: a bug, not a cluster state
            raise DriverError(f"{what} on '{self._cluster}' failed: {type(exc).__name__}", node=node) from None

    def _json(self, what: str, fn: Callable[..., Any], *args: Any, node: str | None = None, **kwargs: Any) -> Any:
        response = self._call(what, fn, *args, node=node, _preload_content=False, **kwargs)
        return json.loads(response.data)

    def _node(self, node: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("read node", self._api().read_node, node, node=node)
        return result

    def _patch(self, node: str, body: Mapping[str, Any]) -> None:
        self._call(
            "patch node",
            self._api().patch_node,
            node,
            dict(body),
            node=node,
            _content_type=MERGE_PATCH,
            _preload_content=False,
        )

    def _pods(self, node: str | None = None) -> list[dict[str, Any]]:
        kwargs = {"field_selector": f"spec.nodeName={node}"} if node else {}
        listed = self._json("list pods", self._api().list_pod_for_all_namespaces, node=node, **kwargs)
        return list(listed.get("items") or [])

    # -- the ClusterDriver interface ---------------------------------------------------------------------------

    def cordon(self, node: str, reason: str) -> None:
        current = self._node(node)
        spec, annotations = current.get("spec") or {}, _meta(current).get("annotations") or {}
        if spec.get("unschedulable") and (
            CORDON_ANNOTATION not in annotations or annotations[CORDON_ANNOTATION] == reason
        ):
            return  # cordoned already: by someone else (theirs to lift) or by gpufleet for this reason
        self._patch(node, {"spec": {"unschedulable": True}, "metadata": {"annotations": {CORDON_ANNOTATION: reason}}})

    def uncordon(self, node: str, reason: str, override: bool = False) -> None:
        current = self._node(node)
        annotations = _meta(current).get("annotations") or {}
        if not (current.get("spec") or {}).get("unschedulable"):
            if CORDON_ANNOTATION in annotations:
                self._patch(node, {"metadata": {"annotations": {CORDON_ANNOTATION: None}}})
            return
        if CORDON_ANNOTATION not in annotations and not override:
            raise HeldByOthers(node, "cordoned", _unschedulable_manager(current))
        self._patch(node, {"spec": {"unschedulable": False}, "metadata": {"annotations": {CORDON_ANNOTATION: None}}})

    def drain(self, node: str, reason: str, deadline: datetime) -> DrainStatus:
        self.cordon(node, reason)
        escalate = self.clock.now() >= deadline
        remaining: list[Work] = []
        forced: list[Work] = []
        for pod in self._pods(node):
            if not _evictable(pod):
                continue
            meta = _meta(pod)
            name, namespace = meta.get("name", ""), meta.get("namespace", "default")
            if meta.get("deletionTimestamp"):
                remaining.append(_pod_work(pod, "pod:terminating"))
                continue
            if escalate:
                if self._delete_pod(node, name, namespace):
                    forced.append(_pod_work(pod, "pod"))
                    remaining.append(_pod_work(pod, "pod:terminating"))
                continue
            outcome = self._evict(node, name, namespace)
            if outcome != "gone":
                remaining.append(_pod_work(pod, "pod:pdb-blocked" if outcome == "blocked" else "pod:terminating"))
        return DrainStatus(node, deadline, remaining=tuple(remaining), forced=tuple(forced))

    def _evict(self, node: str, name: str, namespace: str) -> str:
        from kubernetes import client

        options = None
        if self.settings.eviction_grace_seconds is not None:
            options = client.V1DeleteOptions(grace_period_seconds=self.settings.eviction_grace_seconds)
        body = client.V1Eviction(
            api_version="policy/v1",
            kind="Eviction",
            metadata=client.V1ObjectMeta(name=name, namespace=namespace),
            delete_options=options,
        )
        try:
            self._call(
                "evict pod",
                self._api().create_namespaced_pod_eviction,
                name,
                namespace,
                body,
                node=node,
                _preload_content=False,
            )
        except _ApiError as exc:
            if exc.status == 429:
                log.info(
                    "cluster=%s node=%s pod=%s/%s eviction refused by a disruption budget",
                    self._cluster,
                    node,
                    namespace,
                    name,
                )
                return "blocked"
            if exc.status == 404:
                return "gone"
            raise
        return "evicted"

    def _delete_pod(self, node: str, name: str, namespace: str) -> bool:
        try:
            self._call(
                "delete pod", self._api().delete_namespaced_pod, name, namespace, node=node, _preload_content=False
            )
        except _ApiError as exc:
            if exc.status == 404:
                return False
            raise
        log.warning(
            "cluster=%s node=%s pod=%s/%s deleted past the drain deadline", self._cluster, node, namespace, name
        )
        return True

    def set_maintenance_taint(self, node: str, reason: str) -> None:
        taint = {
            "key": MAINTENANCE_TAINT,
            "value": _label_value(reason_ref(reason) or "maintenance"),
            "effect": "NoSchedule",
        }

        def add(taints: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
            return None if any(t.get("key") == MAINTENANCE_TAINT for t in taints) else [*taints, taint]

        self._update_taints(node, add)

    def clear_maintenance_taint(self, node: str) -> None:
        def remove(taints: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
            kept = [t for t in taints if t.get("key") != MAINTENANCE_TAINT]
            return kept if len(kept) != len(taints) else None

        self._update_taints(node, remove)

    def _update_taints(self, node: str, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]] | None]) -> None:
        """Replace the taint list under the node's resourceVersion, so a concurrent writer's taint is never lost."""
        for _ in range(3):
            current = self._node(node)
            taints = list((current.get("spec") or {}).get("taints") or [])
            wanted = change(taints)
            if wanted is None:
                return
            body = {"metadata": {"resourceVersion": _meta(current).get("resourceVersion")}, "spec": {"taints": wanted}}
            try:
                self._patch(node, body)
                return
            except _ApiError as exc:
                if exc.status != 409:
                    raise
        raise DriverError(f"node '{node}' kept changing while its taints were updated", node=node, retryable=True)

    def reboot(self, node: str, reason: str, hold: bool = False) -> None:
        current = self._node(node)
        annotations = _meta(current).get("annotations") or {}
        boot_id = _boot_id(current)
        if annotations.get(REBOOT_BOOT_ID) == boot_id and REBOOT_ANNOTATION in annotations:
            return
        stamp = self.clock.now().astimezone(UTC).isoformat()
        self._patch(node, {"metadata": {"annotations": {REBOOT_ANNOTATION: stamp, REBOOT_BOOT_ID: boot_id}}})

    def cancel_reboot(self, node: str) -> None:
        current = self._node(node)
        if _reboot_pending(current):
            self._patch(node, {"metadata": {"annotations": {REBOOT_ANNOTATION: None, REBOOT_BOOT_ID: None}}})

    def power_status(self, node: str) -> PowerStatus:
        return _power(self._node(node))

    def node_status(self, node: str) -> NodeStatus:
        return _status(self._node(node), self._pods(node))

    # -- beyond the common interface ---------------------------------------------------------------------------

    def list_nodes(self) -> list[NodeStatus]:
        listed = self._json("list nodes", self._api().list_node)
        pods: dict[str, list[dict[str, Any]]] = {}
        for pod in self._pods():
            pods.setdefault((pod.get("spec") or {}).get("nodeName") or "", []).append(pod)
        return [_status(item, pods.get(_meta(item).get("name", ""), [])) for item in listed.get("items") or []]

    def check(self) -> dict[str, Any]:
        from kubernetes import client

        version = self._json("read version", client.VersionApi(self._api().api_client).get_code)
        nodes = self.list_nodes()
        states: dict[str, int] = {}
        for status in nodes:
            states[status.native_state] = states.get(status.native_state, 0) + 1
        return {
            "driver": "kubernetes",
            "reachable": True,
            "version": version.get("gitVersion", ""),
            "nodes": len(nodes),
            "states": dict(sorted(states.items())),
        }


class _ApiError(DriverError):
    def __init__(self, message: str, node: str | None, retryable: bool, status: int | None) -> None:
        self.status = status
        super().__init__(message, node=node, retryable=retryable)


def _reason(exc: Exception) -> str:
    """The API's own message from a Status body; never headers, which may echo credentials."""
    body = getattr(exc, "body", None)
    try:
        status = json.loads(body) if body else {}
    except (TypeError, ValueError):
        status = {}
    message = status.get("message") if isinstance(status, dict) else None
    return str(message or getattr(exc, "reason", "") or "")[:300]


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return meta if isinstance(meta, dict) else {}


def _label_value(text: str) -> str:
    """A taint value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in text)[:63].strip("-_.")
    return cleaned or "maintenance"


def _evictable(pod: Mapping[str, Any]) -> bool:
    meta = _meta(pod)
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
        return False
    if any(ref.get("kind") == "DaemonSet" for ref in meta.get("ownerReferences") or []):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _pod_work(pod: Mapping[str, Any], kind: str) -> Work:
    meta = _meta(pod)
    started = _time((pod.get("status") or {}).get("startTime")) or _time(meta.get("creationTimestamp"))
    return Work(
        f"{meta.get('namespace', 'default')}/{meta.get('name', '')}", kind, started or datetime.fromtimestamp(0, UTC)
    )


def _conditions(node: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type", ""): c for c in (node.get("status") or {}).get("conditions") or [] if isinstance(c, dict)}


def _boot_id(node: Mapping[str, Any]) -> str:
    return str(((node.get("status") or {}).get("nodeInfo") or {}).get("bootID") or "")


def _reboot_pending(node: Mapping[str, Any]) -> bool:
    annotations = _meta(node).get("annotations") or {}
    return REBOOT_ANNOTATION in annotations and annotations.get(REBOOT_BOOT_ID) == _boot_id(node)


def _power(node: Mapping[str, Any]) -> PowerStatus:
    ready = _conditions(node).get("Ready", {})
    reachable = ready.get("status") == "True"
    power = PowerState.ON if reachable else PowerState.UNKNOWN
    booted = _time(ready.get("lastTransitionTime")) if reachable else None
    return PowerStatus(_meta(node).get("name", ""), power, reachable, booted, _reboot_pending(node))


def _unschedulable_manager(node: Mapping[str, Any]) -> str | None:
    """Who last set ``spec.unschedulable``, from the server's managedFields (e.g. ``kubectl-cordon``)."""
    for entry in _meta(node).get("managedFields") or []:
        fields = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if "f:unschedulable" in fields:
            return str(entry.get("manager") or "") or None
    return None


def _status(node: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> NodeStatus:
    meta = _meta(node)
    spec = node.get("spec") or {}
    annotations = meta.get("annotations") or {}
    conditions = _conditions(node)
    ready = conditions.get("Ready", {}).get("status")
    cordoned = bool(spec.get("unschedulable"))
    words = ["Ready" if ready == "True" else ("NotReady" if ready == "False" else "Unknown")]
    if cordoned:
        words.append("SchedulingDisabled")
    extra: dict[str, str] = {"owner": ""}
    if cordoned:
        ours = CORDON_ANNOTATION in annotations
        extra["owner"] = "gpufleet" if ours else "other"
        manager = _unschedulable_manager(node)
        if manager:
            extra["reason_user"] = manager
    for kind, condition in sorted(conditions.items()):
        text = str(condition.get("status", ""))
        if kind not in STANDARD_CONDITIONS and condition.get("reason"):
            text += f" ({condition['reason']})"  # node-problem-detector explains itself in the reason
        extra[f"condition/{kind}"] = text
    for key, value in sorted((meta.get("labels") or {}).items()):
        if key.startswith(GPU_LABEL_PREFIXES):
            extra[f"label/{key}"] = str(value)
    taints = tuple(
        Taint(str(t.get("key", "")), str(t.get("value") or ""), str(t.get("effect") or "NoSchedule"))
        for t in spec.get("taints") or []
    )
    running = tuple(_pod_work(p, "pod") for p in pods if _evictable(p))
    reason = annotations.get(CORDON_ANNOTATION) if cordoned else None
    if cordoned and reason is None:
        reason = "cordoned outside gpufleet"
    return NodeStatus(
        node=meta.get("name", ""),
        schedulable=not cordoned and ready == "True",
        power=_power(node),
        taints=taints,
        running=running,
        native_state=",".join(words),
        reason=reason,
        draining=cordoned and bool(running),
        extra=extra,
    )

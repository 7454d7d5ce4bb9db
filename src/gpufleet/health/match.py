"""Matching what a health source called a node and a GPU to the inventory, in a fixed number of bulk reads.

A node is found by chassis id, serial or hostname (a decommissioned namesake loses to a live node). With no node
named, a GPU serial or UUID the inventory knows finds it. A GPU is found through the node's ``gpus`` rows by UUID,
serial, PCI bus id or index, in that order:

- an identifier the inventory records for this node and that matches gives the GPU index;
- one that contradicts the inventory (a serial or UUID of another node's GPU, a serial or PCI address the node's
  recorded GPUs do not have, an index past its GPU count) makes the event unmatched: someone must look;
- one the inventory cannot check (it records no serials, UUIDs or PCI addresses for this node) is skipped; when
  nothing can be checked the event stays on its node with no GPU index (``gpu_unresolved``) rather than being
  held back from remediation for a gap in the inventory.

nvidia-smi readings fill in the PCI bus id and UUID of GPUs the inventory knows by serial (``learn_gpus``), so Xid
lines, which name only the PCI address, resolve to a GPU from then on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gpufleet.adapters.formats.health_observation import GpuRef, canonical_pci
from gpufleet.domain.lifecycle import NodeState
from gpufleet.health import store
from gpufleet.platform.database import UnitOfWork


@dataclass
class _GpuRow:
    id: int
    node_id: str
    idx: int
    serial: str | None
    uuid: str | None
    pci: str | None


@dataclass
class _NodeRow:
    id: str
    serial: str
    hostname: str
    state: str
    gpu_count: int
    """GPUs the node's SKU has."""
    recorded: int
    """GPU rows the inventory holds for the node."""
    gpus: list[_GpuRow] = field(default_factory=list)
    """Read only when some event names a GPU by UUID, serial or PCI address, which only these rows can check."""


@dataclass(frozen=True)
class Match:
    node_id: str | None
    gpu_index: int | None = None
    reason: str | None = None
    """Why the event is unmatched (``node_id`` is None), or None."""
    gpu_unresolved: bool = False


class Inventory:
    """The nodes and GPUs a batch names, read in a fixed number of queries; every lookup after that is in memory."""

    def __init__(self, session: UnitOfWork, node_refs: Iterable[str], gpus: Iterable[GpuRef]) -> None:
        self.by_id: dict[str, _NodeRow] = {}
        self.by_serial: dict[str, list[_NodeRow]] = {}
        self.by_hostname: dict[str, list[_NodeRow]] = {}
        self.gpu_by_serial: dict[str, _GpuRow] = {}
        self.gpu_by_uuid: dict[str, _GpuRow] = {}
        refs = sorted({r for r in node_refs if r})
        gpus = list(gpus)
        gpu_keys = sorted({k for g in gpus for k in (g.serial, g.uuid) if k})
        needs_gpu_rows = bool(gpu_keys) or any(g.pci_bus_id for g in gpus)
        owners = {str(row[0]) for row in store.gpu_owners(session, gpu_keys)}
        for row in store.nodes_named(session, refs):
            self._add_node(_NodeRow(*row))
        missing = sorted(owners - set(self.by_id))
        # Nodes found only through a GPU serial or UUID: by id, through the same statement.
        for row in store.nodes_named(session, missing):
            self._add_node(_NodeRow(*row))
        if not needs_gpu_rows:  # GPUs named by index at most: the node's count of rows is all a match needs
            return
        for gpu_id, node_id, idx, serial, uuid, pci in store.node_gpus(session, sorted(self.by_id)):
            gpu = _GpuRow(gpu_id, node_id, idx, serial, uuid, canonical_pci(pci))
            self.by_id[node_id].gpus.append(gpu)
            if gpu.serial:
                self.gpu_by_serial[gpu.serial] = gpu
            if gpu.uuid:
                self.gpu_by_uuid[gpu.uuid] = gpu

    def _add_node(self, node: _NodeRow) -> None:
        if node.id in self.by_id:
            return
        self.by_id[node.id] = node
        self.by_serial.setdefault(node.serial, []).append(node)
        self.by_hostname.setdefault(node.hostname, []).append(node)

    def node(self, ref: str) -> tuple[_NodeRow | None, str | None]:
        if ref in self.by_id:
            return self.by_id[ref], None
        for table in (self.by_serial, self.by_hostname):
            found = table.get(ref, [])
            live = [n for n in found if n.state != NodeState.DECOMMISSIONED] or found
            if len(live) == 1:
                return live[0], None
            if len(live) > 1:
                return None, f"'{ref}' names several nodes ({', '.join(sorted(n.id for n in live))})"
        return None, f"unknown node '{ref}'"

    def match(self, node_ref: str | None, gpu: GpuRef | None) -> Match:
        if node_ref:
            node, why = self.node(node_ref)
            if node is None:
                return Match(None, reason=why)
        else:
            owner = self._gpu_owner(gpu)
            if owner is None:
                return Match(None, reason="no node named, and no GPU serial or UUID the inventory knows")
            node = self.by_id[owner.node_id]
        if gpu is None or gpu.empty:
            return Match(node.id)
        return self._gpu(node, gpu)

    def _gpu_owner(self, gpu: GpuRef | None) -> _GpuRow | None:
        if gpu is None:
            return None
        return (self.gpu_by_uuid.get(gpu.uuid) if gpu.uuid else None) or (
            self.gpu_by_serial.get(gpu.serial) if gpu.serial else None
        )

    def _gpu(self, node: _NodeRow, gpu: GpuRef) -> Match:
        for name, value, known in (
            ("UUID", gpu.uuid, self.gpu_by_uuid),
            ("serial", gpu.serial, self.gpu_by_serial),
        ):
            if not value:
                continue
            row = known.get(value)
            if row is not None and row.node_id == node.id:
                return Match(node.id, row.idx)
            if row is not None:
                return Match(None, reason=f"GPU {name} {value} belongs to node {row.node_id}, not {node.id}")
            recorded = [g for g in node.gpus if (g.uuid if name == "UUID" else g.serial)]
            if recorded:
                return Match(None, reason=f"node {node.id} has no GPU with {name} {value}")
        pci = canonical_pci(gpu.pci_bus_id)
        if pci:
            with_pci = [g for g in node.gpus if g.pci]
            hit = next((g for g in with_pci if g.pci == pci), None)
            if hit is not None:
                return Match(node.id, hit.idx)
            if with_pci:
                return Match(None, reason=f"node {node.id} has no GPU at PCI address {pci}")
        if gpu.index is not None:
            count = node.recorded or node.gpu_count
            if 0 <= gpu.index < count:
                return Match(node.id, gpu.index)
            return Match(None, reason=f"node {node.id} has {count} GPUs; there is no GPU index {gpu.index}")
        return Match(node.id, gpu_unresolved=True)

    def learn_gpus(self, node_ref: str | None, seen: Iterable[GpuRef]) -> list[dict[str, object]]:
        """Take the PCI bus id and UUID nvidia-smi reported for GPUs known by serial into this inventory, so the
        readings' own events match by them; the changed rows, for ``store.save_learned`` to write."""
        node_id = self.node(node_ref)[0] if node_ref else None
        taken = set(self.gpu_by_uuid)
        changes: list[dict[str, object]] = []
        for ref in seen:
            row = self.gpu_by_serial.get(ref.serial or "")
            if row is None or (node_ref and (node_id is None or row.node_id != node_id.id)):
                continue
            pci = canonical_pci(ref.pci_bus_id)
            uuid = ref.uuid if ref.uuid and row.uuid is None and ref.uuid not in taken else row.uuid
            if (pci and pci != row.pci) or uuid != row.uuid:
                row.pci, row.uuid = pci or row.pci, uuid
                if uuid:
                    taken.add(uuid)
                    self.gpu_by_uuid[uuid] = row
                changes.append({"b_id": row.id, "b_pci": row.pci, "b_uuid": row.uuid})
        return changes

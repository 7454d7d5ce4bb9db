"""The health policy: what each fault code asks for, how related codes and repeats change that, and the ladder.

Built from NVIDIA's Xid catalog (immediate and investigatory resolution per code) plus the other codes the telemetry
parsers produce (ECC, row remapping, temperature, DCGM diagnostics, alerts). The policy is data, read from a versioned
file and changed per cluster or pool by overrides that carry a reason, so that ``gpufleet policy show`` prints exactly
what the controller applies. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any

from gpufleet.domain.settings import DIAGNOSTIC_CHECKS, SETTING_NAMES, Settings


class Action(StrEnum):
    NONE = "none"
    """Informational: kept as evidence, no case is opened for it alone."""
    RESTART_APP = "restart_app"
    RESET_GPU = "reset_gpu"
    REBOOT = "reboot"
    REIMAGE = "reimage"
    INSPECT = "inspect"
    """Hands on the hardware (reseat, cabling, power): a person of ours must act."""
    RMA = "rma"
    """Hand the hardware to its supplier."""


LADDER_ORDER: tuple[Action, ...] = (Action.RESTART_APP, Action.RESET_GPU, Action.REBOOT, Action.REIMAGE, Action.RMA)
"""The escalation ladder, lightest first: each rung is tried (with retries) before the next."""

_STRENGTH = {a: i for i, a in enumerate((Action.NONE, *LADDER_ORDER[:-1], Action.INSPECT, Action.RMA))}


def strength(action: Action) -> int:
    """Orders actions by how much they take away: a reseat by a person outranks a reimage, an RMA outranks all."""
    return _STRENGTH[action]


class Kind(StrEnum):
    SOFTWARE = "software"
    HARDWARE = "hardware"
    WORKLOAD = "workload"
    """The customer's application misbehaved; the node is likely fine."""


class Owner(StrEnum):
    US = "us"
    SUPPLIER = "supplier"
    CUSTOMER = "customer"


class Drain(StrEnum):
    GRACEFUL = "graceful"
    """Let running work finish up to the drain deadline (the fault left the node usable for now)."""
    IMMEDIATE = "immediate"
    """End what is left now: the fault already broke the work on the node."""


SEVERITIES = ("info", "warning", "critical")


class PolicyError(ValueError):
    """A policy file or override that cannot be applied, naming the field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"field '{field}': {message}")


@dataclass(frozen=True)
class CodeRule:
    code: str
    action: Action
    kind: Kind
    owner: Owner
    fatal: bool = False
    """Counts toward the repeat rules (e.g. five fatal Xids in 24 hours)."""
    drain: Drain = Drain.IMMEDIATE
    name: str = ""
    about: str = ""
    catalog: Mapping[str, str] = field(default_factory=dict)
    """NVIDIA's own resolution buckets for the code, kept beside our decision so the two can be compared."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "action": self.action.value,
            "kind": self.kind.value,
            "owner": self.owner.value,
            "fatal": self.fatal,
            "drain": self.drain.value,
            "name": self.name,
            "about": self.about,
            "catalog": dict(self.catalog),
        }


@dataclass(frozen=True)
class PrefixRule:
    """The rule for a code the policy does not list, by its source prefix and the event's severity."""

    prefix: str
    min_severity: str
    rule: CodeRule


@dataclass(frozen=True)
class RelatedRule:
    """When ``code`` is seen together with any of ``with_any``, the pair means something else than each alone."""

    code: str
    with_any: tuple[str, ...]
    action: Action
    drain: Drain
    reason: str


@dataclass(frozen=True)
class RepeatRule:
    """``count`` occurrences within ``window`` on one node send it straight to ``action``."""

    name: str
    count: int
    window: timedelta
    action: Action
    counts: str
    """``fatal_events`` (fatal codes seen) or ``cases`` (cases opened, of ``kinds``)."""
    kinds: tuple[Kind, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class LadderStep:
    action: Action
    attempts: int
    time_limit: timedelta


@dataclass(frozen=True)
class Backoff:
    initial: timedelta
    factor: float
    maximum: timedelta

    def delay(self, retry: int) -> timedelta:
        """Wait before retry number ``retry`` (1 for the first retry)."""
        if retry <= 0:
            return timedelta(0)
        seconds = self.initial.total_seconds() * self.factor ** (retry - 1)
        return timedelta(seconds=min(seconds, self.maximum.total_seconds()))


@dataclass(frozen=True)
class XidPolicy:
    version: str
    codes: Mapping[str, CodeRule]
    prefixes: tuple[PrefixRule, ...]
    related: tuple[RelatedRule, ...]
    follows: frozenset[str]
    """Codes that only follow others (Xid 45): ignored when seen with another code, acted on when alone."""
    repeats: tuple[RepeatRule, ...]
    ladder: tuple[LadderStep, ...]
    backoff: Backoff
    settings: Settings = field(default_factory=Settings)
    source: str = ""
    _prefixed: dict[tuple[str, str], CodeRule | None] = field(
        default_factory=dict, compare=False, repr=False, init=False
    )
    """Rules already derived from a prefix, per (code, severity): a burst of telemetry repeats a few codes."""

    def rule_for(self, code: str, severity: str = "critical") -> CodeRule | None:
        rule = self.codes.get(code)
        if rule is not None:
            return rule
        key = (code, severity)
        if key in self._prefixed:
            return self._prefixed[key]
        rank = _severity_rank(severity)
        found = None
        for prefix in self.prefixes:
            if code.startswith(prefix.prefix) and rank >= _severity_rank(prefix.min_severity):
                found = replace(prefix.rule, code=code)
                break
        if len(self._prefixed) < 10_000:
            self._prefixed[key] = found
        return found

    def may_act(self, code: str, severity: str = "critical") -> bool:
        """Whether this code, seen unresolved, could make ``classify`` ask for an action alone or with others: a
        test a burst of ignored telemetry passes in one lookup instead of being classified event by event."""
        if code in self._related_acting:
            return self.rule_for(code, severity) is not None
        rule = self.rule_for(code, severity)
        return rule is not None and rule.action is not Action.NONE

    @cached_property
    def _related_acting(self) -> frozenset[str]:
        return frozenset(r.code for r in self.related if r.action is not Action.NONE)

    def step(self, action: Action) -> LadderStep | None:
        return next((s for s in self.ladder if s.action is action), None)


def _severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES) - 1


# ---------------------------------------------------------------------------------------------------------------
# Classification.


@dataclass(frozen=True)
class Seen:
    """One piece of evidence as classification reads it."""

    code: str
    severity: str = "critical"
    gpu_index: int | None = None
    resolved: bool = False


@dataclass(frozen=True)
class Classification:
    action: Action
    kind: Kind
    owner: Owner
    drain: Drain
    fatal: bool
    codes: tuple[str, ...]
    """The codes that decided (after related-code and follow rules)."""
    reasons: tuple[str, ...]
    gpu_index: int | None = None

    @property
    def actionable(self) -> bool:
        return self.action is not Action.NONE

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "kind": self.kind.value,
            "owner": self.owner.value,
            "drain": self.drain.value,
            "fatal": self.fatal,
            "codes": list(self.codes),
            "reasons": list(self.reasons),
            "gpu_index": self.gpu_index,
        }


NOTHING = Classification(Action.NONE, Kind.SOFTWARE, Owner.US, Drain.IMMEDIATE, False, (), ())


def classify(policy: XidPolicy, seen: Iterable[Seen]) -> Classification:
    """Decide what a set of evidence on one node asks for, reading related codes together.

    Resolved alerts and codes the policy does not know (below their prefix's severity) carry no weight. A code that
    only follows others is dropped when anything else is present. Related-code rules replace the action of the code
    they name. The strongest action decides; the kind is hardware when any deciding code is hardware.
    """
    items = [s for s in seen if not s.resolved]
    rules: dict[str, tuple[CodeRule, Seen]] = {}
    for s in items:
        rule = policy.rule_for(s.code, s.severity)
        if rule is not None and s.code not in rules:
            rules[s.code] = (rule, s)
    present = set(rules)
    reasons: list[str] = []
    for code in sorted(present & policy.follows):
        others = present - {code}
        if others:
            del rules[code]
            reasons.append(f"{code} follows {', '.join(sorted(others))}: acted on those instead")
    decided: dict[str, CodeRule] = {c: r for c, (r, _) in rules.items()}
    for related in policy.related:
        if related.code in present and any(w in present for w in related.with_any):
            base = decided.get(related.code) or policy.rule_for(related.code)
            if base is not None:
                decided[related.code] = replace(base, action=related.action, drain=related.drain)
                reasons.append(related.reason)
    chosen = [r for r in decided.values() if r.action is not Action.NONE]
    if not chosen:
        return Classification(
            Action.NONE, Kind.SOFTWARE, Owner.US, Drain.IMMEDIATE, False, tuple(sorted(present)), tuple(reasons)
        )
    top = max(chosen, key=lambda r: (strength(r.action), r.kind is Kind.HARDWARE, r.code))
    hardware = [r for r in chosen if r.kind is Kind.HARDWARE]
    kind = Kind.HARDWARE if hardware else top.kind
    owner = top.owner if top.kind is kind else hardware[0].owner
    drain = Drain.GRACEFUL if any(r.drain is Drain.GRACEFUL for r in chosen) else Drain.IMMEDIATE
    reasons.insert(0, f"{top.code} ({top.name or top.about or 'listed'}) asks for {top.action.value}")
    gpu = rules[top.code][1].gpu_index if top.code in rules else None
    return Classification(
        action=top.action,
        kind=kind,
        owner=owner,
        drain=drain,
        fatal=any(r.fatal for r in chosen),
        codes=tuple(sorted(r.code for r in chosen)),
        reasons=tuple(reasons),
        gpu_index=gpu,
    )


def is_fatal(policy: XidPolicy, code: str, severity: str = "critical") -> bool:
    rule = policy.rule_for(code, severity)
    return rule is not None and rule.fatal


def repeat_escalation(policy: XidPolicy, counts: Mapping[str, int]) -> RepeatRule | None:
    """The first repeat rule whose count (given per rule name, over its window) is reached."""
    for rule in policy.repeats:
        if counts.get(rule.name, 0) >= rule.count:
            return rule
    return None


# ---------------------------------------------------------------------------------------------------------------
# Reading the policy document and overrides.


def _enum(kind: type[StrEnum], where: str, value: object) -> Any:
    try:
        return kind(str(value))
    except ValueError:
        names = ", ".join(m.value for m in kind)
        raise PolicyError(where, f"unknown value {value!r}; expected one of: {names}") from None


def _mapping(where: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyError(where, "expected a mapping")
    return value


def _number(where: str, value: object, low: float, high: float, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        kind = "a whole number" if integer else "a number"
        raise PolicyError(where, f"expected {kind} from {low:g} to {high:g}, got {value!r}")
    if integer and not float(value).is_integer():
        raise PolicyError(where, f"expected a whole number, got {value!r}")
    return float(value)


RULE_FIELDS = ("action", "kind", "owner", "fatal", "drain")


def read_rule(code: str, where: str, raw: Mapping[str, Any], base: CodeRule | None = None) -> CodeRule:
    """A code rule from its document form; with ``base``, fields not given keep the base's value."""
    unknown = sorted(set(raw) - {*RULE_FIELDS, "name", "about", "catalog", "code"})
    if unknown:
        raise PolicyError(f"{where}.{unknown[0]}", f"unknown field; expected: {', '.join(RULE_FIELDS)}")
    if base is None:
        missing = [f for f in ("action", "kind", "owner") if f not in raw]
        if missing:
            raise PolicyError(f"{where}.{missing[0]}", "required")
        base = CodeRule(code, Action.NONE, Kind.SOFTWARE, Owner.US)
    fatal = raw.get("fatal", base.fatal)
    if not isinstance(fatal, bool):
        raise PolicyError(f"{where}.fatal", f"expected true or false, got {fatal!r}")
    catalog = base.catalog
    if "catalog" in raw:
        catalog = {str(k): str(v) for k, v in _mapping(f"{where}.catalog", raw["catalog"]).items()}
    return CodeRule(
        code=code,
        action=_enum(Action, f"{where}.action", raw["action"]) if "action" in raw else base.action,
        kind=_enum(Kind, f"{where}.kind", raw["kind"]) if "kind" in raw else base.kind,
        owner=_enum(Owner, f"{where}.owner", raw["owner"]) if "owner" in raw else base.owner,
        fatal=fatal,
        drain=_enum(Drain, f"{where}.drain", raw["drain"]) if "drain" in raw else base.drain,
        name=str(raw.get("name", base.name)),
        about=str(raw.get("about", base.about)),
        catalog=catalog,
    )


def _minutes(where: str, value: object, high: float = 60 * 24 * 60) -> timedelta:
    return timedelta(minutes=_number(where, value, 0, high))


def read_settings(raw: Mapping[str, Any], base: Settings | None = None, where: str = "settings") -> Settings:
    values: dict[str, Any] = {}
    current = base or Settings()
    for name, value in raw.items():
        here = f"{where}.{name}"
        if name not in SETTING_NAMES:
            raise PolicyError(here, f"unknown setting; expected one of: {', '.join(SETTING_NAMES)}")
        default = getattr(current, name)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise PolicyError(here, f"expected true or false, got {value!r}")
            values[name] = value
        elif isinstance(default, int):
            values[name] = int(_number(here, value, 0, 10_000_000, integer=True))
        elif isinstance(default, float):
            values[name] = _number(here, value, 0.0, 1.0)
        else:
            if value not in DIAGNOSTIC_CHECKS:
                raise PolicyError(here, f"expected one of: {', '.join(DIAGNOSTIC_CHECKS)}, got {value!r}")
            values[name] = value
    return replace(current, **values)


def read_policy(document: Mapping[str, Any], source: str = "") -> XidPolicy:
    """Build the policy from its document (the shipped YAML), naming the field of any problem."""
    version = document.get("version")
    if not isinstance(version, str | int) or not str(version).strip():
        raise PolicyError("version", "required: the policy's version, e.g. '2026.1'")
    codes: dict[str, CodeRule] = {}
    for code, raw in _mapping("codes", document.get("codes", {})).items():
        codes[str(code)] = read_rule(str(code), f"codes.{code}", _mapping(f"codes.{code}", raw))
    prefixes = []
    for i, raw in enumerate(document.get("prefixes", []) or []):
        where = f"prefixes[{i}]"
        item = _mapping(where, raw)
        prefix = str(item.get("prefix", "")).strip()
        if not prefix:
            raise PolicyError(f"{where}.prefix", "required")
        severity = str(item.get("min_severity", "info"))
        if severity not in SEVERITIES:
            raise PolicyError(f"{where}.min_severity", f"expected one of: {', '.join(SEVERITIES)}")
        rule = read_rule(prefix + "*", where, {k: v for k, v in item.items() if k not in ("prefix", "min_severity")})
        prefixes.append(PrefixRule(prefix, severity, rule))
    related = []
    for i, raw in enumerate(document.get("related", []) or []):
        where = f"related[{i}]"
        item = _mapping(where, raw)
        with_any = item.get("with_any")
        if not isinstance(with_any, list) or not with_any:
            raise PolicyError(f"{where}.with_any", "expected a list of codes")
        related.append(
            RelatedRule(
                code=str(item.get("code")),
                with_any=tuple(str(c) for c in with_any),
                action=_enum(Action, f"{where}.action", item.get("action")),
                drain=_enum(Drain, f"{where}.drain", item.get("drain", "graceful")),
                reason=str(item.get("reason", "")),
            )
        )
    follows = frozenset(str(c) for c in document.get("follows", []) or [])
    repeats = []
    for i, raw in enumerate(document.get("repeats", []) or []):
        where = f"repeats[{i}]"
        item = _mapping(where, raw)
        counts = str(item.get("counts", "fatal_events"))
        if counts not in ("fatal_events", "cases"):
            raise PolicyError(f"{where}.counts", "expected fatal_events or cases")
        repeats.append(
            RepeatRule(
                name=str(item.get("name") or f"repeat-{i + 1}"),
                count=int(_number(f"{where}.count", item.get("count"), 1, 10_000, integer=True)),
                window=timedelta(hours=_number(f"{where}.window_hours", item.get("window_hours"), 0.01, 24 * 365)),
                action=_enum(Action, f"{where}.action", item.get("action", "rma")),
                counts=counts,
                kinds=tuple(_enum(Kind, f"{where}.kinds", k) for k in item.get("kinds", []) or []),
                reason=str(item.get("reason", "")),
            )
        )
    ladder = []
    for i, raw in enumerate(document.get("ladder", []) or []):
        where = f"ladder[{i}]"
        item = _mapping(where, raw)
        action = _enum(Action, f"{where}.action", item.get("action"))
        if action not in LADDER_ORDER:
            raise PolicyError(
                f"{where}.action", f"not a ladder rung; rungs: {', '.join(a.value for a in LADDER_ORDER)}"
            )
        ladder.append(
            LadderStep(
                action,
                int(_number(f"{where}.attempts", item.get("attempts", 1), 1, 20, integer=True)),
                _minutes(f"{where}.time_limit_minutes", item.get("time_limit_minutes", 60)),
            )
        )
    if [s.action for s in ladder] != list(LADDER_ORDER):
        raise PolicyError("ladder", f"must list each rung once, in order: {', '.join(a.value for a in LADDER_ORDER)}")
    raw_backoff = _mapping("backoff", document.get("backoff", {}))
    backoff = Backoff(
        timedelta(seconds=_number("backoff.initial_seconds", raw_backoff.get("initial_seconds", 60), 0, 86400)),
        _number("backoff.factor", raw_backoff.get("factor", 2.0), 1.0, 10.0),
        timedelta(seconds=_number("backoff.max_seconds", raw_backoff.get("max_seconds", 1800), 0, 7 * 86400)),
    )
    settings = read_settings(_mapping("settings", document.get("settings", {})))
    return XidPolicy(
        version=str(version).strip(),
        codes=codes,
        prefixes=tuple(prefixes),
        related=tuple(related),
        follows=follows,
        repeats=tuple(repeats),
        ladder=tuple(ladder),
        backoff=backoff,
        settings=settings,
        source=source,
    )


# ---------------------------------------------------------------------------------------------------------------
# Overrides.

CODE_KEY = "code:"
SETTING_KEY = "setting:"


def check_override(key: str, value: object, policy: XidPolicy) -> tuple[str, Any]:
    """A normalised (key, value) for an override, or ``PolicyError`` naming what is wrong.

    ``code:<code>`` takes a mapping of rule fields (action, kind, owner, fatal, drain); ``setting:<name>`` one value.
    """
    key = key.strip()
    if key.startswith(CODE_KEY):
        code = key[len(CODE_KEY) :].strip()
        if not code or len(code) > 80:
            raise PolicyError("code", "expected a code such as xid:79 or alert:GPUXidError")
        raw = _mapping("rule", value)
        if not raw:
            raise PolicyError("rule", f"name at least one of: {', '.join(RULE_FIELDS)}")
        allowed = {k: v for k, v in raw.items()}
        unknown = sorted(set(allowed) - set(RULE_FIELDS))
        if unknown:
            raise PolicyError(unknown[0], f"unknown rule field; expected: {', '.join(RULE_FIELDS)}")
        base = policy.rule_for(code) or CodeRule(code, Action.NONE, Kind.SOFTWARE, Owner.US)
        read_rule(code, "rule", allowed, base)
        return f"{CODE_KEY}{code}", dict(allowed)
    if key.startswith(SETTING_KEY):
        name = key[len(SETTING_KEY) :].strip()
        settings = read_settings({name: value}, policy.settings, where="setting")
        return f"{SETTING_KEY}{name}", getattr(settings, name)
    raise PolicyError("key", f"expected '{CODE_KEY}<code>' or '{SETTING_KEY}<name>', got {key!r}")


def overridden_settings(base: Settings, overrides: Sequence[tuple[str, Any]]) -> Settings:
    """The settings with the overrides' ``setting:`` keys applied in order (later ones win), as ``apply_overrides``
    applies them: what cluster sync reads for a cluster without building the whole policy."""
    changes = {key[len(SETTING_KEY) :]: value for key, value in overrides if key.startswith(SETTING_KEY)}
    return read_settings(changes, base) if changes else base


def apply_overrides(policy: XidPolicy, overrides: Sequence[tuple[str, Any]]) -> XidPolicy:
    """The policy with overrides applied in order (later ones win): the policy in force for a cluster or pool."""
    codes = dict(policy.codes)
    settings_changes: dict[str, Any] = {}
    for key, value in overrides:
        if key.startswith(CODE_KEY):
            code = key[len(CODE_KEY) :]
            base = codes.get(code) or policy.rule_for(code) or CodeRule(code, Action.NONE, Kind.SOFTWARE, Owner.US)
            codes[code] = read_rule(code, f"override {code}", value, base)
        elif key.startswith(SETTING_KEY):
            settings_changes[key[len(SETTING_KEY) :]] = value
    settings = read_settings(settings_changes, policy.settings) if settings_changes else policy.settings
    return replace(policy, codes=codes, settings=settings)

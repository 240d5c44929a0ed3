"""The typed blocks of a manifest that export writes and everyone reads: parity, export attempts, derivations.

They are decoded from JSON in one place each (``from_dict``) and written back by ``to_dict``; nothing else reads
the manifest's dicts. Names that are a closed set (why a parity check failed, what kind of source a model came
from, what an output means) are :class:`~enum.StrEnum` members, which compare equal to their JSON strings.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from tvdeploy.errors import ArtifactError
from tvdeploy.runtime.precisions import ParityCriteria


class FailureReason(StrEnum):
    """Why a parity check failed: one member per criterion."""

    INTERFACE = "interface"  # the artifact's tensor names are not the manifest's
    OUTPUT_SHAPE = "output_shape"
    NON_FINITE = "non_finite"
    MAX_ABS_DIFF = "max_abs_diff"
    CONSTANT_REFERENCE = "constant_reference"  # the reference scores every class alike: parity cannot judge
    MIN_COSINE = "min_cosine"
    TOP1_AGREEMENT = "top1_agreement"
    UNSPECIFIED = "unspecified"  # a manifest of an older tvdeploy, whose failures were text only


@dataclass(frozen=True)
class ParityFailure:
    """One failed criterion: which, and the figures that failed it."""

    reason: FailureReason
    detail: str

    def __str__(self) -> str:
        return self.detail

    def to_dict(self) -> dict[str, str]:
        """``{"reason": ..., "detail": ...}``."""
        return {"reason": self.reason.value, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: Any) -> ParityFailure:
        """A failure as written (an older manifest's plain string: reason unspecified)."""
        if isinstance(data, str):
            return cls(FailureReason.UNSPECIFIED, data)
        if not isinstance(data, dict):
            raise ArtifactError(f"a parity failure must be an object, got {type(data).__name__} (parity)")
        try:
            return cls(FailureReason(data["reason"]), str(data["detail"]))
        except (KeyError, ValueError) as exc:
            raise ArtifactError(f"malformed parity failure {data!r} (parity)") from exc


@dataclass
class SetReport:
    """Comparison figures and verdict for one input set (real photos, noise)."""

    name: str
    batch_sizes: list[int]
    samples: int
    max_abs_diff: float
    mean_abs_diff: float
    max_rel_diff: float
    min_cosine: float
    top1_agreement: float
    top5_agreement: float
    top1_ties: int
    max_abs_logit: float
    atol_limit: float
    #: the smallest ``atol_scale`` that would have passed: max|diff| / (1 + max|logit|)
    min_passing_atol_scale: float
    passed: bool
    failures: list[ParityFailure] = field(default_factory=list)
    #: False for a set the criteria only report (noise for int8); its failures are then notes, not verdicts
    judged: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The set as the manifest records it."""
        return {**asdict(self), "failures": [f.to_dict() for f in self.failures]}

    @classmethod
    def from_dict(cls, data: Any) -> SetReport:
        """A set as recorded."""
        if not isinstance(data, dict):
            raise ArtifactError(f"a parity set must be an object, got {type(data).__name__} (parity.sets)")
        _check_types(cls, {k: v for k, v in data.items() if k != "failures"}, "parity.sets")
        failures = data.get("failures", [])
        if not isinstance(failures, list):
            raise ArtifactError("a parity set's failures must be a list (parity.sets)")
        try:
            return cls(**{**data, "failures": [ParityFailure.from_dict(f) for f in failures]})
        except TypeError as exc:
            raise ArtifactError(f"malformed parity set in the manifest: {exc} (parity.sets)") from exc


@dataclass
class ParityReport:
    """The result of comparing a candidate with a reference: what the manifest's ``parity`` block holds."""

    reference: str
    candidate: str
    precision: str
    criteria: ParityCriteria
    sets: list[SetReport]
    #: disagreements between the artifact's own tensor names and the manifest's
    interface: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """All sets passed and the tensor names agree."""
        return not self.interface and all(s.passed for s in self.sets)

    @property
    def failures(self) -> list[ParityFailure]:
        """Why it failed, one entry per failed criterion (the set's name in the detail)."""
        return [ParityFailure(FailureReason.INTERFACE, f"interface: {reason}") for reason in self.interface] + [
            ParityFailure(f.reason, f"{s.name}: {f.detail}") for s in self.sets for f in s.failures
        ]

    def photo_set(self) -> SetReport | None:
        """The real photos' set (what top-1 agreement is judged on)."""
        return next((s for s in self.sets if s.name == "photos"), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, as recorded in the manifest."""
        return {
            "passed": self.passed,
            "reference": self.reference,
            "candidate": self.candidate,
            "precision": self.precision,
            "criteria": asdict(self.criteria),
            "interface": list(self.interface),
            "sets": [s.to_dict() for s in self.sets],
        }

    @classmethod
    def from_dict(cls, data: Any) -> ParityReport:
        """The manifest's ``parity`` block (the one place it is decoded)."""
        if not isinstance(data, dict):
            raise ArtifactError(f"the manifest's parity must be an object, got {type(data).__name__} (parity)")
        try:
            return cls(
                reference=str(data["reference"]),
                candidate=str(data["candidate"]),
                precision=str(data["precision"]),
                criteria=ParityCriteria(**_check_types(ParityCriteria, data["criteria"], "parity.criteria")),
                sets=[SetReport.from_dict(s) for s in data.get("sets", [])],
                interface=[str(i) for i in data.get("interface", [])],
            )
        except (KeyError, TypeError) as exc:
            raise ArtifactError(f"malformed parity block in the manifest: {exc} (parity)") from exc


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: How a field's JSON value is checked, by the field's type.
_JSON_CHECKS: dict[Any, Callable[[Any], bool]] = {
    float: _is_number,
    int: _is_integer,
    bool: lambda value: isinstance(value, bool),
    str: lambda value: isinstance(value, str),
    list[int]: lambda value: isinstance(value, list) and all(_is_integer(v) for v in value),
}


def _check_types(cls: type, values: Any, where: str) -> dict[str, Any]:
    """``values`` if each one has its field's type (numbers, booleans, strings, lists of integers), as JSON gives
    them; an :class:`ArtifactError` naming the field otherwise (a hand-edited manifest must not crash a reader
    that formats or compares them)."""
    if not isinstance(values, dict):
        raise ArtifactError(f"{where} must be an object, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        check = _JSON_CHECKS.get(hints.get(key))
        if check is not None and not check(value):
            raise ArtifactError(f"the manifest's {where}.{key} is {value!r}, not of the type it records ({where})")
    return values


@dataclass(frozen=True)
class ExportAttempt:
    """One exporter strategy tried for a format (the dynamo exporter, then TorchScript, ...), and how it went."""

    strategy: str
    exported: bool
    exporter: str | None = None
    parity_passed: bool | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The attempt as the manifest records it (unset fields left out)."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, data: Any) -> ExportAttempt:
        """An attempt as recorded."""
        if not isinstance(data, dict):
            raise ArtifactError("an export attempt must be an object (export_info.attempts)")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ArtifactError(f"malformed export attempt: {exc} (export_info.attempts)") from exc


@dataclass(frozen=True)
class Derivation:
    """The artifact an artifact was derived from (``optimize``, ``tune``): its path, precision and the sha256 of
    its model file."""

    artifact: str
    precision: str
    sha256: str

    def to_dict(self) -> dict[str, str]:
        """The manifest's ``export_info.derived_from`` block."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Derivation:
        """The block as recorded."""
        if not isinstance(data, dict):
            raise ArtifactError("derived_from must be an object (export_info.derived_from)")
        try:
            return cls(artifact=str(data["artifact"]), precision=str(data["precision"]), sha256=str(data["sha256"]))
        except KeyError as exc:
            raise ArtifactError(f"derived_from lacks {exc.args[0]!r} (export_info.derived_from)") from exc


#: The keys of ``export_info`` that :class:`ExportInfo` types; the rest is what the producer or conversion recorded.
_EXPORT_INFO_KEYS = ("seconds", "attempts", "derived_from")


@dataclass
class ExportInfo:
    """How the artifact was made (the manifest's ``export_info``): the seconds it took, every exporter strategy
    tried, what it was derived from, and ``details`` the producer or conversion recorded (converter, quantization,
    calibration, delegate, graph passes), which differ by format."""

    seconds: float | None = None
    attempts: list[ExportAttempt] = field(default_factory=list)
    derived_from: Derivation | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """One flat JSON object, the details first (unset fields left out)."""
        data: dict[str, Any] = dict(self.details)
        if self.derived_from is not None:
            data["derived_from"] = self.derived_from.to_dict()
        if self.seconds is not None:
            data["seconds"] = self.seconds
        if self.attempts:
            data["attempts"] = [a.to_dict() for a in self.attempts]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ExportInfo:
        """The block as recorded (the one place it is decoded)."""
        if not isinstance(data, dict):
            raise ArtifactError(f"the manifest's export_info must be an object, got {type(data).__name__}")
        seconds = data.get("seconds")
        if seconds is not None and (not isinstance(seconds, (int, float)) or isinstance(seconds, bool)):
            raise ArtifactError(f"export_info.seconds must be a number, got {seconds!r}")
        attempts = data.get("attempts", [])
        if not isinstance(attempts, list):
            raise ArtifactError("export_info.attempts must be a list")
        derived = data.get("derived_from")
        return cls(
            seconds=seconds,
            attempts=[ExportAttempt.from_dict(a) for a in attempts],
            derived_from=Derivation.from_dict(derived) if derived is not None else None,
            details={key: value for key, value in data.items() if key not in _EXPORT_INFO_KEYS},
        )

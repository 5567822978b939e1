"""Where a job may run: supported and allowed regions, data residency, TensorBoard and CMEK.

SPEC "Regions and accelerators" (the facts in :mod:`distillery.facts`) and the organisation's
constraints in :class:`~distillery.core.settings.Settings`. The key rules a customer-managed key
override must follow on its own are the override schema's (:mod:`distillery.overrides`); here a
key is judged against the job it would protect.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from distillery.core.settings import DATA_RESIDENCY_AREAS, Settings
from distillery.facts import (
    CMEK_REGION,
    KMS_KEY_PATTERN,
    SUPPORTED_REGIONS,
    TENSORBOARD_PATTERN,
    AcceleratorProfile,
)
from distillery.overrides import InvalidValue, kms_key_rule
from distillery.policy import _explain as explain


def region_refusals(role: str, region: str, settings: Settings) -> list[str]:
    """Why ``region`` (playing ``role``) may not be used under the organisation's constraints."""
    if region not in SUPPORTED_REGIONS:
        return [explain.not_a_distillation_region(role, region, SUPPORTED_REGIONS)]
    refusals: list[str] = []
    allowed = settings.allowed_region_list
    if region not in allowed:
        refusals.append(explain.region_not_allowed(role, region, allowed))
    residency = settings.data_residency
    if residency:
        prefixes = DATA_RESIDENCY_AREAS[residency]
        if not region.startswith(prefixes):
            refusals.append(explain.residency_broken(role, region, residency, prefixes))
    return refusals


def tensorboard_location(resource: str) -> str | None:
    """The region of TensorBoard ``resource``, or None when it is not a TensorBoard name.

    A malformed name needs no refusal here: the override schema already refused it.
    """
    match = TENSORBOARD_PATTERN.fullmatch(resource)
    return match["location"] if match else None


def cmek_unavailable(profile: AcceleratorProfile, pipeline: str, upload: str) -> str | None:
    """Why CMEK cannot protect this job, or None when it can (SPEC: CMEK only in us-central1)."""
    why: list[str] = []
    if not profile.cmek_supported:
        why.append(explain.no_cmek_on(profile))
    if pipeline != CMEK_REGION:
        why.append(explain.region_is_not("pipeline region", pipeline, CMEK_REGION))
    if upload != CMEK_REGION:
        why.append(explain.region_is_not("model upload region (location)", upload, CMEK_REGION))
    return explain.cmek_unavailable(why, CMEK_REGION) if why else None


@dataclass(frozen=True)
class Encryption:
    """How one accelerator candidate's job is encrypted."""

    #: The customer-managed key, or None for a Google-managed one.
    key: str | None
    reason: str
    refusals: list[str] = field(default_factory=list)


def encryption(
    profile: AcceleratorProfile,
    *,
    requested: str | None,
    settings: Settings,
    pipeline: str,
    upload: str,
) -> Encryption:
    """The encryption of a job tuned on ``profile``; ``requested`` is the key override.

    The default key (``DISTILLERY_CMEK_KEY``) is used only where CMEK applies; a requested key
    where it cannot apply is refused, and so is every job without CMEK when it is required.
    """
    key = requested or settings.cmek_key or None
    unavailable = cmek_unavailable(profile, pipeline, upload)
    refusals: list[str] = []
    if requested and unavailable:
        refusals.append(explain.cmek_requested_but(unavailable))
    if settings.require_cmek:
        if unavailable:
            refusals.append(explain.cmek_required_but(unavailable))
        elif key is None:
            refusals.append(explain.cmek_required_without_key())
    if unavailable or key is None:
        if requested:
            reason = explain.REQUESTED_KEY_UNUSABLE
        elif key:
            reason = explain.default_key_not_used(unavailable or "")
        else:
            reason = explain.GOOGLE_MANAGED
        return Encryption(None, reason, refusals)
    if not requested:
        # A requested key was judged by the override schema (its name and its region); the
        # default key comes from the settings and is judged here, with the same key rule.
        refusals.extend(_default_key_refusals(key))
    reason = explain.cmek(requested=bool(requested), cmek_region=CMEK_REGION)
    return Encryption(key, reason, refusals)


def _default_key_refusals(key: str) -> list[str]:
    """Why the default key ``key`` cannot protect a job that CMEK could protect."""
    try:
        kms_key_rule(key)
    except InvalidValue as exc:
        return [explain.default_key_malformed(str(exc))]
    match = KMS_KEY_PATTERN.fullmatch(key)
    assert match is not None  # The key rule is a full match of this very pattern.
    if match["location"] != CMEK_REGION:
        return [explain.default_key_elsewhere(match["location"], CMEK_REGION)]
    return []

"""Which variants a client may name instead of taking the split's choice.

A request that names its variant (`X-Variant`, `/models/{variant}/predict`) skips the
split: that is how a variant is tested or benchmarked, and it must not become a way
around a rollout. So a client may name the variants of `force_variants` (default: every
loaded one), except the candidate of the rollout in the shared folder while that rollout
is unfinished or after it was rolled back or aborted: the judge's verdict, or a person's
abort, must take the candidate away from every client. Anything else needs the admin
token (`Authorization: Bearer`), which lets a person test a rolled-back candidate.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import SecretStr

from perfserve_common.usage import UsageError
from service.payload import Reject
from service.tokens import admin_refusal


class ForcingPolicy:
    def __init__(
        self,
        allowed: list[str] | None,
        loaded: list[str],
        token: SecretStr | None,
        guarded: Callable[[], str | None],
    ) -> None:
        unknown = sorted(set(allowed or ()) - set(loaded))
        if unknown:
            raise UsageError(f"--force-variants {unknown}: not loaded; loaded: {loaded}")
        self.allowed = None if allowed is None else frozenset(allowed)
        self.token = token
        self.guarded = guarded
        """The rollout candidate only an admin may name now, if any."""

    def check(self, variant: str, authorization: bytes | None) -> None:
        """Raise a 403 Reject unless a client may name `variant` with this Authorization."""
        rollout = variant == self.guarded()
        if not rollout and (self.allowed is None or variant in self.allowed):
            return
        given = None if authorization is None else authorization.decode("latin-1")
        if admin_refusal(self.token, given) is None:
            return
        why = "a rollout's candidate" if rollout else "not in --force-variants"
        raise Reject(
            403,
            "forced_variant",
            f"{variant} is {why}: naming it needs the admin token; send without X-Variant",
        )

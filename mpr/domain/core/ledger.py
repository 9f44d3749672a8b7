"""The audit bookkeeping every lifecycle keeps beside its state.

The full audit log lives in the catalog; the workflow keeps the most recent entries, how many
were written (the next event's sequence number) and the last refused command, so that its
state (carried across continue-as-new) stays small however long the workflow runs.
"""

from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from mpr.domain.core.models import LastRejection

AUDIT_ENTRIES_KEPT = 200

EntryT = TypeVar("EntryT", bound=BaseModel)
StateT = TypeVar("StateT", bound=BaseModel)


class Ledger(BaseModel, Generic[EntryT]):
    entries: list[EntryT] = []
    count: int = 0
    last_rejection: LastRejection | None = None

    @property
    def next_seq(self) -> int:
        return self.count + 1

    def recorded(self, entry: EntryT, seq: int) -> "Ledger[EntryT]":
        return self.model_copy(update={
            "entries": [*self.entries, entry][-AUDIT_ENTRIES_KEPT:], "count": seq,
        })

    def refused(self, rejection: LastRejection) -> "Ledger[EntryT]":
        return self.model_copy(update={"last_rejection": rejection})


class Carried(BaseModel, Generic[StateT, EntryT]):
    """What a run hands to the next through continue-as-new."""

    state: StateT
    ledger: Ledger[EntryT]


def read_carried(
    raw: Any, state_type: type[StateT], entry_type: type[EntryT]
) -> Carried[StateT, EntryT]:
    """Read what the previous run carried, in either shape.

    Runs started before the ledger moved beside the state carried one flat state holding
    `audit`, `audit_count` and `last_rejection` among its own fields; they are read into the
    two parts here.
    """
    if isinstance(raw, dict) and "ledger" not in raw:
        return Carried[state_type, entry_type](  # type: ignore[valid-type]
            state=state_type.model_validate(raw),
            ledger=Ledger[entry_type](  # type: ignore[valid-type]
                entries=raw.get("audit", []),
                count=raw.get("audit_count", 0),
                last_rejection=raw.get("last_rejection"),
            ),
        )
    return Carried[state_type, entry_type].model_validate(raw)  # type: ignore[valid-type]

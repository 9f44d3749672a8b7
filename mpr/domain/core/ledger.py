"""The audit bookkeeping every lifecycle keeps beside its state.

The full audit log lives in the catalog; the workflow keeps the most recent entries, how many
were written (the next event's sequence number) and the last refused command, so that its
state (carried across continue-as-new) stays small however long the workflow runs.
"""

from dataclasses import dataclass
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


# The ledger's fields on the wire, as the flat carried shape has always named them.
WIRE_FIELDS = ("audit", "audit_count", "last_rejection")


@dataclass(frozen=True)
class Carried(Generic[StateT, EntryT]):
    """What a run hands to the next through continue-as-new: the state and its ledger.

    On the wire they stay one flat object, the state's fields beside the ledger's (`audit`,
    `audit_count`, `last_rejection`), as every run has carried them so far: a worker of the
    previous version still reads what this one hands over, so a rolling deploy or a rollback
    strands no run that continued as new.
    """

    state: StateT
    ledger: Ledger[EntryT]

    def payload(self) -> dict[str, Any]:
        state = self.state.model_dump(mode="json")
        rejection = self.ledger.last_rejection
        return {
            **state,
            "audit": [entry.model_dump(mode="json") for entry in self.ledger.entries],
            "audit_count": self.ledger.count,
            "last_rejection": rejection.model_dump(mode="json") if rejection else None,
        }

    @classmethod
    def read(
        cls, raw: Any, state_type: type[StateT], entry_type: type[EntryT]
    ) -> "Carried[StateT, EntryT]":
        if not isinstance(raw, dict):
            raise ValueError("the carried state is not a JSON object")
        state = {name: value for name, value in raw.items() if name not in WIRE_FIELDS}
        return cls(
            state=state_type.model_validate(state),
            ledger=Ledger[entry_type](  # type: ignore[valid-type]
                entries=raw.get("audit", []),
                count=raw.get("audit_count", 0),
                last_rejection=raw.get("last_rejection"),
            ),
        )

"""Whether Redis' gossip has reached every node: what each says of itself, as the others see it."""

from __future__ import annotations

from redkube.model.observations import Observation


def disagreement(observation: Observation) -> str | None:
    """The first node whose role, master or slots another member sees otherwise than it says of
    itself (gossip has not reached everyone yet); None when all views agree. A failover started
    before they agree can meet a node still acting on the old picture."""
    names = observation.names_by_id()
    views = {view.node_id: view for view in observation.views()}
    for viewer in views.values():
        for entry in viewer.others():
            subject = views.get(entry.node_id)
            if subject is None:
                continue
            own = subject.myself
            if (entry.is_master, entry.master_id, entry.slots) != (
                own.is_master,
                own.master_id,
                own.slots,
            ):
                return (
                    f"{names[viewer.node_id]} does not see {names[subject.node_id]} as it is "
                    "yet (gossip)"
                )
    return None

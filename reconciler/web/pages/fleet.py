"""``/``: the fleet overview, a card (or a table row) per live model.

Filters and the view live in the query string, so a filtered view is a link. The
numbers of every card come from one grouped query (`fleet.FleetNumbers`); the
sync axis from the head's plan (`console.OverviewCache`), which this page does
not wait for once it has been computed: a render reads what is there.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from markupsafe import Markup

from reconciler.manifests import kinds as manifests
from reconciler.web import fleet
from reconciler.web.console import Console
from reconciler.web.pages import ConsoleDep, PageRoute, SignedIn

router = APIRouter(route_class=PageRoute, include_in_schema=False)
VIEWS = ("cards", "table")
STATES = ("enabled", "disabled", "retired")


@dataclasses.dataclass(frozen=True, slots=True)
class Card:
    model: manifests.AIModel
    sync: fleet.Axis
    health: fleet.Axis
    numbers: fleet.Numbers | None
    sunset: tuple[int, str] | None
    spark: Markup | None = None

    @property
    def capabilities(self) -> list[tuple[str, float]]:
        return sorted(self.model.payload.capabilities.items(), key=lambda kv: (-kv[1], kv[0]))


def _matches(model: manifests.AIModel, q: str, capability: str, provider: str, state: str) -> bool:
    payload = model.payload
    if capability and capability not in payload.capabilities:
        return False
    if provider and str(payload.provider) != provider:
        return False
    if state and str(payload.state) != state:
        return False
    if q:
        text = " ".join((model.meta.id, payload.name, payload.provider_model or "")).lower()
        return all(word in text for word in q.lower().split())
    return True


def _item(console: Console, view: str, card: Card) -> Markup:
    if card.numbers is not None and view == "cards":
        spark = console.numbers.sparkline(card.model.meta.id, card.numbers)
        card = dataclasses.replace(card, spark=spark)
    return console.fragment("fleet_item.html", view=view, c=card)


Text = Annotated[str, Query(max_length=200)]


@router.get("/")
def fleet_page(
    request: Request,
    console: ConsoleDep,
    session: SignedIn,
    q: Text = "",
    capability: Text = "",
    provider: Text = "",
    state: Text = "",
    view: Text = "cards",
) -> Response:
    table = console.engine.table()
    standing = console.standing()
    today = dt.datetime.now(dt.UTC).date()
    models = sorted(table.models.values(), key=lambda m: (m.payload.name.lower(), m.meta.id))
    shown = [m for m in models if _matches(m, q.strip(), capability, provider, state)]
    view = view if view in VIEWS else "cards"
    cards = []
    for model in shown:
        found = standing.numbers.get(model.meta.id)
        sync, health = standing.sync(model), standing.health(model)
        cards.append((fleet.sunset(model, today), model, sync, health, found))
    # the soonest sunset first, then by name (a model about to go away is what needs work)
    cards.sort(key=lambda c: c[0][0] if c[0] else 10**9)
    items = [
        console.items.get(
            model.meta.id,
            view,
            (id(model), sync, health, id(found), sunset),
            functools.partial(_item, console, view, Card(model, sync, health, found, sunset)),
        )
        for sunset, model, sync, health, found in cards
    ]
    filters = {"q": q, "capability": capability, "provider": provider, "state": state}
    return console.page(
        request,
        "fleet.html",
        {
            "items": items,
            "total": len(models),
            "filters": filters,
            "view": view,
            "views": VIEWS,
            "capabilities": [str(c) for c in manifests.CapabilityType],
            "providers": [str(p) for p in manifests.Provider],
            "states": STATES,
            "other_view": "table" if view == "cards" else "cards",
        },
        session=session,
    )

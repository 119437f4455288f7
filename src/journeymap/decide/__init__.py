"""The decide API: the next banner or in-app offer for a customer and a slot.

``offers`` (the offers file), ``bandit`` (Thompson sampling per offer and persona),
``personas`` (persona assignments in memory), ``service`` (policies, decisions, exposure
logging, clicks and conversions). Campaigns queue banners for the decide API through the
``banner`` channel (``channels.banner``). The HTTP side is ``server.decide_routes``.
"""

from journeymap.decide.bandit import Counts, ThompsonSampler
from journeymap.decide.offers import Offer, OfferCatalog, OfferError, load_offers, parse_offers
from journeymap.decide.personas import PersonaIndex
from journeymap.decide.service import DecideError, DecideService, Decision, Refresher, ShownOffer

__all__ = [
    "Counts",
    "DecideError",
    "DecideService",
    "Decision",
    "Offer",
    "OfferCatalog",
    "OfferError",
    "PersonaIndex",
    "Refresher",
    "ShownOffer",
    "ThompsonSampler",
    "load_offers",
    "parse_offers",
]

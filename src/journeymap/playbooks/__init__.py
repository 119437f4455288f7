"""Shipped phase playbooks: campaign YAML per journey phase (6-phase model), as package data.

* ``consideration_reminder``: a reminder with a limited-time deal and review excerpts;
* ``preference_retargeting``: a push and a website banner for the product the customer prefers;
* ``purchase_thank_you``: transactional thank-you with tracking number, next-order discount and
  the returns link;
* ``after_sale_review``: a review request at the customer's best hour (trait ``best_hour``);
* ``loyalty_referral``: recommendations and a referral reward, A/B tested.

Awareness has **no playbook by design**: a customer in awareness has not given consent or an
address yet; reaching them is advertising's job, not a triggered message's.
"""

from __future__ import annotations

from importlib.resources import files

from journeymap.model.campaigns import Campaign, parse_campaign

PLAYBOOKS = (
    "consideration_reminder",
    "preference_retargeting",
    "purchase_thank_you",
    "after_sale_review",
    "loyalty_referral",
)


def playbook_text(name: str) -> str:
    if name not in PLAYBOOKS:
        raise KeyError(f"unknown playbook {name!r}; shipped: {', '.join(PLAYBOOKS)}")
    return (files(__name__) / f"{name}.yaml").read_text(encoding="utf-8")


def load_playbook(name: str) -> Campaign:
    return parse_campaign(playbook_text(name), f"playbooks/{name}.yaml")


def load_playbooks() -> list[Campaign]:
    return [load_playbook(n) for n in PLAYBOOKS]

"""Tracked links, open pixel and one-click unsubscribe URLs built from a base URL.

Every URL carries the send id and an HMAC so the (later) server endpoints can trust them:
``{base}/t/c/{send_id}?u=<url>&s=<sig>`` (click redirect), ``{base}/t/o/{send_id}.gif?s=``
(open pixel), ``{base}/u/{send_id}?s=`` (unsubscribe, GET page and RFC 8058 one-click POST),
``{base}/optin/{token}`` (double opt-in confirmation page),
``{base}/prefs/{token}`` (a customer's preference page; the token is the customer id and its
HMAC, so it never expires and needs no storage).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import quote

_HREF = re.compile(r"""(href\s*=\s*)(["'])(https?://[^"']+)\2""", re.IGNORECASE)


@dataclass(frozen=True)
class TrackingLinks:
    base_url: str
    secret: str

    def sign(self, *parts: str) -> str:
        msg = "\x1f".join(parts).encode()
        return hmac.new(self.secret.encode(), msg, hashlib.sha256).hexdigest()[:32]

    def verify(self, signature: str, *parts: str) -> bool:
        # compare_digest refuses non-ASCII text: such a signature is simply wrong
        return signature.isascii() and hmac.compare_digest(signature, self.sign(*parts))

    @property
    def _base(self) -> str:
        return self.base_url.rstrip("/")

    def click(self, send_id: str, url: str) -> str:
        return f"{self._base}/t/c/{send_id}?u={quote(url, safe='')}&s={self.sign(send_id, url)}"

    def open_pixel(self, send_id: str) -> str:
        return f"{self._base}/t/o/{send_id}.gif?s={self.sign(send_id, 'open')}"

    def unsubscribe(self, send_id: str) -> str:
        return f"{self._base}/u/{send_id}?s={self.sign(send_id, 'unsubscribe')}"

    def preference_token(self, customer_id: str) -> str:
        """``<base64url customer id>.<signature>``: names the customer, forgeable by nobody."""
        cid = base64.urlsafe_b64encode(customer_id.encode()).rstrip(b"=").decode("ascii")
        return f"{cid}.{self.sign(customer_id, 'preferences')}"

    def preference_customer(self, token: str) -> str | None:
        """The customer id of a preference token, ``None`` when it is forged or malformed."""
        cid, sep, signature = token.partition(".")
        if not sep or not cid:
            return None
        try:
            customer_id = base64.urlsafe_b64decode(cid + "=" * (-len(cid) % 4)).decode()
        except (binascii.Error, ValueError):
            return None
        return customer_id if self.verify(signature, customer_id, "preferences") else None

    def opt_in(self, token: str) -> str:
        """The double opt-in confirmation page of ``CampaignEngine.request_opt_in``'s token."""
        return f"{self._base}/optin/{token}"

    def preferences(self, customer_id: str) -> str:
        return f"{self._base}/prefs/{self.preference_token(customer_id)}"

    def links(self, send_id: str, customer_id: str | None = None) -> dict[str, str]:
        out = {"unsubscribe": self.unsubscribe(send_id), "open": self.open_pixel(send_id)}
        if customer_id is not None:
            out["preferences"] = self.preferences(customer_id)
        return out

    def rewrite_html(self, send_id: str, html: str) -> str:
        """Route every absolute ``href`` through the click redirect; add the open pixel."""

        def repl(m: re.Match[str]) -> str:
            url = m.group(3).replace("&amp;", "&")
            tracked = self.click(send_id, url).replace("&", "&amp;")
            return f"{m.group(1)}{m.group(2)}{tracked}{m.group(2)}"

        out = _HREF.sub(repl, html)
        pixel = (
            f'<img src="{self.open_pixel(send_id).replace("&", "&amp;")}" width="1" height="1" '
            'alt="" style="display:none">'
        )
        return out.replace("</body>", pixel + "</body>") if "</body>" in out else out + pixel

"""A tiny server side of Stripe's HTTP API: form decoding, retrieve, list, expand, create.

Serves the offline demo provider (objects in LearnHub's database) and the test stand-in
(objects in a dict). It implements only the calls LearnHub makes, with Stripe's wire format:
form-encoded bracketed parameters in, JSON objects, lists and error envelopes out.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import parse_qsl

#: URL collection -> Stripe object type.
COLLECTIONS = {
    "checkout/sessions": "checkout.session",
    "subscriptions": "subscription",
    "charges": "charge",
    "invoices": "invoice",
    "disputes": "dispute",
    "payment_intents": "payment_intent",
    "events": "event",
    "refunds": "refund",
    "products": "product",
    "prices": "price",
}
#: Id prefixes, for expanding ids into objects.
PREFIXES = {
    "cs_": "checkout.session",
    "sub_": "subscription",
    "ch_": "charge",
    "py_": "charge",
    "in_": "invoice",
    "dp_": "dispute",
    "du_": "dispute",
    "pi_": "payment_intent",
    "evt_": "event",
    "re_": "refund",
    "prod_": "product",
    "price_": "price",
}


class ObjectStore(Protocol):
    """Where the served objects live."""

    def get(self, object_id: str) -> dict[str, Any] | None:
        """The object with this id, or None."""

    def put(self, obj: dict[str, Any]) -> None:
        """Store (insert or replace) ``obj``."""

    def all(self, object_type: str) -> Iterable[dict[str, Any]]:
        """All objects of this Stripe type."""


def new_id(prefix: str) -> str:
    """A fresh Stripe-looking id."""
    return f"{prefix}_test_{secrets.token_hex(12)}"


def decode_form(text: str) -> dict[str, Any]:
    """``a[b][0][c]=v&expand[]=x`` -> ``{"a": {"b": [{"c": "v"}]}, "expand": ["x"]}``."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        parts = [key.split("[", 1)[0]]
        if "[" in key:
            parts += key[key.index("[") + 1 : -1].split("][")
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt: Any = value if last else ([] if parts[i + 1].isdigit() or not parts[i + 1] else {})
            if isinstance(node, list):
                index = int(part) if part else len(node)
                while len(node) <= index:
                    node.append(None)
                if node[index] is None or last:
                    node[index] = nxt
                node = node[index]
            else:
                if part not in node or last:
                    node[part] = nxt
                node = node[part]
    return root


def error(
    status: int, message: str, code: str = "resource_missing", param: str | None = None
) -> tuple[int, dict[str, Any]]:
    """A Stripe error envelope, as Stripe sends it (``param`` names the offending parameter)."""
    body: dict[str, Any] = {
        "type": "invalid_request_error",
        "code": code,
        "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
        "message": message,
    }
    if param is not None:
        body["param"] = param
    return status, {"error": body}


def public(value: Any) -> Any:
    """A deep copy without our private ``_`` bookkeeping keys."""
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list):
        return [public(v) for v in value]
    return value


def _expand(store: ObjectStore, obj: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    obj = public(obj)
    for path in paths:
        node: Any = obj
        parts = path.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                break
            value = node[part]
            if isinstance(value, str) and any(value.startswith(p) for p in PREFIXES):
                found = store.get(value)
                if found is not None:
                    node[part] = public(found)
                    value = node[part]
            node = value
            if i == len(parts) - 1:
                break
    return obj


def _matches(obj: dict[str, Any], params: dict[str, Any]) -> bool:
    for key, value in params.items():
        if key in ("limit", "expand", "starting_after", "ending_before"):
            continue
        if key == "lookup_keys":
            wanted = value if isinstance(value, list) else [value]
            if obj.get("lookup_key") not in {str(v) for v in wanted}:
                return False
            continue
        if key == "created" and isinstance(value, dict):
            created = int(obj.get("created", 0))
            bounds = {k: int(v) for k, v in value.items()}
            if "gte" in bounds and created < bounds["gte"]:
                return False
            if "gt" in bounds and created <= bounds["gt"]:
                return False
            if "lte" in bounds and created > bounds["lte"]:
                return False
            if "lt" in bounds and created >= bounds["lt"]:
                return False
            continue
        field = obj.get(key)
        field_id = field.get("id") if isinstance(field, dict) else field
        if str(field_id) != str(value):
            return False
    return True


def handle(
    store: ObjectStore,
    method: str,
    path: str,
    query: str,
    body: str,
    *,
    checkout_url: Callable[[str], str],
) -> tuple[int, dict[str, Any]]:
    """Answer one API request; ``path`` starts at ``/v1/``. Returns (status, JSON body)."""
    params = decode_form(query if method == "GET" else body)
    if not path.startswith("/v1/"):
        return error(404, f"Unrecognized request URL ({method}: {path})", "url_invalid")
    rest = path[len("/v1/") :].strip("/")
    expand = [str(p) for p in params.get("expand") or []]
    for collection, object_type in COLLECTIONS.items():
        if rest == collection:
            if method == "POST" and object_type == "checkout.session":
                return 200, create_checkout_session(store, params, checkout_url)
            if method == "POST" and object_type in ("product", "price"):
                return create_catalog_object(store, object_type, params)
            if method != "GET":
                break
            items = [o for o in store.all(object_type) if _matches(o, params)]
            items.sort(key=lambda o: (-int(o.get("created", 0)), str(o.get("id"))))
            if params.get("starting_after"):
                ids = [str(o.get("id")) for o in items]
                after = str(params["starting_after"])
                items = items[ids.index(after) + 1 :] if after in ids else []
            limit = int(params.get("limit") or 10)
            page = items[:limit]
            data = [_expand(store, o, [p.removeprefix("data.") for p in expand]) for o in page]
            return 200, {
                "object": "list",
                "url": f"/v1/{collection}",
                "has_more": len(items) > limit,
                "data": data,
            }
        if rest.startswith(collection + "/") and "/" not in rest[len(collection) + 1 :]:
            object_id = rest[len(collection) + 1 :]
            found = store.get(object_id)
            if found is None or found.get("object") != object_type or method != "GET":
                return error(404, f"No such {object_type}: '{object_id}'", param="id")
            result = _expand(store, found, expand)
            if "line_items" in expand and "_line_item_objects" in found:
                # Stripe sends a session's line items only when asked to expand them.
                result["line_items"] = {
                    "object": "list",
                    "url": f"/v1/checkout/sessions/{object_id}/line_items",
                    "has_more": False,
                    "data": public(found["_line_item_objects"]),
                }
            return 200, result
    return error(404, f"Unrecognized request URL ({method}: {path})", "url_invalid")


def create_checkout_session(
    store: ObjectStore, params: dict[str, Any], checkout_url: Callable[[str], str]
) -> dict[str, Any]:
    """Create an open Checkout Session from create parameters, as Stripe would."""
    session_id = new_id("cs")
    items = params.get("line_items") or []
    amount = 0
    currency = "usd"
    line_items: list[dict[str, Any]] = []
    for item in items:
        price = _line_item_price(store, item)
        quantity = int(item.get("quantity") or 1)
        subtotal = int(price.get("unit_amount") or 0) * quantity
        amount += subtotal
        currency = str(price.get("currency") or currency)
        line_items.append(
            {
                "id": new_id("li"),
                "object": "item",
                "amount_discount": 0,
                "amount_subtotal": subtotal,
                "amount_tax": 0,
                "amount_total": subtotal,
                "currency": price.get("currency"),
                "description": price.get("nickname") or "",
                "price": price,
                "quantity": quantity,
            }
        )
    session: dict[str, Any] = {
        "id": session_id,
        "object": "checkout.session",
        "created": int(time.time()),
        "mode": params.get("mode", "payment"),
        "status": "open",
        "payment_status": "unpaid",
        "client_reference_id": params.get("client_reference_id"),
        "metadata": params.get("metadata") or {},
        "allow_promotion_codes": params.get("allow_promotion_codes") == "true",
        "amount_total": amount,
        "currency": currency,
        "customer": None,
        "payment_intent": None,
        "subscription": None,
        "success_url": params.get("success_url"),
        "cancel_url": params.get("cancel_url"),
        "url": checkout_url(session_id),
        "livemode": False,
        # Kept so a completed checkout can copy them, like Stripe does; not part of Stripe's shape.
        "_line_items": items,
        "_line_item_objects": line_items,
        "_payment_intent_data": params.get("payment_intent_data") or {},
        "_subscription_data": params.get("subscription_data") or {},
    }
    store.put(session)
    result: dict[str, Any] = public(session)
    return result


def _line_item_price(store: ObjectStore, item: dict[str, Any]) -> dict[str, Any]:
    """The Price object of one line item: a stored price, or one made from ``price_data``."""
    data = item.get("price_data")
    if not data:
        found = store.get(str(item.get("price")))
        return public(found) if found is not None else {"id": item.get("price")}
    recurring = data.get("recurring")
    return {
        "id": new_id("price"),
        "object": "price",
        "active": False,
        "currency": data.get("currency", "usd"),
        "unit_amount": int(data.get("unit_amount") or 0),
        "product": new_id("prod"),
        "nickname": (data.get("product_data") or {}).get("name"),
        "type": "recurring" if recurring else "one_time",
        "recurring": {"interval": recurring.get("interval")} if recurring else None,
        "livemode": False,
    }


def create_catalog_object(
    store: ObjectStore, object_type: str, params: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """Create a product or a price from create parameters, as Stripe would."""
    obj: dict[str, Any] = {
        "object": object_type,
        "created": int(time.time()),
        "active": True,
        "livemode": False,
        "metadata": params.get("metadata") or {},
    }
    if object_type == "product":
        obj.update(id=new_id("prod"), name=params.get("name"))
    else:
        if params.get("lookup_key") and any(
            p.get("lookup_key") == params["lookup_key"] for p in store.all("price")
        ):
            return error(400, "A price with this lookup_key already exists.", "lookup_key_exists")
        recurring = params.get("recurring")
        obj.update(
            id=new_id("price"),
            product=params.get("product"),
            unit_amount=int(params.get("unit_amount") or 0),
            currency=params.get("currency", "usd"),
            lookup_key=params.get("lookup_key"),
            type="recurring" if recurring else "one_time",
            recurring={"interval": recurring.get("interval")} if recurring else None,
        )
    store.put(obj)
    return 200, public(obj)

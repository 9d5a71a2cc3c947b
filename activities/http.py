"""``http.request``: a signed webhook call, and the check its receivers run.

The body is serialised once and those exact bytes are both sent and signed:
``X-Gantry-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>`` with
``X-Gantry-Timestamp: <unix seconds>``. ``Idempotency-Key: {run_id}:{step_id}`` stays the same
across retries so a receiver can drop duplicates.

A destination must pass the host policy: after DNS resolution, private, loopback, link-local and
metadata addresses are refused unless ``GANTRY_HTTP_ALLOWED_HOSTS`` names the host, the address
or a network holding it. The request then goes to the very address that was checked (the host
name stays in ``Host`` and in TLS's SNI), so a second, different DNS answer cannot slip past the
check; redirects are not followed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from temporalio import activity

from activities.errors import bad_params, send, unreachable
from contracts.steps import StepInput, StepResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ALLOWED_HOSTS_SETTING = "GANTRY_HTTP_ALLOWED_HOSTS"
# Cloud instance metadata (AWS's IPv4 and IPv6 endpoints): credentials live there.
METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})

_KEPT_HEADERS = ("content-type", "location", "etag", "x-request-id")
_MAX_BODY_CHARS = 64_000  # keep workflow history small
_DEFAULT_PORTS = {"http": 80, "https": 443}


def sign(secret: str, timestamp: int | str, body: bytes | str) -> str:
    """The ``X-Gantry-Signature`` value for ``body`` sent at ``timestamp``."""
    raw = body.encode() if isinstance(body, str) else body
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify_signature(
    secret: str, timestamp: str | int, body: bytes | str, signature: str, now: float, tolerance: int = 300
) -> bool:
    """True when ``signature`` signs ``body`` at ``timestamp`` and ``timestamp`` is within ``tolerance``."""
    try:
        sent_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(now - sent_at) > tolerance:
        return False
    expected = sign(secret, sent_at, body)
    return any(hmac.compare_digest(expected, candidate.strip()) for candidate in signature.split(","))


def internal(address: IPAddress) -> bool:
    """Private, loopback, link-local, metadata or otherwise not a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address in METADATA or not address.is_global or address.is_multicast


@dataclass(frozen=True)
class HostPolicy:
    """Where ``http.request`` may go: public addresses, plus the hosts, addresses and networks
    named in ``GANTRY_HTTP_ALLOWED_HOSTS`` (comma-separated)."""

    names: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str) -> HostPolicy:
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in (e.strip() for e in text.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                names.add(entry.lower().rstrip("."))
        return cls(frozenset(names), tuple(networks))

    def allows(self, host: str, address: IPAddress) -> bool:
        if host.lower().rstrip(".") in self.names:
            return True
        return not internal(address) or any(
            address in n for n in self.networks if n.version == address.version
        )

    async def address_for(self, host: str, port: int) -> str:
        """The first resolved address of ``host`` the policy allows; a non-retryable error naming
        the host and the setting when none is."""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            reason = f"DNS lookup failed ({getattr(exc, 'strerror', None) or exc})"
            raise unreachable("webhook", reason, f"{host}:{port}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
        for text in addresses:
            if self.allows(host, ipaddress.ip_address(text)):
                return text
        raise bad_params(
            f"http.request refused {host}: it resolves to {', '.join(addresses)}, a private, loopback, "
            f"link-local or metadata address; allow it in {ALLOWED_HOSTS_SETTING}"
        )


class Webhooks:
    def __init__(
        self, client: httpx.AsyncClient, secret: str | None, policy: HostPolicy | None = None
    ) -> None:
        self._client = client
        self._secret = secret
        self._policy = policy or HostPolicy()

    @activity.defn(name="http.request")
    async def request(self, step: StepInput) -> StepResult:
        params = step.params
        url = str(params.get("url") or "")
        if urlsplit(url).scheme not in ("http", "https"):
            raise bad_params(f"http.request needs an http(s) url, got {url!r}")
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise bad_params(f"http.request cannot use url {url!r}: {exc}") from exc
        if not target.host:
            raise bad_params(f"http.request needs a host in its url, got {url!r}")
        port = target.port or _DEFAULT_PORTS[target.scheme]
        address = await self._policy.address_for(target.host, port)
        method = str(params.get("method") or "POST").upper()
        body = (
            b"" if params.get("body") is None else json.dumps(params["body"], separators=(",", ":")).encode()
        )
        headers = {str(k): str(v) for k, v in (params.get("headers") or {}).items()}
        headers["Idempotency-Key"] = step.idempotency_key
        headers["Host"] = target.netloc.decode("ascii")
        if body:
            headers.setdefault("Content-Type", "application/json")
        log = []
        if self._secret:
            timestamp = int(time.time())
            headers["X-Gantry-Timestamp"] = str(timestamp)
            headers["X-Gantry-Signature"] = sign(self._secret, timestamp, body)
        else:
            log.append("GANTRY_WEBHOOK_SECRET is not set: the request is not signed")
        response = await send(
            self._client,
            "webhook",
            method,
            str(target.copy_with(host=address)),
            content=body,
            headers=headers,
            params=params.get("query") or None,
            # TLS still verifies the certificate for the host name, not the address.
            extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
            follow_redirects=False,
            host=f"{target.host}:{port}",
        )
        outputs = {
            "status_code": response.status_code,
            "headers": {k: response.headers[k] for k in _KEPT_HEADERS if k in response.headers},
            "body": _body(response),
        }
        log.append(f"{method} {url} -> {response.status_code}")
        return StepResult(outputs=outputs, log=log)


def _body(response: httpx.Response) -> Any:
    if "json" in response.headers.get("content-type", ""):
        try:
            return response.json()
        except ValueError:
            pass
    return response.text[:_MAX_BODY_CHARS]

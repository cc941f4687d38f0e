"""Who is calling: `Authorization: Bearer <key>` -> the request's tenant and scopes.

Every route except the public ones (`/health`, `/ready`, `/openapi.json`, `/docs`, and CORS preflights,
which browsers send without credentials) needs a valid key: GET and HEAD need the `read` scope, other
methods `write`, and operator routes (`ADMIN_PATHS`: `/metrics`) `admin` whatever the method. With
auth off (development without a keys file, or `AETHERA_AUTH=off`) every request acts for the tenant
`default` with every scope, so the same tenant checks run either way.

Checking a key costs one scrypt (about 50 ms of CPU) the first time a process sees it; after that it is
a cache hit. Before any scrypt runs, a well-formed key not in the cache takes a token from its client address's
bad-key bucket in Redis (one atomic Lua script): past `_FAIL_BURST` attempts the address gets 429
however many it sends at once, so a flood of wrong keys costs at most `_FAIL_BURST` scrypt runs per
address (and `_FAIL_RATE_PER_S` after that). A key that turns out valid gives its token back. What
passes waits for one of a few scrypt slots per process (`keycheck.KeyChecker`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import redis.exceptions
from aiohttp import web
from aiohttp.typedefs import Middleware

from aethera.errors import ConfigError, Forbidden, RateLimited, Unauthorized
from aethera.models import DEFAULT_TENANT
from aethera.security.apikeys import KeyStore, Principal, parse_key
from aethera.security.client_address import Network, client_address, parse_trusted_proxies
from aethera.security.keycheck import KeyChecker
from aethera.security.ratelimit import Decision, RateLimiter
from aethera.settings import Settings

log = logging.getLogger("aethera.security")

PUBLIC_PATHS: frozenset[str] = frozenset({"/health", "/ready", "/openapi.json", "/docs"})
ADMIN_PATHS: frozenset[str] = frozenset({"/metrics"})  # operator routes: the admin scope, not read/write
READ_METHODS: frozenset[str] = frozenset({"GET", "HEAD"})
_FAIL_BURST = 20  # wrong keys an address may send at once ...
_FAIL_RATE_PER_S = 0.5  # ... and then one every 2 s
_FAIL_LIMITER_CONNECTIONS = 8  # Redis connections the bad-key throttle of one API process uses at most
_FAIL_LIMITER_TIMEOUT_S = 5.0
_OUTAGE_LOG_EVERY_S = 30.0

PRINCIPAL = web.RequestKey("aethera_principal", Principal)
KEY_STORE = web.AppKey("aethera_key_store", KeyStore)
KEY_CHECKER = web.AppKey("aethera_key_checker", KeyChecker)
RATE_LIMITER = web.AppKey("aethera_rate_limiter", RateLimiter)
FAILURE_LIMITER = web.AppKey("aethera_auth_failure_limiter", RateLimiter)
TRUSTED_PROXIES = web.AppKey("aethera_trusted_proxies", tuple[Network, ...])

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_DEV_PRINCIPAL = Principal(tenant=DEFAULT_TENANT, scopes=("admin", "read", "write"), key_id=None)


def auth_enabled(settings: Settings) -> bool:
    """`AETHERA_AUTH=on|off` decide; `auto` means on in production or whenever a keys file is set."""
    if settings.auth == "on":
        return True
    if settings.auth == "off":
        return False
    return settings.environment == "production" or bool(settings.api_keys_file)


def is_public(request: web.Request) -> bool:
    if request.method == "OPTIONS":  # CORS preflight: browsers never send credentials with it
        return True
    return request.path in PUBLIC_PATHS or request.path.startswith("/docs/")


def principal_of(request: web.Request) -> Principal:
    """The caller of a non-public route (set by the auth middleware)."""
    principal: Principal | None = request.get(PRINCIPAL)
    if principal is None:  # a route reached without the middleware: fail closed
        raise Unauthorized("authentication required")
    return principal


def tenant_of(request: web.Request) -> str:
    return principal_of(request).tenant


def require_scope(request: web.Request, scope: str) -> Principal:
    """The caller, when its key has `scope`; else Forbidden (403)."""
    principal = principal_of(request)
    if not principal.has(scope):
        raise Forbidden(f"this route needs an API key with the {scope} scope")
    return principal


def startup_warning(settings: Settings) -> str | None:
    """The loud line to log at start when the API runs without authentication, else None."""
    if auth_enabled(settings):
        return None
    why = "AETHERA_AUTH=off" if settings.auth == "off" else "development mode without AETHERA_API_KEYS_FILE"
    return (
        f"AUTHENTICATION IS OFF ({why}): every request acts for tenant {DEFAULT_TENANT!r}. "
        "Never expose this server; create keys with `aethera keys create --tenant NAME --file FILE` "
        "and set AETHERA_API_KEYS_FILE."
    )


class _Outages:
    """Logs a Redis outage of the limiter at most every `_OUTAGE_LOG_EVERY_S`, not once per request."""

    def __init__(self) -> None:
        self._last = -_OUTAGE_LOG_EVERY_S

    def report(self, what: str, exc: Exception) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._last >= _OUTAGE_LOG_EVERY_S:
            self._last = now
            log.warning(
                "%s: Redis unreachable (%s); requests pass unlimited until it returns", what, type(exc).__name__
            )


def make_auth_middleware(settings: Settings, *, rate_limit: bool = False) -> Middleware:
    """The middleware that sets `request[PRINCIPAL]`; put it inside the error middleware.

    With `rate_limit` it also applies the rate limit once the caller is known, exactly as
    `make_ratelimit_middleware` placed right inside it would, one middleware layer fewer per request."""
    enabled = auth_enabled(settings)
    outages = _Outages()
    limit = _rate_limit() if rate_limit else None

    async def reserve(limiter: RateLimiter | None, address: str) -> Decision | None:
        """Take one bad-key token from `address`'s bucket; None when there is no limiter or Redis is away."""
        if limiter is None:
            return None
        try:
            return await limiter.hit(f"authfail:{address}")
        except (redis.exceptions.RedisError, OSError) as exc:
            outages.report("auth failure limiter", exc)
            return None

    async def give_back(limiter: RateLimiter | None, address: str) -> None:
        if limiter is None:
            return
        try:
            await limiter.refund(f"authfail:{address}")
        except (redis.exceptions.RedisError, OSError) as exc:
            outages.report("auth failure limiter", exc)

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_public(request):
            return await handler(request)
        if not enabled:
            request[PRINCIPAL] = _DEV_PRINCIPAL
            if limit is not None and (limiter := request.app.get(RATE_LIMITER)) is not None:
                await limit(request, limiter)
            return await handler(request)
        store = request.app[KEY_STORE]
        checker = request.app[KEY_CHECKER]
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("an API key is required: send Authorization: Bearer <key>")
        if store.due_for_reload():
            await asyncio.to_thread(store.reload_if_changed)
        # a key already verified passes at once: failed attempts from its address (a shared NAT, an
        # attacker next door) must not lock out a client whose key is known good
        principal = store.cached(token) if len(token) <= 256 else None
        # a malformed key costs nothing to refuse and its format is public: 401 at once, no throttle token
        if principal is None and parse_key(token) is not None:
            failure_limiter = request.app.get(FAILURE_LIMITER)
            address = _address_bucket(request)
            verdict = await checker.check(
                token,
                reserve=lambda: reserve(failure_limiter, address),
                give_back=lambda: give_back(failure_limiter, address),
            )
            if verdict.retry_after_s:
                raise RateLimited(
                    "too many failed authentication attempts; retry later", retry_after_s=verdict.retry_after_s
                )
            principal = verdict.principal
        if principal is None:
            # the same answer for a malformed key, an unknown key id and a wrong secret
            raise Unauthorized("invalid API key")
        if request.path in ADMIN_PATHS:
            needed = "admin"
            why = "this route needs an API key with the admin scope"
        elif request.method in READ_METHODS:
            needed, why = "read", "this API key may not read tenant data"
        else:
            needed = "write"
            why = "this API key is read-only" if principal.has("read") else "this API key may not change tenant data"
        if not principal.has(needed):
            raise Forbidden(why)
        request[PRINCIPAL] = principal
        # the rate limit, when this middleware applies it and it is on (inline: no frame per request)
        if limit is not None and (limiter := request.app.get(RATE_LIMITER)) is not None:
            await limit(request, limiter)
        return await handler(request)

    return auth_middleware


def make_ratelimit_middleware() -> Middleware:
    """Per-key token bucket (per address when auth is off); put it inside the auth middleware.

    A Redis outage lets requests through unlimited (and logged): limiting protects capacity, it does not
    guard data, and refusing every request while Redis restarts would turn a blip into an outage.
    `make_auth_middleware(settings, rate_limit=True)` applies the same limit without a layer of its own.
    """
    limit = _rate_limit()

    @web.middleware
    async def ratelimit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        limiter = request.app.get(RATE_LIMITER)
        if limiter is not None and not is_public(request):
            await limit(request, limiter)
        return await handler(request)

    return ratelimit_middleware


def _rate_limit() -> Callable[[web.Request, RateLimiter], Awaitable[None]]:
    """The rate limit's check: RateLimited (429) when the caller's bucket is empty."""
    outages = _Outages()

    async def limit(request: web.Request, limiter: RateLimiter) -> None:
        principal = request.get(PRINCIPAL)
        bucket = f"key:{principal.key_id}" if principal and principal.key_id else f"addr:{_address_bucket(request)}"
        try:
            decision = await limiter.hit(bucket)
        except (redis.exceptions.RedisError, OSError) as exc:
            outages.report("rate limiter", exc)
            return
        if not decision.allowed:
            raise RateLimited(
                f"rate limit of {limiter.rate_per_s:g} requests/s (burst {limiter.burst}) exceeded; "
                f"retry in {decision.retry_after_s} s",
                retry_after_s=decision.retry_after_s,
            )

    return limit


def _trusted(app: web.Application) -> tuple[Network, ...]:
    trusted: tuple[Network, ...] = app.get(TRUSTED_PROXIES, ())
    return trusted


def client_of(request: web.Request) -> str | None:
    """The client's address: the TCP peer, or behind trusted proxies the address they forwarded."""
    trusted = _trusted(request.app)
    if not trusted:  # the common case, on every request's access line: no header parsing
        return request.remote
    return client_address(request.remote, request.headers.getall("X-Forwarded-For", ()), trusted)


def _address_bucket(request: web.Request) -> str:
    """The client's address (behind trusted proxies, from X-Forwarded-For) as a bucket name."""
    remote = client_of(request) or "unknown"
    # IPv6 addresses hold ':' which the bucket pattern allows; anything else odd is folded away
    return "".join(c if c.isalnum() or c in ":._-" else "_" for c in remote)[:64]


def setup_security(app: web.Application, settings: Settings) -> None:
    """Register what the middlewares need: the key store (auth on) and the limiters (Redis configured).

    The key store is read at start-up, so a missing or malformed keys file stops the server with a
    ConfigError naming it. The request limiter gets a Redis client of its own with short timeouts, so a
    hung Redis delays a request by at most about a second before it passes unlimited. The bad-key
    throttle gets another with a few connections and long timeouts: a hung Redis delays the check of a
    key not yet verified by up to `_FAIL_LIMITER_TIMEOUT_S` (verified keys never wait for it).
    """
    app[TRUSTED_PROXIES] = parse_trusted_proxies(settings.trusted_proxies)
    if auth_enabled(settings):
        if not settings.api_keys_file:
            raise ConfigError("authentication is on but AETHERA_API_KEYS_FILE is not set")
        store = KeyStore(settings.api_keys_file)
        app[KEY_STORE] = store
        app[KEY_CHECKER] = KeyChecker(store)
        log.info("authentication on: %d API keys loaded", len(store))
    else:
        log.warning(startup_warning(settings))

    if settings.redis_url is None:
        return

    async def limiter_ctx(app: web.Application) -> AsyncIterator[None]:
        from redis.asyncio import BlockingConnectionPool, Redis

        client = Redis.from_url(
            settings.redis_url or "", socket_connect_timeout=0.5, socket_timeout=0.5, retry_on_timeout=False
        )
        # the bad-key throttle fails open only when Redis is really away, never because a flood keeps the
        # API busy: a few shared connections that a burst queues for (200 concurrent connects made each
        # call of a flood take over a second), with timeouts a loaded process does not reach
        auth_client = Redis.from_pool(
            BlockingConnectionPool.from_url(  # from_pool: aclose closes the pool too
                settings.redis_url or "",
                max_connections=_FAIL_LIMITER_CONNECTIONS,
                timeout=_FAIL_LIMITER_TIMEOUT_S,
                socket_connect_timeout=_FAIL_LIMITER_TIMEOUT_S,
                socket_timeout=_FAIL_LIMITER_TIMEOUT_S,
                retry_on_timeout=False,
            )
        )
        if settings.rate_limit_per_s > 0:
            app[RATE_LIMITER] = RateLimiter(client, settings.rate_limit_per_s, settings.rate_limit_burst)
        if auth_enabled(settings):
            app[FAILURE_LIMITER] = RateLimiter(auth_client, _FAIL_RATE_PER_S, _FAIL_BURST)
        yield
        await client.aclose()
        await auth_client.aclose()

    app.cleanup_ctx.append(limiter_ctx)

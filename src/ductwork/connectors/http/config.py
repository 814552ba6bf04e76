"""Configuration of the HTTP extractor: credentials, incremental cursor, the validated config.

Also the masking of secrets in URLs, applied to every URL the extractor shows in an error or a
log line, to the configuration's repr, and to httpx's own ``HTTP Request: ...`` log lines.
"""

from __future__ import annotations

import base64
import codecs
import functools
import logging
import os
import ssl
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_serializer,
    field_validator,
)

from ...core.config import Options, check_value
from .limits import (
    HttpRetryConfig,
    RateLimitConfig,
    RateLimiter,
    coerce_rate_limit,
    coerce_retry_policy,
)
from .paging import NoPagination, PaginationConfig

__all__ = [
    "AuthConfig",
    "BasicAuth",
    "BearerAuth",
    "HeaderAuth",
    "HttpExtractorConfig",
    "IncrementalConfig",
    "config_secrets",
    "credential_headers",
    "looks_secret",
    "mask_secrets",
    "origin",
    "redact_httpx_logs",
    "redact_url",
    "ssl_context",
]

_SECRET_PARAM_PARTS = ("token", "secret", "password", "passwd", "apikey", "api_key", "signature")
_SECRET_PARAMS = frozenset({"key", "sig", "auth", "authorization", "credential", "credentials"})
_SECRET_HEADER_PARTS = ("auth", "cookie", "key", "session", *_SECRET_PARAM_PARTS)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str | httpx.URL) -> tuple[str, str, int | None]:
    """The origin of a URL: scheme, host and port (the scheme's default port when none is
    given). Credentials go only to the origin of the configured URL."""
    parsed = httpx.URL(url)
    scheme = parsed.scheme.lower()
    return scheme, parsed.host.lower(), parsed.port or _DEFAULT_PORTS.get(scheme)


def _secret_param(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_PARAMS or any(part in lowered for part in _SECRET_PARAM_PARTS)


def _secret_header(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in _SECRET_HEADER_PARTS)


def looks_secret(name: str) -> bool:
    """Whether a parameter called ``name`` probably holds a secret (its value is masked).

    Names containing ``token``, ``secret``, ``password``, ``api_key``, ``signature`` (or being
    ``key``, ``sig``, ``auth`` ...), in any case.

    Example:
        >>> looks_secret("api_key"), looks_secret("Access_Token"), looks_secret("page")
        (True, True, False)
    """
    lowered = name.lower()
    return lowered in _SECRET_PARAMS or any(part in lowered for part in _SECRET_PARAM_PARTS)


def redact_url(url: str | httpx.URL, secret_params: frozenset[str] = frozenset()) -> str:
    """The URL with its password and the values of secret-looking query parameters masked.

    Parameters whose name contains ``token``, ``secret``, ``password``, ``api_key``,
    ``signature`` (or is ``key``, ``sig``, ``auth`` ...), and those in
    ``secret_params``, are shown as ``***``.

    Example:
        >>> redact_url("https://bob:pw@api.example.com/x?page=2&access_token=abc")
        'https://bob:***@api.example.com/x?page=2&access_token=***'
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid URL>"
    changed = False
    if parsed.password:
        parsed = parsed.copy_with(username=parsed.username, password="***")
        changed = True
    if parsed.query:
        pairs = []
        secret_query = False
        for name, value in parsed.params.multi_items():
            if name.lower() in secret_params or _secret_param(name):
                value = "***"
                secret_query = True
            pairs.append((name, value))
        if secret_query:
            parsed = parsed.copy_with(params=pairs)
            changed = True
    if not changed:
        return str(url)
    return str(parsed).replace("%2A%2A%2A", "***")


class _RedactUrls(logging.Filter):
    """Masks secrets in the URLs of httpx's own ``HTTP Request: ...`` log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(arg, httpx.URL) for arg in args):
            record.args = tuple(
                redact_url(arg) if isinstance(arg, httpx.URL) else arg for arg in args
            )
        return True


_URL_FILTER = _RedactUrls()


def redact_httpx_logs() -> None:
    """Install the URL-masking filter on the ``httpx`` logger (once)."""
    logger = logging.getLogger("httpx")
    if _URL_FILTER not in logger.filters:
        logger.addFilter(_URL_FILTER)


@functools.lru_cache(maxsize=8)
def ssl_context(verify: bool | str) -> ssl.SSLContext:
    """One SSL context per ``verify`` setting for the process: building one takes tens of
    milliseconds, which every run would otherwise pay when it opens its client."""
    if isinstance(verify, str):
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    return httpx.create_ssl_context(verify=verify)


# --------------------------------------------------------------------------- configuration


class BearerAuth(BaseModel):
    """``Authorization: Bearer <token>``.

    Example:
        >>> BearerAuth(token="s3cret")
        BearerAuth(type='bearer', token=SecretStr('**********'))
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["bearer"] = "bearer"
    token: SecretStr

    def headers(self) -> dict[str, str]:
        """The request headers carrying the credentials."""
        return {"Authorization": f"Bearer {self.token.get_secret_value()}"}


class BasicAuth(BaseModel):
    """HTTP basic authentication (``Authorization: Basic ...``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["basic"] = "basic"
    username: str
    password: SecretStr

    def headers(self) -> dict[str, str]:
        """The request headers carrying the credentials."""
        raw = f"{self.username}:{self.password.get_secret_value()}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


class HeaderAuth(BaseModel):
    """A secret in a header of your choice, e.g. ``X-API-Key: <value>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["header"] = "header"
    name: Annotated[str, Field(min_length=1)] = "X-API-Key"
    value: SecretStr

    def headers(self) -> dict[str, str]:
        """The request headers carrying the credentials."""
        return {self.name: self.value.get_secret_value()}


AuthConfig = Annotated[BearerAuth | BasicAuth | HeaderAuth, Field(discriminator="type")]


def credential_headers(
    headers: dict[str, str], auth: BearerAuth | BasicAuth | HeaderAuth | None
) -> tuple[dict[str, str], dict[str, str]]:
    """Split request headers into ``(plain, credentials)``.

    The credentials are the ``auth`` headers and every header of ``headers`` whose name looks
    like one (``Authorization``, ``Cookie``, names holding ``auth``, ``key``, ``token``,
    ``secret``, ``session``, ``password`` or ``signature``): they are sent only to the
    configured URL's origin, never after a redirect or a next-page link to another one.
    """
    plain: dict[str, str] = {}
    secret: dict[str, str] = {}
    for name, value in headers.items():
        (secret if _secret_header(name) else plain)[name] = value
    if auth is not None:
        secret.update(auth.headers())
    return plain, secret


_MIN_SECRET = 4
"""Shorter values are not masked in quoted bodies: they would turn ordinary text into ``***``."""


def config_secrets(config: HttpExtractorConfig, params: dict[str, Any] | None = None) -> set[str]:
    """Every secret the configuration holds, as it may appear in a response: the ``auth``
    secrets and header values, credential-like headers, the URL's password and secret-looking
    query values (of the URL, of ``params`` and of a run's filled ``params``)."""
    found: set[str] = set()
    auth = config.auth
    if auth is not None:
        found.update(auth.headers().values())
        for field in ("token", "password", "value"):
            secret = getattr(auth, field, None)
            if isinstance(secret, SecretStr):
                found.add(secret.get_secret_value())
    found.update(value for name, value in config.headers.items() if _secret_header(name))
    for name, value in {**config.params, **(params or {})}.items():
        if _secret_param(name) and isinstance(value, str) and "{" not in value:
            found.add(value)
    try:
        url = httpx.URL(config.url)
    except httpx.InvalidURL:
        url = None
    if url is not None:
        if url.password:
            found.add(url.password)
        found.update(value for name, value in url.params.multi_items() if _secret_param(name))
    return {value for value in found if len(value) >= _MIN_SECRET}


def mask_secrets(text: str, secrets: set[str] | frozenset[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***`` (longest first)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return text


class IncrementalConfig(Options):
    """Fetch only new records on each run, using a cursor field such as ``updated_at``.

    Example:
        >>> IncrementalConfig(cursor_field="updated_at", param="since").param
        'since'
    """

    cursor_field: Annotated[str, Field(min_length=1)]
    """The record field whose highest value is carried to the next run."""
    param: Annotated[str, Field(min_length=1)] | None = None
    """The query parameter that sends the last value (e.g. ``"since"``); the value is also
    available as ``{last_value}`` in URL and parameter templates."""
    initial_value: Any = None
    """The value used on the first run (``None``: no parameter is sent)."""
    state_key: Annotated[str, Field(min_length=1)] | None = None
    """The key in the state store; default ``"<pipeline>:<name>:<cursor_field>"``."""
    key: Annotated[str, Field(min_length=1)] | None = None
    """The record field identifying a record (``"id"``). With it, a run also stores the keys of
    the records holding the highest cursor value (at most 10,000), and the next run drops the
    records whose cursor equals the stored value and whose key was among them: the boundary
    that an inclusive filter (``updated_at_gte``) sends again. ``None``: no de-duplication."""


class HttpExtractorConfig(Options):
    """Validated configuration of an :class:`HttpExtractor` (see :func:`create_http_extractor`).

    Fields that depend on others are declared after them and checked together: a pagination
    that reads the JSON body needs ``response_format="json"``, ``records_path`` only applies to
    JSON, and ``concurrency > 1`` needs page-number or offset pagination.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    none_is_default = frozenset({"headers", "params", "retry_logic", "pagination"})

    url: Annotated[str, Field(min_length=1)]
    """The endpoint; may hold ``{date}``, ``{pipeline}``, ``{last_value}`` and run parameters as
    ``{name}`` placeholders, filled for each run."""
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    """The HTTP method (any case)."""
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    """Extra request headers."""
    params: dict[str, Any] = Field(default_factory=dict, repr=False)
    """Query parameters (string values may hold placeholders as ``url`` does)."""
    json_body: Any = Field(default=None, repr=False)
    """A JSON request body (for POST and the like)."""
    auth: AuthConfig | None = None
    """:class:`BearerAuth`, :class:`BasicAuth` or :class:`HeaderAuth` (or a dict with
    ``"type"``); secrets are held as ``SecretStr``."""
    timeout: Annotated[float, Field(gt=0)] = 30.0
    """Seconds allowed to connect, and for each read and write."""
    request_deadline: Annotated[float, Field(gt=0)] | None = None
    """Seconds allowed for a whole request: sending it, following its redirects and reading its
    body to the end, however slowly the bytes come; past it the request fails as a timeout
    (retried while no batch of it was passed on). ``None`` (the default): no overall limit,
    only ``timeout`` for each connect, read and write."""
    retry_logic: HttpRetryConfig = HttpRetryConfig()
    """When and how requests are retried: a :class:`HttpRetryConfig` (or dict); ``True`` (or
    ``None``) the default, 3 retries with backoff; ``False`` no retries."""
    rate_limiting: RateLimitConfig | RateLimiter | None = None
    """A :class:`RateLimitConfig` (or dict), a bare number of requests per second, or a
    :class:`RateLimiter` instance to share; ``True`` the default limit of 10 requests per second
    (bursts of up to 10, :data:`~ductwork.connectors.http.limits.DEFAULT_RATE_LIMIT`);
    ``None`` or ``False``: no limit."""
    response_format: Literal["json", "ndjson", "jsonl", "csv"] = "json"
    """``"json"``, ``"ndjson"`` (alias ``"jsonl"``) or ``"csv"``; JSON Lines and CSV bodies are
    streamed in constant memory."""
    batch_format: Literal["records", "arrow"] = "records"
    """``"records"`` yields lists of dicts; ``"arrow"`` yields ``pyarrow.Table`` batches: JSON
    Lines and CSV bodies are parsed by ``pyarrow.json``/``pyarrow.csv`` a few MiB at a time
    (the types of the first rows kept for the rest of the body), with no Python object per row;
    a JSON body is parsed as records and converted per batch."""
    records_path: Annotated[str, Field(min_length=1)] | None = None
    """The dotted path of the records in a JSON body (``"data.items"``); without it the body
    must be a list."""
    pagination: PaginationConfig = NoPagination()
    """A pagination strategy (:class:`PageNumberPagination`, :class:`OffsetPagination`,
    :class:`CursorPagination`, :class:`NextUrlPagination`, :class:`LinkHeaderPagination`), a
    dict with ``"type"``, or just the type (``"link_header"``) for its defaults; default: one
    request."""
    concurrency: Annotated[int, Field(ge=1, le=256, strict=True)] = 1
    """Pages fetched at once (page-number and offset pagination only); batches still leave in
    page order."""
    batch_size: Annotated[int, Field(ge=1, le=10_000_000, strict=True)] = 1000
    """Records per batch for streamed bodies and large JSON pages."""
    incremental: IncrementalConfig | None = None
    """An :class:`IncrementalConfig` (or dict) to fetch only new records."""
    max_record_size: Annotated[int, Field(ge=1024, strict=True)] = 64 * 1024 * 1024
    """JSON Lines and CSV: the longest record (line, or CSV record with its quoted line
    breaks) accepted, in bytes; a longer one fails the run instead of growing memory."""
    csv_delimiter: Annotated[str, Field(min_length=1, max_length=1)] = ","
    """The CSV field delimiter."""
    encoding: str = "utf-8"
    """The text encoding of CSV bodies whose response names no charset."""
    follow_redirects: bool = True
    """Follow 3xx redirects (at most 20 in a row). Credentials (``auth`` and credential-like
    ``headers``) go only to the configured URL's origin: a redirect or a next-page URL to
    another scheme, host or port is sent without them."""
    verify: bool | Annotated[str, Field(min_length=1)] = True
    """Verify TLS certificates: ``True``, ``False`` to skip, or the path of a CA bundle file or
    directory."""
    name: Annotated[str, Field(min_length=1, max_length=200)] = "http"
    """The stage name."""

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "url" else value

    @field_serializer("url")
    def _serialize_url(self, value: str) -> str:
        return redact_url(value)

    @field_serializer("headers")
    def _serialize_headers(self, value: dict[str, str]) -> dict[str, str]:
        return {name: "***" if _secret_header(name) else v for name, v in value.items()}

    @field_serializer("params")
    def _serialize_params(self, value: dict[str, Any]) -> dict[str, Any]:
        return {name: "***" if _secret_param(name) else v for name, v in value.items()}

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http:// or https:// URL")
        return value

    @field_validator("method", mode="before")
    @classmethod
    def _upper_method(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("retry_logic", mode="before")
    @classmethod
    def _bool_is_policy(cls, value: Any) -> Any:
        return coerce_retry_policy(value)

    @field_validator("rate_limiting", mode="before")
    @classmethod
    def _number_is_rate(cls, value: Any) -> Any:
        return coerce_rate_limit(value)

    @field_validator("pagination", mode="before")
    @classmethod
    def _name_is_strategy(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value

    @field_validator("encoding")
    @classmethod
    def _check_encoding(cls, value: str) -> str:
        return check_value(codecs.lookup, value, LookupError, "unknown text encoding {value!r}")

    @field_validator("records_path")
    @classmethod
    def _records_path_is_json(cls, value: str | None, info: ValidationInfo) -> str | None:
        fmt = info.data.get("response_format")
        if value is not None and fmt not in (None, "json"):
            raise ValueError(f"applies to JSON responses only, not response_format={fmt!r}")
        return value

    @field_validator("pagination")
    @classmethod
    def _pagination_fits_format(cls, value: Any, info: ValidationInfo) -> Any:
        fmt = info.data.get("response_format")
        if fmt not in (None, "json"):
            needs_body = value.needs_body or getattr(value, "has_total", False)
            if needs_body:
                raise ValueError(
                    f"{value.type!r} pagination reads the JSON body (a cursor, next URL or "
                    f"total), so it needs response_format='json', not {fmt!r}"
                )
        return value

    @field_validator("concurrency")
    @classmethod
    def _concurrency_needs_predictable_pages(cls, value: int, info: ValidationInfo) -> int:
        pagination = info.data.get("pagination")
        if value > 1 and pagination is not None and not pagination.predictable:
            raise ValueError(
                f"concurrency > 1 needs page_number or offset pagination (the next "
                f"{pagination.type!r} page is only known once the previous one is read)"
            )
        return value

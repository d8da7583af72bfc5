"""Route templates: our own matcher, and the templates frameworks expose after routing.

The ``route`` label of the HTTP metrics is a template chosen in code, never a raw path.
It comes, in order, from the framework that routed the request, from the middleware's
own rules (:class:`RouteTemplate`), or is ``__unmatched__``. Frameworks are read by duck
typing so that importing interlock never imports them:

- Starlette / FastAPI: ``scope["route"].path``; FastAPI routers included with a prefix
  keep their full template in ``scope["fastapi"]["effective_route_context"]``; the
  templates of enclosing ``Mount`` s are recovered from the outermost router.
- Flask (Werkzeug): ``environ["werkzeug.request"].url_rule.rule``.
- Django: ``django.urls.resolve(path).route`` for apps detected as Django handlers.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

UNMATCHED = "__unmatched__"

_CONVERTERS = {
    "str": "[^/]+",
    "string": "[^/]+",
    "path": ".*",
    "int": "[0-9]+",
    "float": r"[0-9]+(?:\.[0-9]+)?",
    "uuid": "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}",
}
# {name} / {name:conv} (Starlette, FastAPI) or <name> / <conv:name> (Flask, Django).
_PARAM = re.compile(
    r"\{(?P<b_name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<b_conv>[a-z]+))?\}"
    r"|<(?:(?P<a_conv>[a-z]+):)?(?P<a_name>[A-Za-z_][A-Za-z0-9_]*)>"
)
_CACHE_LIMIT = 2048


@dataclass(frozen=True, slots=True)
class RouteTemplate:
    """A path template such as ``/accounts/{account_id}/withdraw``, compiled to a regex.

    Both ``{name}`` / ``{name:int}`` (Starlette style) and ``<name>`` / ``<int:name>``
    (Flask/Django style) are understood; converters are ``str``, ``path``, ``int``,
    ``float`` and ``uuid``.

    Attributes:
        template: the template as written (the ``route`` label value).
        params: the parameter names, in order.
    """

    template: str
    params: tuple[str, ...]
    regex: re.Pattern[str]

    @classmethod
    def compile(cls, template: str) -> RouteTemplate:
        """Compile ``template``.

        Raises:
            ValueError: the template is not a string starting with ``/``, uses an unknown
                converter or repeats a parameter name.
        """
        if not isinstance(template, str) or not template.startswith("/"):
            raise ValueError(f"route template {template!r} is invalid; it must start with '/'")
        pattern, params, pos = ["^"], [], 0
        for match in _PARAM.finditer(template):
            name = match["b_name"] or match["a_name"]
            conv = match["b_conv"] or match["a_conv"] or "str"
            if conv not in _CONVERTERS:
                raise ValueError(
                    f"route template {template!r}: converter {conv!r} is unknown; "
                    f"use one of {', '.join(sorted(_CONVERTERS))}"
                )
            if name in params:
                raise ValueError(f"route template {template!r} repeats parameter {name!r}")
            params.append(name)
            pattern.append(re.escape(template[pos : match.start()]))
            pattern.append(f"(?P<{name}>{_CONVERTERS[conv]})")
            pos = match.end()
        pattern.append(re.escape(template[pos:]) + "$")
        return cls(template, tuple(params), re.compile("".join(pattern)))

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters if ``path`` matches, else ``None``."""
        found = self.regex.match(path)
        return None if found is None else found.groupdict()


def route_path(path: str, root_path: str) -> str:
    """The path below ``root_path`` (ASGI ``path`` includes the root path)."""
    if root_path and path.startswith(root_path):
        return path[len(root_path) :] or "/"
    return path


# -- ASGI frameworks ------------------------------------------------------------------------


class AsgiRoutes:
    """Reads the route template a Starlette-like router left in the scope.

    One instance per middleware; it caches the templates of mount prefixes, which are
    bounded by the application's routes (and by ``_CACHE_LIMIT`` in any case).
    """

    def __init__(self) -> None:
        self._mounts: dict[str, str | None] = {}
        self._leaves: dict[int, tuple[object, str | None]] = {}

    def template(self, scope: Mapping[str, Any], entry_root_path: str) -> str | None:
        """The full route template of the handled request, or ``None`` if unrouted."""
        leaf = _fastapi_template(scope) if "fastapi" in scope else None
        if leaf is None:
            route = scope.get("route")
            if route is None:
                return None
            known = self._leaves.get(id(route))
            if known is not None and known[0] is route:
                leaf = known[1]
            else:
                leaf = _leaf_template(route)
                if len(self._leaves) < _CACHE_LIMIT:
                    self._leaves[id(route)] = (route, leaf)
            if leaf is None:
                return None
        root = scope.get("root_path", "")
        if not isinstance(root, str) or root == entry_root_path:
            return leaf or "/"
        return self._mount_prefix(scope, root[len(entry_root_path) :]) + leaf

    def _mount_prefix(self, scope: Mapping[str, Any], concrete: str) -> str:
        cached = self._mounts.get(concrete, "")
        if cached != "":
            return cached if cached is not None else "/{mount}"
        router = scope.get("router")
        found = _find_mounts(getattr(router, "routes", None) or (), concrete, 0)
        if len(self._mounts) < _CACHE_LIMIT:
            self._mounts[concrete] = found
        return found if found is not None else "/{mount}"


def _leaf_template(route: object) -> str | None:
    leaf = getattr(route, "path", None)
    if not isinstance(leaf, str):
        return None
    if getattr(route, "routes", None) is not None or type(route).__name__ == "Mount":
        return "/{path}"  # a mounted app without routes of its own; the prefix has the mount
    return leaf


def _fastapi_template(scope: Mapping[str, Any]) -> str | None:
    state = scope.get("fastapi")
    if not isinstance(state, dict):
        return None
    context = state.get("effective_route_context")
    template = getattr(context, "path_format", None)
    return template if isinstance(template, str) and template else None


def _find_mounts(routes: Any, concrete: str, depth: int) -> str | None:
    """The template of the mount chain that turned the root path into ``concrete``."""
    if depth > 8:
        return None
    for route in routes:
        children = getattr(route, "routes", None)
        if children is None:
            continue
        regex = getattr(route, "path_regex", None)
        path = getattr(route, "path", None)
        if regex is None or not isinstance(path, str):  # Host-like: no path of its own
            found = _find_mounts(children, concrete, depth + 1)
            if found is not None:
                return found
            continue
        matched = regex.match(concrete + "/")
        if matched is None:
            continue
        rest = "/" + str(matched.groupdict().get("path", "")).rstrip("/")
        if rest == "/":
            return path
        found = _find_mounts(children, rest, depth + 1)
        if found is not None:
            return path + found
    return None


# -- WSGI frameworks ------------------------------------------------------------------------


def flask_template(environ: Mapping[str, Any]) -> str | None:
    """The Werkzeug URL rule that matched (Flask sets ``request.url_rule``)."""
    request = environ.get("werkzeug.request")
    rule = getattr(getattr(request, "url_rule", None), "rule", None)
    return rule if isinstance(rule, str) else None


def is_django_app(app: object) -> bool:
    """True if ``app`` is, or wraps within a few ``.app``-like hops, a Django handler."""
    for _ in range(6):
        if type(app).__module__.startswith("django.core.handlers"):
            return True
        for attr in ("app", "application", "wsgi_app", "_app"):
            inner = getattr(app, attr, None)
            if inner is not None and inner is not app:
                app = inner
                break
        else:
            return False
    return False


def django_template(path: str) -> str | None:
    """The Django URL pattern that ``path`` resolves to, e.g. ``/items/<int:pk>/``."""
    urls = sys.modules.get("django.urls")
    if urls is None:
        return None
    try:
        match = urls.resolve(path)
    except Exception:  # Resolver404, or a URLconf that fails to import: no route
        return None
    route = getattr(match, "route", None)
    if not isinstance(route, str):
        return None
    return route if route.startswith("/") else "/" + route

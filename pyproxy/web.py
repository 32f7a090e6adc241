"""The metrics port's HTTP server and the status pages' HTML shell.

``serve`` runs one threaded HTTP server (the standard library's WSGI server, as
prometheus_client's ``start_http_server`` does) in a daemon thread: ``/metrics`` (and any
path no page claims) is prometheus_client's exposition of ``registry``; each path of
``pages`` is answered by its function, run on the server's thread, which returns the content
type and the body. A page that raises answers 503 with the reason in one line.

``document`` wraps a page's body in a self-contained HTML document: inline CSS, no font,
image or script fetched from anywhere; its one script fetches the page itself again every
``refresh`` seconds from the same origin and swaps in the new ``<main>``, and says so when
the proxy stops answering. ``esc`` and ``table`` are the only ways text enters it, escaped.

Imports nothing of pyproxy (every layer may use it: the proxy's and the watchdog's pages).
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

Page = Callable[[], tuple[str, bytes]]  # -> (content type, body)
HTML, JSON = "text/html; charset=utf-8", "application/json"


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """No access log on stderr (the proxy's log is for events)."""


def serve(host: str, port: int, registry: CollectorRegistry, pages: Mapping[str, Page]) -> None:
    """Serve ``pages`` and ``/metrics`` on host:port from a daemon thread; OSError (e.g. the
    address in use) is raised here, for the caller to report as a startup error."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        page = pages.get(environ.get("PATH_INFO", ""))
        if page is None:
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        try:
            kind, body = page()
            status = "200 OK"
        except Exception as exc:  # the page could not be built: say why, keep serving
            kind, body = "text/plain; charset=utf-8", f"unavailable: {exc!r}\n".encode()
            status = "503 Service Unavailable"
        start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body))),
                                ("Cache-Control", "no-store")])
        return [body]

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name=f"http {host}:{port}",
                     daemon=True).start()


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def table(head: list[str], rows: list[list[str]], empty: str = "none",
          attrs: str = "") -> str:
    """A table whose cells are HTML already (``esc`` what is text); ``empty`` when no row."""
    if not rows:
        return f'<p class="none">{esc(empty)}</p>'
    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return f"<table{attrs}><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
:root { color-scheme: light; --ink: #1d2330; --soft: #5b6475; --line: #dde2ea;
  --ok: #1a7f37; --bad: #c62828; --warn: #b26a00; --bg: #f6f8fb; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: var(--ink); background: var(--bg); }
header { display: flex; gap: 16px; align-items: baseline; padding: 12px 24px;
  background: #1d2330; color: #fff; }
header h1 { margin: 0; font-size: 18px; }
header .meta { color: #b8c1d1; font-size: 13px; }
#stale { display: none; margin-left: auto; color: #ffb4a9; }
main { padding: 8px 24px 32px; }
section.pool { background: #fff; border: 1px solid var(--line); border-radius: 8px;
  margin: 16px 0; padding: 8px 20px 16px; }
h2 { font-size: 17px; margin: 10px 0 4px; }
h3 { font-size: 14px; margin: 18px 0 6px; color: var(--soft); text-transform: uppercase;
  letter-spacing: .04em; }
.facts { display: flex; flex-wrap: wrap; gap: 6px 22px; color: var(--soft); }
.facts b { color: var(--ink); font-weight: 600; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th { text-align: left; font-weight: 600; color: var(--soft); border-bottom: 2px solid var(--line);
  padding: 4px 8px; }
td { border-bottom: 1px solid var(--line); padding: 4px 8px; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .mono { font: 12px/1.4 ui-monospace, "SFMono-Regular", Menlo, monospace; }
.up { color: var(--ok); font-weight: 600; } .down { color: var(--bad); font-weight: 600; }
.warn { color: var(--warn); } .none { color: var(--soft); font-style: italic; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px;
  margin-right: 6px; vertical-align: -1px; }
.maps { display: flex; flex-wrap: wrap; gap: 24px; }
.maps figure { margin: 0; } .maps figcaption { color: var(--soft); font-size: 12px; }
svg.slots { width: 320px; height: 320px; border: 1px solid var(--line);
  image-rendering: pixelated; shape-rendering: crispEdges; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; margin-top: 6px; }
.bar { display: inline-block; height: 8px; background: #e4572e; border-radius: 2px;
  vertical-align: middle; margin-right: 6px; }
"""

_SCRIPT = """
(function () {
  var every = %d * 1000, stale = document.getElementById('stale');
  function refresh() {
    fetch(location.pathname, {cache: 'no-store'}).then(function (r) {
      if (!r.ok) throw new Error(r.status);
      return r.text();
    }).then(function (text) {
      var next = new DOMParser().parseFromString(text, 'text/html');
      document.querySelector('main').replaceWith(next.querySelector('main'));
      document.getElementById('generated').textContent =
        next.getElementById('generated').textContent;
      stale.style.display = 'none';
    }).catch(function (e) {
      stale.textContent = 'not answering (' + e.message + '): showing the last answer';
      stale.style.display = 'inline';
    }).finally(function () { setTimeout(refresh, every); });
  }
  setTimeout(refresh, every);
})();
"""


def document(title: str, subtitle: str, generated: str, body: str, refresh: int = 5) -> str:
    """A whole self-contained page: ``body`` (HTML) is its ``<main>``."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><span class=\"meta\">{esc(subtitle)}</span>"
        f"<span class=\"meta\" id=\"generated\">{esc(generated)}</span>"
        "<span id=\"stale\"></span></header>"
        f"<main>{body}</main><script>{_SCRIPT % refresh}</script></body></html>\n"
    )

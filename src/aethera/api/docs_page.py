"""The API reference page: one self-contained HTML page rendered from the OpenAPI document.

Everything (style included) is inline and nothing is fetched from another host, so the page works
offline and behind a firewall. Every text taken from the document is HTML-escaped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from html import escape
from typing import Any

_REF_PREFIX = "#/components/schemas/"
_CODE_RE = re.compile(r"`([^`]+)`")

_CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#dfe3ea; --bg:#fff; --soft:#f5f7fa; --link:#1f5fbf; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg); background:var(--bg); }
header { padding:24px 32px; border-bottom:1px solid var(--line); background:var(--soft); }
header h1 { margin:0 0 4px; font-size:24px; }
.layout { display:flex; align-items:flex-start; }
nav { position:sticky; top:0; width:300px; max-height:100vh; overflow:auto; padding:16px 20px; border-right:1px solid var(--line); font-size:13px; }
nav h3 { margin:16px 0 4px; font-size:12px; text-transform:uppercase; color:var(--muted); }
nav a { display:block; padding:2px 0; color:var(--fg); text-decoration:none; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
nav a:hover { color:var(--link); }
main { flex:1; padding:8px 32px 64px; min-width:0; }
h2 { margin-top:40px; padding-bottom:4px; border-bottom:1px solid var(--line); }
section.op { margin:24px 0; padding:16px 20px; border:1px solid var(--line); border-radius:6px; }
section.op h3 { margin:0 0 6px; font-size:17px; font-family:ui-monospace,Menlo,Consolas,monospace; }
.method { display:inline-block; min-width:64px; padding:1px 8px; margin-right:8px; border-radius:4px; color:#fff; font-size:13px; text-align:center; }
.get { background:#2b7a4b; } .post { background:#1f5fbf; } .put, .patch { background:#8a5a00; } .delete { background:#b3261e; } .other { background:#5b6475; }
.auth { font-size:12px; color:var(--muted); }
table { border-collapse:collapse; width:100%; margin:8px 0 12px; font-size:14px; }
th, td { text-align:left; vertical-align:top; padding:5px 8px; border-bottom:1px solid var(--line); }
th { font-size:12px; text-transform:uppercase; color:var(--muted); font-weight:600; }
code, pre { font-family:ui-monospace,Menlo,Consolas,monospace; font-size:13px; }
code { background:var(--soft); padding:0 4px; border-radius:3px; }
pre { background:var(--soft); padding:10px 12px; border-radius:4px; overflow:auto; }
a { color:var(--link); }
.req { color:#b3261e; font-size:12px; }
.muted { color:var(--muted); }
h4 { margin:14px 0 4px; font-size:14px; }
"""


def _text(value: str) -> str:
    """Escaped text, with `backticks` shown as code."""
    return _CODE_RE.sub(lambda m: f"<code>{m.group(1)}</code>", escape(value))


def _paragraphs(value: str) -> str:
    return "".join(f"<p>{_text(p.strip())}</p>" for p in value.split("\n\n") if p.strip())


def _ref_name(ref: str) -> str:
    return ref.removeprefix(_REF_PREFIX)


def _anchor(name: str) -> str:
    return "schema-" + re.sub(r"[^A-Za-z0-9_-]", "-", name)


def type_html(schema: Mapping[str, Any]) -> str:
    """A short, linked description of a JSON Schema type, e.g. `array of Project`, `string | null`."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f'<a href="#{_anchor(name)}">{escape(name)}</a>'
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(type_html(s) for s in schema[key])
    if "allOf" in schema:
        return " &amp; ".join(type_html(s) for s in schema["allOf"])
    if "const" in schema:
        return f"<code>{escape(json.dumps(schema['const']))}</code>"
    if "enum" in schema:
        return " | ".join(f"<code>{escape(json.dumps(v))}</code>" for v in schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(type_html({**schema, "type": k}) for k in kind)
    if kind == "array":
        items = schema.get("items")
        return "array of " + (type_html(items) if isinstance(items, Mapping) else "any")
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping) and extra:
            return "object of " + type_html(extra)
        return "object"
    if kind is None:
        return "any"
    out = escape(str(kind))
    notes = []
    for key in (
        "format",
        "contentMediaType",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
    ):
        if key in schema:
            notes.append(f"{key} {schema[key]}")
    if notes:
        out += f' <span class="muted">({escape(", ".join(str(n) for n in notes))})</span>'
    return out


def example_of(schema: Mapping[str, Any], components: Mapping[str, Any], depth: int = 0) -> Any:
    """A small example value of `schema`: defaults where given, required fields only."""
    if depth > 6:
        return None
    if "$ref" in schema:
        return example_of(components.get(_ref_name(schema["$ref"]), {}), components, depth + 1)
    if schema.get("examples"):
        return schema["examples"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return example_of(options[0], components, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object":
        props = schema.get("properties", {})
        return {k: example_of(props[k], components, depth + 1) for k in schema.get("required", []) if k in props}
    if kind == "array":
        items = schema.get("items")
        return [example_of(items, components, depth + 1)] if isinstance(items, Mapping) else []
    return {"string": "string", "integer": 0, "number": 0.0, "boolean": True}.get(str(kind))


def _fields_table(schema: Mapping[str, Any]) -> str:
    props: Mapping[str, Any] = schema.get("properties", {})
    if not props:
        return ""
    required = set(schema.get("required", []))
    rows = []
    for name, prop in props.items():
        req = ' <span class="req">required</span>' if name in required else ""
        default = f"<code>{escape(json.dumps(prop['default']))}</code>" if "default" in prop else ""
        desc = _text(prop.get("description", "")) if prop.get("description") else ""
        rows.append(
            f"<tr><td><code>{escape(name)}</code>{req}</td><td>{type_html(prop)}</td>"
            f"<td>{default}</td><td>{desc}</td></tr>"
        )
    return (
        "<table><thead><tr><th>field</th><th>type</th><th>default</th><th>about</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _operation(method: str, path: str, op: Mapping[str, Any], doc: Mapping[str, Any]) -> str:
    components = doc.get("components", {}).get("schemas", {})
    op_id = op.get("operationId", f"{method}-{path}")
    css = method if method in {"get", "post", "put", "patch", "delete"} else "other"
    public = op.get("security") == []
    auth = "public: no key needed" if public else "needs <code>Authorization: Bearer &lt;key&gt;</code>"
    parts = [
        f'<section class="op" id="op-{escape(op_id)}">',
        f'<h3><span class="method {css}">{escape(method.upper())}</span>{escape(path)}</h3>',
        f'<div><strong>{_text(op.get("summary", ""))}</strong> <span class="auth">— {auth}</span></div>',
        _paragraphs(op.get("description", "")),
    ]
    params = op.get("parameters", [])
    if params:
        required = ' <span class="req">required</span>'
        param_rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code>{required if p.get('required') else ''}</td>"
            f"<td>{escape(p['in'])}</td><td>{type_html(p.get('schema', {}))}</td>"
            f"<td>{_text(p.get('description', ''))}</td></tr>"
            for p in params
        )
        parts.append(
            "<h4>Parameters</h4><table><thead><tr><th>name</th><th>in</th><th>type</th><th>about</th></tr>"
            f"</thead><tbody>{param_rows}</tbody></table>"
        )
    body = op.get("requestBody")
    example_body = None
    body_media = None
    if body:
        parts.append("<h4>Request body</h4>")
        if body.get("description"):
            parts.append(_paragraphs(body["description"]))
        for media, content in body.get("content", {}).items():
            schema = content.get("schema", {})
            parts.append(f"<div><code>{escape(media)}</code>: {type_html(schema)}</div>")
            target = components.get(_ref_name(schema["$ref"]), {}) if "$ref" in schema else schema
            parts.append(_fields_table(target))
            if media == "application/json" and example_body is None:
                example_body = example_of(schema, components)
                body_media = media
    rows: list[str] = []
    for status, resp in op.get("responses", {}).items():
        kinds = "; ".join(
            f"<code>{escape(media)}</code> {type_html(c.get('schema', {}))}"
            for media, c in resp.get("content", {}).items()
        )
        rows.append(
            f"<tr><td><code>{escape(status)}</code></td><td>{_text(resp.get('description', ''))}</td><td>{kinds}</td></tr>"
        )
    parts.append(
        "<h4>Responses</h4><table><thead><tr><th>status</th><th>when</th><th>body</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    curl = [f'curl -X {method.upper()} "$AETHERA_URL{path}"']
    if not public:
        curl.append('-H "Authorization: Bearer $AETHERA_KEY"')
    if example_body is not None and body_media:
        curl.append(f"-H 'Content-Type: {body_media}'")
        curl.append(f"-d '{json.dumps(example_body)}'")
    joined = " \\\n  ".join(curl)
    parts.append(f"<h4>Example</h4><pre>{escape(joined)}</pre>")
    parts.append("</section>")
    return "\n".join(parts)


def render_docs_html(doc: Mapping[str, Any], *, openapi_url: str = "/openapi.json") -> str:
    """The whole reference page for `doc` (an OpenAPI 3.1 document)."""
    info = doc.get("info", {})
    title = str(info.get("title", "API"))
    by_tag: dict[str, list[tuple[str, str, Mapping[str, Any]]]] = {}
    for path, methods in doc.get("paths", {}).items():
        for method, op in methods.items():
            tag = (op.get("tags") or ["other"])[0]
            by_tag.setdefault(tag, []).append((method, path, op))
    schemas: Mapping[str, Any] = doc.get("components", {}).get("schemas", {})
    order = [t["name"] for t in doc.get("tags", []) if t.get("name") in by_tag]
    by_tag = {tag: by_tag[tag] for tag in [*order, *(t for t in by_tag if t not in order)]}

    nav = []
    main = []
    for tag, ops in by_tag.items():
        nav.append(f"<h3>{escape(tag)}</h3>")
        main.append(f'<h2 id="tag-{escape(tag)}">{escape(tag)}</h2>')
        for method, path, op in ops:
            op_id = op.get("operationId", f"{method}-{path}")
            nav.append(f'<a href="#op-{escape(op_id)}">{escape(method.upper())} {escape(path)}</a>')
            main.append(_operation(method, path, op, doc))
    if schemas:
        nav.append("<h3>schemas</h3>")
        main.append('<h2 id="schemas">Schemas</h2>')
        for name, schema in schemas.items():
            nav.append(f'<a href="#{_anchor(name)}">{escape(name)}</a>')
            main.append(
                f'<section class="op" id="{_anchor(name)}"><h3>{escape(name)}</h3>'
                f"{_paragraphs(schema.get('description', ''))}"
                f'<div class="muted">{type_html({k: v for k, v in schema.items() if k != "title"}) if not schema.get("properties") else ""}</div>'
                f"{_fields_table(schema)}</section>"
            )
    schemes = doc.get("components", {}).get("securitySchemes", {})
    auth = "".join(
        f"<p><strong>{escape(name)}</strong>: {_text(s.get('description', ''))}</p>" for name, s in schemes.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} API reference</title><style>{_CSS}</style></head>
<body><header><h1>{escape(title)} <span class="muted">{escape(str(info.get("version", "")))}</span></h1>
{_paragraphs(str(info.get("description", "")))}{auth}
<p class="muted">Machine-readable: <a href="{escape(openapi_url)}">{escape(openapi_url)}</a> (OpenAPI {escape(str(doc.get("openapi", "")))}).</p></header>
<div class="layout"><nav>{"".join(nav)}</nav><main>{"".join(main)}</main></div></body></html>
"""

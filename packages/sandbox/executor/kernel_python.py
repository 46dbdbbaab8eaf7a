"""codebox Python kernel: a notebook-like interpreter behind the executor (docs/executor-protocol.md).

One global namespace for the session; the last expression of a cell is shown like a notebook's
Out[n]; matplotlib figures come back as PNG, objects with `_repr_html_` (DataFrames) as HTML and
text; exceptions come back with type, message and traceback. Nothing heavy is imported until a
cell asks for it, so an idle kernel stays small.
"""

import ast
import builtins
import io
import json
import linecache
import os
import sys
import traceback

_ctl_in = os.fdopen(3, "rb", buffering=0)
_ctl_out = 4
# Line-buffered so output streams while the cell runs; flushed before `done`.
sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), encoding="utf-8", errors="replace", line_buffering=True)
sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", buffering=0), encoding="utf-8", errors="replace", line_buffering=True)

_user_ns = {"__name__": "__main__", "__builtins__": builtins}
_current = {"id": None}
_loop = None


def _send(obj):
    data = (json.dumps(obj) + "\n").encode()
    while data:
        data = data[os.write(_ctl_out, data):]


def _bundle(value):
    data = {}
    for method, mime in (("_repr_html_", "text/html"), ("_repr_png_", "image/png"), ("_repr_svg_", "image/svg+xml"),
                         ("_repr_markdown_", "text/markdown"), ("_repr_latex_", "text/latex")):
        fn = getattr(type(value), method, None)
        if fn is None:
            continue
        try:
            out = fn(value)
        except Exception:
            continue
        if out is None:
            continue
        if isinstance(out, tuple):
            out = out[0]
        if mime == "image/png" and isinstance(out, (bytes, bytearray)):
            import base64
            out = base64.b64encode(out).decode()
        data[mime] = out
    data["text/plain"] = repr(value)
    return data


def display(*objs, **kwargs):
    """Shows objects in the cell's output, as notebooks do."""
    for obj in objs:
        _send({"id": _current["id"], "type": "display", "data": _bundle(obj), "executeResult": False})


def _flush_figures():
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    import base64
    for num in plt.get_fignums():
        fig = plt.figure(num)
        buf = io.BytesIO()
        try:
            fig.savefig(buf, format="png", bbox_inches="tight")
        except Exception as e:
            print("codebox: could not render figure %s: %s" % (num, e), file=sys.stderr)
            continue
        _send({"id": _current["id"], "type": "display", "executeResult": False,
               "data": {"image/png": base64.b64encode(buf.getvalue()).decode(), "text/plain": "<Figure %d>" % num}})
    plt.close("all")


def _patch_pyplot():
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None and not getattr(plt.show, "_codebox", False):
        def show(*args, **kwargs):
            _flush_figures()
        show._codebox = True
        plt.show = show


def _run_code(code_obj):
    global _loop
    result = eval(code_obj, _user_ns)
    if code_obj.co_flags & 0x80:  # CO_COROUTINE: the cell used top-level await
        import asyncio
        if _loop is None:
            _loop = asyncio.new_event_loop()
        result = _loop.run_until_complete(result)
    return result


def _execute(cell_id, code):
    filename = "<cell %d>" % cell_id
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    tree = compile(code, filename, "exec", ast.PyCF_ONLY_AST | flags)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    if tree.body:
        _run_code(compile(tree, filename, "exec", flags))
    _patch_pyplot()
    if last is not None:
        value = _run_code(compile(last, filename, "eval", flags))
        _patch_pyplot()
        if value is not None:
            _user_ns["_"] = value
            _send({"id": cell_id, "type": "display", "data": _bundle(value), "executeResult": True})


def _format_error(exc):
    tb = exc.__traceback__
    # Drop the kernel's own frames: keep those from cells and from libraries the cell called.
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    lines = traceback.format_exception(type(exc), exc, tb)
    return {"name": type(exc).__name__, "message": str(exc), "traceback": "".join(lines)}


def main():
    builtins.display = display
    os.environ.setdefault("MPLBACKEND", "Agg")
    _send({"type": "ready"})
    buf = b""
    while True:
        chunk = _ctl_in.read(65536)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            req = json.loads(line)
            _current["id"] = req["id"]
            ok, error = True, None
            try:
                _execute(req["id"], req["code"])
            except SystemExit as e:
                ok = e.code in (None, 0)
                if not ok:
                    error = {"name": "SystemExit", "message": str(e.code), "traceback": "SystemExit: %s\n" % e.code}
            except BaseException as e:  # the cell's error is data, never the kernel's end
                ok, error = False, _format_error(e)
                sys.stderr.write(error["traceback"])
            try:
                _flush_figures()
            except Exception as e:
                print("codebox: %s" % e, file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            _send({"id": req["id"], "type": "done", "ok": ok, **({"error": error} if error else {})})


if __name__ == "__main__":
    main()

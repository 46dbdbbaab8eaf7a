"""codebox Python kernel: a notebook-like interpreter behind the executor (docs/executor-protocol.md).

One global namespace for the session; the last expression of a cell is shown like a notebook's
Out[n]; matplotlib figures come back as PNG, objects with `_repr_html_` (DataFrames) as HTML and
text; exceptions come back with type, message and traceback. Nothing heavy is imported until a
cell asks for it, unless the interpreter preloads modules (a `preload` request before the first
cell): they land in sys.modules, never in the cell's namespace.
"""

import ast
import builtins
import io
import json
import linecache
import os
import signal
import sys
import traceback

from kernel_peer import connect, read_request, send

# The control channel: one unix connection to the executor per cell (kernel_channel.py); the fd
# of the current one, close-on-exec like every socket Python makes.
_ctl_out = -1
# Line-buffered so output streams while the cell runs; flushed before `done`.
sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), encoding="utf-8", errors="replace", line_buffering=True)
sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", buffering=0), encoding="utf-8", errors="replace", line_buffering=True)

_user_ns = {"__name__": "__main__", "__builtins__": builtins}
# Where a figure's chart data goes in its display, when the cell asks for charts (charts.py).
CHART_MIME = "application/vnd.codebox.chart+json"
# Where a pandas DataFrame's columns go in its display, when the cell asks for charts: E2B's `data`.
DATA_MIME = "application/vnd.codebox.data+json"
# A DataFrame with more cells than this, or whose columns take more JSON than this, has no data.
MAX_DATA_CELLS = 100_000
MAX_DATA_CHARS = 1024 * 1024
_current = {"id": None}
_loop = None


def _send(obj):
    send(_ctl_out, obj)


def _between_cells(signum, frame):
    """SIGINT outside a cell: an interrupt that came as its cell ended, with nothing left to stop."""


def _interruptible(on):
    """Ctrl-C (the executor's SIGINT on cancel) raises KeyboardInterrupt while a cell runs, and does
    nothing between cells, where it would end the kernel. A handler the cell installed stays."""
    current = signal.getsignal(signal.SIGINT)
    if on and current is _between_cells:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    elif not on and current is signal.default_int_handler:
        signal.signal(signal.SIGINT, _between_cells)


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
        if isinstance(out, str):  # a repr of another type (a number, a dict) has no place in a bundle
            data[mime] = out
    data["text/plain"] = repr(value)
    if _current.get("charts"):
        columns = _dataframe_columns(value)
        if columns is not None:
            data[DATA_MIME] = columns
    return data


def _dataframe_columns(value):
    """A pandas DataFrame as JSON text of {column: [values]} (missing values null, other values
    that JSON lacks as their text), or None: not a DataFrame, too large, or not expressible."""
    pd = sys.modules.get("pandas")
    if pd is None or not isinstance(value, pd.DataFrame) or value.size > MAX_DATA_CELLS:
        return None
    try:
        frame = value.astype(object).where(value.notna(), None)
        columns = {str(k): v for k, v in frame.to_dict(orient="list").items()}
        text = json.dumps(columns, default=str, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return text if len(text) <= MAX_DATA_CHARS else None


def display(*objs, **kwargs):
    """Shows objects in the cell's output, as notebooks do."""
    for obj in objs:
        _send({"id": _current["id"], "type": "display", "data": _bundle(obj), "executeResult": False})


def _tight_png_one_draw(fig):
    """The picture savefig(bbox_inches="tight") makes, from one draw instead of two: savefig's
    tight bounding box renders the whole figure once to measure it and again to save it (~30% of a
    plot cell). Here the Agg canvas draws once and the image is cropped to the pixels drawn plus
    savefig's padding (tight measures text boxes rather than ink, so the two differ by a pixel or
    three at the edges). Returns None (the caller then uses savefig) whenever the result could differ:
    another backend, savefig settings that are not the defaults, a background that is not one
    opaque colour. Anything drawn within the padding of the figure's edge may lie beyond it: then
    savefig saves the figure with the tight box measured from this draw."""
    mpl = sys.modules.get("matplotlib")
    np = sys.modules.get("numpy")
    if mpl is None or np is None:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    rc = mpl.rcParams
    canvas = fig.canvas
    if type(canvas) is not FigureCanvasAgg or rc["savefig.transparent"] or \
            rc["savefig.dpi"] not in ("figure", fig.dpi) or rc["savefig.facecolor"] != "auto" or \
            rc["savefig.edgecolor"] != "auto" or rc["savefig.pad_inches"] == "layout" or \
            fig.get_facecolor()[3] != 1.0:
        return None
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    height, width = rgba.shape[0], rgba.shape[1]
    px = rgba.view(np.uint32).reshape(height, width)
    bg = px[0, 0]
    drawn = px != bg
    rows = np.flatnonzero(drawn.any(axis=1))
    cols = np.flatnonzero(drawn.any(axis=0))
    pad = int(round(float(rc["savefig.pad_inches"]) * fig.dpi))
    if rows.size == 0 or rows[0] < pad or cols[0] < pad or \
            rows[-1] >= height - pad or cols[-1] >= width - pad:
        # savefig's own measure, taken from this draw's renderer, so that saving draws only once more.
        bbox = fig.get_tightbbox(canvas.get_renderer()).padded(float(rc["savefig.pad_inches"]))
        out = io.BytesIO()
        fig.savefig(out, format="png", bbox_inches=bbox)
        return out.getvalue()
    from PIL import Image
    crop = rgba[rows[0] - pad:rows[-1] + 1 + pad, cols[0] - pad:cols[-1] + 1 + pad]
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(crop), "RGBA").save(out, format="png", dpi=(fig.dpi, fig.dpi))
    return out.getvalue()


def _figure_png(fig):
    png = None
    try:
        png = _tight_png_one_draw(fig)
    except Exception:
        png = None  # anything unexpected: savefig below renders it the usual way
    if png is None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        png = buf.getvalue()
    return png


def _charts():
    """executor/charts.py, loaded by its path under a private name: a `charts` module of the
    user's (PyPI has one) neither shadows it nor is shadowed by it."""
    mod = sys.modules.get("_codebox_charts")
    if mod is None:
        import importlib.util
        spec = importlib.util.spec_from_file_location("_codebox_charts", os.path.join(os.path.dirname(os.path.abspath(__file__)), "charts.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules["_codebox_charts"] = mod
    return mod


def _flush_figures():
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    import base64
    for num in plt.get_fignums():
        fig = plt.figure(num)
        try:
            png = _figure_png(fig)
        except Exception as e:
            print("codebox: could not render figure %s: %s" % (num, e), file=sys.stderr)
            continue
        data = {"image/png": base64.b64encode(png).decode(), "text/plain": "<Figure %d>" % num}
        if _current.get("charts"):
            chart = _charts().describe(fig)
            if chart is not None:
                data[CHART_MIME] = chart
        _send({"id": _current["id"], "type": "display", "executeResult": False, "data": data})
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
        task = _loop.create_task(result)
        try:
            result = _loop.run_until_complete(task)
        except BaseException:
            # Interrupted: the cell's coroutine must not resume in a later cell's run of the loop.
            task.cancel()
            raise
    return result


_user_site = {"mtime": None}


def _refresh_user_site():
    """Let a cell import what `pip install` put into the workspace since the last cell.

    pip installs with --user into ~/.local (/etc/pip.conf in the image); the kernel runs with -s
    and that folder may not exist when it starts, so it goes on sys.path (before the system's
    packages, as Python's own site would put it) once it exists, and import caches are dropped
    whenever it changes.
    """
    import site

    user_site = site.getusersitepackages()
    try:
        mtime = os.stat(user_site).st_mtime_ns
    except OSError:
        return
    if mtime == _user_site["mtime"]:
        return
    _user_site["mtime"] = mtime
    if user_site not in sys.path:
        site.addsitedir(user_site)  # also runs its .pth files
        sys.path.remove(user_site)
        system = [i for i, p in enumerate(sys.path) if p.endswith(("site-packages", "dist-packages"))]
        sys.path.insert(system[0] if system else len(sys.path), user_site)
    import importlib

    importlib.invalidate_caches()


def _execute(cell_id, code):
    _refresh_user_site()
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
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable %s>" % type(exc).__name__
    return {"name": type(exc).__name__, "message": _clip(message), "traceback": _clip("".join(lines))}


def _clip(text, limit=256 * 1024):
    """A huge exception message kept to its head and tail: the rest could not reach the host anyway."""
    if len(text) <= limit:
        return text
    return "%s\n[codebox] ... %d characters cut ...\n%s" % (text[: limit // 2], len(text) - limit, text[-limit // 2:])


def _undumpable():
    """Children a cell leaves behind run as this uid: without this they could open
    /proc/<kernel>/mem and take over the later cells. A cell may undo it for itself."""
    import ctypes
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE


def main():
    global _ctl_out
    builtins.display = display
    signal.signal(signal.SIGINT, _between_cells)
    os.environ.setdefault("MPLBACKEND", "Agg")
    _undumpable()
    conn = connect()
    while conn is not None:
        _ctl_out = conn.fileno()
        req = read_request(conn)
        done = _run_cell(req) if req is not None else None
        # Connect for the next cell before `done`, so that the executor finds it waiting; the
        # cell's code has finished, and the children it started cannot inherit the new one.
        next_conn = connect()
        if done is not None:
            _send(done)
        # The executor closes its end at the cell's end; a child the cell forked keeps a dead copy.
        conn.close()
        conn = next_conn


def _warm_up_plot():
    """Draws and renders one small plot and closes it: matplotlib's one-time first-plot setup (the
    Agg canvas, font loading, pandas' plotting backend) happens here instead of in the first cell."""
    plt = sys.modules["matplotlib.pyplot"]
    pd = sys.modules.get("pandas")
    try:
        if pd is not None:
            pd.DataFrame({"x": [1.0, 2.0, 3.0]}).plot()
        else:
            plt.plot([1, 2, 3])
        for num in plt.get_fignums():
            _figure_png(plt.figure(num))
    finally:
        plt.close("all")


def _preload(req):
    """Imports the interpreter's modules into sys.modules (not into the cell namespace); a module
    that fails is reported and skipped, and the kernel serves cells either way."""
    import importlib
    import time

    started = time.monotonic()
    loaded, failed = [], []
    for name in req["preload"]:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except (Exception, SystemExit) as e:
            failed.append({"module": name, "error": "%s: %s" % (type(e).__name__, _clip(str(e), 2048))})
    if "matplotlib.pyplot" in sys.modules:
        _patch_pyplot()
        try:
            _warm_up_plot()
        except Exception as e:
            failed.append({"module": "matplotlib.pyplot", "error": "warm-up plot: %s: %s" % (type(e).__name__, _clip(str(e), 2048))})
    return {"id": req["id"], "type": "done", "ok": True,
            "preload": {"loaded": loaded, "failed": failed, "durationMs": round((time.monotonic() - started) * 1000, 3)}}


def _run_cell(req):
    """Runs one cell (or the preload request); returns its `done` message."""
    _current["id"] = req["id"]
    _current["charts"] = req.get("charts") is True
    if "preload" in req:
        return _preload(req)
    ok, error = True, None
    saved = _set_env(req.get("env"))
    try:
        try:
            _interruptible(True)
            _execute(req["id"], req["code"])
        finally:
            _interruptible(False)
            _restore_env(saved)
    except SystemExit as e:
        ok, error = _system_exit(e)
    except BaseException as e:  # the cell's error is data, never the kernel's end
        ok, error = False, _format_error(e)
        if req.get("errorToStderr", True):
            sys.stderr.write(error["traceback"])
    try:
        _flush_figures()
    except Exception as e:
        print("codebox: %s" % e, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    return {"id": req["id"], "type": "done", "ok": ok, **({"error": error, "exitCode": error.get("exitCode", 1)} if error else {})}


def _set_env(env):
    """Sets the cell's own environment variables; returns what they replaced, for _restore_env."""
    if not isinstance(env, dict):
        return {}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    return saved


def _restore_env(saved):
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _system_exit(e):
    """As `python` ends on a SystemExit: None or 0 succeed, an int is the exit status (mod 256),
    anything else is printed to stderr and the status is 1."""
    code = e.code
    if code is None or (isinstance(code, int) and code & 0xFF == 0):
        return True, None
    if isinstance(code, int):
        return False, {"name": "SystemExit", "message": str(code), "traceback": "", "exitCode": code & 0xFF}
    try:
        text = str(code)[:65536]
    except Exception:
        text = "<SystemExit>"
    sys.stderr.write(text + "\n")
    return False, {"name": "SystemExit", "message": text, "traceback": text + "\n", "exitCode": 1}


if __name__ == "__main__":
    main()

r"""The local sketch-to-shape page: draw a chair in a browser, get its shape.

    make app                                                       # the demo's run, else the shipped model
    python -m sdfjax.launch.app --workdir=pretrained/chairs256_cpu # the shipped model, with its own config
    python -m sdfjax.launch.app --workdir=runs/chair16_cpu --port=8080

Serves on 127.0.0.1 only unless --host says otherwise; another interface needs --auth (user:password, or a
file holding it) and is warned about. Every jitted step compiles before the
address is printed, so the first click is as fast as the others. A workdir that holds an
exported model (sdfjax.shipped) is checked against its checksums first; without --config,
the folder's own config (its config.json) is used.
"""

import ipaddress
import os
import sys
import tempfile

from absl import flags

from sdfjax import shipped
from sdfjax.app import page as page_lib
from sdfjax.app.service import ShapeService
from sdfjax.launch import common


def login(host: str, auth: str) -> tuple[str, str] | None:
    """(user, password) from --auth (`user:password`, or a file holding it), None on a loopback host without one;
    ValueError when another interface has none (a page that anyone on the network could use and fill the disk of)."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not auth:
        if loopback:
            return None
        raise ValueError(f"--host={host} serves beyond this machine: give --auth=user:password (or a file holding it)")
    text = open(auth).read().strip() if os.path.isfile(auth) else auth
    user, _, password = text.partition(":")
    if not user or not password:
        raise ValueError("--auth: expected user:password, or a file holding it")
    return user, password


def main(argv):
    del argv
    f = flags.FLAGS
    common.quiet_logging()
    config = f.config
    with common.exit_on():
        auth = login(f.host, f.auth)
        if auth is not None and f.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"[app] warning: serving on {f.host}, reachable by others on the network (login required)",
                  file=sys.stderr)
        if shipped.is_export(f.workdir):
            shipped.verify(f.workdir)
        print(f"[app] loading {f.workdir} and compiling (about a minute on a 2-core CPU)…", file=sys.stderr)
        service = ShapeService(config, f.workdir, max_views=f.max_views, warm_views=f.warm_views)
    # Gradio's own files (uploads, the meshes it serves) in a folder only this user can read (mkdtemp: 0700),
    # unless GRADIO_TEMP_DIR names another; the page deletes them after page_lib.GRADIO_FILES_SECONDS
    os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="sdfjax_gradio_"))
    page = page_lib.build_page(service)
    print(f"[app] serving on http://{f.host}:{f.port}", file=sys.stderr)
    page_lib.serve(page, host=f.host, port=f.port, auth=auth)


if __name__ == "__main__":
    flags.DEFINE_string("host", "127.0.0.1", "Interface to listen on (0.0.0.0: every interface; needs --auth).")
    flags.DEFINE_integer("port", 7860, "Port to listen on.")
    flags.DEFINE_string("auth", "", "user:password (or a file holding it) that the page asks for; needed off loopback.")
    flags.DEFINE_integer("max_views", 3, "Sketch tabs: sketches of one object from different views.")
    flags.DEFINE_integer("warm_views", None, "Compile the refinement at start-up for 1..this many sketches (default "
                         "--max_views); more compile on their first request, for a faster start.")
    common.run_on_trained(main, "A trained run (DeepSDF, Siamese and sketch encoder) or an exported model folder.")

"""The local web page over sketch to shape: `service` (models, arrays, files) and `page` (the Gradio page)."""

import os

# Set before any module of the package imports gradio, which reads it at import: a local page makes no calls home.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

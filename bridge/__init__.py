"""Bridge to models that cannot live in pain3d's Python environment (NFR, Hunyuan3D 2.1).

A stage actor keeps one long-lived worker process of another interpreter (the model's own
venv or conda env on the node) and talks to it over the small protocol of
:mod:`bridge.protocol`. The worker side (``worker.py`` and the ``*_server.py`` handlers)
imports only the standard library, numpy and the model's own code, and is Python 3.9
compatible, so it runs in the model's environment; ``client.py`` is pain3d's side.
"""
